"""Face alignment (pure): the training data's landmark template, a similarity fit to it, the aligned crop and
the paste back into the frame.

A face's **placement** is the square of the frame that the aligned crop covers: its centre ``(cx, cy)`` and side
``side`` in frame pixels, and its rotation ``angle`` in degrees (counter-clockwise as seen; y points down). Crop
point ``(u, v)`` in [0, 1]^2 (the generator's framing, ``(0, 0)`` top left) sits in the frame at

    p = (cx, cy) + side * Rot(angle) @ (u - 1/2, v - 1/2)

The **template** is where the landmarks of an average training face lie in that unit square: the mean of the
detector's landmarks over the training split, in the generator's own framing (:data:`TEMPLATE_FILE`, written
by ``experiments/face_template.py``). Aligning a face is the least-squares similarity transform (Umeyama 1991)
from the template to its detected landmarks.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

TEMPLATE_FILE = Path(__file__).with_name("template-utkface.json")
FEATHER = 0.08  # the paste mask falls from 1 to 0 over this fraction of the side, inside the crop's edge


@dataclass(frozen=True)
class Placement:
    """The frame square an aligned crop covers: centre ``(cx, cy)``, ``side`` (frame px), ``angle`` (degrees)."""

    cx: float
    cy: float
    side: float
    angle: float

    def matrix(self) -> np.ndarray:
        """The ``(2, 3)`` affine map from crop coordinates in [0, 1]^2 to frame pixels."""
        a = math.radians(self.angle)
        c, s = math.cos(a) * self.side, math.sin(a) * self.side
        rot = np.array([[c, s], [-s, c]])  # counter-clockwise as seen with y pointing down
        return np.hstack([rot, np.array([[self.cx], [self.cy]]) - rot @ np.array([[0.5], [0.5]])])

    def to_frame(self, uv: np.ndarray) -> np.ndarray:
        """Crop coordinates ``(K, 2)`` in [0, 1] -> frame pixels ``(K, 2)``."""
        m = self.matrix()
        return np.asarray(uv, dtype=np.float64) @ m[:, :2].T + m[:, 2]

    def corners(self) -> np.ndarray:
        """The crop's four corners in the frame ``(4, 2)``: top left, top right, bottom right, bottom left."""
        return self.to_frame(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64))

    def bounds(self) -> tuple[int, int, int, int]:
        """The integer frame box ``(left, top, right, bottom)`` that holds the crop."""
        c = self.corners()
        return (math.floor(c[:, 0].min()), math.floor(c[:, 1].min()), math.ceil(c[:, 0].max()), math.ceil(c[:, 1].max()))


def crop_placement(width: int, height: int) -> Placement:
    """The placement of ``--fit crop``: the centre square of the frame, upright."""
    side = min(width, height)
    return Placement((width - side) // 2 + side / 2, (height - side) // 2 + side / 2, float(side), 0.0)


@lru_cache(maxsize=1)
def template() -> np.ndarray:
    """The landmark template ``(K, 2)`` in crop coordinates [0, 1] (K = 5: dlib's eye corners and nose base)."""
    return np.asarray(json.loads(TEMPLATE_FILE.read_text())["points"], dtype=np.float64)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Least-squares similarity ``dst ~ scale * Rot(theta) @ src + t`` (Umeyama 1991, no reflection) of two
    ``(K, 2)`` point sets: ``(scale, theta in radians, t (2,))``, with Rot the standard rotation matrix."""
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"expected two (K, 2) point sets with K >= 2, got {src.shape} and {dst.shape}")
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    var = (a ** 2).sum()
    if var <= 0:
        raise ValueError("the source points coincide")
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    scale = float((d * sign).sum() / (var / len(src)))
    theta = math.atan2(rot[1, 0], rot[0, 0])
    return scale, theta, md - scale * rot @ ms


def placement_from_landmarks(points: np.ndarray, tmpl: np.ndarray | None = None) -> Placement:
    """The placement that maps the template onto a face's detected landmarks ``(K, 2)`` (frame pixels)."""
    tmpl = template() if tmpl is None else tmpl
    scale, theta, t = fit_similarity(tmpl, points)
    centre = scale * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]]) @ [0.5, 0.5] + t
    # the standard rotation by theta (y down) is the placement's angle -theta (counter-clockwise as seen)
    return Placement(float(centre[0]), float(centre[1]), scale, -math.degrees(theta))


def warp_crop(img: Image.Image, p: Placement, size: int) -> Image.Image:
    """The aligned crop ``size`` x ``size`` of ``img`` under placement ``p``: sampled bicubically at the frame's
    own scale, then Lanczos-resized to ``size`` (no aliasing for large faces); outside the frame, edge pixels
    repeat (a face at the frame's edge keeps a plausible border)."""
    native = max(size, min(int(math.ceil(p.side)), 4096))
    m = p.matrix() / np.array([[native, native, 1], [native, native, 1]])  # crop pixels (0..native) -> frame
    left, top, right, bottom = p.bounds()
    w, h = img.size
    pad = max(0, -left, -top, right - w, bottom - h) + 2
    src = img
    if pad > 2:  # part of the crop lies outside the frame: repeat the edge (bounded by the crop's own size)
        l, t, r, b = max(left - 2, 0), max(top - 2, 0), min(right + 2, w), min(bottom + 2, h)
        if r <= l or b <= t:
            raise ValueError("the placement lies entirely outside the frame")
        sub = np.asarray(img.crop((l, t, r, b)))
        padw = ((max(0, t - (top - 2)), max(0, bottom + 2 - b)), (max(0, l - (left - 2)), max(0, right + 2 - r)))
        sub = np.pad(sub, padw + (((0, 0),) if sub.ndim == 3 else ()), mode="edge")
        src = Image.fromarray(sub)
        m = m.copy()
        m[:, 2] -= [left - 2, top - 2]
    # PIL's affine maps output to input in continuous coordinates (pixel k spans [k, k + 1])
    coeffs = tuple(m.reshape(-1))
    out = src.transform((native, native), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BICUBIC)
    return out if native == size else out.resize((size, size), Image.Resampling.LANCZOS)


def crop_mask(side: int, feather: float = FEATHER) -> Image.Image:
    """The paste mask of a crop ``side`` x ``side`` (mode L): 255 inside, falling smoothly to 0 at the edge."""
    f = max(1.0, feather * side)
    d = np.minimum(np.arange(side) + 0.5, side - np.arange(side) - 0.5)
    ramp = np.clip(d / f, 0.0, 1.0)
    ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep
    return Image.fromarray(np.round(255 * np.outer(ramp, ramp)).astype(np.uint8), "L")


def paste(frame: Image.Image, face: Image.Image, p: Placement, feather: float = FEATHER) -> Image.Image:
    """Paste a decoded face crop (any size, square) into ``frame`` (RGB or RGBA, changed in place and returned)
    under placement ``p``, through the feathered mask; only the crop's bounding box is touched."""
    left, top, right, bottom = p.bounds()
    w, h = frame.size
    l, t, r, b = max(left, 0), max(top, 0), min(right, w), min(bottom, h)
    if r <= l or b <= t:
        return frame
    if p.side < face.size[0]:  # shrink first (Lanczos), so that the affine never aliases
        face = face.resize((max(1, round(p.side)),) * 2, Image.Resampling.LANCZOS)
    n = face.size[0]
    a = math.radians(p.angle)
    k = p.side / n
    # frame pixel (x, y) -> face pixel: inverse of face pixel -> frame, offset to the box (l, t)
    inv_r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) / k
    centre = np.array([p.cx, p.cy])
    off = -inv_r @ (centre - np.array([l, t])) + n / 2
    coeffs = (inv_r[0, 0], inv_r[0, 1], off[0], inv_r[1, 0], inv_r[1, 1], off[1])
    box = (r - l, b - t)
    piece = face.convert(frame.mode if frame.mode != "RGBA" else "RGB").transform(
        box, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BICUBIC)
    mask = crop_mask(n, feather).transform(box, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    if frame.mode == "RGBA":
        region = frame.crop((l, t, r, b))
        alpha = Image.fromarray(np.maximum(np.asarray(region.getchannel("A")), np.asarray(mask)), "L")
        region.paste(piece, (0, 0), mask)
        region.putalpha(alpha)
        frame.paste(region, (l, t))
    else:
        frame.paste(piece, (l, t), mask)
    return frame


def alignment_error(p: Placement, truth: Placement, resolution: int) -> float:
    """Mean distance between the two placements' crop grids (a 9 x 9 grid over the crop), in pixels of the
    generator's ``resolution`` (the truth's scale): how far the recovered crop is from the true one."""
    g = np.linspace(0, 1, 9)
    uv = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    return float(np.linalg.norm(p.to_frame(uv) - truth.to_frame(uv), axis=1).mean() * resolution / truth.side)
