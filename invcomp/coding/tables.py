"""Entropy-coding priors: integer probability tables of a model's quantised symbols, and the range coder
that uses them (pure functions; the coder is ``constriction``'s range coder).

A :class:`Prior` belongs to one model and one scaling. For each bit depth b in 2..9 it holds K integer
frequency tables over the 2s+1 levels ``-s..s`` (s = 2**(b-1) - 1), each summing to 2**16 with every level
at least 1, and it assigns each of the D symbol positions to one of the K tables (``groups``, e.g. one
table for every latent coordinate of a GAN, one per channel of a VAE-GAN code map). It also fixes the
one-byte norm code: ``norm = k * norm_unit / 2**16`` for k in 1..255.

**Bit-exact on every machine.** The tables are stored as integers and are never recomputed at decode time:
the coder gets each as the float64 values ``f / 2**16``, which are exact, and constriction turns them into
its fixed-point model with deterministic integer and IEEE arithmetic (no BLAS, no threads). Norms are
integers times a dyadic unit, exact in float32. A file therefore decodes to the same levels everywhere.

**The payload** is the range coder's 32-bit words written big-endian, with trailing bytes removed for as long
as the symbols still decode when the reader pads the payload with ``0xFF`` bytes; the reader re-encodes what
it decoded and refuses a payload that is not that shortest one, so every file is canonical. The coder itself is
:mod:`invcomp.coding.rangecoder`, which every mode shares.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from invcomp.coding import rangecoder
from invcomp.errors import BitstreamError, InvcompError

FORMAT = "invcomp-prior"
VERSION = 1
PRECISION = 16
TOTAL = 1 << PRECISION
BITS = tuple(range(2, 10))
"""The bit depths a prior covers (the container-v2 header stores ``bits - 2`` in 3 bits)."""
NORM_UNIT_BITS = 16


def levels_for_bits(bits: int) -> int:
    return 2 ** (bits - 1) - 1


@dataclass(frozen=True)
class Prior:
    """Integer probability tables for one model: ``tables[b]`` is an int64 array ``(K, 2s+1)`` (each row sums to
    2**16, every entry >= 1), ``groups`` an int64 array ``(D,)`` of table indices, ``norm_unit`` the norm step
    in units of 2**-16, and ``scaling`` the QSGD scaling that the tables were fitted for."""

    scaling: str
    groups: np.ndarray
    tables: dict[int, np.ndarray]
    norm_unit: int
    fit: dict = field(default_factory=dict)

    @property
    def symbols(self) -> int:
        return int(self.groups.shape[0])

    def covers(self, bits: int, scaling: str) -> bool:
        return bits in self.tables and scaling == self.scaling

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "precision": PRECISION, "scaling": self.scaling,
                "norm_unit": self.norm_unit, "groups": [int(g) for g in self.groups],
                "tables": {str(b): t.tolist() for b, t in sorted(self.tables.items())}, "fit": self.fit}

    @classmethod
    def from_json(cls, doc: Any, where: str = "prior") -> "Prior":
        """Parse and check a prior document; any defect is an :class:`InvcompError` naming ``where``."""
        def bad(why: str) -> InvcompError:
            return InvcompError(f"bad prior {where}: {why}")

        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise bad(f"not an {FORMAT} document")
        if doc.get("version") != VERSION or doc.get("precision") != PRECISION:
            raise bad(f"version {doc.get('version')} / precision {doc.get('precision')} (this invcomp reads "
                      f"version {VERSION}, precision {PRECISION})")
        groups = np.asarray(doc.get("groups", []), dtype=np.int64)
        unit = doc.get("norm_unit")
        if groups.ndim != 1 or groups.size == 0 or not isinstance(unit, int) or not 1 <= unit < 2**24 // 255:
            raise bad("groups or norm_unit out of range")
        tables = {}
        for key, rows in dict(doc.get("tables", {})).items():
            b = int(key)
            t = np.asarray(rows, dtype=np.int64)
            if b not in BITS or t.ndim != 2 or t.shape[1] != 2 * levels_for_bits(b) + 1:
                raise bad(f"table for {key} bits has shape {t.shape}")
            if (t < 1).any() or (t.sum(1) != TOTAL).any():
                raise bad(f"table for {key} bits has a zero entry or does not sum to 2**{PRECISION}")
            if groups.min() < 0 or groups.max() >= t.shape[0]:
                raise bad(f"groups name tables that {key} bits does not have")
            tables[b] = t
        if doc.get("scaling") not in ("max", "l2") or not tables:
            raise bad("no tables, or an unknown scaling")
        return cls(doc["scaling"], groups, tables, unit, dict(doc.get("fit", {})))


class _Tables(Protocol):
    def to_json(self) -> dict: ...


def save_prior(prior: _Tables, path: Path) -> None:
    """Write a model's entropy tables (a latent :class:`Prior`, or GC's grid tables) as compact JSON, atomically: the
    one store of every model's tables."""
    from invcomp.files import atomic_write

    atomic_write(Path(path), (json.dumps(prior.to_json(), separators=(",", ":")) + "\n").encode(), force=True)



def load_prior(path: Path, kind: Any = None, what: str = "prior") -> Any:
    """Read tables written by :func:`save_prior`: a :class:`Prior`, or ``kind`` (a class with ``from_json(doc,
    name)``, e.g. :class:`invcomp.zoo.generative.GCPrior`); an unreadable file is a one-line :class:`InvcompError`
    naming ``what``."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise InvcompError(f"cannot read {what} {path}: {e}") from None
    return (kind or Prior).from_json(doc, str(path))


def prior_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- norms ---------------------------------------------------------------------------------------------------
def norm_code(norm: float, prior: Prior) -> int:
    """The one-byte norm code k in 1..255 (clamped): for ``max`` scaling the smallest k with ``k * unit >= norm``
    (so no level passes s); for ``l2`` the nearest (a coordinate is far below the L2 norm, so none does)."""
    x = float(norm) * (1 << NORM_UNIT_BITS) / prior.norm_unit
    if not math.isfinite(x):
        raise InvcompError(f"latent norm {norm} is not finite")
    k = math.ceil(x - 1e-9) if prior.scaling == "max" else math.floor(x + 0.5)
    return min(255, max(1, k))


def norm_value(k: int, prior: Prior) -> float:
    """The norm that code k stands for (exact in float32)."""
    return k * prior.norm_unit / (1 << NORM_UNIT_BITS)


# --- fitting -----------------------------------------------------------------------------------------------------
def level_scale(z: torch.Tensor, prior: Prior, norm_free: bool) -> torch.Tensor:
    """The norm ``(N,)`` that version-2 levels of latents ``(N, D)`` are taken against: the norm on the prior's
    byte grid, or, for a norm-free model, the latent's own norm (only its direction matters)."""
    raw = z.abs().amax(1) if prior.scaling == "max" else z.norm(dim=1)
    if norm_free:
        return raw.float()
    return torch.tensor([norm_value(norm_code(float(v), prior), prior) for v in raw], dtype=torch.float32)


def quantised_levels(z: torch.Tensor, bits: int, prior: Prior, norm_free: bool) -> torch.Tensor:
    """Nearest QSGD levels ``(N, D)`` of latents ``(N, D)`` as container v2 stores them."""
    z = z.detach().float().cpu()
    return levels_exact(z, bits, level_scale(z, prior, norm_free))


def levels_exact(z: torch.Tensor, bits: int, norm: torch.Tensor) -> torch.Tensor:
    """Nearest levels ``(N, D)`` of ``z`` ``(N, D)`` for given norms ``(N,)`` (no float16 rounding of the norm)."""
    s = levels_for_bits(bits)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm)).float()
    mag = torch.floor((z.abs() / safe[:, None] * s).clamp(max=s) + 0.5).clamp(0, s).to(torch.int64)
    return torch.where(z < 0, -mag, mag)


def integer_table(counts: np.ndarray) -> np.ndarray:
    """Counts ``(n,)`` (floats >= 0) -> integer frequencies ``(n,)``, each >= 1, summing to 2**16 (largest
    remainder, deterministic)."""
    n = counts.shape[0]
    p = counts / counts.sum()
    spare = TOTAL - n
    raw = p * spare
    f = np.floor(raw).astype(np.int64)
    short = spare - int(f.sum())
    order = np.argsort(-(raw - f), kind="stable")
    f[order[:short]] += 1
    return f + 1


NORM_HEADROOM = 3.0
"""The norm unit puts this many times the largest training norm at code 255: a typical latent's norm lands
near code 75 (a step of about 1.3%), and an encoder may store up to ~3x its norm, a coarser quantiser step,
as a rate knob finer than the bit depth (:mod:`invcomp.codecs.rate`)."""


def fit_prior(z: torch.Tensor, *, scaling: str, norm_free: bool, groups: Sequence[int] | None = None,
              smoothing: float = 0.5, bits: Sequence[int] = BITS, info: dict | None = None) -> Prior:
    """Fit tables to training latents ``z`` ``(N, D)``: per bit depth and group, the histogram of nearest levels
    plus ``smoothing`` per level (Krichevsky-Trofimov), made integer. The norm unit puts :data:`NORM_HEADROOM`
    times the largest training norm at code 255."""
    z = z.detach().float().cpu()
    n, d = z.shape
    g = np.zeros(d, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    raw = z.abs().amax(1) if scaling == "max" else z.norm(dim=1)
    unit = max(1, math.ceil(NORM_HEADROOM * float(raw.max()) / 255 * (1 << NORM_UNIT_BITS)))
    grid = Prior(scaling, g, {}, unit)  # the norm grid, before there are tables
    tables = {}
    for b in bits:
        s = levels_for_bits(b)
        lv = quantised_levels(z, b, grid, norm_free).numpy() + s
        rows = []
        for k in range(int(g.max()) + 1):
            counts = np.bincount(lv[:, g == k].ravel(), minlength=2 * s + 1).astype(np.float64) + smoothing
            rows.append(integer_table(counts))
        tables[b] = np.stack(rows)
    return Prior(scaling, g, tables, unit, {"latents": n, "smoothing": smoothing, **(info or {})})


# --- code lengths ---------------------------------------------------------------------------------------------------
def code_length_bits(levels: torch.Tensor, bits: int, prior: Prior) -> torch.Tensor:
    """Ideal code length in bits under the prior, per row of integer levels ``(N, D)`` -> ``(N,)``."""
    s = levels_for_bits(bits)
    t = torch.from_numpy(prior.tables[bits]).double()
    g = torch.from_numpy(prior.groups)
    p = t[g[None, :].expand_as(levels), levels + s] / TOTAL
    return -torch.log2(p).sum(1)


def soft_rate_bits(y: torch.Tensor, bits: int, prior: Prior) -> torch.Tensor:
    """A smooth, differentiable proxy of the code length ``(N,)`` of continuous scaled symbols ``y`` ``(N, D)``
    (levels before rounding): each group's table replaced by the discretised Gaussian of the same variance,
    -log2 p(y) = y^2 / (2 var ln 2) + log2 sqrt(2 pi var). The tables themselves are jagged where they are
    sparse (9 bits: 511 levels), and interpolating them gave the search steep, random slopes; the Gaussian's
    pull on the latent is the same at every bit depth."""
    s = levels_for_bits(bits)
    t = torch.from_numpy(prior.tables[bits]).double() / TOTAL  # (K, 2s+1)
    k = torch.arange(-s, s + 1, dtype=torch.float64)
    var = ((t * k**2).sum(1) - (t * k).sum(1) ** 2).clamp(min=1e-3)  # (K,)
    v = var[torch.from_numpy(prior.groups)].to(y.device, y.dtype)  # (D,)
    return (y**2 / (2 * v * math.log(2)) + 0.5 * torch.log2(2 * math.pi * v)).sum(1)


# --- the range coder (invcomp.coding.rangecoder, shared with every mode) ---------------------------------------------------
def _models(prior: Prior, bits: int) -> list[Any]:
    key = (id(prior), bits)
    cached = _MODEL_CACHE.get(key)
    if cached is None or cached[0] is not prior:
        if len(_MODEL_CACHE) > 64:  # long-running processes load codecs again and again
            _MODEL_CACHE.clear()
        cached = (prior, [rangecoder.fixed_model(t) for t in prior.tables[bits]])
        _MODEL_CACHE[key] = cached
    return cached[1]


_MODEL_CACHE: dict[tuple[int, int], tuple[Prior, list[Any]]] = {}


def _encode_words(idx: np.ndarray, models: list[Any], groups: np.ndarray) -> bytes:
    enc = rangecoder.Encoder()
    for k, m in enumerate(models):  # one call per table, in a fixed symbol order (grouped), for speed
        enc.fixed(idx[groups == k], m)
    return enc.words()


def _decode_words(payload: bytes, models: list[Any], groups: np.ndarray) -> np.ndarray:
    dec = rangecoder.Decoder(payload)
    out = np.zeros(groups.shape[0], dtype=np.int64)
    for k, m in enumerate(models):
        where = np.nonzero(groups == k)[0]
        out[where] = dec.fixed(m, int(where.size))
    return out


def encode_levels(levels: Sequence[int] | torch.Tensor, bits: int, prior: Prior) -> bytes:
    """Range-code one row of levels ``(D,)`` in ``-s..s``: the shortest payload that decodes back to them."""
    s = levels_for_bits(bits)
    idx = np.asarray([int(v) for v in levels], dtype=np.int64) + s
    if idx.shape[0] != prior.symbols or idx.min() < 0 or idx.max() > 2 * s:
        raise InvcompError(f"cannot code {idx.shape[0]} levels at {bits} bits with a prior of {prior.symbols} symbols")
    models = _models(prior, bits)
    return rangecoder.shortest(_encode_words(idx, models, prior.groups),
                               rangecoder.decodes_to(lambda b: _decode_words(b, models, prior.groups), idx))


def decode_levels(payload: bytes, bits: int, prior: Prior) -> list[int]:
    """The levels ``(D,)`` of a payload; refuses one that is not the canonical (shortest) coding of them."""
    if bits not in prior.tables:
        raise BitstreamError(f"invalid .ivc file: the model's prior has no tables for {bits} bits")
    s = levels_for_bits(bits)
    models = _models(prior, bits)
    try:
        idx = _decode_words(payload, models, prior.groups)
    except Exception as e:  # noqa: BLE001  (constriction's own error for data it cannot decode)
        raise BitstreamError(f"corrupt .ivc file: the payload does not decode ({type(e).__name__})") from None
    if encode_levels((idx - s).tolist(), bits, prior) != payload:
        raise BitstreamError("corrupt .ivc file: the payload is not the canonical coding of its symbols")
    return (idx - s).tolist()
