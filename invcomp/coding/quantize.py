"""QSGD-style latent quantisation (pure functions).

A latent z ``(N, D)`` is stored as one norm per row plus a signed level per
coordinate: ``q_i = sign(z_i) * round(s * |z_i| / norm)`` with
``s = 2**(bits-1) - 1`` levels, so that a fixed-length code of ``bits``
bits (one sign bit plus ``bits-1`` magnitude bits) could hold each
coordinate. Dequantisation is ``z_i = q_i * norm / s``.

Scalings:
- ``max``: norm = max |z_i|. The largest coordinate lands on level s (or
  just below it at high bit depths, since the stored norm is rounded up to
  float16) and every level is used.
- ``l2``: norm = ||z||_2, as in the QSGD paper. For a 100-d Gaussian,
  |z_i| / ||z|| is about 0.08, so at 4 bits (s = 7) most coordinates round
  to 0; this is cheap to code but coarse.

The norm is stored as IEEE float16, rounded *up* (so |z_i| <= norm and no
level exceeds s). :func:`quantize` returns that stored norm, so encoder and
decoder dequantise identically. Nearest rounding bounds the error per
coordinate by ``norm / (2 s)``; stochastic rounding (QSGD's unbiased rule,
seeded) by ``norm / s``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch

from invcomp.errors import InvcompError

Scaling = Literal["max", "l2"]
Rounding = Literal["nearest", "stochastic"]
SCALINGS: tuple[str, ...] = ("max", "l2")
ROUNDINGS: tuple[str, ...] = ("nearest", "stochastic")
MIN_BITS, MAX_BITS = 2, 16
FP16_MAX = 65504.0


def levels_for_bits(bits: int) -> int:
    """The number of positive levels s for a bit depth (sign included): ``2**(bits-1) - 1``."""
    if not MIN_BITS <= bits <= MAX_BITS:
        raise InvcompError(f"bits must be between {MIN_BITS} and {MAX_BITS}, got {bits}")
    return 2 ** (bits - 1) - 1


@dataclass(frozen=True)
class QuantizedLatent:
    """Integer levels ``(N, D)`` (int64, in [-s, s]), stored norms ``(N,)`` (float16-exact float32)."""

    levels: torch.Tensor
    norm: torch.Tensor
    bits: int
    scaling: str
    rounding: str


def fp16_ceil(x: torch.Tensor) -> torch.Tensor:
    """Smallest float16 value >= x, elementwise, as float32 ``(same shape)``; x must be in [0, 65504]."""
    x = x.detach().float().cpu()
    if not torch.isfinite(x).all() or (x < 0).any() or (x > FP16_MAX).any():
        raise InvcompError(f"latent norm {x.max().item():.4g} is outside the storable range [0, {FP16_MAX}]")
    h = x.numpy().astype(np.float16)
    low = h.astype(np.float32) < x.numpy()
    h[low] = np.nextafter(h[low], np.float16(np.inf))
    return torch.from_numpy(h.astype(np.float32))


def quantize(
    z: torch.Tensor,
    bits: int,
    *,
    scaling: str = "max",
    rounding: str = "nearest",
    seed: Optional[int] = None,
    norm: Optional[torch.Tensor] = None,
) -> QuantizedLatent:
    """Quantise latents ``(N, D)``. ``norm`` ``(N,)`` overrides the computed one (norm-free generators)."""
    if z.dim() != 2:
        raise ValueError(f"expected latents of shape (N, D), got {tuple(z.shape)}")
    if scaling not in SCALINGS:
        raise InvcompError(f"unknown scaling {scaling!r}; use one of {SCALINGS}")
    if rounding not in ROUNDINGS:
        raise InvcompError(f"unknown rounding {rounding!r}; use one of {ROUNDINGS}")
    s = levels_for_bits(bits)
    z = z.detach().float().cpu()
    if not torch.isfinite(z).all():
        raise InvcompError("latent contains NaN or infinity")
    if norm is None:
        norm = z.abs().amax(1) if scaling == "max" else z.norm(dim=1)
    norm = fp16_ceil(norm)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    r = (z.abs() / safe[:, None] * s).clamp(max=s)
    if rounding == "nearest":
        mag = torch.floor(r + 0.5)
    else:
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        mag = torch.floor(r + torch.rand(r.shape, generator=g))
    mag = mag.clamp(0, s).to(torch.int64)
    mag[norm == 0] = 0
    levels = torch.where(z < 0, -mag, mag)
    return QuantizedLatent(levels=levels, norm=norm, bits=bits, scaling=scaling, rounding=rounding)


def dequantize(q: QuantizedLatent) -> torch.Tensor:
    """Levels back to latents ``(N, D)`` float32."""
    s = levels_for_bits(q.bits)
    return q.levels.float() * (q.norm[:, None] / s)


def fake_quantize(z: torch.Tensor, bits: int, *, scaling: str = "max") -> torch.Tensor:
    """Nearest quantise-dequantise with a straight-through gradient; ``(N, D)`` -> ``(N, D)`` on z's device."""
    zq = dequantize(quantize(z, bits, scaling=scaling)).to(z.device, z.dtype)
    return z + (zq - z).detach()
