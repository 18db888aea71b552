"""The landmark template of the generator's framing: the mean of the detector's 5 landmarks over the training split.

    python experiments/face_template.py --data ../shared/data/utkface --limit 3000

Writes ``invcomp/faces/template-utkface.json``: the mean landmark positions in crop coordinates [0, 1] (the
generator sees each 200 x 200 UTKFace crop whole, resized), their spread, and how many faces the detector found.
The same detector and predictor as the encoder (:mod:`invcomp.landmarks.detect`), so that their biases cancel.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.data import list_images  # noqa: E402
from invcomp.landmarks import align
from invcomp.landmarks import detect  # noqa: E402
from invcomp.imageio import load_image  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402

log = logging.getLogger("face_template")


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--limit", default=3000, show_default=True, type=click.IntRange(10), help="Seeded sample of the train split.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default=str(align.TEMPLATE_FILE), show_default=True, type=click.Path(dir_okay=False, path_type=Path))
def main(data: Path, limit: int, seed: int, out: Path) -> None:
    """Detect the faces of a sample of the train split and write the mean landmark template."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    files = list_images(data, "train")
    rng = np.random.default_rng(seed)
    files = [files[i] for i in sorted(rng.choice(len(files), size=min(limit, len(files)), replace=False))]
    pts, sizes = [], []
    for f in tqdm(files, desc="template", disable=None):
        img = load_image(f)
        faces = detect.detect(img, limit=1)
        if faces:
            pts.append(faces[0].points / np.array(img.size, dtype=np.float64))
            sizes.append(img.size[0])
    p = np.stack(pts)
    mean, std = p.mean(0), p.std(0)
    row = {"points": np.round(mean, 5).tolist(), "std": np.round(std, 5).tolist(),
           "landmarks": "dlib 5-point: right eye outer, right eye inner, left eye outer, left eye inner, nose base "
                        "(image right/left as dlib orders them)",
           "faces": len(pts), "sampled": len(files), "split": "train", "data": "UTKFace aligned 200x200 crops",
           "detector": "dlib HOG frontal_face_detector + shape_predictor_5_face_landmarks (invcomp.landmarks.detect)",
           "command": f"python experiments/face_template.py --data DATA --limit {limit} --seed {seed}"}
    atomic_write(out, (json.dumps(row, indent=1) + "\n").encode())
    log.info("%d of %d faces detected; template (crop coordinates): %s; spread %s", len(pts), len(files),
             np.round(mean, 3).tolist(), np.round(std, 3).tolist())


if __name__ == "__main__":
    main()
