"""SC's preserved regions: from the user's mask PNG, boxes or detected faces, to the code grid; and random training masks.

A pixel mask is bool ``(H, W)``, True where the user wants the image kept. Its **cell mask** ``(h, w)`` on the code
grid (:mod:`invcomp.nets.generative.tiles`) marks every 16x16 cell that holds a preserved pixel, then ``halo`` more cells around
them (the generator's picture near a preserved pixel also depends on the code next to it). The file stores the cell
mask (:mod:`invcomp.coding.gridcode`) and the code of its cells; everything else is synthesised.
"""
from __future__ import annotations

import importlib
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from invcomp.errors import InvcompError
from invcomp.nets.generative.model import FACTOR
from invcomp.nets.generative.tiles import grid_shape

FACES = "faces"


def parse_box(text: str) -> tuple[int, int, int, int]:
    """``"x,y,w,h"`` -> the box, with a one-line error for anything else."""
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise InvcompError(f"--preserve-box {text!r}: use x,y,w,h in pixels") from None
    if w < 1 or h < 1:
        raise InvcompError(f"--preserve-box {text!r}: width and height must be positive")
    return x, y, w, h


def from_boxes(boxes: Sequence[tuple[int, int, int, int]], width: int, height: int) -> np.ndarray:
    """The pixel mask of boxes ``(x, y, w, h)`` clipped to the image; a box wholly outside it is refused."""
    mask = np.zeros((height, width), dtype=bool)
    for x, y, w, h in boxes:
        x0, y0, x1, y1 = max(0, x), max(0, y), min(width, x + w), min(height, y + h)
        if x0 >= x1 or y0 >= y1:
            raise InvcompError(f"--preserve-box {x},{y},{w},{h} lies outside the {width}x{height} image")
        mask[y0:y1, x0:x1] = True
    return mask


def from_png(path: str, width: int, height: int) -> np.ndarray:
    """The pixel mask of a mask image (any mode; nonzero or, with alpha, opaque pixels are preserved); it must be
    the image's size."""
    from invcomp.imageio import decode_image_bytes  # noqa: F401  (same error style for unreadable files)

    try:
        m = Image.open(path)
        if m.size != (width, height):  # before decoding: a mask of another size is not read
            raise InvcompError(f"--preserve {path} is {m.size[0]}x{m.size[1]}, the image {width}x{height}: a mask must "
                               "be the image's size")
        m.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise InvcompError(f"--preserve {path}: cannot read it as an image ({str(e).splitlines()[0] if str(e) else e})") from None
    if m.mode in ("RGBA", "LA", "PA") or (m.mode == "P" and "transparency" in m.info):
        return np.asarray(m.convert("RGBA"))[..., 3] > 127
    return np.asarray(m.convert("L")) > 0


def from_faces(img: Image.Image, margin: float = 0.25) -> np.ndarray:
    """The pixel mask of the faces that the real-photos face detector (:mod:`invcomp.faces`) finds, each box grown by
    ``margin`` of its side; a one-line refusal where that detector is not installed or finds no face."""
    try:
        detect = importlib.import_module("invcomp.landmarks.detect")
        reason = detect.unavailable()
    except ImportError as e:
        reason = str(e)
    if reason:
        raise InvcompError(f"--preserve faces needs the face detector of invcomp.faces: {reason}; give "
                           "--preserve MASK.png or --preserve-box x,y,w,h")
    faces = detect.detect(img)
    if not faces:
        raise InvcompError("--preserve faces: no face found; give --preserve MASK.png or --preserve-box x,y,w,h")
    boxes = []
    for f in faces:
        l, t, r, b = f.box
        m = margin * max(r - l, b - t)
        boxes.append((int(l - m), int(t - m), int(r - l + 2 * m) + 1, int(b - t + 2 * m) + 1))
    return from_boxes(boxes, *img.size)


def pixel_mask(img: Image.Image, preserve: Optional[str], boxes: Sequence[str]) -> np.ndarray:
    """The user's pixel mask for ``img``: the union of ``preserve`` (a mask PNG, or ``faces``) and ``boxes``."""
    w, h = img.size
    mask = np.zeros((h, w), dtype=bool)
    if preserve == FACES:
        mask |= from_faces(img)
    elif preserve is not None:
        mask |= from_png(preserve, w, h)
    if boxes:
        mask |= from_boxes([parse_box(b) for b in boxes], w, h)
    return mask


def cell_mask(mask: np.ndarray, halo: int = 0) -> np.ndarray:
    """Pixel mask ``(H, W)`` -> cell mask ``(h, w)``: cells holding a preserved pixel, grown by ``halo`` cells."""
    h, w = grid_shape(*mask.shape)
    padded = np.zeros((h * FACTOR, w * FACTOR), dtype=bool)
    padded[:mask.shape[0], :mask.shape[1]] = mask
    cells = padded.reshape(h, FACTOR, w, FACTOR).any(axis=(1, 3))
    if halo > 0 and cells.any():
        t = torch.from_numpy(cells).float()[None, None]
        cells = F.max_pool2d(t, 2 * halo + 1, 1, halo)[0, 0].numpy() > 0
    return cells


def random_cell_masks(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random cell masks ``(n, h, w)`` bool for training: one to three boxes each (about 0 to 70% of the grid),
    one in eight empty and one in eight full, as the paper trains SC with random preserved regions."""
    out = torch.zeros(n, h, w, dtype=torch.bool)
    kind = torch.randint(0, 8, (n,), generator=gen)
    for k in range(n):
        if kind[k] == 0:
            continue
        if kind[k] == 1:
            out[k] = True
            continue
        for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
            bh, bw = (int(torch.randint(1, max(2, s * 2 // 3 + 1), (1,), generator=gen)) for s in (h, w))
            y, x = int(torch.randint(0, h - bh + 1, (1,), generator=gen)), int(torch.randint(0, w - bw + 1, (1,), generator=gen))
            out[k, y:y + bh, x:x + bw] = True
    return out
