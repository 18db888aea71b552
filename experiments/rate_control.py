"""Rate control on held-out faces: every file at or under --target-bytes, how close to it, the SSIM, and the
extra encode time against a plain encode.

    python experiments/rate_control.py --targets 40,50,60,80,100 --limit 32

Each face is encoded once plainly (the default settings) and once per target (``invcomp.codecs.rate``), in one
process, one face at a time. Writes OUT/rate_control.json and prints the table.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.codecs import load_codec, stored_pixels  # noqa: E402
from invcomp.codecs.rate import RateTarget, encode_images  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.errors import InvcompError  # noqa: E402
from invcomp.metrics import ssim  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402


def _ssim(e) -> float:
    return float(ssim(stored_pixels(e.recon[None]), e.target[None])[0])


@click.command()
@click.option("--model", default="dcgan-utkface64", show_default=True)
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--targets", default="40,50,60,80,100", show_default=True)
@click.option("--limit", default=32, show_default=True)
@click.option("--out", default="experiments/results", show_default=True)
def main(model: str, data: str, targets: str, limit: int, out: str) -> None:
    images = [Image.open(p).convert("RGB") for p in list_images(data, "holdout")[:limit]]
    codec = load_codec(model)
    t0 = time.perf_counter()
    plain = codec.encode(images)
    plain_s = (time.perf_counter() - t0) / len(images)
    rows = [{"target": "none (default)", "files": len(plain), "at_or_under": len(plain),
             "bytes": sum(len(e.data) for e in plain) / len(plain), "ssim": sum(map(_ssim, plain)) / len(plain),
             "seconds": round(plain_s, 2), "time_ratio": 1.0}]
    for n in [int(x) for x in targets.split(",")]:
        t0 = time.perf_counter()
        got = encode_images(codec, images, RateTarget(max_bytes=n))
        sec = (time.perf_counter() - t0) / len(images)
        ok = [e for e in got if not isinstance(e, InvcompError)]
        rows.append({"target": n, "files": len(ok), "refused": len(got) - len(ok),
                     "at_or_under": sum(len(e.data) <= n for e in ok), "bytes": sum(len(e.data) for e in ok) / len(ok),
                     "ssim": sum(map(_ssim, ok)) / len(ok), "seconds": round(sec, 2), "time_ratio": round(sec / plain_s, 2),
                     "bits": sorted({e.header.bits for e in ok})})
        click.echo(f"target {n}: {rows[-1]}", err=True)
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(out, "rate_control.json"), (json.dumps({"model": model, "faces": len(images), "rows": rows,
                                                                "command": " ".join(["python", *sys.argv])}, indent=1) + "\n").encode(), force=True)
    click.echo("| target bytes | files at or under | mean bytes | mean / target | mean SSIM | encode s per face | vs plain |")
    click.echo("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = "" if isinstance(r["target"], str) else f"{r['bytes'] / r['target']:.3f}"
        click.echo(f"| {r['target']} | {r['at_or_under']}/{r['files']} | {r['bytes']:.1f} | {ratio} | {r['ssim']:.4f} | "
                   f"{r['seconds']} | {r['time_ratio']}x |")


if __name__ == "__main__":
    main()
