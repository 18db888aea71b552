"""A per-image colour and tone correction in 8 bytes: what the generator cannot draw about white balance,
brightness, contrast and saturation (pure functions, no model).

Each output channel ``c`` of a picture ``x`` ``(3, R, R)`` in [-1, 1] becomes
``a_c * x_c + b_c * mean_c'(x_c') + o_c``: a gain on its own channel, a share of the luma (the channel mean),
which turns saturation up or down (grayscale is ``a = 0, b = 1``), and an offset. The identity is ``a = 1,
b = 0, o = 0``. :func:`fit` finds the least-squares parameters from a generated picture to a target
(differentiable, so a search can optimise through it); :func:`pack` stores them on a fixed grid:

=======  =====  ==============  ======================
field    bits   range           step
=======  =====  ==============  ======================
a_c      7      [-1, 3)         1/32
b_c      7      [-2, 2)         1/32
o_c      6      [-1, 1)         1/32
=======  =====  ==============  ======================

in the order a_R b_R o_R a_G b_G o_G a_B b_B o_B, 60 bits, most significant bit first, then 4 zero bits: 8 bytes.
The identity is on the grid exactly.
"""
from __future__ import annotations

import torch

from invcomp.errors import BitstreamError

BYTES = 8
_FIELDS = ((7, -1.0), (7, -2.0), (6, -1.0))  # (bits, lowest value) of a, b, o; the step is 1/32 for each
STEP = 1.0 / 32
IDENTITY = torch.tensor([[1.0, 0.0, 0.0]] * 3)
RIDGE = 1e-4  # pulls an ill-posed fit (a flat picture) towards the identity


def _design(x: torch.Tensor) -> torch.Tensor:
    """``(N, 3, R, R)`` -> per channel the regressors ``(N, 3, P, 3)``: own channel, luma, one."""
    n = x.shape[0]
    flat = x.reshape(n, 3, -1)
    luma = flat.mean(1, keepdim=True).expand_as(flat)
    return torch.stack([flat, luma, torch.ones_like(flat)], dim=-1)


def fit(x: torch.Tensor, target: torch.Tensor, ridge: float = RIDGE) -> torch.Tensor:
    """Least-squares parameters ``(N, 3, 3)`` (per channel: a, b, o) that take ``x`` towards ``target``, both
    ``(N, 3, R, R)``; ridge-regularised towards the identity. Differentiable in ``x``."""
    A = _design(x)  # (N, 3, P, 3)
    y = target.reshape(target.shape[0], 3, -1, 1).to(A.dtype)
    p = A.shape[2]
    eye = torch.eye(3, dtype=A.dtype, device=A.device)
    lhs = A.transpose(-1, -2) @ A / p + ridge * eye
    rhs = A.transpose(-1, -2) @ y / p + ridge * IDENTITY.to(A)[None, :, :, None]
    return torch.linalg.solve(lhs, rhs).squeeze(-1)


CONTRASTS = (1.1, 1.2, 1.35, 1.5)  # the gains of :func:`variants` beyond the least-squares fit's


def variants(x: torch.Tensor, params: torch.Tensor) -> list[torch.Tensor]:
    """The records an encoder may choose from for picture ``x`` ``(3, R, R)`` and its least-squares ``params``
    ``(3, 3)``: the identity, the fit itself, and the fit with its gains (a, b) scaled by each of
    :data:`CONTRASTS`, offsets moved to keep each channel's mean. A least-squares gain shrinks towards the mean
    when the two pictures disagree in structure, which lowers contrast, and so SSIM, while it raises PSNR; the
    scaled ones give some of that contrast back."""
    mean = x.reshape(3, -1).mean(1)
    luma = mean.mean()
    out = [IDENTITY.clone(), params]
    for s in CONTRASTS:
        q = params.clone()
        q[:, :2] *= s
        q[:, 2] = params[:, 2] + (params[:, 0] - q[:, 0]) * mean + (params[:, 1] - q[:, 1]) * luma
        out.append(q)
    return out


def apply(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Correct pictures ``x`` ``(N, 3, R, R)`` with ``params`` ``(N, 3, 3)``; clamped to [-1, 1]."""
    A = _design(x)
    out = (A @ params.to(A)[..., None]).squeeze(-1)
    return out.reshape(x.shape).clamp(-1, 1)


def matched(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``x`` corrected by the parameters that best match ``target``: what a search scores (differentiable)."""
    return apply(x, fit(x, target))


def quantise(params: torch.Tensor) -> torch.Tensor:
    """Parameters ``(..., 3, 3)`` -> integer codes on the grid ``(..., 3, 3)`` (clamped to each field's range)."""
    codes = []
    for j, (bits, low) in enumerate(_FIELDS):
        codes.append(torch.round((params[..., j] - low) / STEP).clamp(0, 2 ** bits - 1))
    return torch.stack(codes, -1).to(torch.int64)


def dequantise(codes: torch.Tensor) -> torch.Tensor:
    """Integer codes ``(..., 3, 3)`` -> parameters."""
    lows = torch.tensor([low for _, low in _FIELDS])
    return codes.float() * STEP + lows


def pack(params: torch.Tensor) -> bytes:
    """One picture's parameters ``(3, 3)`` -> 8 bytes (quantised on the grid)."""
    codes = quantise(params.detach().float().cpu())
    value, used = 0, 0
    for c in range(3):
        for j, (bits, _) in enumerate(_FIELDS):
            value = (value << bits) | int(codes[c, j])
            used += bits
    return (value << (8 * BYTES - used)).to_bytes(BYTES, "big")


def unpack(data: bytes) -> torch.Tensor:
    """8 bytes -> parameters ``(3, 3)``; raises :class:`BitstreamError` on a wrong length or nonzero padding."""
    if len(data) != BYTES:
        raise BitstreamError(f"truncated .ivc file: the tone record needs {BYTES} bytes, got {len(data)}")
    value = int.from_bytes(data, "big")
    spare = 8 * BYTES - sum(b for b, _ in _FIELDS) * 3
    if value & ((1 << spare) - 1):
        raise BitstreamError("invalid .ivc field: the tone record's padding bits are not zero")
    value >>= spare
    codes = torch.zeros(3, 3, dtype=torch.int64)
    for c in reversed(range(3)):
        for j in reversed(range(3)):
            bits = _FIELDS[j][0]
            codes[c, j] = value & ((1 << bits) - 1)
            value >>= bits
    return dequantise(codes)
