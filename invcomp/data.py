"""Image folders, the fixed held-out rule, and tensors of prepared faces.

The held-out rule is a pure function of the file name, so training,
benchmarks and later sessions agree on the split without any list file:
a face is held out when the first 8 hex digits of sha256(name), read as an
integer, are below 22/1000 of 2**32 (about 2.2 % of UTKFace's 23,215), and
in the validation split (used only to pick training snapshots) when they are
between 22/1000 and 30/1000. Training uses neither.
"""
from __future__ import annotations

import hashlib
import io
import logging
import tarfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Literal

import numpy as np
import torch

from invcomp.imageio import decode_image_bytes, fit_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
HOLDOUT_PER_MILLE = 22
VAL_PER_MILLE = 30

Split = Literal["train", "val", "holdout", "all"]


def _per_mille(name: str) -> float:
    return int(hashlib.sha256(Path(name).name.encode()).hexdigest()[:8], 16) * 1000 / 2**32


def split_of(name: str) -> str:
    """``holdout`` (per-mille < 22), ``val`` (22 to 30: model selection during training) or ``train``."""
    pm = _per_mille(name)
    return "holdout" if pm < HOLDOUT_PER_MILLE else "val" if pm < VAL_PER_MILLE else "train"


def is_holdout(name: str) -> bool:
    """True when the file called ``name`` (base name only) is in the held-out split."""
    return split_of(name) == "holdout"


def _keep(name: str, split: Split) -> bool:
    return split == "all" or split_of(name) == split


def list_images(root: str | Path, split: Split = "all") -> list[Path]:
    """Image files under a folder (recursively), sorted by name, filtered by split."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return [p for p in files if _keep(p.name, split)]


def _read_sources(source: Path, split: Split) -> list[tuple[str, bytes]]:
    if source.is_dir():
        return [(p.name, p.read_bytes()) for p in list_images(source, split)]
    out = []
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            for name in sorted(zf.namelist()):
                base = Path(name).name
                if Path(base).suffix.lower() in IMAGE_SUFFIXES and _keep(base, split):
                    out.append((base, zf.read(name)))
        return out
    with tarfile.open(source) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            name = Path(m.name).name
            if m.isfile() and Path(name).suffix.lower() in IMAGE_SUFFIXES and _keep(name, split):
                out.append((name, tar.extractfile(m).read()))  # type: ignore[union-attr]
    return out


def load_faces(
    source: str | Path, resolution: int, *, split: Split = "train", limit: int | None = None, workers: int = 4
) -> tuple[torch.Tensor, list[str]]:
    """Load a folder, ``.zip`` or ``.tar`` of images as uint8 ``(N, 3, R, R)``, centre-cropped and Lanczos-resized.

    Returns the tensor and the file names, in sorted order.
    """
    items = _read_sources(Path(source), split)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise FileNotFoundError(f"no {split} images found in {source}")

    def prep(item: tuple[str, bytes]) -> np.ndarray:
        img = fit_image(decode_image_bytes(item[1], name=item[0]), resolution, "crop")
        return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)

    with ThreadPoolExecutor(workers) as ex:
        arrays = list(ex.map(prep, items))
    log.info("loaded %d %s images from %s at %dx%d", len(arrays), split, source, resolution, resolution)
    return torch.from_numpy(np.stack(arrays)), [n for n, _ in items]


def pack_zip(files: Iterable[Path], out: Path, resolution: int, quality: int = 92) -> int:
    """Write prepared (cropped, resized) JPEG copies of ``files`` into a ``.zip``, to move a data set; returns the count."""
    n = 0
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for p in files:
            img = fit_image(decode_image_bytes(p.read_bytes(), name=p.name), resolution, "crop")
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=quality, subsampling=0)
            zf.writestr(p.name, buf.getvalue())
            n += 1
    return n
