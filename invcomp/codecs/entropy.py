"""The entropy stage, written once for every mode: quantise, code, pack; and back: unpack, check, dequantise.

A mode hands over float symbols ``(N, D)`` (a latent, a flattened code map, ...); this stage QSGD-quantises
each row on its own (so a row's levels never depend on the others in its batch), Elias-codes the levels and
packs them with the header into ``.ivc`` bytes (:mod:`invcomp.bitstream`). Decoding parses the container,
checks the header against the codec that is to decode it (mode, model id, symbol count, resolution, norm),
and returns the dequantised symbols. Pure: no file I/O, no model.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Protocol

import torch

from .. import bitstream, elias
from ..errors import BitstreamError, UnknownModelError
from ..quantize import QuantizedLatent, dequantize, levels_for_bits, quantize
from .settings import EncodeSettings
from .table import mode_name


class CodecLike(Protocol):
    """What the entropy stage reads of a codec (:class:`invcomp.codecs.base.Codec` has all of it)."""

    name: str
    mode: int
    model_id: bytes
    resolution: int
    latent_dim: int
    prior: str
    norm_free: bool
    settings: EncodeSettings

def norm_free_norm(latent_dim: int) -> float:
    """The norm used for norm-free latents (not stored): sqrt(D), the typical norm of N(0, I)."""
    return math.sqrt(latent_dim)


def quantise_rows(z: torch.Tensor, settings: EncodeSettings, *, norm_free: bool = False) -> QuantizedLatent:
    """QSGD-quantise float symbols ``(N, D)`` row by row (stochastic rounding seeded per row, so a row's levels
    do not depend on its batch). For a norm-free model both sides use the fixed norm :func:`norm_free_norm`."""
    z = z.detach().float().cpu()
    rows = [quantize(z[i:i + 1], settings.bits, scaling=settings.scaling, rounding=settings.rounding,  # type: ignore[arg-type]
                     seed=settings.seed) for i in range(z.shape[0])]
    q = replace(rows[0], levels=torch.cat([r.levels for r in rows]), norm=torch.cat([r.norm for r in rows]))
    if norm_free:
        q = replace(q, norm=torch.full_like(q.norm, norm_free_norm(z.shape[1])))
    return q


def pack_rows(codec: CodecLike, q: QuantizedLatent, sizes: list[tuple[int, int]]) -> list[tuple[bytes, bitstream.Header]]:
    """``.ivc`` bytes and header for each row of ``q`` ``(N, D)``; ``sizes`` are the originals' (width, height)."""
    s = codec.settings
    out = []
    for i, (width, height) in enumerate(sizes):
        levels = [int(v) for v in q.levels[i]]
        coder = elias.best_coder(levels) if s.coder == "auto" else s.coder
        payload, nbits = elias.encode_levels(levels, coder)
        header = bitstream.Header(
            model_id=codec.model_id, latent_dim=codec.latent_dim, resolution=codec.resolution, width=width,
            height=height, bits=s.bits, coder=coder, norm=None if codec.norm_free else float(q.norm[i]),  # type: ignore[arg-type]
            scaling=s.scaling, rounding=s.rounding, prior=codec.prior, fit=s.fit, mode=codec.mode,  # type: ignore[arg-type]
        )
        out.append((bitstream.pack(header, payload, nbits), header))
    return out


def parse(data: bytes) -> tuple[bitstream.Header, QuantizedLatent]:
    """``.ivc`` bytes -> header and quantised symbols ``(1, D)``; raises :class:`BitstreamError`.

    A norm-free file (``header.norm is None``) gets :func:`norm_free_norm`.
    """
    header, payload, nbits = bitstream.unpack(data)
    levels = elias.decode_levels(payload, nbits, header.latent_dim, header.coder, levels_for_bits(header.bits))
    norm = norm_free_norm(header.latent_dim) if header.norm is None else header.norm
    q = QuantizedLatent(levels=torch.tensor([levels], dtype=torch.int64), norm=torch.tensor([norm]),
                        bits=header.bits, scaling=header.scaling, rounding=header.rounding)
    return header, q


def check(header: bitstream.Header, codec: CodecLike) -> None:
    """Refuse a file that ``codec`` did not write: another mode, model id, symbol count, resolution or norm."""
    if header.mode != codec.mode:
        raise BitstreamError(f"this is a {mode_name(header.mode)} file, not {mode_name(codec.mode)}: model "
                             f"{codec.name!r} cannot decode it; decode it with the model its header names")
    if header.model_id != codec.model_id:
        raise UnknownModelError(f"bitstream needs model id {header.model_id.hex()}, but {codec.name!r} has id "
                                f"{codec.model_id.hex()}; see `invcomp models`")
    if header.latent_dim != codec.latent_dim:
        raise BitstreamError(f"bitstream holds {header.latent_dim} symbols, but {codec.name!r} codes {codec.latent_dim}")
    if header.resolution != codec.resolution:
        raise BitstreamError(f"bitstream resolution {header.resolution} does not match {codec.name!r} ({codec.resolution})")
    if header.norm is None and not codec.norm_free:
        raise BitstreamError(f"bitstream stores no norm, but model {codec.name!r} is not norm-free")

def read(data: bytes, codec: CodecLike) -> tuple[bitstream.Header, torch.Tensor]:
    """``.ivc`` bytes -> header and dequantised symbols ``(1, D)``, checked against ``codec``."""
    header, q = parse(data)
    check(header, codec)
    return header, dequantize(q)

