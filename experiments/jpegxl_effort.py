"""JPEG XL over quality and effort on the bench's pixels: which effort the bench should use.

    python experiments/jpegxl_effort.py --data ../shared/data/utkface --split holdout --limit 128

Prints, per effort and quality, the mean bytes, SSIM and PSNR, then each effort's mean SSIM at a few byte counts
(log-linear between its qualities). The bench codes JPEG XL at the effort with the best SSIM at equal bytes here.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import click
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invcomp import metrics  # noqa: E402
from invcomp.bench.run import load_inputs  # noqa: E402
from invcomp.imageio import from_image  # noqa: E402


def code(img, quality: int, effort: int) -> tuple[int, torch.Tensor]:  # type: ignore[no-untyped-def]
    import pillow_jxl  # noqa: F401
    from PIL import Image

    buf = io.BytesIO()
    img.save(buf, "JXL", quality=quality, effort=effort, use_container=False)
    out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return len(buf.getvalue()), from_image(out)


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="holdout", show_default=True)
@click.option("--limit", default=128, show_default=True)
@click.option("--efforts", default="1,3,5,7,9", show_default=True)
@click.option("--qualities", default="0,10,25,50,75,90", show_default=True)
def main(data: Path, split: str, limit: int, efforts: str, qualities: str) -> None:
    inputs = load_inputs(data, 64, limit, split)  # type: ignore[arg-type]
    rows = []
    for e in [int(v) for v in efforts.split(",")]:
        for q in [int(v) for v in qualities.split(",")]:
            coded = [code(im, q, e) for im in inputs.images]
            x = torch.stack([c[1] for c in coded])
            rows.append({"effort": e, "quality": q, "bytes": float(np.mean([c[0] for c in coded])),
                         "ssim": float(metrics.ssim(x, inputs.targets).mean()),
                         "psnr": float(metrics.psnr(x, inputs.targets).mean())})
            click.echo(json.dumps(rows[-1]))
    click.echo("| effort | " + " | ".join(f"q{r['quality']}: B / SSIM" for r in rows if r["effort"] == rows[0]["effort"]) + " |")
    for e in sorted({r["effort"] for r in rows}):
        cells = [f"{r['bytes']:.0f} / {r['ssim']:.3f}" for r in rows if r["effort"] == e]
        click.echo(f"| {e} | " + " | ".join(cells) + " |")
    marks = (200, 250, 300, 400, 600)
    click.echo("\n| effort | " + " | ".join(f"SSIM at {b} B" for b in marks) + " |")
    for e in sorted({r["effort"] for r in rows}):
        pts = sorted((r["bytes"], r["ssim"]) for r in rows if r["effort"] == e)
        cells = []
        for b in marks:
            if b < pts[0][0]:
                cells.append(f"- (smallest {pts[0][0]:.0f} B)")
                continue
            cells.append(f"{np.interp(np.log(b), np.log([p[0] for p in pts]), [p[1] for p in pts]):.3f}")
        click.echo(f"| {e} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
