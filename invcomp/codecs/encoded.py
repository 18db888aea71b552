"""What a codec returns for one image (:class:`Encoded`), and the pixels it codes and writes: the model-resolution
target of an image, the 8-bit grid a decoder writes, and the picture ``invcomp decode`` writes for a file."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.imageio import fit_image, from_image, quantize_pixels
from invcomp.metrics import ssim as ssim_metric


Progress = Callable[[int], None]
"""Called with a number of work units done; :meth:`Codec.work` says how many units a batch takes."""


@dataclass
class Encoded:
    """One coded image: the ``.ivc`` bytes, its header, the model-resolution target and reconstruction
    (``(3, R, R)`` in [-1, 1]), the float symbols ``(D,)`` and their signed levels ``(D,)``, and what the
    mode reports besides (``extra``, e.g. the search's losses)."""

    data: bytes
    header: bitstream.Header
    target: torch.Tensor
    recon: torch.Tensor
    z: torch.Tensor
    levels: torch.Tensor
    extra: dict = field(default_factory=dict)
    _ssim: Optional[float] = field(default=None, repr=False, compare=False)

    def ssim(self) -> float:
        """SSIM of the reconstruction against the target, on the 8-bit pixels a decoder writes: measured once, then
        passed along (rate control, auto's decision and the report read the same figure)."""
        if self._ssim is None:
            self._ssim = float(ssim_metric(stored_pixels(self.recon[None]), self.target[None]))
        return self._ssim


def decoded_picture(e: Encoded) -> Image.Image:
    """The picture ``invcomp decode`` writes for ``e``'s file: the reconstruction at the original size (a photo
    file's frame, when its codec left a way to draw it in ``extra["decoded_frame"]``)."""
    from invcomp.imageio import restore_size, to_pil

    frame = e.extra.get("decoded_frame")
    if frame is not None:
        return frame()
    img, h = to_pil(e.recon), e.header
    return img if img.size == (h.width, h.height) else restore_size(img, h.width, h.height, h.fit)


def prepare(img: Image.Image, resolution: int, fit: str) -> torch.Tensor:
    """RGB image -> the model-resolution target ``(3, R, R)`` in [-1, 1] that a codec codes."""
    return from_image(fit_image(img, resolution, fit))  # type: ignore[arg-type]


def stored_pixels(x: torch.Tensor) -> torch.Tensor:
    """What a PNG of ``x`` (any shape, in [-1, 1]) holds: the 8-bit grid, for honest metrics."""
    return quantize_pixels(x)
