"""The VAE-GAN codec model: analysis (encoder), synthesis (decoder) and a pair discriminator.

An image ``(N, 3, R, R)`` in [-1, 1] goes through :class:`Analysis` to a mean
and a log-variance map ``(N, C, R/f, R/f)`` (``f`` = 8 or 16). The code that
is sent is the *mean* map, flattened per image to ``(N, C*h*w)`` and QSGD
quantised by :mod:`invcomp.coding.quantize` (``max`` scaling by default: one
float16 norm per image, nearest rounding). :class:`Synthesis` maps the
dequantised map back to an image (tanh). No search: one forward pass each way.

Training puts the quantiser in the loop with a straight-through estimator
(:func:`invcomp.coding.quantize.fake_quantize`): the forward pass sees exactly the
levels the codec will send, the backward pass treats rounding as identity.
The trainer quantises a reparameterised sample ``mu + sigma * eps`` (so the
KL term has something to regularise); the codec quantises ``mu``.

:class:`PairDiscriminator` scores the pair (image, code): the image is
strided down to the code's grid, the code is concatenated, and a small
patch head averages to one logit per pair. It is only needed for training
and is not part of the shipped state_dict.

All three networks avoid BatchNorm, so an image codes the same alone or in a batch.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from invcomp.errors import InvcompError
from invcomp.files import atomic_save, load_state_dict, sha256_file, write_json
from invcomp.coding.quantize import QuantizedLatent, dequantize, fake_quantize, levels_for_bits, quantize

DOWNSAMPLES = (8, 16)
LOGVAR_INIT = -4.0


def default_widths(downsample: int) -> tuple[int, ...]:
    """Encoder widths per stride-2 stage (the decoder mirrors them): 64, 128, 256[, 256]."""
    return (64, 128, 256, 256)[: int(math.log2(downsample))]


@dataclass(frozen=True)
class VAEGANConfig:
    """Shape of a VAE-GAN codec. ``widths`` has one entry per stride-2 stage (``log2(downsample)``);
    empty means :func:`default_widths`. ``bits`` is the default QSGD bit depth of the codec,
    ``scaling`` its QSGD norm (``max`` or ``l2``). ``training`` records how the weights were made."""

    resolution: int = 64
    channels: int = 8
    downsample: int = 8
    widths: tuple[int, ...] = ()
    bits: int = 4
    scaling: str = "max"
    architecture: str = "vaegan"
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture != "vaegan":
            raise InvcompError(f"not a VAE-GAN config: architecture {self.architecture!r}")
        if self.downsample not in DOWNSAMPLES:
            raise InvcompError(f"downsample must be 8 or 16, got {self.downsample}")
        if self.resolution < self.downsample or self.resolution % self.downsample:
            raise InvcompError(f"resolution {self.resolution} is not a positive multiple of downsample {self.downsample}")
        if self.channels < 1:
            raise InvcompError(f"channels must be positive, got {self.channels}")
        widths = tuple(int(w) for w in self.widths) or default_widths(self.downsample)
        if len(widths) != int(math.log2(self.downsample)) or min(widths) < 1:
            raise InvcompError(f"widths {list(widths)} must be {int(math.log2(self.downsample))} positive counts "
                               f"for downsample {self.downsample}")
        object.__setattr__(self, "widths", widths)
        levels_for_bits(self.bits)  # validates bits
        if self.scaling not in ("max", "l2"):
            raise InvcompError(f"unknown scaling {self.scaling!r}; use max or l2")
        if self.symbols > 65535:
            raise InvcompError(f"code map of {self.symbols} symbols exceeds the .ivc limit of 65535")

    @property
    def code_side(self) -> int:
        """Side h = w of the code map."""
        return self.resolution // self.downsample

    @property
    def symbols(self) -> int:
        """Coded symbols per image, C*h*w (the header's ``latent_dim``)."""
        return self.channels * self.code_side**2

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> "VAEGANConfig":
        kw = {k: data[k] for k in data if k in cls.__dataclass_fields__}
        kw["widths"] = tuple(kw.get("widths", ()))
        return cls(**kw)

    @classmethod
    def from_json(cls, path: Path) -> "VAEGANConfig":
        try:
            return cls.from_json_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise InvcompError(f"VAE-GAN config not found: {path}") from None
        except (OSError, json.JSONDecodeError, TypeError, AttributeError) as e:
            raise InvcompError(f"bad VAE-GAN config {path}: {e}") from None


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def _init(module: nn.Module) -> None:
    """He initialisation for LeakyReLU(0.2), zero biases: keeps activations at scale through the deep stacks."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)


class Analysis(nn.Module):
    """Encoder: ``(N, 3, R, R)`` in [-1, 1] -> mean, logvar, each ``(N, C, R/f, R/f)``."""

    def __init__(self, cfg: VAEGANConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for w in cfg.widths:
            layers += [nn.Conv2d(c_in, w, 4, 2, 1), _act(), nn.Conv2d(w, w, 3, 1, 1), _act()]
            c_in = w
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c_in, 2 * cfg.channels, 3, 1, 1)
        _init(self)
        with torch.no_grad():  # start nearly deterministic (sigma ~ 0.1) so the code is not buried in noise
            self.head.bias[cfg.channels:].fill_(LOGVAR_INIT)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, logvar = self.head(self.body(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)


class Synthesis(nn.Module):
    """Decoder/generator: code ``(N, C, h, w)`` -> image ``(N, 3, h*f, w*f)`` in [-1, 1] (tanh)."""

    def __init__(self, cfg: VAEGANConfig) -> None:
        super().__init__()
        widths = list(reversed(cfg.widths))
        layers: list[nn.Module] = [nn.Conv2d(cfg.channels, widths[0], 3, 1, 1), _act()]
        for i, w in enumerate(widths):
            w_out = widths[i + 1] if i + 1 < len(widths) else w
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w, w_out, 3, 1, 1), _act(),
                       nn.Conv2d(w_out, w_out, 3, 1, 1), _act()]
        layers += [nn.Conv2d(widths[-1], 3, 3, 1, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)
        _init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(z)


class PairDiscriminator(nn.Module):
    """Scores (image ``(N, 3, R, R)``, code ``(N, C, R/f, R/f)``) pairs: one logit per pair ``(N,)``."""

    def __init__(self, cfg: VAEGANConfig, ndf: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i in range(int(math.log2(cfg.downsample))):
            w = ndf * min(2**i, 4)
            layers += [nn.Conv2d(c_in, w, 4, 2, 1), _act()]
            c_in = w
        self.image = nn.Sequential(*layers)
        self.joint = nn.Sequential(nn.Conv2d(c_in + cfg.channels, c_in, 3, 1, 1), _act(), nn.Conv2d(c_in, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = self.image(x)
        if h.shape[-2:] != code.shape[-2:]:
            raise ValueError(f"image features {tuple(h.shape)} and code {tuple(code.shape)} are on different grids")
        return self.joint(torch.cat([h, code], dim=1)).flatten(1).mean(1)


def build_vaegan(cfg: VAEGANConfig) -> nn.ModuleDict:
    """Fresh ``{"analysis": Analysis, "synthesis": Synthesis}`` (the shippable parts)."""
    return nn.ModuleDict({"analysis": Analysis(cfg), "synthesis": Synthesis(cfg)})


def straight_through_code(z: torch.Tensor, bits: int, scaling: str = "max") -> torch.Tensor:
    """Per-image QSGD quantise-dequantise of a code map ``(N, C, h, w)`` with a straight-through gradient."""
    return fake_quantize(z.flatten(1), bits, scaling=scaling).view_as(z)


def quantize_code(mean: torch.Tensor, bits: int, scaling: str = "max") -> tuple[QuantizedLatent, torch.Tensor]:
    """The codec's quantiser: mean map ``(N, C, h, w)`` -> levels ``(N, C*h*w)`` + norms ``(N,)`` and the
    dequantised map ``(N, C, h, w)`` (on ``mean``'s device). Nearest rounding; rows are independent."""
    q = quantize(mean.flatten(1), bits, scaling=scaling, rounding="nearest")
    return q, dequantize(q).to(mean.device).view_as(mean)


@torch.no_grad()
def reconstruct(analysis: nn.Module, synthesis: nn.Module, x: torch.Tensor, bits: int,
                scaling: str = "max") -> torch.Tensor:
    """What the codec decodes for images ``(N, 3, R, R)``: synthesis(dequantised mean), ``(N, 3, R, R)`` in [-1, 1]."""
    mean, _ = analysis(x)
    return synthesis(quantize_code(mean, bits, scaling)[1]).clamp(-1, 1)


@dataclass
class LoadedVAEGAN:
    """A frozen VAE-GAN codec in eval mode plus its config and the sha256 of its weights file."""

    name: str
    analysis: Analysis
    synthesis: Synthesis
    config: VAEGANConfig
    sha256: str
    config_sha256: Optional[str] = None  # set for a registered model (its config checked against the registry)

    @property
    def model_id(self) -> bytes:
        """The 4-byte id written into bitstreams: the first bytes of the weights' sha256."""
        return bytes.fromhex(self.sha256[:8])

    @property
    def device(self) -> torch.device:
        return next(self.synthesis.parameters()).device


def save_vaegan(modules: Mapping[str, nn.Module], cfg: VAEGANConfig, path_pt: str | Path) -> Path:
    """Write the ``analysis.*`` and ``synthesis.*`` weights of ``modules`` (a mapping with those keys, other keys
    ignored) as one CPU state_dict to ``path_pt``, and ``cfg`` to the same-stem ``.json``; both atomically."""
    path = Path(path_pt)
    missing = {"analysis", "synthesis"} - set(modules)
    if missing:
        raise InvcompError(f"save_vaegan needs analysis and synthesis modules; missing {sorted(missing)}")
    state = {f"{part}.{k}": v.detach().cpu().clone() for part in ("analysis", "synthesis")
             for k, v in modules[part].state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(state, path)
    write_json(cfg.to_json_dict(), path.with_suffix(".json"))
    return path


def load_vaegan(path_pt: str | Path, device: str | torch.device = "cpu") -> LoadedVAEGAN:
    """Load a VAE-GAN codec from a state_dict and its same-stem ``.json`` (``weights_only=True``), frozen."""
    path = Path(path_pt)
    if not path.is_file():
        raise InvcompError(f"VAE-GAN weights not found: {path}")
    cfg = VAEGANConfig.from_json(path.with_suffix(".json"))
    digest = sha256_file(path)
    state = load_state_dict(path)
    parts = build_vaegan(cfg)
    try:
        parts.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e).splitlines()[0])
        raise InvcompError(f"weights {path} do not match the VAE-GAN config beside it: {first[:200]}") from None
    parts = parts.to(device).eval()
    for p in parts.parameters():
        p.requires_grad_(False)
    return LoadedVAEGAN(name=path.stem, analysis=parts["analysis"], synthesis=parts["synthesis"],  # type: ignore[arg-type]
                        config=cfg, sha256=digest)

