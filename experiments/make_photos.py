"""Write the uncommitted part of the real-photo set (experiments/data/photos/) from installed packages and ../shared.

    python experiments/make_photos.py                      # writes into experiments/data/photos/
    python experiments/make_photos.py --out /tmp/photos    # or elsewhere (the committed photos are copied too)

The set is photos of real people, uncropped, for testing face detection and alignment (see the README beside the
photos for who, where from, and why each may be redistributed). Six photos are committed there (JPEG). The others
are written by this script, because a package or ../shared already carries them:

* scikit-image: ``skimage.data.astronaut()`` (NASA, public domain) and ``skimage.data.camera()`` (CC0);
* matplotlib: ``mpl-data/sample_data/grace_hopper.jpg`` (US Navy, public domain), copied byte for byte;
* ../shared/data/kodak: the eight Kodak PhotoCD pictures with people in them ("released by Eastman Kodak Company
  for unrestricted usage"), as PNG, unchanged.

``photos.json`` (committed) lists every photo of the set with its hand-checked face boxes; ``PHOTOS`` below is the
same list of names with their sources.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import click
import numpy as np
from PIL import Image

log = logging.getLogger("make_photos")

HERE = Path(__file__).resolve().parent
PHOTO_DIR = HERE / "data" / "photos"
KODAK = HERE.parents[1] / "shared" / "data" / "kodak"  # ../shared/data/kodak from the repository root

# name -> (source kind, source); "committed" ones live in PHOTO_DIR already.
PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut-collins.png": ("skimage", "astronaut"),
    "camera-man.png": ("skimage", "camera"),
    "grace-hopper.jpg": ("matplotlib", "grace_hopper.jpg"),
    "kodim04-red-hat.png": ("kodak", "kodim04.png"),
    "kodim05-motocross.png": ("kodak", "kodim05.png"),
    "kodim09-sailing.png": ("kodak", "kodim09.png"),
    "kodim10-yacht.png": ("kodak", "kodim10.png"),
    "kodim12-beach.png": ("kodak", "kodim12.png"),
    "kodim14-rafting.png": ("kodak", "kodim14.png"),
    "kodim15-face-paint.png": ("kodak", "kodim15.png"),
    "kodim18-woman.png": ("kodak", "kodim18.png"),
    "obama-oval-office-2012.jpg": ("committed", "face_recognition 1.3.0 sdist tests/test_images/obama.jpg"),
    "obama-congress-2009.jpg": ("committed", "face_recognition 1.3.0 sdist tests/test_images/obama2.jpg"),
    "obama-blue-room-2010.jpg": ("committed", "face_recognition 1.3.0 sdist tests/test_images/obama3.jpg"),
    "biden-blue-room-2010.jpg": ("committed", "face_recognition 1.3.0 sdist tests/test_images/biden.jpg"),
    "coelho-mahotas.jpg": ("committed", "mahotas 1.4.19 sdist mahotas/demos/data/luispedro.jpg"),
    "ascent-stairs.jpg": ("committed", "PyWavelets 1.9.0 wheel pywt/data/ascent.npz"),
}
# Negatives: pictures without a real person's face, for false positives (kodim17 is a statue's face).
NEGATIVES: dict[str, tuple[str, str]] = {
    "kodim17-statue.png": ("kodak", "kodim17.png"),
}


def generated_names() -> list[str]:
    """The photos this script writes (the ones .gitignore beside the photos keeps out of git)."""
    return [n for n, (kind, _) in {**PHOTOS, **NEGATIVES}.items() if kind != "committed"]


def write_photo(name: str, kind: str, src: str, out: Path, kodak: Path) -> None:
    dst = out / name
    if kind == "skimage":
        from skimage import data

        Image.fromarray(np.asarray(getattr(data, src)())).save(dst)
    elif kind == "matplotlib":
        from matplotlib import cbook

        with cbook.get_sample_data(src) as f:  # an open binary file
            dst.write_bytes(f.read())
    elif kind == "kodak":
        p = kodak / src
        if not p.exists():
            raise click.ClickException(f"{p} is missing: the Kodak photos come from ../shared/data/kodak (--kodak)")
        shutil.copyfile(p, dst)
    elif kind == "committed":
        if out.resolve() != PHOTO_DIR.resolve():
            shutil.copyfile(PHOTO_DIR / name, dst)
        return
    else:
        raise ValueError(kind)
    log.info("wrote %s (%s %s)", dst, kind, src)


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=PHOTO_DIR, show_default=True)
@click.option("--kodak", type=click.Path(file_okay=False, path_type=Path), default=KODAK, show_default=True,
              help="The Kodak PhotoCD set (kodim01.png .. kodim24.png).")
@click.option("--negatives/--no-negatives", default=True, show_default=True,
              help="Also write the face-free pictures used for false positives.")
def main(out: Path, kodak: Path, negatives: bool) -> None:
    """Write the photo set into OUT."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out.mkdir(parents=True, exist_ok=True)
    todo = {**PHOTOS, **(NEGATIVES if negatives else {})}
    for name, (kind, src) in todo.items():
        write_photo(name, kind, src, out, kodak)
    log.info("%d photos in %s", len(todo), out)


if __name__ == "__main__":
    main()
