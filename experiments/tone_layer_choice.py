"""The layered mode's tone layer: the plain least-squares record against the SSIM-keeping choice, alone and under a
residual layer (the figures behind ``invcomp.codecs.modes.layer_pictures.tone_layer``).

    python experiments/layered_rd.py --data ../shared/data/utkface --split holdout --limit 48 --resolution 64 \
        --out /tmp/rd64 --latents /tmp/lat/holdout.pt --search-only
    python experiments/tone_layer_choice.py --data ../shared/data/utkface --limit 48 --latents /tmp/lat/holdout.pt

Codes the cached latents of ``layered_rd.py --latents`` (the same faces) with plans ``tone``, ``tone,1`` and
``tone,3`` at 64 and 128 px with the tone record always the plain fit, always the SSIM-keeping choice, and as the
codec chooses it (the SSIM-keeping choice when the tone is the last layer, else the plain fit), and prints mean bytes,
SSIM and PSNR of the decoded files, and the base alone.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.bench.run import load_inputs  # noqa: E402
from invcomp.codecs import load_codec
from invcomp.codecs.modes import layered  # noqa: E402
from invcomp.codecs.base import prepare  # noqa: E402
from invcomp.imageio import quantize_pixels  # noqa: E402
from invcomp.metrics import psnr, ssim  # noqa: E402


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True))
@click.option("--limit", default=48, show_default=True)
@click.option("--latents", required=True, type=click.Path(exists=True), help="A layered_rd.py --latents cache.")
def main(data: str, limit: int, latents: str) -> None:
    torch.set_num_threads(1)
    chosen = layered.tone_layer

    def plain(base: torch.Tensor, target: torch.Tensor, keep_ssim: bool = False) -> tuple[bytes, torch.Tensor]:
        return chosen(base, target, keep_ssim=False)

    def keeping(base: torch.Tensor, target: torch.Tensor, keep_ssim: bool = False) -> tuple[bytes, torch.Tensor]:
        return chosen(base, target, keep_ssim=True)

    z = torch.load(latents, weights_only=True)["z"][:limit]
    for size in (64, 128):
        inputs = load_inputs(data, size, limit, "holdout")
        codec = load_codec(mode="layered", resolution=size)
        t64 = torch.stack([prepare(im, 64, "crop") for im in inputs.originals])
        for name, fn in (("plain fit", plain), ("keep SSIM", keeping), ("as chosen", chosen)):
            layered.tone_layer = fn
            for plan in ("none", "tone", "tone,1", "tone,3"):
                codec.plan = layered.parse_plan(plan, size, codec.residual.rates)
                enc = codec.encode_symbols(z, inputs.originals, target=t64)
                pics = [quantize_pixels(e.recon[None]) for e in enc]
                s = sum(float(ssim(p, e.target[None])) for p, e in zip(pics, enc)) / len(enc)
                q = sum(float(psnr(p, e.target[None])[0]) for p, e in zip(pics, enc)) / len(enc)
                n = sum(len(e.data) for e in enc) / len(enc)
                click.echo(f"{size:4d} px  {name:10s} {plan:7s} {n:7.1f} B  SSIM {s:.4f}  PSNR {q:.2f} dB")
    layered.tone_layer = chosen


if __name__ == "__main__":
    main()
