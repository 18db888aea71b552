"""Context coding of integer grids: the GC symbols, the SC mask and the semantic map, all through the shared range
coder (:mod:`invcomp.coding.rangecoder`) under shipped integer tables (pure).

A grid is ``(P, h, w)`` int64 with values ``0..K-1`` (P planes: the C code channels; 1 for a mask or a label map);
``present`` ``(P, h, w)`` bool says which positions the file holds (SC drops the code outside its mask). Each
present value is coded under the table of its context: the value to its left, above it, and at the same position
in the plane before, each replaced by K where it is outside the grid or not present. So a table index is
``((p * (K+1) + before) * (K+1) + left) * (K+1) + above``, and :class:`GridTables` holds ``P * (K+1)**3`` tables of
K integer frequencies (each summing to 2**16, every entry >= 1).

**Order.** Plane by plane; within a plane, anti-diagonal by anti-diagonal (``i + j`` ascending), top row first: all
of a diagonal's contexts lie in the diagonal before or the plane before, so a decoder reads a whole diagonal in one
call (``P * (h + w - 1)`` calls per grid, a few thousand for 24 megapixels). Canonical: see :mod:`invcomp.coding.rangecoder`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from invcomp.coding import rangecoder
from invcomp.errors import BitstreamError, InvcompError
from invcomp.coding.tables import integer_table

FORMAT = "invcomp-grid-tables"


@dataclass(frozen=True)
class GridTables:
    """Context tables of a stack of ``planes`` grids of ``values`` K: ``tables`` int64 ``(P * (K+1)**3, K)``."""

    values: int
    planes: int
    tables: np.ndarray

    def __post_init__(self) -> None:
        k, p, t = self.values, self.planes, self.tables
        if t.shape != (p * (k + 1) ** 3, k) or (t < 1).any() or (t.sum(1) != rangecoder.TOTAL).any():
            raise InvcompError(f"bad grid tables: shape {t.shape} for {p} planes of {k} values, or rows that are not "
                               f"positive and summing to 2**{rangecoder.PRECISION}")

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "values": self.values, "planes": self.planes, "tables": self.tables.tolist()}

    @classmethod
    def from_json(cls, doc: Any, where: str = "grid tables") -> "GridTables":
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise InvcompError(f"bad {where}: not an {FORMAT} document")
        try:
            return cls(int(doc["values"]), int(doc["planes"]), np.asarray(doc["tables"], dtype=np.int64))
        except (KeyError, TypeError, ValueError) as e:
            raise InvcompError(f"bad {where}: {e}") from None


def contexts(grid: np.ndarray, present: np.ndarray, k: int) -> np.ndarray:
    """The table index ``(P, h, w)`` of every position (see the module doc); ``grid`` may hold anything where not
    present."""
    g = np.where(present, grid, k)
    absent = np.full(g.shape[:1] + (g.shape[1], 1), k)
    left = np.concatenate([absent, g[:, :, :-1]], 2)
    above = np.concatenate([np.full((g.shape[0], 1, g.shape[2]), k), g[:, :-1]], 1)
    before = np.concatenate([np.full((1,) + g.shape[1:], k), g[:-1]], 0)
    plane = np.arange(g.shape[0])[:, None, None]
    return ((plane * (k + 1) + before) * (k + 1) + left) * (k + 1) + above


def _order(present: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coordinates (p, i, j) of the present positions in coding order."""
    p, i, j = np.nonzero(present)
    o = np.lexsort((i, i + j, p))
    return p[o], i[o], j[o]


def _check(grid: np.ndarray, present: np.ndarray, tables: GridTables) -> None:
    if grid.shape != present.shape or grid.ndim != 3 or grid.shape[0] != tables.planes:
        raise ValueError(f"expected a ({tables.planes}, h, w) grid and presence map, got {grid.shape} and {present.shape}")
    vals = grid[present]
    if vals.size and (vals.min() < 0 or vals.max() >= tables.values):
        raise ValueError(f"grid values must be 0..{tables.values - 1}")


def encode_grid(grid: np.ndarray, present: np.ndarray, tables: GridTables) -> bytes:
    """The shortest payload of the present values of ``grid`` ``(P, h, w)`` (see the module doc)."""
    grid, present = np.asarray(grid, dtype=np.int64), np.asarray(present, dtype=bool)
    _check(grid, present, tables)
    p, i, j = _order(present)
    ctx = contexts(grid, present, tables.values)[p, i, j]
    enc = rangecoder.Encoder()
    enc.rows(grid[p, i, j], tables.tables[ctx])
    expected = grid[p, i, j]
    return rangecoder.shortest(enc.words(), rangecoder.decodes_to(
        lambda b: decode_grid(b, present, tables, check=False)[p, i, j], expected))


def decode_grid(payload: bytes, present: np.ndarray, tables: GridTables, *, check: bool = True) -> np.ndarray:
    """The grid ``(P, h, w)`` (``-1`` where not present) of a payload; with ``check``, refuses one that does not
    decode or is not the canonical coding of what it decodes to (:class:`BitstreamError`)."""
    present = np.asarray(present, dtype=bool)
    k = tables.values
    n_planes, h, w = present.shape
    if n_planes != tables.planes:
        raise ValueError(f"expected {tables.planes} planes, got {n_planes}")
    n = int(present.sum())
    if n and 8 * len(payload) + SLACK_BITS < n * min_bits(tables):
        raise BitstreamError(f"corrupt .ivc file: {len(payload)} bytes cannot hold {n} coded symbols")
    g = np.full(present.shape, k, dtype=np.int64)  # K: not (yet) known
    try:
        dec = rangecoder.Decoder(payload)
        for p in range(n_planes):
            for d in range(h + w - 1):
                i = np.arange(max(0, d - w + 1), min(h - 1, d) + 1)
                j = d - i
                keep = present[p, i, j]
                i, j = i[keep], j[keep]
                if not i.size:
                    continue
                left = np.where(j > 0, g[p, i, np.maximum(j - 1, 0)], k)
                above = np.where(i > 0, g[p, np.maximum(i - 1, 0), j], k)
                before = g[p - 1, i, j] if p else np.full(i.shape, k)
                ctx = ((p * (k + 1) + before) * (k + 1) + left) * (k + 1) + above
                g[p, i, j] = dec.rows(tables.tables[ctx])
    except Exception as e:  # noqa: BLE001  (constriction's own error for data it cannot decode)
        raise BitstreamError(f"corrupt .ivc file: a coded grid does not decode ({type(e).__name__})") from None
    out = np.where(present, g, -1)
    if check and encode_grid(np.where(present, g, 0), present, tables) != bytes(payload):
        raise BitstreamError("corrupt .ivc file: a coded grid is not the canonical coding of its values")
    return out


SLACK_BITS = 64
"""What :func:`invcomp.coding.rangecoder.shortest` may have cut (trailing bytes the reader's padding restores), at most."""


def min_bits(tables: GridTables) -> float:
    """The fewest bits any one symbol can take under ``tables`` (from the most probable entry of any table): a
    payload shorter than its symbols' count times this is refused before decoding."""
    return float(-np.log2(tables.tables.max() / rangecoder.TOTAL))


def fit_tables(grids: list[np.ndarray], presents: list[np.ndarray], values: int, planes: int,
               smoothing: float = 0.5) -> GridTables:
    """Tables from training grids: per context, the histogram of the values that follow it plus ``smoothing`` per
    value (Krichevsky-Trofimov), made integer (:func:`invcomp.coding.tables.integer_table`)."""
    n_ctx = planes * (values + 1) ** 3
    counts = np.zeros((n_ctx, values), dtype=np.float64)
    for g, pres in zip(grids, presents):
        g, pres = np.asarray(g, dtype=np.int64), np.asarray(pres, dtype=bool)
        ctx = contexts(g, pres, values)
        np.add.at(counts, (ctx[pres], g[pres]), 1.0)
    return GridTables(values, planes, np.stack([integer_table(c + smoothing) for c in counts]))


def code_length_bits(grid: np.ndarray, present: np.ndarray, tables: GridTables) -> float:
    """The ideal code length in bits of the present values of ``grid`` under ``tables`` (no coding)."""
    grid, present = np.asarray(grid, dtype=np.int64), np.asarray(present, dtype=bool)
    ctx = contexts(grid, present, tables.values)
    f = tables.tables[ctx[present], grid[present]]
    return float(-np.log2(f / rangecoder.TOTAL).sum())


@functools.lru_cache(maxsize=8)
def uniform_tables(values: int, planes: int) -> GridTables:
    """Tables that give every value the same share in every context: the escape coding, at about log2(K) bits each."""
    row = integer_table(np.ones(values))
    return GridTables(values, planes, np.tile(row, (planes * (values + 1) ** 3, 1)))


def encode_bounded(grid: np.ndarray, present: np.ndarray, tables: GridTables) -> tuple[bytes, bool]:
    """``(payload, escaped)``: the context coding under ``tables``, or the near-uniform one where that is shorter
    (``escaped``; ties go to the context coding). So a payload never costs much more than log2(K) bits a symbol,
    whatever the image. The uniform coding is only tried where it could win (within ``SLACK_BITS`` of its least)."""
    ctx = encode_grid(grid, present, tables)
    uni_tables = uniform_tables(tables.values, tables.planes)
    n = int(np.asarray(present, dtype=bool).sum())
    if 8 * len(ctx) <= n * min_bits(uni_tables) - SLACK_BITS:
        return ctx, False
    uni = encode_grid(grid, present, uni_tables)
    return (uni, True) if len(uni) < len(ctx) else (ctx, False)


def decode_bounded(payload: bytes, present: np.ndarray, tables: GridTables, escaped: bool) -> np.ndarray:
    """The grid of an :func:`encode_bounded` payload; an escaped one whose context coding is no longer is refused
    (not canonical)."""
    if not escaped:
        return decode_grid(payload, present, tables)
    grid = decode_grid(payload, present, uniform_tables(tables.values, tables.planes))
    if len(encode_grid(np.where(present, grid, 0), present, tables)) <= len(payload):
        raise BitstreamError("corrupt .ivc file: an escaped grid that the context tables code in no more bytes")
    return grid
