"""The encoder's side of the whole-frame detail layer (:mod:`invcomp.faces.detail`): a photo's coded faces, wrapped
in a photo file, decoded as the decoder will decode them, and the detail record coded over that picture.

With a rate goal the faces keep their own rate and the detail layer's rate is chosen: the largest that keeps the file
within ``max_bytes``, or the smallest whose whole-frame SSIM reaches ``min_ssim`` (the top rate when none does).
Without one, the options' rate, or with the options' ``detail_slope`` (the default's ``--detail auto``) the rate, from
that one up in half steps, that maximises whole-picture SSIM - slope x bytes: each picture gets detail while a byte
still buys at least ``slope`` of SSIM (the search stops at the first rate that scores lower than the one before).
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Callable, Optional

from PIL import Image

from invcomp.errors import InvcompError
from invcomp.faces import background, detail
from invcomp.faces.frame import face_metrics, flat, frame_ssim
from invcomp.formats import photo as container
from invcomp.imageio import from_image

log = logging.getLogger(__name__)


def base_photo(img: Image.Image, plan: Any, faces: list, options: Any) -> container.Photo:
    """The photo file of the coded faces, without a detail layer: the aligned faces with their placements and
    background, or the one face file that covers the whole frame by its own fit."""
    if plan.framing == "align":
        name = background.parse(options.background)[0]
        records = [container.FaceRecord(p, f.data) for p, f in zip(plan.placements, faces)]
        return container.Photo(img.width, img.height, records, plan.grayscale, name, plan.background_data)
    return container.Photo(img.width, img.height, [container.FaceRecord(None, faces[0].data)], plan.grayscale)


def decoded_base(photo: container.Photo, cache: dict) -> Image.Image:
    """What the decoder draws for ``photo`` before its detail layer (RGB, transparency on the uncoded grey)."""
    from invcomp.faces.decode import decode_any

    plain = container.pack(replace(photo, grayscale=False, detail=None))
    return flat(decode_any(plain, cache=cache, device="cpu", name="the photo's base")[2])


def choose(top: int, fits: Callable[[int], bool], want_low: bool) -> Optional[int]:
    """Bisection over rate codes ``0..top`` with a monotone test: ``want_low`` the smallest code that ``fits``
    (``None``: none does), else the largest (``None``: not even 0)."""
    lo, hi, best = 0, top, None
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(mid):
            best = mid
            if want_low:
                hi = mid - 1
            else:
                lo = mid + 1
        elif want_low:
            lo = mid + 1
        else:
            hi = mid - 1
    return best


def with_detail(img: Image.Image, plan: Any, faces: list, options: Any, net: Any, cache: dict,
                goal: Any = None) -> Any:
    """The :class:`~invcomp.codecs.base.Encoded` of one photo with its detail layer (see the module doc); its
    ``target`` and ``recon`` are the whole frame at the input's size ``(3, H, W)``, as the decoder writes it; an
    :class:`InvcompError` when ``goal.max_bytes`` cannot hold the faces at their own rate."""
    rgb = img.convert("RGB")
    photo = base_photo(img, plan, faces, options)
    base = decoded_base(photo, cache)
    records: dict[int, Optional[container.Detail]] = {}
    pictures: dict[int, Image.Image] = {}  # each rate's decoded picture, drawn once (the search and the result share it)

    def record(code: int) -> Optional[container.Detail]:
        if code not in records:
            records[code] = detail.code(rgb, base, net, code, options.detail_side)
        return records[code]

    def picture_at(code: int) -> Image.Image:
        d = record(code)
        if d is None:
            return base
        if code not in pictures:
            pictures[code] = detail.apply(base, d, net)
        return pictures[code]

    def size(code: int) -> int:
        return len(container.pack(replace(photo, detail=record(code))))

    top = detail.RATE_STEPS * (net.rates - 1)
    code = round(options.detail * detail.RATE_STEPS)
    if goal is None and options.detail_slope is not None:  # the default: while a byte buys enough SSIM
        best = None
        for c in range(code, top + 1, 2):
            d = record(c)
            score = (-1.0 if d is None else frame_ssim(rgb, picture_at(c))) - options.detail_slope * size(c)
            if best is not None and score <= best[1]:
                break
            best = (c, score)
        code = best[0] if best is not None else code
    if goal is not None and goal.max_bytes is not None:
        found = choose(top, lambda c: size(c) <= goal.max_bytes, want_low=False)
        if found is None:
            return InvcompError(f"--target-bytes {goal.max_bytes}: the faces and the smallest detail layer take {size(0)} B")
        code = found
    elif goal is not None and goal.min_ssim is not None:
        def reaches(c: int) -> bool:
            d = record(c)
            return d is not None and frame_ssim(rgb, picture_at(c)) >= goal.min_ssim

        found = choose(top, reaches, want_low=True)
        code = top if found is None else found
    d = record(code)
    final = photo if d is None else replace(photo, detail=d)
    try:
        data = container.pack(final)
    except InvcompError as e:
        return e
    picture = picture_at(code)
    shown = picture.convert("L").convert("RGB") if plan.grayscale else picture
    first = faces[0]
    info: dict[str, Any] = {"fit": plan.framing, "faces_found": plan.found, "faces_coded": len(plan.placements),
                            "faces_too_small": plan.skipped_small, "grayscale": plan.grayscale, "note": plan.note,
                            "background": options.background if plan.framing == "align" else "none",
                            "bytes": container.overhead(final),
                            "detail": None if d is None else {"network": net.name, "rate": d.rate / detail.RATE_STEPS,
                                                               "side": d.side, "bytes": len(d.data)}}
    if plan.framing == "align":
        info["placements"] = [[round(p.cx, 1), round(p.cy, 1), round(p.side, 1), round(p.angle, 2)] for p in plan.placements]
        info.update(face_metrics(img, shown, plan.placements[0]))
    info["frame_ssim"] = frame_ssim(rgb, shown)
    out = shown.convert("L") if plan.grayscale else shown
    extra = {**first.extra, "photo": info, "decoded_frame": lambda: out}
    if goal is not None:  # what rate control reports: the goal met by the detail rate, the faces at their own
        reached = (len(data) <= goal.max_bytes if goal.max_bytes is not None
                   else info["frame_ssim"] >= goal.min_ssim)
        extra.update(reached=reached, trims=first.extra.get("trims", 0), norm_code=first.extra.get("norm_code"))
    return replace(first, data=data, target=from_image(rgb), recon=from_image(shown), extra=extra)
