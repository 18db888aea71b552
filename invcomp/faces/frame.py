"""Photo files, assembled and decoded: faces pasted into the background at their placements; and the face's and
the frame's metrics in the original frame.

The decoder (:func:`render`) paints the background layer (none: transparent) at the original size, pastes each
decoded face crop at its placement through a feathered mask (:func:`invcomp.landmarks.align.paste`), and writes one
channel for a grayscale photo. The encoder builds the same frame from the same decoded faces, so the metrics it
reports are the decoder's.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from invcomp.errors import InvcompError
from invcomp.imageio import UNCODED_FILL, from_image, restore_size, to_pil
from invcomp.faces import background
from invcomp.landmarks import align
from invcomp.formats import photo as container

REGION_SIDE = 256  # face-region metrics: the region is Lanczos-resized to at most this side
FRAME_SIDE = 1024  # whole-frame SSIM: both frames at most this long side
INSCRIBED = 1 - 2 * align.FEATHER  # the part of the crop where the paste mask is fully opaque


def is_gray(img: Image.Image) -> bool:
    """Whether every pixel of an RGB image has three equal channels."""
    a = np.asarray(img.convert("RGB"))
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def gray(x: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` -> its luma (ITU-R 601, as Pillow's ``L``) replicated over the three channels."""
    y = 0.299 * x[..., 0:1, :, :] + 0.587 * x[..., 1:2, :, :] + 0.114 * x[..., 2:3, :, :]
    return y.expand_as(x).contiguous()


def render(photo: container.Photo, faces: list[Image.Image], fits: list[str], net: Any = None) -> Image.Image:
    """The decoded frame of a photo file, from its decoded faces (crops, any square size) and each face
    file's fit (for whole-frame records), then its detail layer with the residual network ``net``
    (:mod:`invcomp.faces.detail`). RGB, or RGBA without a background or detail; L / LA when grayscale."""
    w, h = photo.width, photo.height
    if photo.background == "none":
        frame = Image.new("RGBA", (w, h), (*UNCODED_FILL, 0))
    else:
        frame = background.decode(photo.background, photo.background_data, w, h)
    for rec, face, fit in zip(photo.faces, faces, fits):
        if rec.placement is None:
            whole = restore_size(face.convert("RGB"), w, h, fit)  # type: ignore[arg-type]
            frame = whole if frame.mode == "RGB" or fit == "squash" or w == h else _over(frame, whole, w, h)
        else:
            align.paste(frame, face, rec.placement)
    if photo.detail is not None:
        from invcomp.faces import detail

        if net is None:
            raise InvcompError("a photo file with a detail layer needs its residual network to render")
        frame = detail.apply(flat(frame), photo.detail, net)
    if photo.grayscale:
        frame = frame.convert("LA" if frame.mode == "RGBA" else "L")
    return frame


def _over(frame: Image.Image, whole: Image.Image, w: int, h: int) -> Image.Image:
    """A centre-crop face file's frame (grey outside its square) on a transparent frame: the square, opaque."""
    from invcomp.imageio import crop_box

    left, top, side = crop_box(w, h)
    frame.paste(whole.crop((left, top, left + side, top + side)), (left, top))
    return frame


def flat(img: Image.Image) -> Image.Image:
    """A decoded frame as RGB for metrics (transparency on mid-grey, one channel replicated)."""
    if img.mode in ("RGBA", "LA"):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*UNCODED_FILL, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return img.convert("RGB")


def inscribed_box(p: align.Placement, width: int, height: int) -> Optional[tuple[int, int, int, int]]:
    """The upright box inside the opaque part of a pasted crop, clipped to the frame (``None``: nothing left)."""
    a = math.radians(p.angle)
    half = p.side * INSCRIBED / 2 / (abs(math.cos(a)) + abs(math.sin(a)))
    l, t = max(0, math.ceil(p.cx - half)), max(0, math.ceil(p.cy - half))
    r, b = min(width, math.floor(p.cx + half)), min(height, math.floor(p.cy + half))
    return (l, t, r, b) if r - l >= 8 and b - t >= 8 else None


def _region(img: Image.Image, box: tuple[int, int, int, int]) -> torch.Tensor:
    piece = img.crop(box)
    s = REGION_SIDE / max(piece.size)
    if s < 1:
        piece = piece.resize((max(1, round(piece.width * s)), max(1, round(piece.height * s))), Image.Resampling.LANCZOS)
    return from_image(piece)[None]


def face_metrics(original: Image.Image, decoded: Image.Image, p: align.Placement, *,
                 with_identity: bool = False) -> dict[str, Any]:
    """SSIM and PSNR of the face inside ``p`` in the original frame (:func:`inscribed_box`, at most
    :data:`REGION_SIDE` px), and the identity distance over the crop's bounds; ``None`` values where the face
    lies outside the frame."""
    from invcomp import metrics

    dec, box = flat(decoded), inscribed_box(p, *original.size)
    row: dict[str, Any] = {"face_ssim": None, "face_psnr": None, "face_identity": None}
    if box is None:
        return row
    m = metrics.quality(_region(dec, box), _region(original, box), with_lpips=False)[0]
    row.update(face_ssim=m["ssim"], face_psnr=m["psnr"])
    if with_identity:
        from invcomp.identity import identity_or_none

        l, t, r, b = p.bounds()
        bounds = (max(0, l), max(0, t), min(original.width, r), min(original.height, b))
        if bounds[2] - bounds[0] >= 8 and bounds[3] - bounds[1] >= 8:
            d = identity_or_none(_region(original, bounds), _region(dec, bounds))
            row["face_identity"] = None if d is None else d[0]
    return row


def frame_ssim(original: Image.Image, decoded: Image.Image) -> float:
    """SSIM of the whole frame, both at most :data:`FRAME_SIDE` px on the long side (Lanczos)."""
    from invcomp import metrics

    a, b = original.convert("RGB"), flat(decoded)
    s = FRAME_SIDE / max(a.size)
    if s < 1:
        size = (max(1, round(a.width * s)), max(1, round(a.height * s)))
        a, b = a.resize(size, Image.Resampling.LANCZOS), b.resize(size, Image.Resampling.LANCZOS)
    return float(metrics.ssim(from_image(b)[None], from_image(a)[None])[0])


def assemble(img: Image.Image, plan: Any, faces: list, options: Any) -> Any:
    """The :class:`~invcomp.codecs.base.Encoded` of one photo from its plan and coded faces (see
    :meth:`invcomp.faces.photo.PhotoCodec.encode`)."""
    from dataclasses import replace

    first = faces[0]
    info: dict[str, Any] = {"fit": plan.framing, "faces_found": plan.found, "faces_coded": len(plan.placements),
                            "faces_too_small": plan.skipped_small, "grayscale": plan.grayscale, "note": plan.note,
                            "background": options.background if plan.framing == "align" else "none"}
    recon = gray(first.recon) if plan.grayscale else first.recon
    if plan.framing != "align" and not plan.grayscale:
        return replace(first, extra={**first.extra, "photo": info})
    if plan.framing == "align":
        name = background.parse(options.background)[0]
        records = [container.FaceRecord(p, f.data) for p, f in zip(plan.placements, faces)]
        photo = container.Photo(img.width, img.height, records, plan.grayscale, name, plan.background_data)
    else:
        photo = container.Photo(img.width, img.height, [container.FaceRecord(None, first.data)], True)
    try:
        data = container.pack(photo)
    except InvcompError as e:
        return e
    info["bytes"] = container.overhead(photo)
    crops = [to_pil(gray(f.recon) if plan.grayscale else f.recon) for f in faces]
    fits = [f.header.fit for f in faces]
    if plan.framing == "align":
        decoded = render(photo, crops, fits)
        info["placements"] = [[round(p.cx, 1), round(p.cy, 1), round(p.side, 1), round(p.angle, 2)] for p in plan.placements]
        info.update(face_metrics(img, decoded, plan.placements[0]))
        info["frame_ssim"] = frame_ssim(img, decoded) if photo.background != "none" else None
    return replace(first, data=data, recon=recon, target=gray(first.target) if plan.grayscale else first.target,
                   extra={**first.extra, "photo": info, "decoded_frame": lambda: render(photo, crops, fits)})


def native_strip(faces: list[Image.Image]) -> Image.Image:
    """Decoded face crops side by side (``--native`` on a photo file)."""
    n = faces[0].size[0]
    strip = Image.new(faces[0].mode, (n * len(faces), n))
    for i, f in enumerate(faces):
        strip.paste(f.resize((n, n), Image.Resampling.LANCZOS) if f.size != (n, n) else f, (i * n, 0))
    return strip

