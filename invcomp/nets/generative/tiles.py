"""Any size, bounded memory: padding to /16, and the encoder and generator run over tiles of the code grid.

An image of H x W pixels is padded (edge pixels repeated) to Hp x Wp, the next multiples of 16; its code grid is
h x w = Hp/16 x Wp/16 cells, and the reconstruction is cropped back to H x W.

**Tiles.** The grid is cut into tiles of ``tile`` x ``tile`` cells; each runs through the network with ``halo`` more
cells of context on every side (clipped at the image border, where the whole-image pass sees the convolutions'
zero padding too), and only its own cells (or pixels) are kept. The layout depends only on the image size, so a
file decodes to the same pixels on any machine whatever its memory. A network's output depends only on inputs
within its receptive field: E's is about 61 px (under 4 cells), so :data:`ENCODE_HALO` cells make tiled encoding
equal to a whole-image pass up to float rounding; G's is about 12 cells (1 + 2 per residual block), and its far
end contributes little, so :data:`DECODE_HALO` cells keep tiled decoding within a stated tolerance of a whole-image
pass (``tests/test_gc.py``; ``experiments/gc_speed.py`` measures it per halo). Peak memory is one tile's
activations plus the uint8 image: about 0.3 GB above the image for any size.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from invcomp.nets.generative.model import FACTOR

TILE = 32
ENCODE_HALO = 4
DECODE_HALO = 8


def grid_shape(height: int, width: int) -> tuple[int, int]:
    """The code grid ``(h, w)`` of an image of ``height`` x ``width`` pixels."""
    return math.ceil(height / FACTOR), math.ceil(width / FACTOR)


def pad16(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` -> ``(N, C, Hp, Wp)``, Hp and Wp the next multiples of 16, the edge pixels repeated."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % FACTOR, (-w) % FACTOR
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


def pad16_uint8(img: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)`` -> ``(Hp, Wp, 3)`` as :func:`pad16` pads."""
    h, w = img.shape[:2]
    return np.pad(img, ((0, (-h) % FACTOR), (0, (-w) % FACTOR), (0, 0)), mode="edge")


def _spans(n: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """Per tile along one axis of ``n`` cells: (start, stop) of its own cells and (start, stop) with its halo."""
    return [(a, min(a + tile, n), max(0, a - halo), min(n, a + tile + halo)) for a in range(0, n, tile)]


def _float(tile_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(tile_u8)).permute(2, 0, 1)[None].float() / 127.5 - 1.0


@torch.no_grad()
def encode_tiled(encode: Callable[[torch.Tensor], torch.Tensor], img: np.ndarray, *, tile: int = TILE,
                 halo: int = ENCODE_HALO) -> torch.Tensor:
    """Features ``(C, h, w)`` of a uint8 image ``(H, W, 3)``: ``encode`` maps ``(1, 3, 16a, 16b)`` in [-1, 1] to
    ``(1, C, a, b)``; it runs once per tile of the code grid."""
    padded = pad16_uint8(img)
    h, w = padded.shape[0] // FACTOR, padded.shape[1] // FACTOR
    out: torch.Tensor | None = None
    for y0, y1, hy0, hy1 in _spans(h, tile, halo):
        for x0, x1, hx0, hx1 in _spans(w, tile, halo):
            part = encode(_float(padded[hy0 * FACTOR:hy1 * FACTOR, hx0 * FACTOR:hx1 * FACTOR]))[0]
            if out is None:
                out = torch.empty(part.shape[0], h, w)
            out[:, y0:y1, x0:x1] = part[:, y0 - hy0:y1 - hy0, x0 - hx0:x1 - hx0].cpu()
    assert out is not None
    return out


@torch.no_grad()
def decode_tiled(generate: Callable[[torch.Tensor], torch.Tensor], code: torch.Tensor, height: int, width: int, *,
                 tile: int = TILE, halo: int = DECODE_HALO) -> np.ndarray:
    """The uint8 image ``(height, width, 3)`` that ``generate`` (``(1, c, a, b)`` -> ``(1, 3, 16a, 16b)`` in [-1, 1])
    draws from a code map ``(c, h, w)``, one tile of the grid at a time (``tile`` 0: the whole grid at once)."""
    c, h, w = code.shape
    if (h, w) != grid_shape(height, width):
        raise ValueError(f"a {height}x{width} image has a {grid_shape(height, width)} grid, not {(h, w)}")
    tile = tile or max(h, w)
    out = np.empty((h * FACTOR, w * FACTOR, 3), dtype=np.uint8)
    for y0, y1, hy0, hy1 in _spans(h, tile, halo):
        for x0, x1, hx0, hx1 in _spans(w, tile, halo):
            pic = generate(code[None, :, hy0:hy1, hx0:hx1])[0]
            f = FACTOR
            part = pic[:, (y0 - hy0) * f:(y1 - hy0) * f, (x0 - hx0) * f:(x1 - hx0) * f]
            u8 = ((part.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
            out[y0 * f:y1 * f, x0 * f:x1 * f] = u8
    return out[:height, :width]
