"""Equal-bytes search: the quality setting of a classic codec whose file size is closest to a byte target.

Like CompressAI's ``find_closest`` (``compressai/utils/find_close``): bisection on the codec's quality
knob, keeping the best ``|bytes - target|`` seen, stopping when the range collapses or after
``max_steps`` encodes. Sizes are only roughly monotone in the knob (JPEG's are not strictly), so for
integer knobs the neighbours of the best setting are also tried before answering.

A target below the smallest file the codec can write (its headers alone may exceed it) is
*cannot reach*: the answer is the lowest setting, with ``cannot_reach=True`` and its (larger) size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class Knob:
    """A quality knob: ``low`` is the setting that gives the fewest bytes, ``high`` the most.

    ``low`` may be numerically larger than ``high`` (JPEG 2000's compression ratio). ``integer`` knobs
    take whole values; ``log`` knobs are bisected geometrically (both ends must then be positive).
    """

    low: float
    high: float
    integer: bool = True
    log: bool = False

    def __post_init__(self) -> None:
        if self.log and (self.low <= 0 or self.high <= 0):
            raise ValueError(f"a log knob needs positive ends, got {self.low} and {self.high}")

    def cast(self, q: float) -> float:
        """A knob value as the codec takes it (``int`` for integer knobs)."""
        return round(q) if self.integer else float(q)

    def mid(self, a: float, b: float) -> float:
        """The bisection point between two settings."""
        m = math.sqrt(a * b) if self.log else (a + b) / 2.0
        return self.cast(math.floor(m)) if self.integer else m

    def collapsed(self, a: float, b: float) -> bool:
        """True when no setting strictly between ``a`` and ``b`` is worth trying."""
        if self.integer:
            return abs(a - b) <= 1
        return abs(math.log(a / b)) < 1e-3 if self.log else abs(a - b) < 1e-3 * max(abs(a), abs(b), 1.0)

    def clamp(self, q: float) -> float:
        """``q`` limited to the knob's range."""
        lo, hi = min(self.low, self.high), max(self.low, self.high)
        return self.cast(min(max(q, lo), hi))


@dataclass
class SearchResult:
    """The chosen setting, its size, whether the target was out of reach, and every ``setting -> bytes`` tried."""

    quality: float
    bytes: int
    target: int
    cannot_reach: bool
    tried: dict[float, int] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.tried)


def _closest(tried: dict[float, int], target: int) -> float:
    # Ties go to the smaller file (never spend more than needed), then to the setting tried first.
    return min(tried, key=lambda q: (abs(tried[q] - target), tried[q]))


def find_closest(size_at: Callable[[float], int], target: int, knob: Knob, *, max_steps: int = 12,
                 refine: int = 2) -> SearchResult:
    """Bisect ``knob`` for the setting whose ``size_at(setting)`` (bytes) is closest to ``target``.

    ``size_at`` is called at most once per setting (its results are kept in ``tried``). The two ends
    are tried first; ``max_steps`` bounds the bisection steps after them, and ``refine`` integer
    neighbours either side of the best setting are tried afterwards (size is not strictly monotone).
    """
    if target < 0:
        raise ValueError(f"target must be >= 0 bytes, got {target}")
    tried: dict[float, int] = {}

    def f(q: float) -> int:
        q = knob.cast(q)
        if q not in tried:
            tried[q] = int(size_at(q))
        return tried[q]

    a, b = knob.cast(knob.low), knob.cast(knob.high)
    if f(a) > target:
        return SearchResult(a, tried[a], target, True, tried)
    if f(b) > target:  # invariant: f(a) <= target < f(b)
        for _ in range(max_steps):
            if knob.collapsed(a, b):
                break
            m = knob.mid(a, b)
            if m in (a, b):
                break
            if f(m) <= target:
                a = m
            else:
                b = m
    if knob.integer and refine > 0:
        best = _closest(tried, target)
        for d in range(1, refine + 1):
            for q in (best - d, best + d):
                if knob.clamp(q) == q:
                    f(q)
    best = _closest(tried, target)
    return SearchResult(best, tried[best], target, False, tried)
