"""Landmark label maps of UTKFace faces (invcomp.nets.generative.semantic) at the semantic grid, for SC training and figures.

    python experiments/sc_semantic_maps.py --data ../shared/data/utkface --split train --limit 6000 --out runs/sc/maps_train.npz

Writes ``names`` (file names) and ``grids`` (uint8 ``(N, 2h, 2w)``: 26 x 26 for 200-px faces). The landmarks are
found in the fixed box of aligned crops (:data:`invcomp.identity.ASSUMED_BOX`); nothing from the data set is committed.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from invcomp.data import list_images
from invcomp.nets.generative.semantic import landmark_map, to_grid
from invcomp.identity import ASSUMED_BOX

log = logging.getLogger("sc_semantic_maps")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="train", choices=["train", "val", "holdout", "all"])
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    files = list_images(a.data, a.split)[:a.limit]
    grids = []
    for f in tqdm(files, desc="maps", mininterval=10):
        img = np.asarray(Image.open(f).convert("RGB"))
        grids.append(to_grid(landmark_map(img, ASSUMED_BOX)).astype(np.uint8))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, names=np.array([f.name for f in files]), grids=np.stack(grids))
    logging.info("wrote %d maps to %s", len(files), a.out)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
