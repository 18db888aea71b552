"""Choose the default rate weight (--lambda): bytes and SSIM of the default encode on validation faces for
several lambdas (the last phase of the search minimises distortion + lambda x bits under the prior).

    python experiments/rate_weight.py --lambdas 0,0.0003,0.001,0.003 --limit 48

Writes OUT/rate_weight.json and prints a table (mean over the faces; validation split, never the held-out one).
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.codecs import EncodeSettings, load_codec, stored_pixels  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.metrics import ssim  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402


@click.command()
@click.option("--model", default="dcgan-utkface64", show_default=True)
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--lambdas", default="0,0.0003,0.001,0.003", show_default=True)
@click.option("--limit", default=48, show_default=True)
@click.option("--out", default="experiments/results", show_default=True)
def main(model: str, data: str, lambdas: str, limit: int, out: str) -> None:
    images = [Image.open(p).convert("RGB") for p in list_images(data, "val")[:limit]]
    rows = []
    for lam in [float(x) for x in lambdas.split(",")]:
        codec = load_codec(model, EncodeSettings(rate_weight=lam))
        t0 = time.perf_counter()
        enc = codec.encode(images)
        s = ssim(stored_pixels(torch.stack([e.recon for e in enc])), torch.stack([e.target for e in enc]))
        rows.append({"lambda": lam, "faces": len(images), "bytes": sum(len(e.data) for e in enc) / len(enc),
                     "ssim": float(s.mean()), "seconds": round(time.perf_counter() - t0, 1)})
        click.echo(f"lambda {lam:g}: {rows[-1]['bytes']:.1f} B, SSIM {rows[-1]['ssim']:.4f}", err=True)
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(out, "rate_weight.json"), (json.dumps({"model": model, "rows": rows,
                                                              "command": " ".join(["python", *sys.argv])}, indent=1) + "\n").encode(), force=True)
    click.echo("| lambda | mean bytes | mean SSIM |\n|---|---|---|")
    for r in rows:
        click.echo(f"| {r['lambda']:g} | {r['bytes']:.1f} | {r['ssim']:.4f} |")


if __name__ == "__main__":
    main()
