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

from invcomp.files import DEFAULT_MAX_PIXELS
from invcomp.errors import InvcompError

log = logging.getLogger(__name__)

Fit = Literal["crop", "squash"]



def load_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read any image Pillow reads and return it as 8-bit RGB.

    EXIF orientation is applied; alpha is composited on white; 16-bit,
    CMYK, palette, grayscale and 1-bit images are converted. For animated
    files the first frame is used. Raises :class:`InvcompError` with one
    line for anything unreadable.
    """
    from invcomp.files import image_cap, read_capped

    path = Path(path)
    data = read_capped(path, image_cap(max_pixels), "image")  # regular files only, at most that many bytes
    if not data:
        raise InvcompError(f"cannot read {path}: the file is empty")
    return decode_image_bytes(data, name=str(path), max_pixels=max_pixels)


IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "AVIF", "HEIF", "JXL", "TIFF", "BMP", "GIF")
"""The formats an input image may be in (Pillow's names), whatever its name says. AVIF, HEIF and JPEG XL open only
where a plugin registered them (Pillow's AVIF, pillow-heif, pillow-jxl-plugin). Never EPS or PS (Pillow hands them
to Ghostscript), nor any other plugin that runs a program."""


class TooManyPixels(InvcompError):
    """An image whose header declares more pixels than the limit (refused before any pixel is decoded): its ``size``
    (0x0 when Pillow's own guard refused it first) and the ``limit``."""

    def __init__(self, message: str, size: tuple[int, int] = (0, 0), limit: int = 0) -> None:
        super().__init__(message)
        self.size, self.limit = size, limit


def image_formats(formats: tuple[str, ...] = IMAGE_FORMATS) -> tuple[str, ...]:
    """Those of ``formats`` (a subset of :data:`IMAGE_FORMATS`) that have a registered opener now."""
    Image.init()  # every plugin Pillow ships registered (once); a third-party plugin registers itself on import
    return tuple(f for f in formats if f in IMAGE_FORMATS and f in Image.OPEN)


def open_image(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS,
               formats: tuple[str, ...] = IMAGE_FORMATS) -> Image.Image:
    """Identify ``data`` as one of ``formats`` (see :func:`image_formats`) and open it, reading its header only.

    This is Pillow's ``Image.open(..., formats=...)`` with its bomb guard passed per call: more than ``max_pixels``
    pixels raise :class:`TooManyPixels`, and Pillow's global ``MAX_IMAGE_PIXELS`` is never read or changed here
    (a raised limit is honoured, and another thread's decode is never left unguarded). Anything else raises a
    one-line :class:`InvcompError`.
    """
    import struct

    allowed = image_formats(formats)
    fp = io.BytesIO(data)
    prefix = data[:16]
    for fmt in allowed:
        factory, accept = Image.OPEN[fmt]
        ok = accept(prefix) if accept else True
        if not ok or isinstance(ok, str):  # a string is Pillow's "looks like it, but unsupported" warning
            continue
        fp.seek(0)
        try:
            img = factory(fp, "")
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue  # not this format after all (what Image.open does)
        except Image.DecompressionBombError:
            raise TooManyPixels(f"{name}: refused as a decompression bomb (more than {max_pixels:,} pixels)",
                                limit=max_pixels) from None
        w, h = img.size
        if w * h > max_pixels:
            raise TooManyPixels(f"{name}: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} "
                                "(raise it with --max-pixels)", (w, h), max_pixels)
        return img
    raise UnidentifiedImageError(f"not one of {', '.join(allowed)}")


def decode_image_bytes(data: bytes, *, name: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes to RGB; see :func:`load_image`.

    Only :data:`IMAGE_FORMATS` are opened (:func:`open_image`): the content decides, never the name. ``max_pixels``
    is the bomb guard of this call, checked on the header before decoding; Pillow's global limit is left alone.
    """
    if not data:
        raise InvcompError(f"cannot read {name}: the file is empty")
    try:
        img = open_image(data, name=name, max_pixels=max_pixels)
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
        raise InvcompError(f"{name}: not an image that Pillow can read (the formats accepted are "
                           f"{', '.join(image_formats())})") from None
    except Image.DecompressionBombError:
        raise InvcompError(f"{name}: refused as a decompression bomb (more than {max_pixels:,} pixels)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InvcompError(f"{name}: cannot decode image ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})") from None


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


def restore_size(img: Image.Image, width: int, height: int, fit: str = "crop") -> Image.Image:
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
