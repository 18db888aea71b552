"""The whole-frame detail layer (issue 32): one residual layer over the frame a photo file decodes to, at the input's
own size (at most :data:`DEFAULT_SIDE` px on the long side), so that the default output is a complete picture.

The face codes draw 64-px faces, and the background layer (ThumbHash by default) only a colour blur. The detail layer
codes what that picture, the *base*, still gets wrong, with a conditional residual network
(:class:`invcomp.nets.residual.ResidualCoder`, trained for this base by :mod:`invcomp.train.frame_residual`):

- **size.** The base is the decoded frame resized (Lanczos) so that its long side is the record's ``side``; for a
  frame up to that side, the frame itself. The network codes the input at that size over it.
- **decode.** ``picture = base + residual(base, stream)``. When the detail picture is smaller than the frame, its
  correction (detail picture - base picture) is resized (bicubic) to the frame and added to the full-size frame,
  so the faces pasted at full size keep their pixels and the rest of the frame gets the detail picture's content.
- **network.** The record names it by its key (2 bytes of its weights' sha256); only networks shipped with
  ``"frame": true`` in their JSON are looked up, and each is sha256-checked when it loads.
- **determinism.** Every resize is Pillow's and the network runs on one thread (:func:`invcomp.nets.one_thread`), so
  the encoder, which measures the decoder's own picture of its base, and the decoder compute the same floats.
"""
from __future__ import annotations

import json
import logging
from typing import Optional

import numpy as np
from PIL import Image

from invcomp.errors import BitstreamError, InvcompError
from invcomp.formats import photo as container

log = logging.getLogger(__name__)

DEFAULT_NETWORK = "residual-frame-utkface"
DEFAULT_SIDE = 256  # the detail picture's long side at most: above it, the frame gets the detail picture's correction
RATE_STEPS = 4  # the record's rate counts quarter steps of the network's trained rates (as the layered mode's)


def work_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The detail picture's size (:func:`invcomp.formats.photo.detail_size`)."""
    return container.detail_size(width, height, side)


def networks() -> dict[bytes, str]:
    """The shipped detail networks by key: ``pretrained/layered/*.json`` with ``"frame": true``."""
    from invcomp.nets.residual import residual_dir

    out = {}
    for cfg in sorted(residual_dir().glob("*.json")):
        try:
            row = json.loads(cfg.read_text())
        except json.JSONDecodeError:
            continue
        if row.get("frame") and row.get("sha256"):
            out[bytes.fromhex(row["sha256"])[:2]] = cfg.stem
    return out


def load_network(key: bytes, cache: Optional[dict] = None):  # type: ignore[no-untyped-def]
    """The residual network a detail record names (cached in ``cache``); a one-line error when none is shipped."""
    from invcomp.nets.residual import load_residual

    cache = {} if cache is None else cache
    if ("detail", key) not in cache:
        name = networks().get(bytes(key))
        if name is None:
            raise InvcompError(f"this file's detail layer needs the residual network {bytes(key).hex()}, which this "
                               "invcomp does not ship (a newer release wrote it, or the file is damaged)")
        cache[("detail", key)] = load_residual(name)
    return cache[("detail", key)]


def load_named(name: str, cache: Optional[dict] = None):  # type: ignore[no-untyped-def]
    """A detail network by name, checked to be a frame network (cached under its key)."""
    from invcomp.nets.residual import load_residual

    net = load_residual(name)
    if net.key not in networks():
        raise InvcompError(f"residual network {name!r} is not a detail network (its JSON lacks \"frame\": true)")
    if cache is not None:
        cache[("detail", net.key)] = net
    return net


def _tensor(img: Image.Image):  # type: ignore[no-untyped-def]
    """RGB -> ``(1, 3, H, W)`` in [0, 1]."""
    import torch

    return torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32).copy()).permute(2, 0, 1)[None] / 255.0


def _image(x) -> Image.Image:  # type: ignore[no-untyped-def]
    """``(1, 3, H, W)`` in [0, 1] -> RGB, rounded to nearest."""
    a = (x[0].clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(a), "RGB")


def _small(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img if img.size == size else img.resize(size, Image.Resampling.LANCZOS)


def code(original: Image.Image, base: Image.Image, net, rate: int, side: int) -> Optional[container.Detail]:  # type: ignore[no-untyped-def]
    """The detail record of ``original`` over the decoded frame ``base`` (both RGB, the frame's size) at ``rate``
    (quarter steps) and long ``side``; ``None`` when the network gives an empty stream."""
    import torch

    from invcomp.nets import one_thread

    size = work_size(*base.size, side)
    x, b = _tensor(_small(original.convert("RGB"), size)), _tensor(_small(base, size))
    with torch.no_grad(), one_thread():
        data, _ = net.module.compress(x, b, rate / RATE_STEPS, 0)
    if not data:
        return None
    return container.Detail(net.key, rate, min(side, max(base.size)), bytes(data))


def apply(frame: Image.Image, detail: container.Detail, net) -> Image.Image:  # type: ignore[no-untyped-def]
    """The decoded frame (RGB) with its detail layer: what the decoder writes (before a grayscale file's conversion)."""
    import torch

    from invcomp.nets import one_thread

    if detail.rate > RATE_STEPS * (net.rates - 1):
        raise BitstreamError(f"invalid .ivc field: detail rate {detail.rate / RATE_STEPS:g} above the network's top "
                             f"rate {net.rates - 1}")
    w, h = frame.size
    size = work_size(w, h, detail.side)
    small = _small(frame, size)
    b = _tensor(small)
    with torch.no_grad(), one_thread():
        rec = net.module.decompress(detail.data, b, detail.rate / RATE_STEPS, 0)
    picture = _image(rec)
    if size == (w, h):
        return picture
    out = np.asarray(frame, dtype=np.uint8).copy()
    diff = np.asarray(picture, dtype=np.float32) - np.asarray(small, dtype=np.float32)
    for c in range(3):  # one channel at a time: the frame may be 64 Mpx
        up = np.asarray(Image.fromarray(np.ascontiguousarray(diff[..., c]), "F").resize((w, h), Image.Resampling.BICUBIC))
        out[..., c] = np.clip(out[..., c].astype(np.float32) + up, 0, 255).round().astype(np.uint8)
    return Image.fromarray(out, "RGB")
