"""Inversion losses: 1-SSIM, 1-MS-SSIM, MSE, LPIPS and weighted mixes.

A loss maps ``(x, target)`` both ``(N, 3, H, W)`` in [-1, 1] to a per-image
loss ``(N,)``; per-image values let a batch of images and restarts be
optimised together without interacting.

A loss is named by a spec string: ``ssim`` (the default), ``ms-ssim``,
``mse``, ``lpips``, or a weighted sum such as ``0.8*ssim+0.2*mse``.
"""
from __future__ import annotations

import re
from typing import Callable

import torch

from invcomp import metrics
from invcomp.errors import InvcompError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BASE: dict[str, LossFn] = {
    "ssim": lambda x, y: 1.0 - metrics.ssim(x, y),
    "ms-ssim": lambda x, y: 1.0 - metrics.ms_ssim(x, y),
    "mse": metrics.mse,
    "lpips": metrics.lpips_distance,
}

_TERM = re.compile(r"^\s*(?:(\d+(?:\.\d*)?|\.\d+)\s*\*\s*)?([a-z\-]+)\s*$")


def parse_loss(spec: str) -> list[tuple[float, str]]:
    """Parse ``"0.8*ssim+0.2*mse"`` into ``[(0.8, "ssim"), (0.2, "mse")]``; raises :class:`InvcompError`."""
    terms = []
    for part in spec.lower().split("+"):
        m = _TERM.match(part)
        if not m or m.group(2) not in BASE:
            raise InvcompError(f"unknown loss {part.strip()!r} in {spec!r}; use {', '.join(BASE)} or a mix like 0.8*ssim+0.2*mse")
        w = float(m.group(1)) if m.group(1) else 1.0
        if w <= 0:
            raise InvcompError(f"loss weight must be positive in {spec!r}")
        terms.append((w, m.group(2)))
    return terms


def make_loss(spec: str = "ssim") -> LossFn:
    """Build a per-image loss function from a spec. LPIPS is loaded here, so unavailability fails early."""
    terms = parse_loss(spec)
    if any(name == "lpips" for _, name in terms):
        metrics.get_lpips("cpu")

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return sum(w * BASE[name](x, y) for w, name in terms)  # type: ignore[return-value]

    return loss
