"""Ship the layered mode's residual network: float16 parameters, its config, and proof that float16 costs nothing.

    python experiments/pack_residual.py --run /work/runs/layered/residual --name residual-utkface \
        --data ../shared/data/utkface --limit 32

Reads ``RUN/model.pt`` (the best snapshot) and ``RUN/model.json``; writes ``pretrained/layered/NAME-SHA8.pt``
(parameters in float16, the constant buffers of GDN in float32, no entropy tables: the loader rebuilds them from
CompressAI's scale table) and ``NAME.json`` (config, sha256, training record). Before writing, it codes ``--limit``
validation faces at 64 and 128 px, every rate, over their shipped-generator bases (warm start, 50 search steps,
to keep it quick), with the float32 and the float16 parameters, and prints the mean bytes and PSNR of both.
"""
from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import click
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.codecs.modes.layered import load_residual, residual_dir  # noqa: E402
from invcomp.codecs.loader import load_codec  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.files import atomic_save, sha256_file, write_json  # noqa: E402
from invcomp.imageio import decode_image_bytes, quantize_pixels  # noqa: E402
from invcomp.metrics import psnr  # noqa: E402

log = logging.getLogger("pack_residual")


def _packed(state: dict[str, torch.Tensor], param_names: set[str]) -> dict[str, torch.Tensor]:
    return {k: (v.half() if k in param_names else v) for k, v in state.items() if not k.startswith("gaussian.")}


def _measure(weights: Path, cfg: dict, images: list, sizes: tuple[int, ...]) -> dict[str, tuple[float, float]]:
    from dataclasses import replace

    from invcomp.codecs.base import prepare
    from invcomp.codecs.modes.layered import parse_plan

    with tempfile.TemporaryDirectory() as tmp:
        pt, js = Path(tmp) / "r.pt", Path(tmp) / "r.json"
        pt.write_bytes(weights.read_bytes())
        js.write_text(json.dumps({**cfg, "weights": "r.pt"}))
        out, z = {}, None
        for size in sizes:
            codec = load_codec("dcgan-utkface64", mode="layered", residual=str(pt), resolution=size)
            codec.settings = replace(codec.settings, iters=50)
            t64 = torch.stack([prepare(im, 64, "crop") for im in images])
            z = codec.find_symbols(t64, None)[0] if z is None else z  # one search, every size and rate
            for rate in range(int(cfg["rates"])):
                codec.plan = parse_plan(f"tone,{rate}", size, codec.residual.rates)
                enc = codec.encode_symbols(z, images, target=t64)
                n = sum(len(e.data) for e in enc) / len(enc)
                p = float(torch.stack([psnr(quantize_pixels(e.recon[None]), e.target[None])[0] for e in enc]).mean())
                out[f"{size}px rate {rate}"] = (n, p)
        return out


@click.command()
@click.option("--run", "run", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--name", default="residual-utkface", show_default=True)
@click.option("--data", default=None, help="UTKFace folder, for the float16 check on validation faces.")
@click.option("--limit", default=16, show_default=True)
@click.option("--base", default="dcgan-utkface64", show_default=True)
def main(run: Path, name: str, data: str, limit: int, base: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    info = json.loads((run / "model.json").read_text())
    from invcomp.nets.residual import ResidualCoder

    names = {n for n, _ in ResidualCoder(info["N"], info["M"], info["rates"]).named_parameters()}
    cfg = {"description": f"conditional variable-rate residual coder (CompressAI layers, N={info['N']}, M={info['M']}, "
                          f"{info['rates']} rates) over {base}'s pictures, trained on UTKFace train crops at 64 and 128 px "
                          "on the CPU (non-commercial research use)",
           "N": info["N"], "M": info["M"], "rates": info["rates"], "base": base, "lambdas": info["lambdas"],
           "ssim_weight": info["ssim_weight"], "training": info["training"]}
    out = residual_dir()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        full, half = Path(tmp) / "full.pt", Path(tmp) / "half.pt"
        atomic_save({k: v for k, v in state.items() if not k.startswith("gaussian.")}, full)
        atomic_save(_packed(state, names), half)
        if data:
            files = list_images(data, "val")[:limit]
            images = [decode_image_bytes(f.read_bytes(), name=f.name) for f in files]
            a, b = _measure(full, cfg, images, (64, 128)), _measure(half, cfg, images, (64, 128))
            for k in a:
                log.info("%-16s fp32 %7.1f B %6.2f dB | fp16 %7.1f B %6.2f dB", k, *a[k], *b[k])
            cfg["fp16_check"] = {k: {"fp32": [round(v, 3) for v in a[k]], "fp16": [round(v, 3) for v in b[k]]} for k in a}
        sha = sha256_file(half)
        weights = out / f"{name}-{sha[:8]}.pt"
        weights.write_bytes(half.read_bytes())
    for old in out.glob(f"{name}-*.pt"):
        if old != weights:
            old.unlink()
    write_json({**cfg, "weights": weights.name, "sha256": sha}, out / f"{name}.json")
    log.info("wrote %s (%d bytes) and %s.json", weights, weights.stat().st_size, name)
    load_residual(name)  # loads back


if __name__ == "__main__":
    main()
