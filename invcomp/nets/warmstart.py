"""A VAE-style encoder E(x) -> (mu, logvar) that predicts a generator's latent, to warm-start inversion.

An encoder belongs to one generator: its config records the sha256 of the
generator's weights, and :func:`invcomp.zoo.warmstart.check_warm_start` refuses any other. The encode
path uses it as::

    enc = load_warm_start("runs/enc/encoder.pt", device)
    check_warm_start(enc, gen)
    z0 = predict_latents(enc, target)          # (N, D) on the CPU
    invert(gen.module, target, init=z0, ...)   # the search starts at E's mean

For a norm-free generator (``G(c z) = G(z)``, e.g. PGAN) the predicted mean is
rescaled to norm ``sqrt(D)``, the norm the codec assumes for such latents.
The model never touches files; :func:`save_warm_start` / :func:`load_warm_start` do
(a state_dict ``.pt`` plus the config as ``.json`` with the same stem).
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from invcomp.errors import InvcompError
from invcomp.files import atomic_save, load_state_dict, sha256_file, write_json

log = logging.getLogger(__name__)

PRIORS = ("normal", "uniform")
LOGVAR_RANGE = (-12.0, 6.0)


def default_widths(resolution: int, base: int = 32, cap: int = 256) -> tuple[int, ...]:
    """Channels of the stride-2 blocks for ``resolution`` (R -> R/2 -> ... -> 4): ``base * 2**k``, capped."""
    _check_resolution(resolution)
    n = resolution.bit_length() - 3
    return tuple(min(cap, base * 2**k) for k in range(n))


def _check_resolution(resolution: int) -> None:
    if resolution < 8 or resolution & (resolution - 1):
        raise InvcompError(f"encoder resolution must be a power of two >= 8, got {resolution}")


@dataclass(frozen=True)
class WarmStartConfig:
    """Everything needed to rebuild an encoder from its state_dict, and which generator it serves.

    ``widths`` has one entry per stride-2 block, i.e. ``log2(resolution) - 2`` entries.
    ``norm_free`` mirrors the generator's flag (mu is put on the sphere of radius sqrt(D)).
    ``training`` records how it was made (free-form).
    """

    resolution: int
    latent_dim: int
    prior: str = "normal"
    widths: tuple[int, ...] = ()
    generator_sha256: str = ""
    generator_name: str = ""
    norm_free: bool = False
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_resolution(self.resolution)
        if self.prior not in PRIORS:
            raise InvcompError(f"unknown prior {self.prior!r}; use normal or uniform")
        if self.latent_dim < 1:
            raise InvcompError(f"latent_dim must be positive, got {self.latent_dim}")
        widths = tuple(int(w) for w in self.widths) or default_widths(self.resolution)
        n = self.resolution.bit_length() - 3
        if len(widths) != n or min(widths) < 1:
            raise InvcompError(f"a {self.resolution}px encoder needs {n} positive widths (one per stride-2 block), "
                               f"got {list(widths)}")
        object.__setattr__(self, "widths", widths)

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> WarmStartConfig:
        """Inverse of :meth:`to_json_dict`; unknown keys are ignored, bad values raise :class:`InvcompError`."""
        try:
            kw = {k: data[k] for k in data if k in cls.__dataclass_fields__}
            kw["widths"] = tuple(kw.get("widths", ()))
            return cls(**kw)
        except (TypeError, ValueError, KeyError) as e:
            if isinstance(e, InvcompError):
                raise
            raise InvcompError(f"bad encoder config: {e}") from None


class WarmStartNet(nn.Module):
    """Image ``(N, 3, R, R)`` in [-1, 1] -> ``(mu, logvar)``, each ``(N, D)``.

    A 3x3 stem, then one ``Conv2d(4, stride 2) + LeakyReLU(0.2)`` per width down to 4x4, then a linear
    layer to ``2 D`` outputs. No normalisation layers, so rows never interact. For the uniform prior mu is
    ``tanh``-squashed into (-1, 1); for a norm-free generator it is rescaled to norm ``sqrt(D)``. logvar is
    clamped to ``LOGVAR_RANGE``.
    """

    def __init__(self, cfg: WarmStartConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.resolution, self.latent_dim = cfg.resolution, cfg.latent_dim
        layers: list[nn.Module] = [nn.Conv2d(3, cfg.widths[0], 3, 1, 1), nn.LeakyReLU(0.2)]
        c_in = cfg.widths[0]
        for c_out in cfg.widths:
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * 16, 2 * cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = self.resolution
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, r, r):
            raise ValueError(f"expected images (N, 3, {r}, {r}), got {tuple(x.shape)}")
        out = self.head(self.features(x).flatten(1))
        mu, logvar = out.chunk(2, dim=1)
        if self.cfg.prior == "uniform":
            mu = torch.tanh(mu)
        if self.cfg.norm_free:
            mu = to_sphere(mu)
        return mu, logvar.clamp(*LOGVAR_RANGE)


def to_sphere(z: torch.Tensor) -> torch.Tensor:
    """Rescale each row of ``z`` ``(N, D)`` to norm ``sqrt(D)`` (the typical norm of N(0, I))."""
    return z * (math.sqrt(z.shape[1]) / z.norm(dim=1, keepdim=True).clamp_min(1e-8))


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def predict_latents(encoder: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The encoder's mean ``mu`` ``(N, D)`` for images ``x`` ``(N, 3, R, R)`` in [-1, 1], on the CPU.

    Runs in eval mode without gradients on the encoder's device (the module's mode is restored after).
    """
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            mu, _ = encoder(x.to(_device_of(encoder), torch.float32))
    finally:
        encoder.train(was_training)
    return mu.cpu()


@dataclass
class LoadedWarmStart:
    """A frozen encoder in eval mode, its config, and the sha256 of its ``.pt`` file."""

    module: WarmStartNet
    config: WarmStartConfig
    sha256: str
    path: Path


def config_path(path_pt: str | Path) -> Path:
    """The config beside a state_dict: same stem, ``.json``."""
    return Path(path_pt).with_suffix(".json")


def save_warm_start(module: nn.Module, cfg: WarmStartConfig, path_pt: str | Path) -> None:
    """Write ``module``'s state_dict (on the CPU) to ``path_pt`` and ``cfg`` to the ``.json`` beside it, atomically."""
    path_pt = Path(path_pt)
    path_pt.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({k: v.detach().cpu() for k, v in module.state_dict().items()}, path_pt)
    write_json(cfg.to_json_dict(), config_path(path_pt))


def load_warm_start(path_pt: str | Path, device: str | torch.device = "cpu") -> LoadedWarmStart:
    """Load an encoder saved by :func:`save_warm_start` (``weights_only=True``), frozen, in eval mode.

    A missing or corrupt ``.pt`` or ``.json``, or weights that do not fit the config, raise :class:`InvcompError`.
    """
    path_pt = Path(path_pt)
    if not path_pt.is_file():
        raise InvcompError(f"encoder weights not found: {path_pt}")
    cfg_file = config_path(path_pt)
    try:
        data = json.loads(cfg_file.read_text())
    except OSError as e:
        raise InvcompError(f"cannot read encoder config {cfg_file}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise InvcompError(f"bad encoder config {cfg_file}: {e}") from None
    if not isinstance(data, dict):
        raise InvcompError(f"bad encoder config {cfg_file}: not a JSON object")
    try:
        cfg = WarmStartConfig.from_json_dict(data)
    except InvcompError as e:
        raise InvcompError(f"{cfg_file}: {e}") from None
    digest = sha256_file(path_pt)
    state = load_state_dict(path_pt)
    module = WarmStartNet(cfg)
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        detail = (str(e).splitlines() or [""])[0][:160]
        raise InvcompError(f"encoder weights {path_pt} do not fit its config {cfg_file}: {detail}") from None
    module = module.to(device).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return LoadedWarmStart(module=module, config=cfg, sha256=digest, path=path_pt)
