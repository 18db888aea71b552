"""DCGAN generator and discriminator in the pytorch/examples layout.

The state_dict keys are those of pytorch/examples ``dcgan/main.py``
(``main.0.weight``, ``main.1.running_mean`` ...), so third-party checkpoints in
that layout load unchanged, and ours load in their code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from invcomp.errors import InvcompError


@dataclass(frozen=True)
class DCGANArch:
    """Shape of a DCGAN generator.

    ``widths`` are the output channels of each ConvTranspose2d but the last
    (e.g. ``(512, 256, 128, 64)`` for ngf=64 at 64x64); ``bias`` tells whether
    the transposed convolutions carry a bias.
    """

    latent_dim: int
    widths: tuple[int, ...]
    channels: int = 3
    bias: bool = False

    @property
    def resolution(self) -> int:
        return 4 * 2 ** len(self.widths)


def standard_arch(latent_dim: int = 100, ngf: int = 64, resolution: int = 64) -> DCGANArch:
    """The pytorch/examples widths ``ngf * 2**k`` for a given resolution."""
    if resolution < 8 or resolution & (resolution - 1):
        raise InvcompError(f"DCGAN resolution must be a power of two >= 8, got {resolution}")
    n_up = resolution.bit_length() - 3  # 4 -> 8 -> ... -> resolution
    widths = tuple(ngf * 2 ** k for k in reversed(range(n_up)))
    return DCGANArch(latent_dim=latent_dim, widths=widths)


class DCGANGenerator(nn.Module):
    """z ``(N, latent_dim)`` or ``(N, latent_dim, 1, 1)`` -> image ``(N, 3, R, R)`` in [-1, 1]."""

    def __init__(self, arch: DCGANArch) -> None:
        super().__init__()
        self.arch = arch
        self.latent_dim = arch.latent_dim
        self.resolution = arch.resolution
        layers: list[nn.Module] = []
        c_in = arch.latent_dim
        for i, c_out in enumerate(arch.widths):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, stride, pad, bias=arch.bias),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
            c_in = c_out
        layers += [nn.ConvTranspose2d(c_in, arch.channels, 4, 2, 1, bias=arch.bias), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.main(z)


class DCGANDiscriminator(nn.Module):
    """Image ``(N, 3, R, R)`` in [-1, 1] -> real/fake logit ``(N,)``."""

    def __init__(self, resolution: int = 64, ndf: int = 64, channels: int = 3) -> None:
        super().__init__()
        n_down = resolution.bit_length() - 3
        layers: list[nn.Module] = [nn.Conv2d(channels, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        c = ndf
        for _ in range(n_down - 1):
            layers += [nn.Conv2d(c, c * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c * 2), nn.LeakyReLU(0.2, True)]
            c *= 2
        layers += [nn.Conv2d(c, 1, 4, 1, 0, bias=False)]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).flatten()


_KEY = re.compile(r"^main\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def infer_arch(state: Mapping[str, torch.Tensor]) -> DCGANArch:
    """Recover depth, widths, latent_dim and resolution from a DCGAN state_dict.

    Raises :class:`InvcompError` when the keys or shapes are not a DCGAN
    generator in the pytorch/examples layout.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    bad = [k for k in state if not _KEY.match(k)]
    if bad or not state:
        raise InvcompError(f"not a DCGAN generator state_dict (unexpected keys such as {bad[:3]})")
    convs = sorted(
        (int(_KEY.match(k).group(1)), v.shape)  # type: ignore[union-attr]
        for k, v in state.items()
        if k.endswith(".weight") and v.dim() == 4
    )
    if len(convs) < 2:
        raise InvcompError("not a DCGAN generator state_dict (fewer than two transposed convolutions)")
    expected = [3 * i for i in range(len(convs))]
    if [i for i, _ in convs] != expected:
        raise InvcompError(f"DCGAN layer indices {[i for i, _ in convs]} are not the pytorch/examples layout {expected}")
    for (i, a), (_, b) in zip(convs, convs[1:]):
        if a[1] != b[0] or tuple(a[2:]) != (4, 4):
            raise InvcompError(f"DCGAN layer main.{i} has shape {tuple(a)}, which does not chain to {tuple(b)}")
    arch = DCGANArch(
        latent_dim=int(convs[0][1][0]),
        widths=tuple(int(s[1]) for _, s in convs[:-1]),
        channels=int(convs[-1][1][1]),
        bias=any(k.endswith(".bias") and state[k].dim() == 1 and int(k.split(".")[1]) % 3 == 0 for k in state),
    )
    return arch


def load_dcgan(state: Mapping[str, torch.Tensor]) -> DCGANGenerator:
    """Build a generator from a state_dict, inferring its shape; returns it in eval mode."""
    arch = infer_arch(state)
    g = DCGANGenerator(arch)
    clean = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        g.load_state_dict(clean, strict=True)
    except RuntimeError as e:  # shapes checked above; this is a missing BN buffer or similar
        raise InvcompError(f"DCGAN state_dict does not match its inferred architecture: {str(e).splitlines()[0]}") from None
    return g.eval()
