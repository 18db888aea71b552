"""Training augmentation for what users send that aligned crops are not: zoomed out, shifted, recoloured,
relit and grayscale faces (a pure function of a batch and a torch generator).

Each image of a batch is augmented with probability ``p`` (the rest stay as they are, so the training
distribution is still covered). An augmented image gets, each drawn independently:

- a zoom-out by 1-1.6x and a shift of up to 6% of the side (the frame beyond the picture is its edge, stretched);
- per-channel gains of 0.75-1.25 and a saturation of 0.4-1.6;
- a directional light: a gain ramp from 0.55-1 to 1-1.3 across a random direction;
- grayscale, with probability 0.15.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def augment(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Augment images ``(N, 3, R, R)`` in [-1, 1]; returns a new batch of the same shape."""
    if p <= 0:
        return x
    n, dev = x.shape[0], x.device
    on = torch.rand(n, generator=gen, device=dev) < p
    # geometry: output pixel u samples input at zoom * u + shift (normalised coordinates), border-padded
    zoom = torch.where(on, _uniform(n, 1.0, 1.6, gen, dev), torch.ones(n, device=dev))
    shift = torch.where(on[:, None], _uniform(2 * n, -0.12, 0.12, gen, dev).view(n, 2), torch.zeros(n, 2, device=dev))
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = zoom, zoom, shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = (y + 1) / 2  # [0, 1]
    gains = torch.where(on[:, None], _uniform(3 * n, 0.75, 1.25, gen, dev).view(n, 3), torch.ones(n, 3, device=dev))
    y = y * gains[:, :, None, None]
    sat = torch.where(on, _uniform(n, 0.4, 1.6, gen, dev), torch.ones(n, device=dev))
    gray_draw = torch.rand(n, generator=gen, device=dev) < 0.15
    sat = torch.where(on & gray_draw, torch.zeros(n, device=dev), sat)
    luma = y.mean(1, keepdim=True)
    y = luma + (y - luma) * sat[:, None, None, None]
    r = x.shape[-1]
    angle = _uniform(n, 0, 2 * math.pi, gen, dev)
    lo, hi = _uniform(n, 0.55, 1.0, gen, dev), _uniform(n, 1.0, 1.3, gen, dev)
    coords = (torch.arange(r, device=dev, dtype=x.dtype) + 0.5) / r - 0.5
    t = (coords[None, None, :] * torch.cos(angle)[:, None, None] + coords[None, :, None] * torch.sin(angle)[:, None, None])
    t = (t / math.sqrt(0.5) + 0.5).clamp(0, 1)
    ramp = lo[:, None, None] + (hi - lo)[:, None, None] * t
    ramp = torch.where(on[:, None, None], ramp, torch.ones_like(ramp))
    y = (y * ramp[:, None]).clamp(0, 1)
    return y * 2 - 1
