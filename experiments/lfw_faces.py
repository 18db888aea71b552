"""Write the 100 LFW faces that scikit-image ships (25x25 grayscale) as PNG files, an out-of-distribution face set.

    python experiments/lfw_faces.py --out /tmp/lfw100
    python experiments/seed_tables.py s3 --data /tmp/lfw100 --split all --tag lfw100

They are news photographs (Labeled Faces in the Wild), cropped and shrunk by scikit-image's authors; their terms
are unclear, so they are read from the installed scikit-image and not committed to this repository.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.files import atomic_write  # noqa: E402

log = logging.getLogger("lfw_faces")


def lfw_faces() -> np.ndarray:
    """The 100 faces of ``skimage.data.lfw_subset()`` as uint8 ``(100, 25, 25)``."""
    try:
        from skimage import data
    except ImportError:
        raise click.ClickException("needs scikit-image (pip install .[test])") from None
    faces = data.lfw_subset()[:100]  # the first 100 are faces, the rest are not
    return np.clip(np.round(faces * 255), 0, 255).astype(np.uint8)


@click.command()
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def main(out: Path) -> None:
    """Write lfw-000.png .. lfw-099.png into OUT."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out.mkdir(parents=True, exist_ok=True)
    import io

    for i, face in enumerate(lfw_faces()):
        buf = io.BytesIO()
        Image.fromarray(face, "L").save(buf, "PNG")
        atomic_write(out / f"lfw-{i:03d}.png", buf.getvalue(), force=True)
    log.info("wrote 100 faces to %s", out)


if __name__ == "__main__":
    main()
