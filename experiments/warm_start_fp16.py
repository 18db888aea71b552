"""Store a shipped warm-start network in float16, after measuring that nothing is lost.

    python experiments/warm_start_fp16.py --model pgan-utkface64 --limit 32

The network only gives the search its first guess (decoding never uses it), so float16 storage changes at most
where the search starts. This measures, on held-out faces: the largest difference between the float32 and
float16 networks' guesses, and the default encode (warm start, 200 iterations) with each, mean bytes and SSIM.
With ``--write`` it saves the float16 state_dict as ``pretrained/MODEL-encoder-SHA8.pt`` (its config copied
beside it), points ``models.json`` at it and removes the float32 file. Loading casts it back to float32.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.codecs import load_codec, stored_pixels  # noqa: E402
from invcomp.codecs.base import prepare  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.files import atomic_save, load_state_dict, sha256_file  # noqa: E402
from invcomp.zoo import registry  # noqa: E402
from invcomp.metrics import ssim  # noqa: E402
from invcomp.nets.warmstart import load_warm_start, predict_latents  # noqa: E402


def _encode(codec, images) -> tuple[float, float]:
    enc = codec.encode(images)
    s = ssim(stored_pixels(torch.stack([e.recon for e in enc])), torch.stack([e.target for e in enc]))
    return sum(len(e.data) for e in enc) / len(enc), float(s.mean())


@click.command()
@click.option("--model", default="pgan-utkface64", show_default=True)
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--limit", default=32, show_default=True)
@click.option("--source", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A trained encoder.pt (with its .json) to ship instead of the shipped one, e.g. the amortised "
                   "encoder of issue 33 (runs/amort/encoder.pt).")
@click.option("--write", is_flag=True, help="Replace the shipped file with the float16 one.")
def main(model: str, data: str, limit: int, source: str | None, write: bool) -> None:
    root = registry.pretrained_dir()
    reg = json.loads((root / "models.json").read_text())
    shipped = root / reg[model]["encoder"]["weights"]
    src = Path(source) if source else shipped
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in load_state_dict(src).items()}
    tmp = Path("/tmp") / "warm_start_fp16.pt"
    atomic_save(half, tmp)
    shutil.copy(src.with_suffix(".json"), tmp.with_suffix(".json"))
    images = [Image.open(p).convert("RGB") for p in list_images(data, "holdout")[:limit]]
    target = torch.stack([prepare(im, 64, "crop") for im in images])
    a = predict_latents(load_warm_start(src).module, target)
    b = predict_latents(load_warm_start(tmp).module, target)
    click.echo(f"largest guess difference: {float((a - b).abs().max()):.2e} (guess scale {float(a.abs().mean()):.2f})")
    full = _encode(load_codec(model), images)
    halfr = _encode(load_codec(model, warm_start=str(tmp)), images)
    click.echo(f"| storage | file MB | mean bytes | mean SSIM |\n|---|---|---|---|\n"
               f"| float32 | {src.stat().st_size / 1e6:.1f} | {full[0]:.2f} | {full[1]:.4f} |\n"
               f"| float16 | {tmp.stat().st_size / 1e6:.1f} | {halfr[0]:.2f} | {halfr[1]:.4f} |")
    if write:
        digest = sha256_file(tmp)
        dst = root / f"{model}-encoder-{digest[:8]}.pt"
        shutil.move(tmp, dst)
        shutil.copy(src.with_suffix(".json"), dst.with_suffix(".json"))
        reg[model]["encoder"].update({"weights": dst.name, "sha256": digest,
                                      "config_sha256": sha256_file(dst.with_suffix(".json"))})
        (root / "models.json").write_text(json.dumps(reg, indent=2) + "\n")
        if shipped != dst:
            shipped.unlink()
            shipped.with_suffix(".json").unlink()
        click.echo(f"wrote {dst.name}")


if __name__ == "__main__":
    main()
