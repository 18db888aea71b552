"""The rest of the frame: ``--background none|thumb|CODEC:QUALITY``, coded beside the faces and decoded under them.

- ``none``: nothing; the decoder writes the faces alone (transparent elsewhere).
- ``thumb``: a ThumbHash of the whole frame (about 25 bytes; :mod:`invcomp.classic.placeholders`), decoded at <= 32 px and
  scaled to the frame bilinearly: the frame's colours, no detail.
- ``webp:Q``, ``avif:Q``, ``jpeg:Q``, ``jpegxl:Q``: that classic codec (the bench's own settings,
  :mod:`invcomp.classic.codecs`) codes the whole frame at quality Q. The inside of every face, which the decoded
  face will cover, is blurred first, so the codec spends nothing on it (see :func:`flatten`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image, ImageFilter

from invcomp.errors import BitstreamError, InvcompError
from invcomp.landmarks.align import Placement, crop_mask, paste
from invcomp.formats.photo import CLASSIC, PLACEHOLDERS

LIMITS = {"webp": 16383, "avif": 65535, "jpeg": 65500, "jpegxl": 65535}  # each codec's largest side
CHOICES = "none, thumb, or CODEC:QUALITY with CODEC one of " + ", ".join(CLASSIC.values()) + " and QUALITY 0..100"


def parse(spec: str) -> tuple[str, Optional[int]]:
    """``--background`` -> ``(name, quality)``: ``("none", None)``, ``("thumb", None)``, ``("webp", 30)``, ..."""
    name, _, q = spec.strip().lower().partition(":")
    if name in ("none", *PLACEHOLDERS.values()) and not q:
        return name, None
    if name in CLASSIC.values():
        try:
            quality = int(q)
        except ValueError:
            raise InvcompError(f"--background {spec!r}: give a quality, e.g. {name}:30 ({CHOICES})") from None
        if not 0 <= quality <= 100:
            raise InvcompError(f"--background {spec!r}: quality must be 0..100")
        return name, quality
    raise InvcompError(f"--background {spec!r}: expected {CHOICES}")


def flatten(frame: Image.Image, placements: list[Placement]) -> Image.Image:
    """``frame`` with the inside of each face (where its paste mask is opaque) replaced by a strong blur of the
    frame: what the decoded faces will cover costs the background codec almost nothing."""
    if not placements:
        return frame
    out = frame.copy()
    for p in placements:
        left, top, right, bottom = p.bounds()
        w, h = frame.size
        l, t, r, b = max(left, 0), max(top, 0), min(right, w), min(bottom, h)
        if r <= l or b <= t:
            continue
        region = frame.crop((l, t, r, b))
        blurred = region.filter(ImageFilter.GaussianBlur(max(2.0, p.side / 6)))
        core = Image.fromarray((np.asarray(crop_mask(64)) >= 255).astype(np.uint8) * 255, "L")
        mask = paste(Image.new("L", (r - l, b - t), 0), core, Placement(p.cx - l, p.cy - t, p.side, p.angle), feather=0)
        out.paste(blurred, (l, t), mask)
    return out


def encode(frame: Image.Image, name: str, quality: Optional[int], placements: list[Placement]) -> bytes:
    """The background layer of ``frame`` (RGB, or L for grayscale) for ``--background name:quality``."""
    if name == "none":
        return b""
    from invcomp.classic import codecs
    from invcomp.classic import placeholders as tiny

    if name == "thumb":
        return tiny.thumbhash_encode(frame.convert("RGB"))
    codec = codecs.build_codecs()[name]
    reason = codec.unavailable()
    if reason:
        raise InvcompError(f"--background {name}: {reason}")
    img = flatten(frame, placements)
    limit = LIMITS[name]
    if max(img.size) > limit:  # the codec cannot hold the frame: code a copy that fits, scaled up on decode
        s = limit / max(img.size)
        img = img.resize((max(1, int(img.width * s)), max(1, int(img.height * s))), Image.Resampling.LANCZOS)
    return codec.encode(img, quality)


def decode(name: str, data: bytes, width: int, height: int) -> Image.Image:
    """The background layer -> an RGB image of the frame's size. Bytes that do not decode, or that declare a
    larger picture than the frame, are refused with :class:`BitstreamError` before any pixel is decoded."""
    from invcomp.classic import placeholders as tiny

    if name == "thumb":
        try:
            small = tiny.thumbhash_decode(data)
        except Exception as e:  # noqa: BLE001  (a malformed hash: the file is corrupt)
            raise BitstreamError(f"corrupt .ivc photo file: its ThumbHash does not decode ({type(e).__name__})") from None
        return small.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    from invcomp.imageio import TooManyPixels, open_image

    try:  # the image formats' allowlist (never EPS: Ghostscript), with the frame as its bomb guard, per call
        img = open_image(data, name=f"its {name} background", max_pixels=max(1, width * height))
    except TooManyPixels:
        raise BitstreamError(f"corrupt .ivc photo file: its {name} background is larger than its {width}x{height} "
                             "frame") from None
    except Exception:  # noqa: BLE001
        raise BitstreamError(f"corrupt .ivc photo file: its {name} background is not an image") from None
    if img.width > width or img.height > height or (img.format or "").lower().replace(" ", "") not in _FORMATS[name]:
        raise BitstreamError(f"corrupt .ivc photo file: its {name} background is a {img.format} {img.width}x{img.height} "
                             f"image in a {width}x{height} frame")
    try:
        img.load()
    except Exception as e:  # noqa: BLE001
        raise BitstreamError(f"corrupt .ivc photo file: its {name} background does not decode ({e})") from None
    img = img.convert("RGB")
    return img if img.size == (width, height) else img.resize((width, height), Image.Resampling.LANCZOS)


_FORMATS = {"webp": {"webp"}, "avif": {"avif"}, "jpeg": {"jpeg", "mpo"}, "jpegxl": {"jxl", "jpegxl"}}
