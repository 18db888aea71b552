"""Progressive growing for the PGAN trainer (:mod:`invcomp.train.pgan`): the schedule of scales and fades,
the generator's forward pass at a scale with a run-time fade factor, and the real images at a scale."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from invcomp.errors import InvcompError
from invcomp.nets.generators.pgan import Equalized, PGANGenerator, pixel_norm


@dataclass(frozen=True)
class Phase:
    """Where a step is in the schedule: its ``scale``, fade factor ``alpha`` and whether it is ``fading``."""

    scale: int
    alpha: float
    fading: bool

    @property
    def resolution(self) -> int:
        return 4 * 2 ** self.scale


def scale_count(resolution: int) -> int:
    """Number of scales from 4x4 up to ``resolution`` (a power of two >= 4)."""
    if resolution < 4 or resolution & (resolution - 1):
        raise InvcompError(f"PGAN resolution must be a power of two >= 4, got {resolution}")
    return resolution.bit_length() - 2


def schedule_length(n_scales: int, steps_per_phase: int, fade_steps: int) -> int:
    """Steps from the first 4x4 step to the end of the last stable phase."""
    return n_scales * steps_per_phase + (n_scales - 1) * fade_steps


def phase_at(step: int, n_scales: int, steps_per_phase: int, fade_steps: int) -> Phase:
    """The phase of 0-based ``step``: scale 0 stable, then per new scale a fade (alpha ``1 - i / fade_steps``
    at its i-th step) and a stable phase (alpha 0); past the end, the last scale at alpha 0."""
    if steps_per_phase < 1 or fade_steps < 0 or step < 0:
        raise ValueError("need steps_per_phase >= 1, fade_steps >= 0 and step >= 0")
    rest = step - steps_per_phase
    if rest < 0:
        return Phase(0, 0.0, False)
    for scale in range(1, n_scales):
        if rest < fade_steps:
            return Phase(scale, 1.0 - rest / fade_steps, True)
        rest -= fade_steps
        if rest < steps_per_phase:
            return Phase(scale, 0.0, False)
        rest -= steps_per_phase
    return Phase(n_scales - 1, 0.0, False)


def _act(G: PGANGenerator, x: torch.Tensor) -> torch.Tensor:
    x = F.leaky_relu(x, G.arch.leaky)
    return pixel_norm(x) if G.arch.normalization else x


def grow_forward(G: PGANGenerator, z: torch.Tensor, scale: int, alpha: float, *, clamp: bool = False) -> torch.Tensor:
    """G's image ``(N, 3, 4 * 2**scale, ...)`` for z ``(N, latent_dim)`` at ``scale`` with fade factor ``alpha``.

    The same operations as ``PGANGenerator.forward`` on the layers up to ``scale``, with ``alpha`` given at run
    time instead of frozen in the arch. Unclamped by default (as their ``GNet``; a clamp would zero the
    gradient of out-of-range pixels); ``clamp=True`` reproduces ``PGANGenerator.forward`` exactly.
    """
    arch = G.arch
    if not 0 <= scale < len(arch.depths) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"scale must be in [0, {len(arch.depths) - 1}] and alpha in [0, 1], got {scale}, {alpha}")
    z = z.reshape(z.shape[0], -1)
    if arch.normalization:
        z = pixel_norm(z)
    x = F.leaky_relu(G.formatLayer(z), arch.leaky).view(z.shape[0], -1, 4, 4)
    if arch.normalization:
        x = pixel_norm(x)
    for conv in G.groupScale0:
        x = _act(G, conv(x))
    low = None
    for k in range(scale):
        if alpha > 0 and k == scale - 1:
            low = F.interpolate(G.toRGBLayers[k](x), scale_factor=2, mode="nearest")
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        for conv in G.scaleLayers[k]:
            x = _act(G, conv(x))
    x = G.toRGBLayers[scale](x)
    if low is not None:
        x = alpha * low + (1.0 - alpha) * x
    if arch.output_activation == "tanh":
        x = torch.tanh(x)
    return x.clamp(-1.0, 1.0) if clamp else x


def generator_state_at(G: PGANGenerator, scale: int) -> dict[str, torch.Tensor]:
    """The CPU state_dict of the ``scale + 1``-scale generator inside ``G`` (their key layout)."""
    keep = ("formatLayer.", "groupScale0.", *(f"scaleLayers.{k}." for k in range(scale)),
            *(f"toRGBLayers.{k}." for k in range(scale + 1)))
    return {k: v.detach().cpu().clone() for k, v in G.state_dict().items() if k.startswith(keep)}


def init_equalized(module: torch.nn.Module) -> None:
    """Their ``ConstrainedLayer`` initialisation: N(0, 1) weights and zero biases in every equalised layer."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, Equalized):
                m.module.weight.normal_(0.0, 1.0)
                if m.module.bias is not None:
                    m.module.bias.zero_()


def real_at(real: torch.Tensor, idx: torch.Tensor, flip: torch.Tensor, scale: int, alpha: float) -> torch.Tensor:
    """Training images ``(B, 3, 4 * 2**scale, ...)`` in [-1, 1] from uint8 faces ``real`` ``(N, 3, R, R)``:
    rows ``idx``, mirrored where ``flip``, average-pooled to the scale and, during a fade, blended with their
    pooled-and-upsampled copy (their ``inScaleUpdate``)."""
    x = real[idx].float() / 127.5 - 1.0
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    factor = x.shape[-1] // (4 * 2 ** scale)
    if factor > 1:
        x = F.avg_pool2d(x, factor)
    if alpha > 0:
        x = alpha * F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest") + (1.0 - alpha) * x
    return x
