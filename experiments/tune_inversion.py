"""Sweep inversion settings on the *validation* faces (never the held-out ones) to choose defaults.

    python experiments/tune_inversion.py --data ../shared/data/utkface --device cuda \
        --grid "lr=0.03,0.1,0.3;iters=100,300,1000"

Each grid point encodes every validation face at ``--bits`` (from a random start unless the grid sets
``init``; ``encoder``/``auto`` use the model's shipped warm-start network) and prints mean
SSIM and PSNR after quantisation, bytes, and seconds. Writes
``OUT/tune_<tag>.json`` and ``.md``.
"""
from __future__ import annotations

import itertools
import json
import logging
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.files import atomic_write  # noqa: E402
from invcomp import metrics  # noqa: E402
from invcomp.codecs import EncodeSettings, InversionCodec, stored_pixels  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.zoo.registry import DEFAULT_MODEL, load_generator  # noqa: E402
from invcomp.imageio import load_image  # noqa: E402
from invcomp.zoo.warmstart import shipped_warm_start  # noqa: E402


def parse_grid(spec: str) -> list[dict]:
    # the fields' annotations are strings such as "Optional[int]"
    types = {f.name: str(f.type).removeprefix("Optional[").removesuffix("]") for f in fields(EncodeSettings)}
    axes = []
    for part in filter(None, spec.split(";")):
        key, vals = part.split("=")
        conv = {"int": int, "float": float, "bool": lambda s: s.lower() in ("1", "true"), "str": str}[types[key]]
        axes.append([(key, conv(v)) for v in vals.split(",")])
    return [dict(p) for p in itertools.product(*axes)]


@click.command()
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--split", default="val", show_default=True)
@click.option("--limit", default=0, show_default=True)
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@click.option("--bits", default=6, show_default=True)
@click.option("--grid", required=True, help='e.g. "lr=0.05,0.1;iters=300,1000;loss=ssim,0.9*ssim+0.1*mse"')
@click.option("--device", default="cpu", show_default=True)
@click.option("--batch-size", default=256, show_default=True)
@click.option("--tag", default="sweep", show_default=True)
@click.option("--out", default="experiments/results", show_default=True)
def main(data, split, limit, model, bits, grid, device, batch_size, tag, out) -> None:
    logging.basicConfig(level=logging.WARNING)
    gen = load_generator(model, device)
    files = list_images(data, split)
    files = files[:limit] if limit else files
    images = [load_image(p) for p in files]
    rows = []
    lines = [f"### {len(files)} {split} faces, {bits} bits, {device}", "",
             "| setting | SSIM | PSNR | MS-SSIM | bytes | float SSIM-loss | s/img |", "|---|---|---|---|---|---|---|"]
    click.echo("\n".join(lines))
    for point in parse_grid(grid):
        # a random start unless the grid says otherwise, as the figures were measured
        st = replace(EncodeSettings(bits=bits, init="random"), **point)
        codec = InversionCodec(gen, st, shipped_warm_start(gen, device) if st.init in ("auto", "encoder") else None)
        t0 = time.perf_counter()
        enc = []
        for s in range(0, len(images), batch_size):
            enc += codec.encode(images[s:s + batch_size])
        dt = (time.perf_counter() - t0) / len(images)
        q = metrics.quality(stored_pixels(torch.stack([e.recon for e in enc])),
                            torch.stack([e.target for e in enc]), with_lpips=False)
        mean = {k: sum(r[k] for r in q) / len(q) for k in ("ssim", "psnr", "ms_ssim")}
        nbytes = sum(len(e.data) for e in enc) / len(enc)
        fl = sum(e.extra["float_loss"] for e in enc) / len(enc)
        rows.append({"point": point, "settings": asdict(codec.settings), **mean, "bytes": nbytes, "float_loss": fl,
                     "seconds": dt})
        line = (f"| {point} | {mean['ssim']:.4f} | {mean['psnr']:.2f} | {mean['ms_ssim']:.4f} | {nbytes:.1f} | "
                f"{fl:.4f} | {dt:.3f} |")
        lines.append(line)
        click.echo(line)
    Path(out).mkdir(parents=True, exist_ok=True)
    summary = {"model": model, "split": split, "n": len(files), "bits": bits, "device": device, "rows": rows}
    atomic_write(Path(out, f"tune_{tag}.json"), (json.dumps(summary, indent=1) + "\n").encode(), force=True)
    atomic_write(Path(out, f"tune_{tag}.md"), ("\n".join(lines) + "\n").encode(), force=True)


if __name__ == "__main__":
    main()
