"""Image loading, conversion, fitting and the one tensor<->image pair.

Every path into the codec goes through :func:`load_image` (file -> RGB PIL),
:func:`fit_image` (crop or squash to a square, Lanczos to the model size) and
:func:`from_image` / :func:`to_uint8`. Nothing else converts images.
"""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .codecs.settings import DEFAULT_MAX_PIXELS
from .errors import InvcompError

log = logging.getLogger(__name__)

Fit = Literal["crop", "squash"]



def load_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read any image Pillow reads and return it as 8-bit RGB.

    EXIF orientation is applied; alpha is composited on white; 16-bit,
    CMYK, palette, grayscale and 1-bit images are converted. For animated
    files the first frame is used. Raises :class:`InvcompError` with one
    line for anything unreadable.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InvcompError(f"cannot read {path}: {e.strerror or e}") from None
    if not data:
        raise InvcompError(f"cannot read {path}: the file is empty")
    return decode_image_bytes(data, name=str(path), max_pixels=max_pixels)


def decode_image_bytes(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes to RGB; see :func:`load_image`.

    ``max_pixels`` replaces Pillow's own bomb guard for the duration of the call (Pillow's global limit is
    restored afterwards), so that a raised limit is honoured; the check runs on the header, before decoding.
    """
    if not data:
        raise InvcompError(f"cannot read {name}: the file is empty")
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > max_pixels:
            raise InvcompError(
                f"{name}: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} (raise it with --max-pixels)"
            )
        frames = getattr(img, "n_frames", 1)
        if frames > 1:
            log.warning("%s: animated image with %d frames; coding the first frame only", name, frames)
        img.seek(0)
        img.load()
        img = ImageOps.exif_transpose(img)
        return to_rgb(img)
    except InvcompError:
        raise
    except UnidentifiedImageError:
        raise InvcompError(f"{name}: not an image that Pillow can read") from None
    except Image.DecompressionBombError as e:
        raise InvcompError(f"{name}: refused as a decompression bomb ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InvcompError(f"{name}: cannot decode image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, compositing transparency on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def crop_box(width: int, height: int) -> tuple[int, int, int]:
    """The centre square that ``fit="crop"`` codes in a ``width`` x ``height`` frame: ``(left, top, side)``."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side


def fit_image(img: Image.Image, resolution: int, fit: Fit = "crop") -> Image.Image:
    """Centre-crop to a square (``crop``, see :func:`crop_box`) or keep the whole frame (``squash``), then Lanczos
    to ``resolution``."""
    if fit not in ("crop", "squash"):
        raise InvcompError(f"--fit must be crop or squash, got {fit!r}")
    if fit == "crop":
        left, top, side = crop_box(*img.size)
        img = img.crop((left, top, left + side, top + side))
    if img.size != (resolution, resolution):
        img = img.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return img


UNCODED_FILL = (128, 128, 128)
"""What fills the part of a ``crop`` frame outside the coded square on decode: mid-grey."""


def restore_size(img: Image.Image, width: int, height: int, fit: Fit = "crop") -> Image.Image:
    """Invert :func:`fit_image` geometrically: back to ``width`` x ``height``.

    For ``squash`` the square is stretched back over the frame. For ``crop`` only the centre square was coded:
    the reconstruction goes back where the crop came from, at the crop's scale, and the rest of the frame
    (never coded) is :data:`UNCODED_FILL`. Memory is proportional to the output.
    """
    if fit == "squash":
        return img.resize((width, height), Image.Resampling.LANCZOS)
    left, top, side = crop_box(width, height)
    square = img if img.size == (side, side) else img.resize((side, side), Image.Resampling.LANCZOS)
    if (side, side) == (width, height):
        return square
    frame = Image.new("RGB", (width, height), UNCODED_FILL)
    frame.paste(square, (left, top))
    return frame


def from_image(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> float tensor ``(3, H, W)`` in [-1, 1]."""
    arr = np.asarray(img.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1) / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float tensor ``(3, H, W)`` in [-1, 1] -> uint8 array ``(H, W, 3)``, rounded to nearest."""
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got {tuple(x.shape)}")
    y = ((x.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round()
    return y.to(torch.uint8).permute(1, 2, 0).numpy()


def to_pil(x: torch.Tensor) -> Image.Image:
    """Float tensor ``(3, H, W)`` in [-1, 1] -> RGB PIL image."""
    return Image.fromarray(to_uint8(x), "RGB")


def quantize_pixels(x: torch.Tensor) -> torch.Tensor:
    """Round a [-1, 1] tensor to the 8-bit grid that a PNG would store (any shape)."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round() / 127.5 - 1.0
