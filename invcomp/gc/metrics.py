"""A proxy for blur: the high-frequency energy of a reconstruction against the original's (pure).

Agustsson et al.'s claim (viewers prefer GC to BPG at twice the bits) needs a user study or an FID network,
neither available here. What can be measured is whether a codec keeps texture or smooths it away:
:func:`hf_ratio` is the energy of the Laplacian-of-Gaussian band (the image minus its Gaussian blur, sigma 1.5)
of the reconstruction over the original's. 1 keeps as much fine detail as the original (not necessarily the
same detail), below 1 is blurred, above 1 adds energy (noise, ringing, synthesised texture).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIGMA = 1.5


def _blur(x: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    r = int(3 * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """The detail band of ``(N, C, H, W)``: ``x - blur(x)``, same shape."""
    return x - _blur(x)


def hf_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean squared detail band per image ``(N,)`` of ``(N, C, H, W)`` in [-1, 1]."""
    return high_pass(x.float()).pow(2).flatten(1).mean(1)


def hf_ratio(recon: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """High-frequency energy of ``recon`` over that of ``original`` per image ``(N,)``; both ``(N, 3, H, W)``."""
    if recon.shape != original.shape:
        raise ValueError(f"expected equal shapes, got {tuple(recon.shape)} and {tuple(original.shape)}")
    return hf_energy(recon) / hf_energy(original).clamp(min=1e-12)
