"""Rate control: the file of one image at a byte budget (``--target-bytes``, ``--target-bpp``) or a quality
(``--target-ssim``), chosen among cheap re-quantisations of the latent the search found once.

The candidates of an image are, for each bit depth b the container allows, its nearest levels at b and
those levels "trimmed": moved one step towards zero, one coordinate at a time, greedily in the order that
gives up the least latent distortion per bit saved under the prior (rate-distortion optimised quantisation;
the decoder needs nothing new). Each candidate costs one range coding (~0.1 ms) and, when it is compared, one
generator pass; the search never runs again.

- **bytes:** for every b, the fewest trims whose file fits the budget; of those, the one with the best SSIM.
- **ssim:** for every b whose untrimmed file reaches the target, the most trims that still reach it (a
  bisection); of those, the smallest file. If no b reaches it, the best file there is, flagged.

Version-1 files (a model without a prior, or an Elias coder) have no trims: only the bit depth is chosen.
"""
from __future__ import annotations

import copy
import heapq
import math
from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np
import torch

from .. import prior as priors
from ..errors import InvcompError
from ..metrics import ssim as ssim_metric
from ..quantize import QuantizedLatent, dequantize, levels_for_bits
from . import entropy
from .base import Encoded, stored_pixels


@dataclass(frozen=True)
class RateTarget:
    """One of ``max_bytes`` (a file of at most that many bytes) or ``min_ssim`` (the smallest file reaching it)."""

    max_bytes: Optional[int] = None
    min_ssim: Optional[float] = None

    def describe(self) -> str:
        return f"{self.max_bytes} B" if self.max_bytes is not None else f"SSIM {self.min_ssim}"


def bytes_for_bpp(bpp: float, resolution: int) -> int:
    """The byte budget of ``bpp`` bits per pixel at the model resolution R x R."""
    return int(math.floor(bpp * resolution * resolution / 8 + 1e-9))


class _Ladder:
    """The candidates of one image at one bit depth: its nearest levels and the greedy trims of them."""

    def __init__(self, codec: Any, z: torch.Tensor, bits: int) -> None:
        self.codec = copy.copy(codec)
        self.codec.settings = replace(codec.settings, bits=bits, rounding="nearest")
        self.v2 = entropy.container(self.codec) == 2
        p = self.codec.entropy_prior if self.v2 else None
        q = entropy.quantise_rows(z[None], self.codec.settings, norm_free=codec.norm_free, prior=p)
        self.q, self.bits = q, bits
        self.moves: list[tuple[int, int]] = self._greedy(z, q, p) if self.v2 else []

    def _greedy(self, z: torch.Tensor, q: QuantizedLatent, p: priors.Prior) -> list[tuple[int, int]]:
        s = levels_for_bits(self.bits)
        y = (z.abs() / float(q.norm[0]) * s).tolist()
        levels = q.levels[0].tolist()
        nll = [[-math.log2(f / priors.TOTAL) for f in row] for row in p.tables[self.bits].tolist()]
        groups = p.groups.tolist()

        def cost(i: int, lv: int) -> Optional[tuple[float, int, int]]:
            if lv == 0:
                return None
            new = lv - (1 if lv > 0 else -1)
            row = nll[groups[i]]
            saved = row[lv + s] - row[new + s]
            if saved <= 0:
                return None  # a move that does not save bits is never worth it
            m = abs(lv)
            extra = (y[i] - (m - 1)) ** 2 - (y[i] - m) ** 2
            return (max(extra, 0.0) / saved, i, new)

        heap = [c for i, lv in enumerate(levels) if (c := cost(i, lv)) is not None]
        heapq.heapify(heap)
        moves = []
        while heap:
            _, i, new = heapq.heappop(heap)
            if abs(new) != abs(levels[i]) - 1:
                continue
            levels[i] = new
            moves.append((i, new))
            nxt = cost(i, new)
            if nxt is not None:
                heapq.heappush(heap, nxt)
        return moves

    def levels(self, trims: int) -> torch.Tensor:
        lv = self.q.levels.clone()
        for i, new in self.moves[:trims]:
            lv[0, i] = new
        return lv

    def encode(self, trims: int, size: tuple[int, int], target: torch.Tensor) -> Encoded:
        q = replace(self.q, levels=self.levels(trims))
        data, header = entropy.pack_rows(self.codec, q, [size])[0]
        recon = self.codec.synthesise(dequantize(q))[0]
        return Encoded(data, header, target, recon, torch.zeros(0), q.levels[0], {"bits": self.bits, "trims": trims})

    def size(self, trims: int, size: tuple[int, int]) -> int:
        q = replace(self.q, levels=self.levels(trims))
        return len(entropy.pack_rows(self.codec, q, [size])[0][0])


def _bits_range(codec: Any) -> list[int]:
    p = codec.entropy_prior
    if p is not None and codec.settings.coder in ("auto", "prior") and codec.settings.scaling == p.scaling:
        return sorted(p.tables)
    return list(range(2, 17))


def _quality(enc: Encoded) -> float:
    return float(ssim_metric(stored_pixels(enc.recon[None]), enc.target[None]))


def _fewest_trims(ladder: _Ladder, max_bytes: int, size: tuple[int, int]) -> Optional[int]:
    """The fewest trims whose file is at most ``max_bytes`` (sizes fall, not strictly, with trims)."""
    if ladder.size(0, size) <= max_bytes:
        return 0
    n = len(ladder.moves)
    if n == 0 or ladder.size(n, size) > max_bytes:
        return None
    lo, hi = 0, n  # size(lo) > max, size(hi) <= max
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ladder.size(mid, size) <= max_bytes:
            hi = mid
        else:
            lo = mid
    return hi


def control(codec: Any, z: torch.Tensor, size: tuple[int, int], target: torch.Tensor, goal: RateTarget) -> Encoded:
    """The file of one image (float symbols ``z`` ``(D,)``, original ``size``, model-resolution ``target``
    ``(3, R, R)``) that meets ``goal``; raises :class:`InvcompError` when no file fits a byte budget."""
    ladders = [_Ladder(codec, z, b) for b in _bits_range(codec)]
    if goal.max_bytes is not None:
        best: Optional[tuple[float, int, Encoded]] = None
        smallest = math.inf
        for lad in ladders:
            smallest = min(smallest, lad.size(len(lad.moves), size))
            t = _fewest_trims(lad, goal.max_bytes, size)
            if t is None:
                continue
            enc = lad.encode(t, size, target)
            key = (_quality(enc), -len(enc.data))
            if best is None or key > best[:2]:
                best = (*key, enc)  # type: ignore[assignment]
        if best is None:
            raise InvcompError(f"no file of at most {goal.max_bytes} bytes: the smallest this model can write for it "
                               f"is {int(smallest)} bytes")
        out = best[2]
        out.extra.update({"target_bytes": goal.max_bytes, "reached": True})
        return _with_ssim(out)
    assert goal.min_ssim is not None
    found: list[Encoded] = []
    fallback: Optional[Encoded] = None
    for lad in ladders:
        top = lad.encode(0, size, target)
        top_q = _quality(top)
        if fallback is None or top_q > _quality(fallback):
            fallback = top
        if top_q < goal.min_ssim:
            continue
        lo, hi = 0, len(lad.moves)  # quality(lo) >= goal; find the most trims that still reach it
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _quality(lad.encode(mid, size, target)) >= goal.min_ssim:
                lo = mid
            else:
                hi = mid - 1
        found.append(lad.encode(lo, size, target))
    if found:
        out = min(found, key=lambda e: (len(e.data), -_quality(e)))
        out.extra.update({"target_ssim": goal.min_ssim, "reached": True})
        return _with_ssim(out)
    assert fallback is not None
    fallback.extra.update({"target_ssim": goal.min_ssim, "reached": False})
    return _with_ssim(fallback)


def _with_ssim(enc: Encoded) -> Encoded:
    enc.extra["ssim_at_choice"] = round(_quality(enc), 4)
    return enc


def search_bits(codec: Any, target: torch.Tensor, goal: RateTarget) -> int:
    """The bit depth to search at for ``goal``: for a byte budget, the smallest depth whose file of the search's
    start (the warm-start guess, else the prior's expected code length) is over the budget, so the
    search's quantiser sits just above it and trimming fills the budget; else the codec's own."""
    s = codec.settings
    if goal.max_bytes is None or not getattr(codec, "searches", False):
        return s.bits
    bits = _bits_range(codec)
    start = codec.start(target[None]) if hasattr(codec, "start") else None
    for b in bits:
        if isinstance(start, torch.Tensor):
            size = _Ladder(codec, start[0], b).size(0, (codec.resolution, codec.resolution))
        else:
            size = 10 + _expected_bytes(codec, b)
        if size > goal.max_bytes:
            return b
    return bits[-1]


def _expected_bytes(codec: Any, bits: int) -> float:
    p = codec.entropy_prior
    if p is None or bits not in p.tables:
        return codec.latent_dim * bits / 8
    t = p.tables[bits] / priors.TOTAL
    ent = -(t * np.log2(t)).sum(1)  # bits per symbol, per table
    return float(sum(ent[g] for g in p.groups)) / 8


def encode_images(codec: Any, images: list[Any], goal: RateTarget, progress: Any = None) -> list[Any]:
    """Encode ``images`` to ``goal``: one search per image (at :func:`search_bits`), then :func:`control`.
    Returns an :class:`Encoded` or an :class:`InvcompError` per image, in order."""
    from .base import prepare

    targets = torch.stack([prepare(im, codec.resolution, codec.settings.fit) for im in images])
    groups: dict[int, list[int]] = {}
    for i in range(len(images)):
        groups.setdefault(search_bits(codec, targets[i], goal), []).append(i)
    z = torch.zeros(len(images), codec.latent_dim)
    for b, rows in groups.items():
        c = copy.copy(codec)
        c.settings = replace(codec.settings, bits=b)
        z[rows] = c.find_symbols(targets[rows], progress)[0].float().cpu()
    return encode_to(codec, z, [im.size for im in images], targets, goal)


def encode_to(codec: Any, z: torch.Tensor, sizes: list[tuple[int, int]], targets: torch.Tensor,
              goal: RateTarget) -> list[Any]:
    """:func:`control` for each row of ``z`` ``(N, D)``; an image that cannot meet the goal gets its
    :class:`InvcompError` in its place, and the others go on."""
    out: list[Any] = []
    for i, size in enumerate(sizes):
        try:
            enc = control(codec, z[i], size, targets[i], goal)
            out.append(replace(enc, z=z[i].detach().float().cpu()))
        except InvcompError as e:
            out.append(e)
    return out
