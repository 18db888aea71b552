"""K=4 colour quantisation as a reference codec: a palette and 2 bits per pixel.

File layout (big-endian): ``width:u16 height:u16`` (4 bytes), then the palette as ``K`` RGB
triples (12 bytes), then the palette indices, 2 bits each, row-major, packed most significant
bits first and zero-padded to a whole byte: ``4 + 12 + ceil(2 * W * H / 8)`` bytes in all.
The palette is k-means (``scipy.cluster.vq.kmeans2``, k-means++ start, fixed seed) on the RGB
pixels, rounded to 8 bits; each pixel takes its nearest rounded palette colour. Decoding is a
palette lookup.
"""
from __future__ import annotations

import math
import struct
import warnings

import numpy as np
from PIL import Image

from invcomp.errors import InvcompError

K = 4
BITS = 2
HEADER = struct.Struct(">HH")


def file_size(width: int, height: int) -> int:
    """Bytes of a coded ``width`` x ``height`` image."""
    return HEADER.size + 3 * K + math.ceil(BITS * width * height / 8)


def palette(pixels: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """``K`` palette colours ``(K, 3)`` uint8 for pixels ``(N, 3)`` uint8 (unused entries are black)."""
    unique = np.unique(pixels, axis=0)
    if len(unique) <= K:
        out = np.zeros((K, 3), np.uint8)
        out[: len(unique)] = unique
        return out
    from scipy.cluster.vq import kmeans2

    data = pixels.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "one of the clusters is empty"
        try:
            centroids, _ = kmeans2(data, K, iter=20, minit="++", rng=np.random.default_rng(seed))
        except TypeError:  # scipy < 1.15 has no rng=
            centroids, _ = kmeans2(data, K, iter=20, minit="++", seed=seed)
    return np.clip(np.round(centroids), 0, 255).astype(np.uint8)


def nearest(pixels: np.ndarray, pal: np.ndarray) -> np.ndarray:
    """Index ``(N,)`` of the nearest palette colour (squared RGB distance) for pixels ``(N, 3)``."""
    d = ((pixels[:, None, :].astype(np.int32) - pal[None, :, :].astype(np.int32)) ** 2).sum(-1)
    return d.argmin(1).astype(np.uint8)


def encode(img: Image.Image, *, seed: int = 0) -> bytes:
    """RGB image -> the file bytes (see module doc)."""
    w, h = img.size
    if not (0 < w < 2**16 and 0 < h < 2**16):
        raise InvcompError(f"kmeans codec: image size {w}x{h} does not fit its 16-bit header")
    pixels = np.asarray(img.convert("RGB"), np.uint8).reshape(-1, 3)
    pal = palette(pixels, seed=seed)
    idx = nearest(pixels, pal)
    bits = np.unpackbits(idx[:, None], axis=1)[:, 8 - BITS:].reshape(-1)  # 2 bits per pixel, MSB first
    return HEADER.pack(w, h) + pal.tobytes() + np.packbits(bits).tobytes()


def decode(data: bytes) -> Image.Image:
    """File bytes -> RGB image; raises :class:`InvcompError` on a truncated or malformed file."""
    if len(data) < HEADER.size:
        raise InvcompError("kmeans codec: file too short for its header")
    w, h = HEADER.unpack_from(data)
    if w == 0 or h == 0 or len(data) != file_size(w, h):
        raise InvcompError(f"kmeans codec: {len(data)} bytes do not match a {w}x{h} image ({file_size(w, h)} bytes)")
    pal = np.frombuffer(data, np.uint8, 3 * K, HEADER.size).reshape(K, 3)
    bits = np.unpackbits(np.frombuffer(data, np.uint8, offset=HEADER.size + 3 * K))[: BITS * w * h]
    idx = bits.reshape(-1, BITS) @ (1 << np.arange(BITS - 1, -1, -1))
    return Image.fromarray(pal[idx].reshape(h, w, 3), "RGB")
