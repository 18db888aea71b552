"""The tiny image codes that products already use as placeholders: ThumbHash and BlurHash.

They are the practical floor for "a picture in a few dozen bytes". Bytes are what a product stores:

- **ThumbHash** (Evan Wallace's format), encoded by the ``thumbhash-py`` package. Its decoding is written here
  (:func:`thumbhash_rgba`, 40 lines of numpy), for a measured reason: the ``thumbhash`` 0.1.2 package's decoder
  reuses the first pixel's cosines for every pixel (its mean colour came out 16 levels too bright on the first
  held-out face) and prints; ``thumbhash-python``'s decoder is right but pins Pillow < 11, which would take AVIF
  and HEIF away. ``tests/data/thumbhash_reference.json`` holds that port's output for 8 hashes, and the test
  compares ours with it. Bytes: the binary hash, about 25 bytes for an opaque image (base64 text, as often put in
  JSON, is 4/3 of that). It encodes a copy of at most 100×100 px (the
  format's limit; the package's own ``image_to_thumb_hash`` does the same) and decodes to at most 32 px.
- **BlurHash** (``blurhash`` package, Wolt's format): the base83 string, ``6 + 2 * (nx * ny - 1)`` ASCII bytes
  for ``nx`` × ``ny`` DCT components (1..9 each). Its knob is ``n`` for ``n`` × ``n`` components. It encodes a
  copy of at most :data:`BLURHASH_SIDE` px (BlurHash's own advice: encode a thumbnail; its pure-Python encoder
  is slow on large images, and ≤ 9 × 9 components carry nothing finer) and decodes at that size.

Neither stores the image size: a page knows the box it fills. Their decoded pictures are scaled to the coded
size with bilinear filtering, as a browser scales a placeholder (the bench passes that size).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image

from invcomp.errors import InvcompError

BLURHASH_SIDE = 32
THUMBHASH_MAX = 100
EXTRA = "pip install .[bench]"  # as invcomp.classic.codecs.BENCH_EXTRA says it (codecs imports this module)


PACKAGES = {"thumbhash": "thumbhash-py", "blurhash": "blurhash"}


def _require(module: str) -> object:
    try:
        return __import__(module)
    except ImportError:
        raise InvcompError(f"codec {module} needs the {PACKAGES.get(module, module)} package, which is not installed "
                           f"({EXTRA})") from None


def thumbhash_encode(img: Image.Image, q: Optional[float] = None) -> bytes:
    """The ThumbHash of an RGB image (``q`` is unused: ThumbHash has one operating point)."""
    th = _require("thumbhash")
    small = img.convert("RGBA")
    small.thumbnail((THUMBHASH_MAX, THUMBHASH_MAX), Image.LANCZOS)
    return bytes(th.rgba_to_thumb_hash(small.width, small.height, list(small.tobytes())))  # type: ignore[attr-defined]


def _ac(data: bytes, start: int, idx: int, nx: int, ny: int, scale: float) -> tuple[list[tuple[int, int, float]], int]:
    """One channel's AC terms ``(cx, cy, value)`` read from nibble ``idx`` on; returns them and the next nibble."""
    out = []
    for cy in range(ny):
        cx = 0 if cy else 1
        while cx * ny < nx * (ny - cy):
            at = start + idx // 2
            if at >= len(data):
                raise InvcompError(f"not a ThumbHash: {len(data)} bytes is too short for its header")
            out.append((cx, cy, (((data[at] >> ((idx & 1) * 4)) & 15) / 7.5 - 1.0) * scale))
            idx, cx = idx + 1, cx + 1
    return out, idx


def thumbhash_rgba(data: bytes, base: int = 32, saturation: float = 1.25) -> np.ndarray:
    """Decode a ThumbHash to ``(h, w, 4)`` uint8 RGBA at most ``base`` px a side, as the reference decoder does
    (its 1.25 saturation boost included)."""
    if len(data) < 5:
        raise InvcompError(f"a ThumbHash has at least 5 bytes, got {len(data)}")
    h24, h16 = data[0] | data[1] << 8 | data[2] << 16, data[3] | data[4] << 8
    l_dc, p_dc, q_dc = (h24 & 63) / 63.0, ((h24 >> 6) & 63) / 31.5 - 1.0, ((h24 >> 12) & 63) / 31.5 - 1.0
    l_scale, alpha, landscape = ((h24 >> 18) & 31) / 31.0, bool(h24 >> 23), bool(h16 >> 15)
    p_scale, q_scale, count = ((h16 >> 3) & 63) / 63.0, ((h16 >> 9) & 63) / 63.0, h16 & 7
    lmax = 5 if alpha else 7
    lx, ly = max(3, lmax if landscape else count), max(3, count if landscape else lmax)
    if alpha and len(data) < 6:
        raise InvcompError("not a ThumbHash: 5 bytes cannot hold an alpha header")
    a_dc, a_scale = ((data[5] & 15) / 15.0, (data[5] >> 4) / 15.0) if alpha else (1.0, 1.0)
    start = 6 if alpha else 5
    l_ac, i = _ac(data, start, 0, lx, ly, l_scale)
    p_ac, i = _ac(data, start, i, 3, 3, p_scale * saturation)
    q_ac, i = _ac(data, start, i, 3, 3, q_scale * saturation)
    a_ac = _ac(data, start, i, 5, 5, a_scale)[0] if alpha else []
    ratio = lx / ly
    w, h = (base, round(base / ratio)) if ratio > 1 else (round(base * ratio), base)
    xs, ys = (np.arange(w) + 0.5) * np.pi / w, (np.arange(h) + 0.5) * np.pi / h

    def channel(dc: float, ac: list[tuple[int, int, float]]) -> np.ndarray:
        out = np.full((h, w), dc)
        for cx, cy, v in ac:
            out += v * np.outer(2.0 * np.cos(ys * cy), np.cos(xs * cx))
        return out

    lum, p, q, a = channel(l_dc, l_ac), channel(p_dc, p_ac), channel(q_dc, q_ac), channel(a_dc, a_ac)
    b = lum - 2.0 / 3.0 * p
    r = (3.0 * lum - b + q) / 2.0
    g = r - q
    return np.round(np.clip(np.stack([r, g, b, a], -1), 0.0, 1.0) * 255.0).astype(np.uint8)


def thumbhash_decode(data: bytes) -> Image.Image:
    """The ThumbHash's own small picture (at most 32 px a side), RGB."""
    return Image.fromarray(thumbhash_rgba(bytes(data)), "RGBA").convert("RGB")


def blurhash_encode(img: Image.Image, q: Optional[float] = None) -> bytes:
    """The BlurHash string (ASCII bytes) of an RGB image with ``q`` × ``q`` components (default 4)."""
    bh = _require("blurhash")
    n = int(q if q is not None else 4)
    if not 1 <= n <= 9:
        raise InvcompError(f"BlurHash takes 1..9 components a side, got {n}")
    small = img.convert("RGB")
    small.thumbnail((BLURHASH_SIDE, BLURHASH_SIDE), Image.LANCZOS)
    rows = [[list(small.getpixel((x, y))) for x in range(small.width)] for y in range(small.height)]
    return bh.encode(rows, n, n).encode("ascii")  # type: ignore[attr-defined]


def blurhash_decode(data: bytes) -> Image.Image:
    """A BlurHash decoded at :data:`BLURHASH_SIDE` px square, RGB."""
    bh = _require("blurhash")
    try:
        text = data.decode("ascii")
        rows = bh.decode(text, BLURHASH_SIDE, BLURHASH_SIDE)  # type: ignore[attr-defined]
    except (UnicodeDecodeError, ValueError) as e:
        raise InvcompError(f"not a BlurHash: {e}") from None
    flat = bytes(max(0, min(255, int(c))) for row in rows for px in row for c in px[:3])
    return Image.frombytes("RGB", (BLURHASH_SIDE, BLURHASH_SIDE), flat)


def blurhash_length(n: int) -> int:
    """Bytes of an ``n`` × ``n`` BlurHash."""
    return 6 + 2 * (n * n - 1)


def unavailable(module: str) -> Optional[str]:
    try:
        _require(module)
    except InvcompError as e:
        return str(e)
    return None


def scale_to(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """A placeholder's picture scaled to the box it fills (bilinear, as a browser scales it)."""
    return img if img.size == size else img.resize(size, Image.BILINEAR)

