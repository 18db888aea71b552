"""The entropy stage, written once for every mode: quantise, code, pack; and back: unpack, check, dequantise.

A mode hands over float symbols ``(N, D)`` (a latent, a flattened code map, ...); this stage QSGD-quantises
each row on its own (so a row's levels never depend on the others in its batch), codes the levels and packs
them with the header into ``.ivc`` bytes (:mod:`invcomp.formats.ivc`): range-coded under the model's prior in
a version-2 file (:mod:`invcomp.coding.tables`) where the model ships one, else Elias-coded in a version-1 file. Decoding parses the container,
checks the header against the codec that is to decode it (mode, model id, symbol count, resolution, norm),
and returns the dequantised symbols. Pure: no file I/O, no model.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional, Protocol

import torch

from invcomp.formats import ivc as bitstream
from invcomp.coding import elias
from invcomp.coding import tables as priors
from invcomp.errors import BitstreamError, InvcompError, UnknownModelError
from invcomp.coding.quantize import QuantizedLatent, dequantize, levels_for_bits, quantize
from invcomp.codecs.settings import EncodeSettings
from invcomp.codecs.registry import MODES, mode_name


class CodecLike(Protocol):
    """What the entropy stage reads of a codec (:class:`invcomp.codecs.base.Codec` has all of it)."""

    name: str
    model_id: bytes
    resolution: int
    latent_dim: int
    prior: str
    norm_free: bool
    settings: EncodeSettings
    tables: Optional[priors.Prior]
    model_id_v2: Optional[bytes]

    @property
    def mode(self) -> int: ...  # a class attribute of each mode


def container(codec: CodecLike) -> int:
    """The format version ``codec`` writes: 2 where its model ships a prior that covers its bits and scaling
    and the coder is ``auto`` or ``prior``; else 1 (``prior`` then is an error)."""
    s, p = codec.settings, codec.tables
    fits = p is not None and p.covers(s.bits, s.scaling)  # type: ignore[arg-type]
    if s.coder == "prior" and not fits:
        why = "ships no prior" if p is None else (f"has prior tables for {p.scaling} scaling at "
                                                  f"{min(p.tables)}..{max(p.tables)} bits only")
        raise InvcompError(f"coder 'prior': model {codec.name!r} {why}; use --coder auto or an Elias code")
    return 2 if fits and s.coder in ("auto", "prior") else 1

def norm_free_norm(latent_dim: int) -> float:
    """The norm used for norm-free latents (not stored): sqrt(D), the typical norm of N(0, I)."""
    return math.sqrt(latent_dim)


def quantise_rows(z: torch.Tensor, settings: EncodeSettings, *, norm_free: bool = False,
                  prior: Optional[priors.Prior] = None) -> QuantizedLatent:
    """QSGD-quantise float symbols ``(N, D)`` row by row (stochastic rounding seeded per row, so a row's levels
    do not depend on its batch). For a norm-free model both sides use the fixed norm :func:`norm_free_norm`.
    With ``prior`` (a version-2 file) the norm is first put on the prior's one-byte grid, and the levels are
    taken against that stored norm."""
    z = z.detach().float().cpu()
    if prior is not None:
        return _quantise_v2(z, settings, norm_free, prior)
    rows = [quantize(z[i:i + 1], settings.bits, scaling=settings.scaling, rounding=settings.rounding,  # type: ignore[arg-type]
                     seed=settings.seed) for i in range(z.shape[0])]
    q = replace(rows[0], levels=torch.cat([r.levels for r in rows]), norm=torch.cat([r.norm for r in rows]))
    if norm_free:
        q = replace(q, norm=torch.full_like(q.norm, norm_free_norm(z.shape[1])))
    return q


def _quantise_v2(z: torch.Tensor, s: EncodeSettings, norm_free: bool, prior: priors.Prior) -> QuantizedLatent:
    n, d = z.shape
    if not torch.isfinite(z).all():
        raise InvcompError("latent contains NaN or infinity")
    scale = priors.level_scale(z, prior, norm_free)
    # norm-free: the levels are of the direction (G(cz) = G(z)); both sides dequantise with sqrt(D)
    norm = torch.full((n,), norm_free_norm(d)) if norm_free else scale
    if s.rounding == "nearest":
        levels = priors.levels_exact(z, s.bits, scale)  # type: ignore[arg-type]
    else:  # QSGD's unbiased rule against the stored norm, seeded per row
        k = levels_for_bits(s.bits)  # type: ignore[arg-type]
        r = (z.abs() / scale.clamp(min=1e-12)[:, None] * k).clamp(max=k)
        u = torch.cat([torch.rand(1, d, generator=torch.Generator().manual_seed(s.seed)) for _ in range(n)])
        mag = torch.floor(r + u).clamp(0, k).to(torch.int64)
        levels = torch.where(z < 0, -mag, mag)
    return QuantizedLatent(levels=levels, norm=norm.float(), bits=s.bits, scaling=s.scaling, rounding=s.rounding)  # type: ignore[arg-type]


def side_bytes(codec: Optional[CodecLike], mode: int) -> int:
    """The length of the side record that files of ``mode`` carry (the codec's, else the mode table's)."""
    if codec is not None:
        return int(getattr(codec, "side_bytes", 0))
    return int(getattr(MODES.get(mode), "side_bytes", 0))


def pack_rows(codec: CodecLike, q: QuantizedLatent, sizes: list[tuple[int, int]],
              sides: Optional[list[bytes]] = None) -> list[tuple[bytes, bitstream.Header]]:
    """``.ivc`` bytes and header for each row of ``q`` ``(N, D)``; ``sizes`` are the originals' (width, height);
    ``sides`` the rows' side records (each :attr:`side_bytes` long; ``None``: zeros, for sizing a file).

    The side record comes first in the payload: after the norm byte in version 2, as the first whole bytes of
    the Elias payload in version 1."""
    s, n_side = codec.settings, side_bytes(codec, codec.mode)
    sides = sides if sides is not None else [bytes(n_side)] * len(sizes)
    if any(len(side) != n_side for side in sides):
        raise ValueError(f"{codec.name!r} writes {n_side}-byte side records")
    if container(codec) == 2:
        return [_pack_v2(codec, q.levels[i], float(q.norm[i]), w, h, sides[i]) for i, (w, h) in enumerate(sizes)]
    out = []
    for i, (width, height) in enumerate(sizes):
        levels = [int(v) for v in q.levels[i]]
        coder = elias.best_coder(levels) if s.coder in ("auto", "elias") else s.coder
        payload, nbits = elias.encode_levels(levels, coder)
        payload, nbits = sides[i] + payload, nbits + 8 * n_side
        header = bitstream.Header(
            model_id=codec.model_id, latent_dim=codec.latent_dim, resolution=codec.resolution, width=width,
            height=height, bits=s.bits, coder=coder, norm=None if codec.norm_free else float(q.norm[i]),  # type: ignore[arg-type]
            scaling=s.scaling, rounding=s.rounding, prior=codec.prior, fit=s.fit, mode=codec.mode,  # type: ignore[arg-type]
        )
        out.append((bitstream.pack(header, payload, nbits), header))
    return out


def _pack_v2(codec: CodecLike, levels: torch.Tensor, norm: float, width: int, height: int,
             side: bytes = b"") -> tuple[bytes, bitstream.Header]:
    s, p = codec.settings, codec.tables
    assert p is not None and codec.model_id_v2 is not None
    code = None if codec.norm_free else priors.norm_code(norm, p)
    header = bitstream.Header(
        model_id=codec.model_id_v2, latent_dim=codec.latent_dim, resolution=codec.resolution, width=width,
        height=height, bits=s.bits, coder="prior", norm=None if code is None else priors.norm_value(code, p),  # type: ignore[arg-type]
        scaling=p.scaling, rounding=s.rounding, prior=codec.prior, fit=s.fit, mode=codec.mode, version=2,
    )
    payload = side + priors.encode_levels(levels, s.bits, p)  # type: ignore[arg-type]
    return bitstream.pack_v2(header, code, payload), header


def parse(data: bytes, codec: Optional[CodecLike] = None) -> tuple[bitstream.Header, QuantizedLatent]:
    """``.ivc`` bytes -> header and quantised symbols ``(1, D)``; raises :class:`BitstreamError`.

    A norm-free file (``header.norm is None``) gets :func:`norm_free_norm`. A version-2 file needs the
    ``codec`` that is to decode it (its prior, symbol count and norm-freeness); it is checked against it first.
    """
    header, q, _ = parse_with_side(data, codec)
    return header, q


def parse_with_side(data: bytes, codec: Optional[CodecLike] = None) -> tuple[bitstream.Header, QuantizedLatent, bytes]:
    """:func:`parse`, and the file's side record (``b""`` for a mode without one)."""
    header, payload, nbits = bitstream.unpack(data)
    n_side = side_bytes(codec, header.mode)
    if header.version == 2:
        if codec is None:
            return header, QuantizedLatent(torch.zeros(1, 0, dtype=torch.int64), torch.ones(1), header.bits, "l2", "nearest"), b""
        return _parse_v2(header, payload, codec, n_side)
    if nbits < 8 * n_side:
        raise BitstreamError(f"truncated .ivc file: the payload ends inside its {n_side}-byte side record")
    side, payload, nbits = payload[:n_side], payload[n_side:], nbits - 8 * n_side
    levels = elias.decode_levels(payload, nbits, header.latent_dim, header.coder, levels_for_bits(header.bits))
    norm = norm_free_norm(header.latent_dim) if header.norm is None else header.norm
    q = QuantizedLatent(levels=torch.tensor([levels], dtype=torch.int64), norm=torch.tensor([norm]),
                        bits=header.bits, scaling=header.scaling, rounding=header.rounding)
    return header, q, side


def _parse_v2(header: bitstream.Header, rest: bytes, codec: CodecLike,
              n_side: int = 0) -> tuple[bitstream.Header, QuantizedLatent, bytes]:
    check_mode(header, codec)
    p = codec.tables
    if p is None or header.model_id != codec.model_id_v2:
        have = (f"id {codec.model_id_v2.hex()}" if codec.model_id_v2 else
                f"no version-2 id (it ships no prior; its version-1 id is {codec.model_id.hex()})")
        raise UnknownModelError(f"bitstream needs model id {header.model_id.hex()} (version 2), but {codec.name!r} has "
                                f"{have}; see `invcomp models`")
    if codec.norm_free:
        norm = norm_free_norm(codec.latent_dim)
    else:
        if not rest:
            raise BitstreamError("truncated .ivc file: ends inside the norm field")
        if rest[0] == 0:
            raise BitstreamError("invalid .ivc field: norm code 0 (1..255)")
        norm = priors.norm_value(rest[0], p)
        rest = rest[1:]
    if len(rest) < n_side:
        raise BitstreamError(f"truncated .ivc file: ends inside its {n_side}-byte side record")
    side, rest = rest[:n_side], rest[n_side:]
    levels = priors.decode_levels(rest, header.bits, p)
    header = replace(header, latent_dim=codec.latent_dim, resolution=codec.resolution, scaling=p.scaling,
                     norm=None if codec.norm_free else norm, prior=codec.prior)
    q = QuantizedLatent(levels=torch.tensor([levels], dtype=torch.int64), norm=torch.tensor([norm], dtype=torch.float32),
                        bits=header.bits, scaling=p.scaling, rounding="nearest")
    return header, q, side


def check_mode(header: bitstream.Header, codec: CodecLike) -> None:
    if header.mode != codec.mode:
        raise BitstreamError(f"this is a {mode_name(header.mode)} file, not {mode_name(codec.mode)}: model "
                             f"{codec.name!r} cannot decode it; decode it with the model its header names")


def check(header: bitstream.Header, codec: CodecLike) -> None:
    """Refuse a file that ``codec`` did not write: another mode, model id, symbol count, resolution or norm."""
    if header.version == 2:
        return  # checked while parsing (the payload cannot be read without the right model)
    check_mode(header, codec)
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
    header, z, _ = read_with_side(data, codec)
    return header, z


def read_with_side(data: bytes, codec: CodecLike) -> tuple[bitstream.Header, torch.Tensor, bytes]:
    """:func:`read`, and the file's side record (``b""`` for a mode without one)."""
    header, q, side = parse_with_side(data, codec)
    check(header, codec)
    return header, dequantize(q), side

