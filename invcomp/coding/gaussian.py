"""The Gaussian conditional entropy model of the residual and detail layers, on the inference side, without CompressAI.

A layer's latent ``y`` ``(1, M, h, w)`` is coded symbol by symbol under a Gaussian of predicted mean and scale: the
symbol is ``round(y - mean)``, its table the first of the 64 scales of :data:`gaussian_tables.json <TABLE_FILE>` at
or above its (lower-bounded) scale, and the stream CompressAI's rANS code of the symbols under those tables
(:mod:`invcomp.coding.rans`). The tables are CompressAI's ``GaussianConditional`` defaults (written by
``tools/gaussian_tables.py``; ``tests/test_rans.py`` checks them against CompressAI's), shipped as data so that coding
and decoding need no CompressAI and every machine codes with the same integers. Training still uses CompressAI's
module for its likelihoods.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from invcomp.coding import rans

if TYPE_CHECKING:
    import torch

TABLE_FILE = Path(__file__).with_name("gaussian_tables.json")


@lru_cache(maxsize=1)
def _data() -> dict:
    return json.loads(TABLE_FILE.read_text())


@lru_cache(maxsize=1)
def tables() -> rans.Tables:
    """The 64 CDF tables, checked (:func:`invcomp.coding.rans.tables`)."""
    d = _data()
    cdfs = []
    for freqs in d["frequencies"]:
        cdf = [0]
        for f in freqs:
            cdf.append(cdf[-1] + f)
        cdfs.append(cdf)
    return rans.tables(cdfs, [len(c) for c in cdfs], d["offsets"])


def scale_table() -> "torch.Tensor":
    """The 64 scales ``(64,)`` float32, smallest first."""
    import torch

    return torch.tensor([float.fromhex(v) for v in _data()["scale_table"]], dtype=torch.float32)


def build_indexes(scales: "torch.Tensor") -> "torch.Tensor":
    """Per-symbol table indexes (int32, the shape of ``scales``): the scales, bounded below by the smallest one,
    each mapped to the first table whose scale is at least its own (the last for any larger)."""
    import torch

    table = scale_table()
    bound = torch.tensor(float.fromhex(_data()["scale_bound"]), dtype=torch.float32)
    s = torch.maximum(scales.float(), bound)
    idx = torch.full(s.shape, len(table) - 1, dtype=torch.int32)
    for v in table[:-1]:
        idx -= (s <= v).to(torch.int32)
    return idx


def symbols(y: "torch.Tensor", means: "torch.Tensor") -> "torch.Tensor":
    """The coded symbols of ``y`` (int32): ``round(y - means)``."""
    return (y - means).round().to(__import__("torch").int32)


def dequantize(sym: "torch.Tensor", means: "torch.Tensor") -> "torch.Tensor":
    """Symbols back to latent values: ``symbols + means``."""
    return sym.to(means.dtype) + means


def compress(y: "torch.Tensor", scales: "torch.Tensor", means: "torch.Tensor") -> bytes:
    """One latent's rANS stream."""
    idx = build_indexes(scales).reshape(-1).tolist()
    return rans.encode(symbols(y, means).reshape(-1).tolist(), idx, tables())


def decompress(data: bytes, scales: "torch.Tensor", means: "torch.Tensor", what: str) -> "torch.Tensor":
    """A stream back to latent values (the shape of ``means``), by the checked decoder; a bad stream is a one-line
    :class:`~invcomp.errors.BitstreamError`."""
    import torch

    idx = build_indexes(scales)
    values = rans.decode(bytes(data), idx.reshape(-1).tolist(), tables(), what)
    return dequantize(torch.tensor(values, dtype=torch.int32).reshape(idx.shape), means)
