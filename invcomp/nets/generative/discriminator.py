"""The multi-scale discriminator of GC training (pix2pixHD: the same PatchGAN at 3 scales), and the GAN losses.

Each scale's PatchGAN is four 4x4 convolutions (stride 2, 2, 2, 1; widths ndf, 2ndf, 4ndf, 4ndf, LeakyReLU 0.2)
and a 4x4 head to one logit per patch; scale k sees the image average-pooled k times (3x3, stride 2). Its hidden
activations are returned too, for the feature-matching loss. Losses are least-squares (LSGAN), as in pix2pixHD and
Agustsson et al. Only training uses this module; it is never shipped.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


MIN_SIDE = 32


class PatchD(nn.Module):
    """One scale: ``(N, c_in, H, W)`` -> list of activations, the last the logits ``(N, 1, h, w)``."""

    def __init__(self, c_in: int, ndf: int) -> None:
        super().__init__()
        widths, strides = (ndf, 2 * ndf, 4 * ndf, 4 * ndf), (2, 2, 2, 1)
        layers = []
        c = c_in
        for w, s in zip(widths, strides):
            layers.append(nn.Sequential(nn.Conv2d(c, w, 4, s, 1), nn.LeakyReLU(0.2, inplace=True)))
            c = w
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiScaleD(nn.Module):
    """``scales`` PatchGANs on the image at full, 1/2, 1/4 size: ``(N, c_in, H, W)`` (H, W >= 32) -> per scale, its
    activations."""

    def __init__(self, c_in: int = 3, ndf: int = 32, scales: int = 3) -> None:
        super().__init__()
        self.nets = nn.ModuleList([PatchD(c_in, ndf) for _ in range(scales)])

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Scales whose input is under :data:`MIN_SIDE` px are skipped (tiny test crops), never the first."""
        out = []
        for k, net in enumerate(self.nets):
            if k:
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
                if min(x.shape[-2:]) < MIN_SIDE:
                    break
            out.append(net(x))
        return out


def d_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """LSGAN discriminator loss, the mean over scales: ``(D(x) - 1)^2 + D(x_hat)^2``."""
    terms = [(r[-1] - 1).pow(2).mean() + f[-1].pow(2).mean() for r, f in zip(real, fake)]
    return torch.stack(terms).mean()


def g_loss(fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """LSGAN generator loss, the mean over scales: ``(D(x_hat) - 1)^2``."""
    return torch.stack([(f[-1] - 1).pow(2).mean() for f in fake]).mean()


def feature_matching(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """pix2pixHD's feature matching: the L1 distance of D's hidden activations on x and x_hat (real ones detached),
    averaged over layers and scales."""
    terms = [(f - r.detach()).abs().mean() for rs, fs in zip(real, fake) for r, f in zip(rs[:-1], fs[:-1])]
    return torch.stack(terms).mean()
