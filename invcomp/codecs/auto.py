"""``--mode auto``: code each image with every candidate mode and keep the file that scores best for its bytes.

The candidates are codecs of the registered modes (by default: GAN inversion, GAN inversion with its tone
record, and the shipped VAE-GAN codecs). Each image is coded by each of them, and its file is the one with
the highest ``SSIM - lambda * bytes`` among those of at most ``max_bytes`` bytes: a Lagrangian mode decision,
as video coders make, with SSIM measured on the pixels the decoder writes. So a face that the generator draws
well keeps its small inversion file, and a face that it cannot draw gets the mode that can, if the budget
allows it. The chosen file is an ordinary file of that mode (its header names the mode and the model), so
``invcomp decode`` needs nothing new.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import torch
from PIL import Image

from ..errors import InvcompError
from ..metrics import ssim
from ..imageio import quantize_pixels

log = logging.getLogger(__name__)

AUTO_MODEL = "dcgan-utkface64"
AUTO_VAEGANS = ("vaegan-utkface64-c2", "vaegan-utkface64-c4", "vaegan-utkface64-c8")
# SSIM per byte that a larger file must buy to be chosen. Chosen on validation faces (not the held-out ones)
# and their reframed, relit, recoloured and grayscale copies: experiments/auto_lambda.py (README, "Range").
DEFAULT_LAMBDA = 0.0005
DEFAULT_MAX_BYTES: Optional[int] = None


def choose(scores: list[float], sizes: list[int], lam: float, max_bytes: Optional[int]) -> Optional[int]:
    """Index of the candidate with the highest ``score - lam * bytes`` among those of at most ``max_bytes``
    (ties: the smaller file, then the earlier candidate); ``None`` when no file fits."""
    best: Optional[int] = None
    for i, (s, n) in enumerate(zip(scores, sizes)):
        if max_bytes is not None and n > max_bytes:
            continue
        if best is None:
            best = i
            continue
        a, b = s - lam * n, scores[best] - lam * sizes[best]
        if a > b or (a == b and n < sizes[best]):
            best = i
    return best


class AutoCodec:
    """Several codecs of the same resolution; :meth:`encode` keeps the best file per image (see the module doc)."""

    mode_key = "auto"
    title = "auto"
    searches = True

    def __init__(self, candidates: list[Any], *, decoder_for: Callable[[Any], Any], rd_lambda: float = DEFAULT_LAMBDA,
                 max_bytes: Optional[int] = DEFAULT_MAX_BYTES) -> None:
        """``candidates``: codecs of one resolution (:func:`invcomp.codecs.table.load_codec` builds the default
        set); ``decoder_for``: header -> the codec that decodes it (:func:`~invcomp.codecs.table.codec_for_header`)."""
        if not candidates:
            raise InvcompError("--mode auto needs at least one candidate codec")
        sides = {c.resolution for c in candidates}
        if len(sides) != 1:
            raise InvcompError(f"--mode auto candidates code different resolutions: {sorted(sides)}")
        if rd_lambda < 0:
            raise InvcompError(f"the mode decision's lambda must be >= 0, got {rd_lambda}")
        self.candidates, self.rd_lambda, self.max_bytes = candidates, rd_lambda, max_bytes
        self._decoder_for = decoder_for
        self.resolution = candidates[0].resolution
        self.settings = candidates[0].settings
        self.name = "auto"
        self._decoders: dict = {}

    def work(self, n_images: int) -> int:
        return sum(c.work(n_images) for c in self.candidates)

    def describe(self) -> dict[str, Any]:
        inv = self.candidates[0].describe()
        return {**inv, "mode": "auto", "model": self.name, "lambda": self.rd_lambda, "max_bytes": self.max_bytes,
                "candidates": [f"{c.mode_key}:{c.name}" for c in self.candidates]}

    def encode(self, images: list[Image.Image], *, progress: Optional[Callable[[int], None]] = None, goal: Any = None,
               to_goal: Optional[Callable[..., list[Any]]] = None) -> list[Any]:
        """Encode ``images`` with every candidate (each to ``goal`` with ``to_goal``, i.e.
        :func:`invcomp.codecs.rate.encode_images`, when given) and keep, per image, the best file within the
        budget (``goal``'s bytes, else ``max_bytes``). Returns an :class:`Encoded` per image, or an
        :class:`InvcompError` in its place when no candidate's file fits."""
        if not images:
            return []
        max_bytes = goal.max_bytes if goal is not None and goal.max_bytes is not None else self.max_bytes
        per: list[list[Any]] = []
        for c in self.candidates:
            done = c.encode(images, progress=progress) if goal is None else to_goal(c, images, goal, progress)  # type: ignore[misc]
            per.append(done)
        out: list[Any] = []
        for i in range(len(images)):
            encs = [p[i] for p in per]
            ok = [j for j, e in enumerate(encs) if not isinstance(e, Exception)]  # Encoded, or that image's error
            scores = [_ssim(encs[j]) for j in ok]
            sizes = [len(encs[j].data) for j in ok]
            pick = choose(scores, sizes, self.rd_lambda, max_bytes)
            if pick is None:
                smallest = min(sizes) if sizes else None
                out.append(InvcompError(f"no mode fits {max_bytes} B (the smallest file is {smallest} B)"))
                continue
            j = ok[pick]
            chosen = encs[j]
            chosen.extra = {**chosen.extra, "reached": chosen.extra.get("reached", True),
                            "trims": chosen.extra.get("trims", 0),
                            "auto": {"chosen": f"{self.candidates[j].mode_key}:{self.candidates[j].name}",
                                     "candidates": [{"codec": f"{self.candidates[k].mode_key}:{self.candidates[k].name}",
                                                     "bytes": n, "ssim": round(s, 4)}
                                                    for k, s, n in zip(ok, scores, sizes)]}}
            out.append(chosen)
        return out

    def decode(self, data: bytes) -> tuple[Any, torch.Tensor]:
        """Decode a file of any candidate's mode and model (its header says which)."""
        from .. import bitstream

        header = bitstream.unpack(data)[0]
        key = (header.mode, header.model_id)
        if key not in self._decoders:
            self._decoders[key] = self._decoder_for(header)
        return self._decoders[key].decode(data)


def _ssim(enc: Any) -> float:
    """SSIM of an :class:`~invcomp.codecs.base.Encoded`'s reconstruction, on the 8-bit pixels a decoder writes."""
    return float(ssim(quantize_pixels(enc.recon[None]), enc.target[None]))
