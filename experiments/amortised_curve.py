"""Quality against search steps: the amortised encoder's start against today's (issue 33).

    python experiments/amortised_curve.py --split holdout --limit 32 \
        --encoder old=pretrained/dcgan-utkface64-encoder-f3acde28.pt:0.5 \
        --encoder new=runs/amort/encoder.pt:0.2 --out experiments/results/amortised

For every face (the 64-px crop the inversion codec codes) and every encoder NAME=PATH:LR, the codec writes a real
file (entropy-coded, the search and quantiser of ``invcomp encode``, one face at a time on one thread) after 0, 5,
10, 20, 30, 50, 100 and 200 steps at peak rate LR, and with early stopping (``--patience``). Reported per point:
mean bytes, mean SSIM of the decoded 64-px picture, the SSIM lost against the old start's 200 steps, mean steps
taken and milliseconds per face. Writes ``OUT/curve.json`` and ``OUT/curve.md``; ``--split val`` chooses, the
held-out faces report.
"""
from __future__ import annotations

import json
import logging
import statistics
import sys
import time
from pathlib import Path

import click
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.codecs import EncodeSettings  # noqa: E402
from invcomp.codecs.modes.inversion import InversionCodec  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402

log = logging.getLogger("amortised_curve")
STEPS = (0, 5, 10, 20, 30, 50, 100, 200)


def run(codec: InversionCodec, images: list[Image.Image]) -> dict:
    """Code ``images`` one at a time; mean bytes, SSIM, steps and ms per face."""
    sizes, ssims, steps, ms = [], [], [], []
    for im in images:
        t0 = time.perf_counter()
        e = codec.encode([im])[0]
        ms.append(1000 * (time.perf_counter() - t0))
        sizes.append(len(e.data))
        ssims.append(e.ssim())
        steps.append(e.extra.get("steps", codec.settings.iters))
    return {"bytes": statistics.mean(sizes), "ssim": statistics.mean(ssims), "steps": statistics.mean(steps),
            "ms": statistics.median(ms), "per_face_ssim": ssims}


@click.command()
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--split", default="holdout", show_default=True, type=click.Choice(["val", "holdout"]))
@click.option("--limit", default=32, show_default=True)
@click.option("--encoder", "encoders", multiple=True, required=True, metavar="NAME=PATH:LR",
              help="Repeatable: a warm-start encoder and the peak learning rate of its search.")
@click.option("--steps", default=",".join(map(str, STEPS)), show_default=True)
@click.option("--patience", default="", help="Also with early stopping: comma-separated ITERS@PATIENCE, e.g. 50@5,200@8.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def main(data: str, split: str, limit: int, encoders: tuple[str, ...], steps: str, patience: str, out: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    files = list_images(data, split)[:limit]
    images = [Image.open(p).convert("RGB") for p in files]
    rows = []
    for spec in encoders:
        name, rest = spec.split("=", 1)
        path, lr = rest.rsplit(":", 1)
        points = [(int(k), 0) for k in steps.split(",")] + [
            (int(a), int(b)) for a, b in (p.split("@") for p in patience.split(",") if p)]
        for iters, pat in points:
            codec = InversionCodec.load("dcgan-utkface64", EncodeSettings(iters=iters, lr=float(lr), patience=pat,
                                                                          init="encoder"), warm_start=path)
            r = run(codec, images)
            rows.append({"encoder": name, "path": path, "lr": float(lr), "iters": iters, "patience": pat, **r})
            log.info("%s iters %d patience %d: %.1f B, SSIM %.4f, %.1f steps, %.0f ms", name, iters, pat, r["bytes"],
                     r["ssim"], r["steps"], r["ms"])
    ref = next((r for r in rows if r["iters"] == 200 and r["patience"] == 0), rows[0])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "curve.json", json.dumps({"faces": [p.name for p in files], "rows": rows}, indent=1).encode())
    cmd = "python experiments/amortised_curve.py " + " ".join(sys.argv[1:])
    lines = [f"`{cmd}`", "", f"{len(files)} {split} faces, 64-px crops, one face at a time on one thread; "
             f"reference: {ref['encoder']} start, 200 steps (SSIM {ref['ssim']:.4f}).", "",
             "| start | peak lr | steps (max) | patience | steps taken | bytes | SSIM | SSIM vs reference | faces at least as good | ms / face |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wins = sum(a >= b - 1e-9 for a, b in zip(r["per_face_ssim"], ref["per_face_ssim"]))
        lines.append(f"| {r['encoder']} | {r['lr']:g} | {r['iters']} | {r['patience'] or '-'} | {r['steps']:.1f} | "
                     f"{r['bytes']:.1f} | {r['ssim']:.4f} | {r['ssim'] - ref['ssim']:+.4f} | {wins}/{len(files)} | "
                     f"{r['ms']:.0f} |")
    atomic_write(out / "curve.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
