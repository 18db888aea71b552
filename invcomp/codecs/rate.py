"""Rate control: the file of one image at a byte budget (``--target-bytes``, ``--target-bpp``) or a quality
(``--target-ssim``), chosen among cheap re-quantisations of the latent that one search found.

The candidates are, for each bit depth b the container allows, the nearest levels at b and finer steps that
the decoder needs nothing new for: a **coarser stored norm** (version 2, models that store a norm: the levels
taken against a larger norm code, a larger quantiser step), or **trims** (norm-free models, or when no norm
fits: levels moved one step towards zero, greedily in the order that loses the least latent distortion per
bit saved under the prior). A candidate costs one range coding (~0.1 ms) and, when compared, one generator
pass. **bytes:** per b, the finest norm that fits and a few coarser ones (or the fewest trims); of all, the best
SSIM. **ssim:** per b, twelve norms from the latent's own to the coarsest (or the most trims, by bisection)
that reach the target; of those, the smallest file; if none does, the best file there is, flagged."""
from __future__ import annotations

import copy
import heapq
import math
from dataclasses import dataclass, replace
from typing import Any, Optional, Protocol, Union, cast

import numpy as np
import torch

from invcomp.coding import tables as priors
from invcomp.errors import InvcompError
from invcomp.coding.quantize import QuantizedLatent, dequantize, levels_for_bits
from invcomp.codecs import entropy
from invcomp.codecs.encoded import Encoded, prepare


class RateCodec(entropy.CodecLike, Protocol):
    """What rate control uses of a codec (:class:`invcomp.codecs.base.Codec` has all of it): the entropy stage's
    fields, and the search and synthesis of its mode."""

    @property
    def searches(self) -> bool: ...

    def start(self, target: torch.Tensor) -> Union[str, torch.Tensor, None]: ...

    def find_symbols(self, target: torch.Tensor, progress: Any) -> tuple[torch.Tensor, list[dict]]: ...

    def synthesise(self, z: torch.Tensor) -> torch.Tensor: ...

    def side_info(self, recon: torch.Tensor, target: torch.Tensor) -> bytes: ...

    def finish(self, recon: torch.Tensor, side: bytes) -> torch.Tensor: ...


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
    """The candidates of one image at one bit depth: its nearest levels and the greedy trims of them. With
    ``norm_code`` (a version-2 file of a model that stores its norm) the levels are taken against that coarser stored
    norm instead of the latent's own: a larger code is a larger quantiser step, a finer knob than the bit depth."""

    def __init__(self, codec: RateCodec, z: torch.Tensor, bits: int, norm_code: Optional[int] = None) -> None:
        self.codec = copy.copy(codec)
        self.codec.settings = replace(codec.settings, bits=bits, rounding="nearest")
        self.v2 = entropy.container(self.codec) == 2
        p = self.codec.tables if self.v2 else None
        q = entropy.quantise_rows(z[None], self.codec.settings, norm_free=codec.norm_free, prior=p)
        if norm_code is not None and p is not None:
            norm = torch.tensor([priors.norm_value(norm_code, p)], dtype=torch.float32)
            q = replace(q, levels=priors.levels_exact(z[None].float().cpu(), bits, norm), norm=norm)
        self.q, self.bits, self.z, self.p = q, bits, z, p
        self.norm_code = norm_code if norm_code is not None else (
            None if p is None or codec.norm_free else priors.norm_code(float(q.norm[0]), p))
        self._moves: Optional[list[tuple[int, int]]] = None

    @property
    def moves(self) -> list[tuple[int, int]]:
        if self._moves is None:
            self._moves = self._greedy(self.z, self.q, self.p) if self.v2 and self.p is not None else []
        return self._moves

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
        raw = self.codec.synthesise(dequantize(q))
        side = self.codec.side_info(raw[0], target)  # a mode's side record (the tone), b"" for most
        data, header = entropy.pack_rows(self.codec, q, [size], [side])[0]
        recon = self.codec.finish(raw, side)[0]
        return Encoded(data, header, target, recon, torch.zeros(0), q.levels[0],
                       {"bits": self.bits, "trims": trims, "norm_code": self.norm_code})

    def size(self, trims: int, size: tuple[int, int]) -> int:
        q = replace(self.q, levels=self.levels(trims))
        return len(entropy.pack_rows(self.codec, q, [size])[0][0])


def _bits_range(codec: RateCodec) -> list[int]:
    p = codec.tables
    if p is not None and codec.settings.coder in ("auto", "prior") and codec.settings.scaling == p.scaling:
        return sorted(p.tables)
    return list(range(2, 17))


def _quality(enc: Encoded) -> float:
    return enc.ssim()


def _fit_budget(codec: RateCodec, z: torch.Tensor, bits: int, max_bytes: int, size: tuple[int, int]) -> Optional[tuple[_Ladder, int]]:
    """The finest file at ``bits`` that fits ``max_bytes``: the latent's own norm if it fits; else the smallest
    larger stored norm (a coarser step) that fits; else the fewest trims. ``None`` if nothing fits."""
    lad = _Ladder(codec, z, bits)
    if lad.size(0, size) <= max_bytes:
        return lad, 0
    k0 = lad.norm_code
    if k0 is not None and k0 < 255 and _Ladder(codec, z, bits, 255).size(0, size) <= max_bytes:
        lo, hi = k0, 255  # size(lo) > max, size(hi) <= max
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _Ladder(codec, z, bits, mid).size(0, size) <= max_bytes:
                hi = mid
            else:
                lo = mid
        return _Ladder(codec, z, bits, hi), 0
    t = _fewest_trims(lad, max_bytes, size)
    return None if t is None else (lad, t)


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


NEAR_BUDGET, SSIM_GRID = (0, 1, 2, 4, 8, 16), 12  # norm codes tried above the finest fit; per depth for SSIM


def _candidates_for_budget(codec: RateCodec, z: torch.Tensor, bits: int, max_bytes: int,
                           size: tuple[int, int]) -> list[tuple[_Ladder, int]]:
    fit = _fit_budget(codec, z, bits, max_bytes, size)
    if fit is None:
        return []
    lad, trims = fit
    out = [fit]
    if trims == 0 and lad.norm_code is not None:
        for step in NEAR_BUDGET[1:]:
            k = lad.norm_code + step
            if k <= 255:
                other = _Ladder(codec, z, bits, k)
                if other.size(0, size) <= max_bytes:
                    out.append((other, 0))
    return out


def control(codec: RateCodec, z: torch.Tensor, size: tuple[int, int], target: torch.Tensor, goal: RateTarget) -> Encoded:
    """The file of one image (float symbols ``z`` ``(D,)``, original ``size``, model-resolution ``target``
    ``(3, R, R)``) that meets ``goal``; raises :class:`InvcompError` when no file fits a byte budget."""
    bits_range = _bits_range(codec)
    if goal.max_bytes is not None:
        best: Optional[tuple[float, int, Encoded]] = None
        smallest = math.inf
        for b in bits_range:
            lad = _Ladder(codec, z, b, 255) if _Ladder(codec, z, b).norm_code is not None else _Ladder(codec, z, b)
            smallest = min(smallest, lad.size(len(lad.moves), size))
            for cand, trims in _candidates_for_budget(codec, z, b, goal.max_bytes, size):
                enc = cand.encode(trims, size, target)
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
    for b in bits_range:
        lad = _Ladder(codec, z, b)
        top = lad.encode(0, size, target)
        if fallback is None or _quality(top) > _quality(fallback):
            fallback = top
        if lad.norm_code is not None:  # coarser stored norms: the smallest that still reaches the target
            codes = sorted({round(lad.norm_code + (255 - lad.norm_code) * i / (SSIM_GRID - 1)) for i in range(SSIM_GRID)})
            for k in codes:
                enc = _Ladder(codec, z, b, k).encode(0, size, target)
                if _quality(enc) >= goal.min_ssim:
                    found.append(enc)
            continue
        if _quality(top) < goal.min_ssim:
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

def search_bits(codec: RateCodec, target: torch.Tensor, goal: RateTarget) -> int:
    """The bit depth to search at for ``goal``: for a byte budget, from the file of the search's start (warm-start
    guess, else the prior's expected length), the smallest depth whose file is over the budget (a coarser norm fills
    it); but the depth below if its file fills 90% of the budget and the next would shrink by over 10%; else the codec's."""
    s = codec.settings
    if goal.max_bytes is None or not codec.searches:
        return cast(int, s.bits)  # a loaded codec's settings are resolved: never None
    bits = _bits_range(codec)
    start = codec.start(target[None])
    below: Optional[tuple[int, float]] = None
    for b in bits:
        size: float
        if isinstance(start, torch.Tensor):
            size = _Ladder(codec, start[0], b).size(0, (codec.resolution, codec.resolution))
        else:
            size = 10 + _expected_bytes(codec, b)
        if size > goal.max_bytes:
            return below[0] if below and below[1] >= 0.9 * goal.max_bytes and size > 1.1 * goal.max_bytes else b
        below = (b, size)
    return bits[-1]


def _expected_bytes(codec: RateCodec, bits: int) -> float:
    """Mean payload bytes at ``bits`` for symbols drawn from the prior itself (its tables' entropy)."""
    p = codec.tables
    if p is None or bits not in p.tables:
        return codec.latent_dim * bits / 8
    t = p.tables[bits] / priors.TOTAL
    ent = -(t * np.log2(t)).sum(1)  # bits per symbol, per table
    return float(sum(ent[g] for g in p.groups)) / 8


def encode_images(codec: Any, images: list[Any], goal: RateTarget, progress: Any = None) -> list[Any]:
    """``codec.encode(images, goal=goal)``: an :class:`Encoded` or an :class:`InvcompError` per image, in order."""
    return codec.encode(images, goal=goal, progress=progress)


def search_to_goal(codec: RateCodec, images: list[Any], goal: RateTarget, progress: Any = None) -> list[Any]:
    """Encode ``images`` to ``goal``: one search per image (at :func:`search_bits`), then :func:`control`.
    Returns an :class:`Encoded` or an :class:`InvcompError` per image, in order. What :meth:`Codec.encode
    <invcomp.codecs.base.Codec.encode>` runs for a goal; auto and layered choose among their own files instead."""
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


def encode_to(codec: RateCodec, z: torch.Tensor, sizes: list[tuple[int, int]], targets: torch.Tensor,
              goal: RateTarget) -> list[Any]:
    """:func:`control` for each row of ``z`` ``(N, D)``; an image that cannot meet the goal gets its
    :class:`InvcompError` in its place, and the others go on."""
    out: list[Any] = []
    for i, size in enumerate(sizes):
        try:
            out.append(replace(control(codec, z[i], size, targets[i], goal), z=z[i].detach().float().cpu()))
        except InvcompError as e:
            out.append(e)
    return out
