"""``--mode auto``: code each image with every candidate mode and never keep a file of a mode that fails it.

The candidates are codecs of the registered modes (by default: GAN inversion, GAN inversion with its tone
record, and the shipped VAE-GAN codecs). Each image is coded by each of them; among the files of at most
``max_bytes`` bytes, the chosen one is the smallest whose SSIM (on the pixels the decoder writes) is within
``tolerance`` of the best one's. A mode "fails" a face when another mode draws it better by more than that.
So a face that the generator draws well keeps its small inversion file, and a face that it cannot draw gets
the mode that can: the rate is paid only where the picture needs it. The chosen file is an ordinary file of that
mode (its header names the mode and the model), so
``invcomp decode`` needs nothing new.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import Any, Callable, Optional, Sequence

import torch
from PIL import Image

from invcomp.errors import InvcompError

log = logging.getLogger(__name__)

AUTO_MODEL = "dcgan-utkface64"
# The C = 4 and C = 8 codecs fine-tuned with augmentation (zoom-out, shift, colour, light, grayscale) replace the
# plain ones here: better on the reframed and recoloured validation faces, and no worse on plain ones (model card).
AUTO_VAEGANS = ("vaegan-utkface64-c2", "vaegan-utkface64aug-c4", "vaegan-utkface64aug-c8")
# How much lower an SSIM than the best candidate's still counts as drawing the face. Chosen on validation faces
# (not the held-out ones) and their reframed, relit, recoloured and grayscale copies: experiments/auto_tolerance.py
# (README, "Range").
DEFAULT_TOLERANCE = 0.03
DEFAULT_MAX_BYTES: Optional[int] = None
# A candidate refined by ``(k, iters, lr)`` (AutoCodec's ``refine``) starts its search from candidate k's latents, for
# ``iters`` steps at peak rate ``lr``, instead of searching from scratch: the tone mode refines the plain inversion's latent.
# 100 steps at 0.2 kept most of a full tone search's gain (SSIM 0.817 against 0.823 on 12 recoloured faces; 0.811
# after 50 steps at 0.1: experiments/tone_refine.py) at half its cost: auto encodes in about 1.5x one inversion's time.
TONE_REFINE = (0, 100, 0.2)


def choose(scores: list[float], sizes: list[int], tolerance: float, max_bytes: Optional[int]) -> Optional[int]:
    """Index of the smallest file whose score is within ``tolerance`` of the best score, among the files of at
    most ``max_bytes`` (ties in size: the higher score, then the earlier candidate); ``None`` when none fits."""
    fits = [i for i, n in enumerate(sizes) if max_bytes is None or n <= max_bytes]
    if not fits:
        return None
    best = max(scores[i] for i in fits)
    good = [i for i in fits if scores[i] >= best - tolerance]
    return min(good, key=lambda i: (sizes[i], -scores[i], i))


class AutoCodec:
    """Several codecs of the same resolution; :meth:`encode` keeps the best file per image (see the module doc)."""

    mode_key = "auto"
    title = "auto"
    searches = True

    def __init__(self, candidates: list[Any], *, decoder_for: Callable[[Any], Any], tolerance: float = DEFAULT_TOLERANCE,
                 max_bytes: Optional[int] = DEFAULT_MAX_BYTES, refine: Optional[dict[int, tuple[int, int, float]]] = None,
                 goal_only: Sequence[int] = ()) -> None:
        """``candidates``: codecs of one resolution (:func:`invcomp.codecs.loader.load_codec` builds the default
        set); ``decoder_for``: header -> the codec that decodes it (:func:`~invcomp.codecs.loader.codec_for_header`);
        ``refine``: candidate index -> ``(k, iters, lr)``, a candidate that starts from candidate k's latents
        (:data:`TONE_REFINE`) when there is no goal; ``goal_only``: the candidates that run only with a goal (the
        layered mode: with no budget its layers only add bytes)."""
        if not candidates:
            raise InvcompError("--mode auto needs at least one candidate codec")
        sides = {c.resolution for c in candidates}
        if len(sides) != 1:
            raise InvcompError(f"--mode auto candidates code different resolutions: {sorted(sides)}")
        if not 0 <= tolerance <= 1:
            raise InvcompError(f"the mode decision's SSIM tolerance must be in [0, 1], got {tolerance}")
        self.candidates, self.tolerance, self.max_bytes = candidates, tolerance, max_bytes
        self.refine, self.goal_only = dict(refine or {}), frozenset(goal_only)
        self._decoder_for = decoder_for
        self.keep_candidates = False  # True: each chosen file's extra["auto"]["files"] holds every candidate's bytes
        self.resolution = candidates[0].resolution
        self.settings = candidates[0].settings
        self.name = "auto"
        self._decoders: dict = {}

    def work(self, n_images: int) -> int:
        return sum(n_images * self.refine[j][1] if j in self.refine else c.work(n_images)
                   for j, c in enumerate(self.candidates))

    def describe(self) -> dict[str, Any]:
        inv = self.candidates[0].describe()
        return {**inv, "mode": "auto", "model": self.name, "tolerance": self.tolerance, "max_bytes": self.max_bytes,
                "candidates": [f"{c.mode_key}:{c.name}" for c in self.candidates]}

    def start(self, target: torch.Tensor) -> None:
        return None  # each candidate starts its own search

    def check_goal(self, goal: Any) -> None:
        for c in self.candidates:
            c.check_goal(goal)

    def encode(self, images: list[Image.Image], *, goal: Any = None,
               progress: Optional[Callable[[int], None]] = None) -> list[Any]:
        """Encode ``images`` with every candidate (each to ``goal``, when given) and keep, per image, the best file
        within the budget (``goal``'s bytes, else ``max_bytes``). Returns an :class:`Encoded` per image, or an
        :class:`InvcompError` in its place when no candidate's file fits."""
        if not images:
            return []
        max_bytes = goal.max_bytes if goal is not None and goal.max_bytes is not None else self.max_bytes
        per: list[list[Any]] = []
        for j, c in enumerate(self.candidates):
            ref = self.refine.get(j)
            if goal is None and j in self.goal_only:  # e.g. layered: with no budget it only grows
                per.append([InvcompError(f"{c.mode_key} runs with a target only")] * len(images))
                continue
            if goal is None and ref is not None and not any(isinstance(e, Exception) for e in per[ref[0]]):
                refining = copy.copy(c)
                refining.settings = replace(c.settings, iters=ref[1], lr=ref[2])
                done = refining.encode(images, progress=progress, init=torch.stack([e.z for e in per[ref[0]]]))
            else:
                done = c.encode(images, goal=goal, progress=progress)
            per.append(done)
        out: list[Any] = []
        for i in range(len(images)):
            encs = [p[i] for p in per]
            ok = [j for j, e in enumerate(encs) if not isinstance(e, Exception)]  # Encoded, or that image's error
            scores = [encs[j].ssim() for j in ok]
            sizes = [len(encs[j].data) for j in ok]
            pick = choose(scores, sizes, self.tolerance, max_bytes)
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
            if self.keep_candidates:
                chosen.extra["auto"]["files"] = [None if isinstance(e, Exception) else e.data for e in encs]
            out.append(chosen)
        return out

    def decode(self, data: bytes) -> tuple[Any, torch.Tensor]:
        """Decode a file of any candidate's mode and model (its header says which)."""
        return self._decoder(data).decode(data)

    def decode_picture(self, data: bytes, **kw: Any) -> tuple[Any, Any]:
        """As :meth:`invcomp.codecs.base.Codec.decode_picture`, by the codec of the file's mode and model."""
        return self._decoder(data).decode_picture(data, **kw)

    def _decoder(self, data: bytes) -> Any:
        from invcomp.formats import ivc as bitstream

        header = bitstream.unpack(data)[0]
        key = (header.mode, header.model_id)
        if key not in self._decoders:
            self._decoders[key] = self._decoder_for(header)
        return self._decoders[key]

