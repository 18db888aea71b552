"""Build the out-of-distribution face sets of the range study from held-out UTKFace faces (never trained on).

    python experiments/ood_faces.py --data ../shared/data/utkface --limit 64 --out /tmp/ood

Four folders of PNG files, one transformed copy of each of ``--limit`` held-out faces (a seeded sample), seeded:

- ``reframed/``: zoomed out 1.3-1.6x the way FFHQ and CelebA-HQ crop (more of the head, shoulders and
  background in the frame), shifted by up to 6% of the side. UTKFace ships only its 200 x 200 aligned crops, so
  the frame beyond them is the crop's own edge pixels stretched outwards and blurred, not a real scene.
- ``relit/``: a directional light: a linear gain ramp from 0.45-0.7 to 1.15-1.35 across a random direction,
  then a gamma of 0.8-1.25.
- ``colour/``: a white-balance and saturation shift: per-channel gains of 0.75-1.25 and saturation 0.4-1.6.
- ``gray/``: grayscale (stored as RGB).

The other distributions of the study are the 100 LFW faces that scikit-image ships
(``experiments/lfw_faces.py``) with the committed portraits. The faces are UTKFace's (non-commercial research
terms): build them where you run the study; never commit them.
"""
from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import click
import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.data import list_images  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402

log = logging.getLogger("ood_faces")
SETS = ("reframed", "relit", "colour", "gray")


def reframe(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Zoom out 1.3-1.6x around the centre (shifted up to 6%), filling the new border with its blurred edge; same size out."""
    a = np.asarray(img.convert("RGB"))
    side = a.shape[0]
    zoom = rng.uniform(1.3, 1.6)
    new = int(round(side * zoom))
    pad = (new - side) // 2 + int(0.06 * new) + 1
    big = np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    blurred = np.asarray(Image.fromarray(big).filter(ImageFilter.GaussianBlur(side / 10)))
    inside = np.zeros(big.shape[:2], bool)
    inside[pad:pad + side, pad:pad + side] = True
    big = np.where(inside[..., None], big, blurred)
    cx = cy = pad + side / 2
    dx, dy = rng.uniform(-0.06, 0.06, 2) * new
    left, top = int(round(cx + dx - new / 2)), int(round(cy + dy - new / 2))
    crop = Image.fromarray(big[top:top + new, left:left + new])
    return crop.resize((side, side), Image.LANCZOS)


def relight(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A directional light: a linear gain ramp across a random direction, then a gamma."""
    a = np.asarray(img.convert("RGB")).astype(np.float64) / 255.0
    h, w = a.shape[:2]
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    t = ((xx / (w - 1) - 0.5) * np.cos(theta) + (yy / (h - 1) - 0.5) * np.sin(theta)) / np.sqrt(0.5) + 0.5
    lo, hi = rng.uniform(0.45, 0.7), rng.uniform(1.15, 1.35)
    gain = lo + (hi - lo) * np.clip(t, 0, 1)
    out = np.clip(a * gain[..., None], 0, 1) ** rng.uniform(0.8, 1.25)
    return Image.fromarray(np.round(out * 255).astype(np.uint8))


def recolour(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Per-channel gains (white balance) and a saturation change."""
    a = np.asarray(img.convert("RGB")).astype(np.float64) / 255.0
    a = a * rng.uniform(0.75, 1.25, 3)
    grey = a.mean(axis=2, keepdims=True)
    a = grey + (a - grey) * rng.uniform(0.4, 1.6)
    return Image.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8))


def grayscale(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return img.convert("L").convert("RGB")


TRANSFORMS = {"reframed": reframe, "relit": relight, "colour": recolour, "gray": grayscale}


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--limit", default=64, show_default=True, help="Held-out faces per set (a seeded sample).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=0, show_default=True)
@click.option("--split", default="holdout", show_default=True, type=click.Choice(["holdout", "val"]),
              help="holdout: the faces no model trained on; val: the validation faces (to tune on, not to report).")
def main(data: Path, limit: int, out: Path, seed: int, split: str) -> None:
    """Write OUT/{reframed,relit,colour,gray}/NAME.png (and, with --split val, OUT/plain/: the faces as they are)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = list_images(data, split)  # type: ignore[arg-type]
    files = [files[i] for i in sorted(np.random.default_rng(seed).permutation(len(files))[:limit])]
    if not files:
        raise click.ClickException(f"no {split} faces in {data}")
    for name in SETS:
        rng = np.random.default_rng([seed, SETS.index(name)])
        (out / name).mkdir(parents=True, exist_ok=True)
        for p in files:
            img = TRANSFORMS[name](Image.open(p).convert("RGB"), rng)
            buf = io.BytesIO()
            img.save(buf, "PNG")
            atomic_write(out / name / (p.stem + ".png"), buf.getvalue(), force=True)
    if split == "val":
        (out / "plain").mkdir(parents=True, exist_ok=True)
        for p in files:
            atomic_write(out / "plain" / p.name, p.read_bytes(), force=True)
    log.info("wrote %d faces into each of %s under %s", len(files), ", ".join(SETS), out)


if __name__ == "__main__":
    main()
