"""The layers of CompressAI's transforms that invcomp's networks use, without CompressAI: GDN (Ballé et al. 2016) with
its non-negative reparametrisation, and the 5x5 stride-2 convolutions of its models. Their parameters and buffers
have CompressAI's names, so a state_dict of either loads into the other, and they compute the same floats
(``tests/test_rans.py`` checks a residual network built both ways). Decoding a residual or detail layer then needs
no CompressAI; training still uses its entropy model for the likelihoods."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _LowerBoundFn(torch.autograd.Function):
    """``max(x, bound)``, whose gradient passes where ``x`` is at or above the bound or the gradient pushes it up."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        x, bound = ctx.saved_tensors
        return ((x >= bound) | (grad < 0)) * grad, None


class LowerBound(nn.Module):
    """``max(x, bound)`` with the pass-through gradient of :class:`_LowerBoundFn`; buffer ``bound`` ``(1,)``."""

    bound: torch.Tensor

    def __init__(self, bound: float) -> None:
        super().__init__()
        self.register_buffer("bound", torch.Tensor([float(bound)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LowerBoundFn.apply(x, self.bound)


class NonNegative(nn.Module):
    """A parameter ``p`` stands for ``max(p, sqrt(minimum + offset^2))^2 - offset^2`` (``offset`` = 2^-18)."""

    pedestal: torch.Tensor

    def __init__(self, minimum: float = 0.0, offset: float = 2 ** -18) -> None:
        super().__init__()
        self.register_buffer("pedestal", torch.Tensor([offset ** 2]))
        self.lower_bound = LowerBound((minimum + offset ** 2) ** 0.5)

    def init(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.max(x + self.pedestal, self.pedestal))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lower_bound(x) ** 2 - self.pedestal


class GDN(nn.Module):
    """Generalised divisive normalisation of ``(N, C, H, W)``: ``x / sqrt(beta + gamma * x^2)`` over channels (``inverse``:
    times the square root, IGDN)."""

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1) -> None:
        super().__init__()
        self.inverse = inverse
        self.beta_reparam = NonNegative(minimum=beta_min)
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(channels)))
        self.gamma_reparam = NonNegative()
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(channels)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        norm = F.conv2d(x ** 2, self.gamma_reparam(self.gamma).reshape(c, c, 1, 1), self.beta_reparam(self.beta))
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


def conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    """A ``kernel`` x ``kernel`` convolution that divides the size by ``stride``."""
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    """The transposed convolution that multiplies the size by ``stride``."""
    return nn.ConvTranspose2d(cin, cout, kernel, stride=stride, output_padding=stride - 1, padding=kernel // 2)
