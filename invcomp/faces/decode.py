"""Decode any ``.ivc`` file: a photo file face by face (each with the model its own id names), any other file
as :func:`invcomp.codecs.loader.decode_file` does."""
from __future__ import annotations

from typing import Any, Optional

from invcomp.codecs import budget
from invcomp.codecs.settings import DEFAULT_MAX_PIXELS
from invcomp.codecs.loader import decode_file
from invcomp.errors import InvcompError
from invcomp.formats import photo as container
from invcomp.faces.frame import native_strip, render
from invcomp.formats.sniff import sniff


def decode_any(data: bytes, *, cache: dict, model: Optional[str] = None, weights: Optional[str] = None,
               native: bool = False, max_pixels: Optional[int] = None, device: str = "cpu",
               name: str = "this file") -> tuple[Any, Any, Any, Optional[dict]]:
    """``(header, codec, PIL image, photo info)`` of one file: for a photo file, the first face's header and
    codec, the frame (``native``: the face crops side by side at the model resolution) and what the file holds
    (``None`` for other files).

    Before anything is decoded, every size the file makes the decoder draw (the picture, each layer, each face
    and its paste-back, each tile, and their sum) is checked against ``max_pixels`` (default 64 Mpx) and the
    memory budget derived from it, by :func:`invcomp.codecs.budget.check_file`, for every kind of file."""
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    budget.check_file(data, max_pixels, native=native, name=name)
    if sniff(data) != "photo":
        return (*decode_file(data, cache=cache, model=model, weights=weights, native=native, max_pixels=max_pixels,
                             device=device, name=name), None)
    photo = container.unpack(data)
    faces, fits, first = [], [], None
    for i, rec in enumerate(photo.faces, start=1):
        try:
            header, codec, img = decode_file(rec.data, cache=cache, model=model, weights=weights, native=True,
                                             max_pixels=max_pixels, device=device, name=f"{name}'s face {i}")
        except InvcompError as e:
            raise type(e)(f"face {i}: {e}") from None
        first = first or (header, codec)
        faces.append(img)
        fits.append(header.fit)
    info = {"width": photo.width, "height": photo.height, "faces": len(photo.faces), "grayscale": photo.grayscale,
            "background": photo.background}
    if native:
        strip = native_strip(faces)
        return first[0], first[1], strip.convert("L") if photo.grayscale else strip, info
    net = None
    if photo.detail is not None:
        from invcomp.faces.detail import load_network

        net = load_network(photo.detail.key, cache)
        info["detail"] = {"network": net.name, "rate": photo.detail.rate / 4, "side": photo.detail.side,
                          "bytes": len(photo.detail.data)}
    return first[0], first[1], render(photo, faces, fits, net), info
