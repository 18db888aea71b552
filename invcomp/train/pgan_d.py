"""The progressive-GAN critic (pytorch_GAN_zoo's ``DNet``) and the WGAN-GP penalty it is trained with.

The discriminator is built at the final resolution and run at any scale ``s`` (image side ``4 * 2**s``):

1. ``fromRGBLayers[s]`` (equalised 1x1, ``channels -> depths[s]``), LeakyReLU(0.2);
2. for ``k = s .. 1``: ``scaleLayers[k - 1]`` = two equalised 3x3 convs (``depths[k] -> depths[k]``,
   ``depths[k] -> depths[k - 1]``), each followed by LeakyReLU, then a 2x average pool. During a fade
   (``alpha > 0``) the output of the first pool is blended with the low branch
   ``fromRGBLayers[s - 1](avg_pool(x))``: ``alpha * low + (1 - alpha) * high``;
3. scale 0: minibatch standard deviation (one extra channel), an equalised 3x3 conv
   (``depths[0] + 1 -> depths[0]``), LeakyReLU, flatten, an equalised linear ``16 * depths[0] -> depths[0]``,
   LeakyReLU, and the equalised decision linear ``depths[0] -> 1``.

Parameter names follow their layout (``fromRGBLayers.0.module.weight``, ``groupScaleZero.1.module.bias``,
``decisionLayer.module.weight``). :func:`gradient_penalty` is the WGAN-GP term of Gulrajani et al.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from invcomp.nets.generators.pgan import Equalized


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append one channel to ``x`` ``(N, C, H, W)``: the mean over (C, H, W) of the per-feature standard deviation
    across a group of samples, giving ``(N, C + 1, H, W)``.

    As their ``miniBatchStdDev``: the batch is split into ``N // G`` groups of ``G = min(group_size, N)`` samples
    (``G = N`` when ``N`` is not a multiple), the std is ``sqrt(unbiased var + 1e-8)``, and a batch of one gets zeros.
    Sample ``n`` belongs to group ``n % (N // G)`` (the layout of ``x.view(G, -1, C, H, W)``) and gets that
    group's value.
    """
    if x.dim() != 4:
        raise ValueError(f"minibatch_stddev expects (N, C, H, W), got {tuple(x.shape)}")
    n, _, h, w = x.shape
    g = min(group_size, n)
    if n % g:
        g = n
    if g < 2:
        return torch.cat([x, x.new_zeros(n, 1, h, w)], dim=1)
    m = n // g
    std = (x.view(g, m, *x.shape[1:]).var(dim=0, unbiased=True) + 1e-8).sqrt()  # (M, C, H, W)
    stat = std.flatten(1).mean(dim=1)  # (M,)
    col = stat.repeat(g).view(n, 1, 1, 1).expand(n, 1, h, w)  # index s * M + m -> group m
    return torch.cat([x, col], dim=1)


class PGANDiscriminator(nn.Module):
    """Critic for images ``(N, channels, 4 * 2**s, 4 * 2**s)`` at scale ``s``; returns scores ``(N, 1)``.

    ``depths[k]`` is the channel count at resolution ``4 * 2**k`` (the generator's ``depths``).
    """

    def __init__(self, depths: Sequence[int], *, leaky: float = 0.2, channels: int = 3, mbstd_group: int = 4) -> None:
        super().__init__()
        if not depths:
            raise ValueError("depths must list at least one scale")
        self.depths = tuple(int(d) for d in depths)
        self.leaky = leaky
        self.mbstd_group = mbstd_group
        d0 = self.depths[0]
        self.fromRGBLayers = nn.ModuleList([Equalized(nn.Conv2d(channels, d, 1)) for d in self.depths])
        self.scaleLayers = nn.ModuleList(
            nn.ModuleList([Equalized(nn.Conv2d(cur, cur, 3, padding=1)), Equalized(nn.Conv2d(cur, prev, 3, padding=1))])
            for prev, cur in zip(self.depths, self.depths[1:])
        )
        self.groupScaleZero = nn.ModuleList([Equalized(nn.Conv2d(d0 + 1, d0, 3, padding=1)),
                                             Equalized(nn.Linear(16 * d0, d0))])
        self.decisionLayer = Equalized(nn.Linear(d0, 1))

    @property
    def max_scale(self) -> int:
        return len(self.depths) - 1

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.leaky)

    def forward(self, x: torch.Tensor, scale: int | None = None, alpha: float = 0.0) -> torch.Tensor:
        """Score ``x`` at ``scale`` (default: the last) with fade factor ``alpha`` in [0, 1]."""
        s = self.max_scale if scale is None else scale
        side = 4 * 2 ** s
        if not 0 <= s <= self.max_scale or x.dim() != 4 or x.shape[2:] != (side, side):
            raise ValueError(f"scale {s} of a {self.max_scale + 1}-scale critic needs (N, C, {side}, {side}) input, "
                             f"got {tuple(x.shape)}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        low = self._act(self.fromRGBLayers[s - 1](F.avg_pool2d(x, 2))) if alpha > 0 and s > 0 else None
        x = self._act(self.fromRGBLayers[s](x))
        for k in range(s, 0, -1):
            for conv in self.scaleLayers[k - 1]:
                x = self._act(conv(x))
            x = F.avg_pool2d(x, 2)
            if low is not None and k == s:
                x = alpha * low + (1.0 - alpha) * x
        x = minibatch_stddev(x, self.mbstd_group)
        x = self._act(self.groupScaleZero[0](x))
        x = self._act(self.groupScaleZero[1](x.flatten(1)))
        return self.decisionLayer(x)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor, *,
                     mix: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample WGAN-GP penalty ``(||grad_x critic(x_hat)||_2 - 1)**2`` ``(N,)``, with
    ``x_hat = mix * real + (1 - mix) * fake`` for ``real``, ``fake`` ``(N, ...)``.

    ``mix`` ``(N,)`` defaults to U(0, 1) draws from ``generator``. The graph is kept (``create_graph``), so
    the penalty can be back-propagated into the critic's parameters. ``critic`` returns ``(N,)`` or ``(N, 1)``.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have one shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    n = real.shape[0]
    if mix is None:
        mix = torch.rand(n, device=real.device, generator=generator)
    mix = mix.view(n, *([1] * (real.dim() - 1))).to(real)
    x_hat = (mix * real.detach() + (1.0 - mix) * fake.detach()).requires_grad_(True)
    out = critic(x_hat).reshape(n, -1)[:, 0]
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1.0) ** 2
