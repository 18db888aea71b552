"""Progressive GAN generator, faithful to facebookresearch/pytorch_GAN_zoo's ``GNet``.

Forward pass for z ``(N, D)``:

1. PixelNorm of z: ``z / sqrt(mean(z**2) + 1e-8)`` (so G(c z) = G(z) for c > 0: the latent is norm-free);
2. equalised linear to ``16 * depths[0]``, LeakyReLU(0.2), reshape to 4x4, PixelNorm;
3. scale 0: one equalised 3x3 conv, LeakyReLU, PixelNorm;
4. per further scale: nearest x2 upsampling, two equalised 3x3 convs, each followed by LeakyReLU and PixelNorm;
5. 1x1 toRGB of the last scale; with ``alpha > 0`` it is blended with the upsampled toRGB of the scale
   before: ``alpha * low + (1 - alpha) * high``;
6. the loss's output activation (none for WGAN-GP, tanh for their DCGAN/MSE losses), then a clamp to [-1, 1].

Equalised learning rate: each layer's output, bias included, is multiplied at run time by ``sqrt(2 / fan_in)``
(their ``ConstrainedLayer``). State-dict keys follow their layout (``formatLayer.module.weight``,
``groupScale0.0.module.bias``, ``scaleLayers.1.0.module.weight``, ``toRGBLayers.2.module.weight``); the older
layout without ``.module`` is accepted by :func:`normalise_keys`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from invcomp.errors import InvcompError


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Normalise each position's feature vector ``(N, C, ...)`` over C to unit RMS."""
    return x * (x.pow(2).mean(dim=1, keepdim=True) + eps).rsqrt()


class Equalized(nn.Module):
    """Wrap a Conv2d/Linear so its output (bias included) is scaled by He's constant sqrt(2 / fan_in)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.scale = math.sqrt(2.0 / math.prod(module.weight.shape[1:]))
        with torch.no_grad():  # their ConstrainedLayer: weights N(0, 1), bias 0; the scale is applied at run time
            module.weight.normal_(0.0, 1.0)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) * self.scale


@dataclass(frozen=True)
class PGANArch:
    """``depths[k]`` is the channel count at resolution ``4 * 2**k``."""

    latent_dim: int
    depths: tuple[int, ...]
    alpha: float = 0.0
    leaky: float = 0.2
    normalization: bool = True
    output_activation: str = "none"  # "none" or "tanh"
    channels: int = 3
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def resolution(self) -> int:
        return 4 * 2 ** (len(self.depths) - 1)


class PGANGenerator(nn.Module):
    """z ``(N, latent_dim)`` (or ``(N, latent_dim, 1, 1)``) -> image ``(N, 3, R, R)`` clamped to [-1, 1]."""

    def __init__(self, arch: PGANArch) -> None:
        super().__init__()
        if not 0.0 <= arch.alpha <= 1.0:
            raise InvcompError(f"PGAN alpha must be in [0, 1], got {arch.alpha}")
        self.arch = arch
        self.latent_dim = arch.latent_dim
        self.resolution = arch.resolution
        self.prior = "normal"
        self.norm_free = arch.normalization
        d0 = arch.depths[0]
        self.formatLayer = Equalized(nn.Linear(arch.latent_dim, 16 * d0))
        self.groupScale0 = nn.ModuleList([Equalized(nn.Conv2d(d0, d0, 3, padding=1))])
        self.scaleLayers = nn.ModuleList()
        self.toRGBLayers = nn.ModuleList([Equalized(nn.Conv2d(d0, arch.channels, 1))])
        for prev, cur in zip(arch.depths, arch.depths[1:]):
            self.scaleLayers.append(nn.ModuleList([Equalized(nn.Conv2d(prev, cur, 3, padding=1)),
                                                   Equalized(nn.Conv2d(cur, cur, 3, padding=1))]))
            self.toRGBLayers.append(Equalized(nn.Conv2d(cur, arch.channels, 1)))

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(x, self.arch.leaky)
        return pixel_norm(x) if self.arch.normalization else x

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z.reshape(z.shape[0], -1)
        if self.arch.normalization:
            z = pixel_norm(z)
        x = F.leaky_relu(self.formatLayer(z), self.arch.leaky).view(z.shape[0], -1, 4, 4)
        if self.arch.normalization:  # their GNet applies this one unconditionally; it exists only with normalization
            x = pixel_norm(x)
        for conv in self.groupScale0:
            x = self._act(conv(x))
        low = None
        blend = self.arch.alpha > 0 and len(self.scaleLayers) > 0
        if blend and len(self.scaleLayers) == 1:
            low = F.interpolate(self.toRGBLayers[-2](x), scale_factor=2, mode="nearest")
        for k, group in enumerate(self.scaleLayers):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            for conv in group:
                x = self._act(conv(x))
            if blend and k == len(self.scaleLayers) - 2:
                low = F.interpolate(self.toRGBLayers[-2](x), scale_factor=2, mode="nearest")
        x = self.toRGBLayers[-1](x)
        if low is not None:
            x = self.arch.alpha * low + (1.0 - self.arch.alpha) * x
        if self.arch.output_activation == "tanh":
            x = torch.tanh(x)
        return x.clamp(-1.0, 1.0)


_OLD = re.compile(r"^(formatLayer|groupScale0\.\d+|scaleLayers\.\d+\.\d+|toRGBLayers\.\d+)\.(weight|bias)$")


def normalise_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Accept both their layouts (``X.module.weight`` and the older ``X.weight``) and a ``module.`` prefix."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        m = _OLD.match(k)
        out[f"{m.group(1)}.module.{m.group(2)}" if m else k] = v
    return out


def infer_pgan_arch(state: Mapping[str, torch.Tensor], **kw: object) -> PGANArch:
    """Latent size and per-scale depths from the shapes of a PGAN generator state_dict."""
    state = normalise_keys(state)
    try:
        w = state["formatLayer.module.weight"]
        d0 = state["groupScale0.0.module.weight"].shape[0]
        depths = [int(d0)]
        k = 0
        while f"scaleLayers.{k}.0.module.weight" in state:
            depths.append(int(state[f"scaleLayers.{k}.0.module.weight"].shape[0]))
            k += 1
        channels = int(state["toRGBLayers.0.module.weight"].shape[0])
    except KeyError as e:
        raise InvcompError(f"not a PGAN generator state_dict (missing {e.args[0]})") from None
    if w.shape[0] != 16 * d0:
        raise InvcompError(f"PGAN format layer has {w.shape[0]} outputs, expected 16 x {d0}")
    return PGANArch(latent_dim=int(w.shape[1]), depths=tuple(depths), channels=channels, **kw)  # type: ignore[arg-type]


def load_pgan(state: Mapping[str, torch.Tensor], **kw: object) -> PGANGenerator:
    """Build a PGAN generator from a state_dict (either key layout), in eval mode."""
    state = normalise_keys(state)
    g = PGANGenerator(infer_pgan_arch(state, **kw))
    try:
        g.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InvcompError(f"PGAN state_dict does not match its inferred architecture: {str(e).splitlines()[0]}") from None
    return g.eval()
