"""The GC networks: encoder E, learned-centre quantiser Q and generator G (Agustsson et al. 2019, sized for CPUs).

An image ``(N, 3, H, W)`` in [-1, 1], H and W multiples of 16, goes through E to a feature map ``(N, C, H/16, W/16)``;
Q maps every value to the nearest of L learned centres (the symbols are the centre indices, ``(N, C, H/16, W/16)``
int64); G maps the quantised map back to ``(N, 3, H, W)`` (tanh).

- **E:** four stride-2 3x3 convolutions (widths ``enc_widths``, default 32, 64, 96, 128), each followed by a 3x3
  convolution, then a 3x3 head to C channels. The paper's E is the same shape, wider (60..960) and with instance norm.
- **Q:** soft-to-hard (Mentzer et al. 2018): in training the forward pass uses the hard (nearest-centre) value and
  the backward pass the gradient of the soft assignment ``sum_j softmax(-sigma (w - c_j)^2)_j c_j``; the centres are
  parameters, so they move with training.
- **G:** a 3x3 conv to ``gen_width`` channels at /16, ``res_blocks`` residual blocks there, then four stages of
  nearest x2 upsampling + 3x3 convolution (widths ``up_widths``), and a 3x3 conv to RGB with tanh.

**No instance or batch norm** (the paper's instance norm makes a pixel depend on the whole image): a pixel depends
only on the code near it, so an image codes the same alone, in a batch or in tiles (:mod:`invcomp.nets.generative.tiles`). The
shipped models use no normalisation at all (``norm="none"``: LeakyReLU 0.2, He initialisation, residual branches
starting at zero); ``norm="channel"`` is :class:`ChannelNorm` (per position, across channels; Mentzer et al. 2020,
HiFiC), which is as local, but whose runs here drew every face in one sepia hue after 2,000 steps (the README).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from invcomp.errors import InvcompError

FACTOR = 16
NORMS = ("none", "channel")


@dataclass(frozen=True)
class GCConfig:
    """Shape of a GC model. ``channels`` C and ``centres`` L set the rate (at most C*log2(L) bits per 16x16 block);
    ``sigma`` is the soft assignment's sharpness; ``training`` records how the weights were made."""

    channels: int = 8
    centres: int = 5
    enc_widths: tuple[int, ...] = (32, 64, 96, 128)
    gen_width: int = 128
    res_blocks: int = 5
    up_widths: tuple[int, ...] = (96, 64, 32, 24)
    sigma: float = 1.0
    norm: str = "none"
    architecture: str = "gc"
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture != "gc":
            raise InvcompError(f"not a GC config: architecture {self.architecture!r}")
        object.__setattr__(self, "enc_widths", tuple(int(w) for w in self.enc_widths))
        object.__setattr__(self, "up_widths", tuple(int(w) for w in self.up_widths))
        if len(self.enc_widths) != 4 or len(self.up_widths) != 4:
            raise InvcompError("a GC model downsamples by 16: four encoder widths and four upsampling widths")
        if not (1 <= self.channels <= 64 and 2 <= self.centres <= 16):
            raise InvcompError(f"channels must be 1..64 and centres 2..16, got {self.channels} and {self.centres}")
        if min(self.enc_widths + self.up_widths + (self.gen_width,)) < 1 or self.res_blocks < 0:
            raise InvcompError("widths must be positive and res_blocks >= 0")
        if self.norm not in NORMS:
            raise InvcompError(f"norm must be one of {', '.join(NORMS)}, got {self.norm!r}")

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["enc_widths"], d["up_widths"] = list(self.enc_widths), list(self.up_widths)
        return d

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> "GCConfig":
        return cls(**{k: data[k] for k in data if k in cls.__dataclass_fields__})

    @classmethod
    def from_json(cls, path: Path) -> "GCConfig":
        try:
            return cls.from_json_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise InvcompError(f"GC config not found: {path}") from None
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise InvcompError(f"bad GC config {path}: {e}") from None


class ChannelNorm(nn.Module):
    """Normalise each position across channels, with a learned per-channel affine: ``(N, C, H, W)`` -> same."""

    def __init__(self, channels: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(1, channels, 1, 1)), nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1)


def _act(cfg: GCConfig, c: int) -> list[nn.Module]:
    """What follows a convolution: ChannelNorm + ReLU (``norm="channel"``) or LeakyReLU 0.2 (``"none"``)."""
    if cfg.norm == "channel":
        return [ChannelNorm(c), nn.ReLU(inplace=True)]
    return [nn.LeakyReLU(0.2, inplace=True)]


def _init(module: nn.Module) -> None:
    """He initialisation for LeakyReLU(0.2), zero biases (the norm-free networks keep their scale through depth)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            nn.init.zeros_(m.bias)


class Encoder(nn.Module):
    """E: ``(N, 3, H, W)`` in [-1, 1] (H, W multiples of 16) -> features ``(N, C, H/16, W/16)``."""

    def __init__(self, cfg: GCConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for w in cfg.enc_widths:
            layers += [_conv(c, w, 2), *_act(cfg, w), _conv(w, w), *_act(cfg, w)]
            c = w
        self.body, self.head = nn.Sequential(*layers), _conv(c, cfg.channels)
        if cfg.norm == "none":
            _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Quantiser(nn.Module):
    """Q: features ``(N, C, h, w)`` -> (quantised values, symbols): L learned centres, soft-to-hard in training."""

    def __init__(self, cfg: GCConfig) -> None:
        super().__init__()
        self.centres = nn.Parameter(torch.linspace(-2.0, 2.0, cfg.centres))
        self.sigma = cfg.sigma

    def symbols(self, w: torch.Tensor) -> torch.Tensor:
        """The nearest centre's index of every value ``(N, C, h, w)`` -> int64, same shape."""
        return (w.unsqueeze(-1) - self.centres.detach()).abs().argmin(-1)

    def values(self, symbols: torch.Tensor) -> torch.Tensor:
        """Symbols (any shape, int, on any device) -> their centres' values (float, same shape, on the centres')."""
        return self.centres.detach()[symbols.to(self.centres.device)]

    def forward(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        d = (w.unsqueeze(-1) - self.centres).pow(2)
        soft = (torch.softmax(-self.sigma * d, -1) * self.centres).sum(-1)
        idx = d.detach().argmin(-1)
        hard = self.centres[idx]
        return soft + (hard - soft).detach(), idx


class ResBlock(nn.Module):
    def __init__(self, c: int, cfg: GCConfig) -> None:
        super().__init__()
        last = [ChannelNorm(c)] if cfg.norm == "channel" else []
        self.body = nn.Sequential(_conv(c, c), *_act(cfg, c), _conv(c, c), *last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """G: a map ``(N, c_in, h, w)`` (the quantised code, plus any conditioning planes) -> ``(N, 3, 16h, 16w)``."""

    def __init__(self, cfg: GCConfig, c_in: int | None = None) -> None:
        super().__init__()
        g = cfg.gen_width
        self.stem = nn.Sequential(_conv(c_in or cfg.channels, g), *_act(cfg, g))
        self.blocks = nn.Sequential(*[ResBlock(g, cfg) for _ in range(cfg.res_blocks)])
        ups: list[nn.Module] = []
        c = g
        for w in cfg.up_widths:
            ups += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(c, w), *_act(cfg, w)]
            c = w
        self.up, self.out = nn.Sequential(*ups), _conv(c, 3)
        if cfg.norm == "none":
            _init(self)
            for block in self.blocks:  # residual branches start near zero, so the stack starts near the identity
                nn.init.zeros_(block.body[-1].weight)

    def forward(self, wq: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(self.up(self.blocks(self.stem(wq)))))


class GCNet(nn.Module):
    """E, Q and G of one model (the shipped state_dict; the discriminator is separate)."""

    def __init__(self, cfg: GCConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.E, self.Q, self.G = Encoder(cfg), Quantiser(cfg), Generator(cfg)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: images ``(N, 3, H, W)`` -> reconstructions ``(N, 3, H, W)`` and symbols ``(N, C, H/16, W/16)``."""
        wq, idx = self.Q(self.E(x))
        return self.G(wq), idx


def check_size(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] % FACTOR or x.shape[3] % FACTOR:
        raise ValueError(f"expected images (N, 3, H, W) with H, W multiples of {FACTOR}, got {tuple(x.shape)}")


def save_gc(net: GCNet, cfg: GCConfig, path: Path, *, half: bool = False) -> None:
    """Write the state_dict (``half``: float16 storage) to ``path`` and the config to ``path.with_suffix('.json')``."""
    from invcomp.files import atomic_save, write_json

    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone() for k, v in net.state_dict().items()}
    atomic_save(state, Path(path))
    write_json(cfg.to_json_dict(), Path(path).with_suffix(".json"))


def load_gc(path: str | Path, device: str | torch.device = "cpu") -> GCNet:
    """A :class:`GCNet` in eval mode from a state_dict (``weights_only=True``) and the ``.json`` beside it."""
    from invcomp.files import load_state_dict

    cfg = GCConfig.from_json(Path(path).with_suffix(".json"))
    net = GCNet(cfg)
    state = {k: v.float() for k, v in load_state_dict(Path(path)).items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise InvcompError(f"{path} does not match its config: {str(e).splitlines()[0]}") from None
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device).eval()


def upsample_nearest(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``(N, C, h, w)`` -> ``(N, C, h*factor, w*factor)`` by repetition (for masks)."""
    return F.interpolate(x, scale_factor=factor, mode="nearest")
