"""The generative decoder stage: a small conditional generator that turns a decoded 64-px face into a sharp ×4 face.

It costs no bytes: the decoder runs it on whatever base picture a mode decodes (inversion, tone, VAE-GAN,
layered), in the framing the 64-px generators draw (the whole 200-px UTKFace crop, Lanczos-resized to 64), and
gets the same framing at 256 px.

Architecture (:class:`Upsampler`, fully convolutional, no normalisation, so a face decodes the same alone or in a
batch):

- ``head``: 3x3 conv 3 -> ``width`` at the input size (64 px);
- ``blocks`` residual blocks at 64 px (conv3x3, LeakyReLU 0.2, conv3x3, added back);
- a context branch: a stride-2 3x3 conv to ``context_width`` at 32 px, ``context_blocks`` residual blocks there
  (a wider receptive field for the face's layout at the cost of a quarter of the pixels), and a conv +
  pixel shuffle back to 64 px, added to the 64-px features;
- two ×2 stages: conv3x3 to ``4 * up_widths[k]`` + pixel shuffle + LeakyReLU, then conv3x3 + LeakyReLU;
- ``tail``: 3x3 conv to 3 channels (zero at initialisation), added to the bicubic ×4 upscaling of the input (a
  global skip, so a fresh network is plain bicubic and learns only the missing detail).

Determinism across thread counts: the forward pass holds only convolutions, elementwise activations, pixel
shuffles, replicate padding and a bicubic interpolation; each output element of these is one thread's sum in a
fixed order. :func:`upscale`, the decoder's entry point, additionally runs on one thread (as the layered mode's
residual networks do), so a decoder gets the same bytes whatever the caller's ``torch.set_num_threads``.

Weights are a plain state_dict (``.pt``) with a frozen :class:`UpsamplerConfig` in the same-stem ``.json``;
:func:`load_upsampler` reads them with ``weights_only=True``.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from invcomp.errors import InvcompError
from invcomp.files import atomic_save, load_state_dict, sha256_file, write_json
from invcomp.nets import one_thread

log = logging.getLogger(__name__)

ARCHITECTURE = "upsampler"


@dataclass(frozen=True)
class UpsamplerConfig:
    """Shape of an :class:`Upsampler`. ``scale`` is fixed at 4 (two ×2 stages); ``training`` records how the
    weights were made (free-form, not used to build the network)."""

    width: int = 48
    blocks: int = 2
    context_width: int = 96
    context_blocks: int = 4
    up_widths: tuple[int, ...] = (32, 16)
    scale: int = 4
    input_size: int = 64
    architecture: str = ARCHITECTURE
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture != ARCHITECTURE:
            raise InvcompError(f"not an upsampler config: architecture {self.architecture!r}")
        widths = tuple(int(w) for w in self.up_widths)
        object.__setattr__(self, "up_widths", widths)
        if self.scale != 4 or len(widths) != 2:
            raise InvcompError(f"the upsampler scales by 4 in two x2 stages; got scale {self.scale}, "
                               f"up_widths {list(widths)}")
        if min(self.width, self.context_width, *widths) < 1 or min(self.blocks, self.context_blocks) < 0:
            raise InvcompError("upsampler widths must be positive and block counts non-negative")

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["up_widths"] = list(self.up_widths)
        return d

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> "UpsamplerConfig":
        kw = {k: data[k] for k in data if k in cls.__dataclass_fields__}
        if "up_widths" in kw:
            kw["up_widths"] = tuple(kw["up_widths"])
        return cls(**kw)

    @classmethod
    def from_json(cls, path: str | Path) -> "UpsamplerConfig":
        try:
            return cls.from_json_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise InvcompError(f"upsampler config not found: {path}") from None
        except (OSError, json.JSONDecodeError, TypeError, AttributeError) as e:
            raise InvcompError(f"bad upsampler config {path}: {e}") from None


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class ResBlock(nn.Module):
    """``x + conv(act(conv(x)))``: ``(N, C, H, W)`` -> ``(N, C, H, W)``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.act, self.conv2 = nn.Conv2d(c, c, 3, 1, 1), _act(), nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))


class UpStage(nn.Module):
    """×2: conv to ``4 * c_out`` + pixel shuffle + act + conv + act: ``(N, c_in, H, W)`` -> ``(N, c_out, 2H, 2W)``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.expand = nn.Conv2d(c_in, 4 * c_out, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(2)
        self.refine = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.act = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.shuffle(self.expand(x)))
        return self.act(self.refine(x))


class Upsampler(nn.Module):
    """Decoded face ``(N, 3, h, w)`` in [-1, 1] -> ``(N, 3, 4h, 4w)``, unclamped (about [-1, 1]; see :func:`upscale`).

    Any ``h, w >= 1`` work: odd sides are replicate-padded to even for the 32-px context branch and cropped back.
    """

    def __init__(self, cfg: UpsamplerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, cc = cfg.width, cfg.context_width
        self.head = nn.Conv2d(3, c, 3, 1, 1)
        self.body = nn.Sequential(*[ResBlock(c) for _ in range(cfg.blocks)])
        self.down = nn.Conv2d(c, cc, 3, 2, 1)
        self.context = nn.Sequential(*[ResBlock(cc) for _ in range(cfg.context_blocks)])
        self.back = nn.Sequential(nn.Conv2d(cc, 4 * c, 3, 1, 1), nn.PixelShuffle(2))
        self.fuse = nn.Conv2d(c, c, 3, 1, 1)
        self.up1 = UpStage(c, cfg.up_widths[0])
        self.up2 = UpStage(cfg.up_widths[0], cfg.up_widths[1])
        self.tail = nn.Conv2d(cfg.up_widths[1], 3, 3, 1, 1)
        self.act = _act()
        self._init()

    def _init(self) -> None:
        """He initialisation; each residual branch's last conv starts small (x0.1) and the tail at zero, so a fresh
        network is exactly bicubic and the residual stacks start near identity."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            for block in [*self.body, *self.context]:
                block.conv2.weight.mul_(0.1)
            self.back[0].weight.mul_(0.1)
            self.tail.weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, h, w) pictures, got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = h % 2, w % 2
        xp = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
        f = self.head(xp)  # (N, C, H, W), H and W even
        f = self.body(f)
        g = self.back(self.context(self.act(self.down(f))))  # (N, C, H, W)
        f = self.act(self.fuse(f + g))
        f = self.up2(self.up1(f))  # (N, up_widths[1], 4H, 4W)
        out = self.tail(f)[..., : 4 * h, : 4 * w]
        base = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)  # (N, 3, 4h, 4w)
        return base + out


def param_count(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def upscale(net: Upsampler, x: torch.Tensor) -> torch.Tensor:
    """The decoder stage: pictures ``(N, 3, h, w)`` in [-1, 1] -> ``(N, 3, 4h, 4w)`` in [-1, 1], on one thread.

    The network's mode is restored after. Output is the same for any caller thread count (see module doc).
    """
    was_training = net.training
    net.eval()
    try:
        with one_thread():
            return net(x.float()).clamp(-1, 1)
    finally:
        net.train(was_training)


@dataclass
class LoadedUpsampler:
    """A frozen upsampler in eval mode, its config and the sha256 of its weights file."""

    module: Upsampler
    config: UpsamplerConfig
    sha256: str
    path: Path


def save_upsampler(net: Upsampler, cfg: UpsamplerConfig, path_pt: str | Path) -> Path:
    """Write ``net``'s state_dict (CPU tensors) to ``path_pt`` and ``cfg`` to the same-stem ``.json``, atomically."""
    path = Path(path_pt)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, path)
    write_json(cfg.to_json_dict(), path.with_suffix(".json"))
    return path


def load_upsampler(path_pt: str | Path, device: str | torch.device = "cpu") -> LoadedUpsampler:
    """Load weights saved by :func:`save_upsampler` (``weights_only=True``), frozen, in eval mode.

    Missing or corrupt files, or weights that do not fit the config beside them, raise :class:`InvcompError`.
    """
    path = Path(path_pt)
    if not path.is_file():
        raise InvcompError(f"upsampler weights not found: {path}")
    cfg = UpsamplerConfig.from_json(path.with_suffix(".json"))
    digest = sha256_file(path)
    state = load_state_dict(path)
    net = Upsampler(cfg)
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e).splitlines()[0])
        raise InvcompError(f"weights {path} do not match the upsampler config beside them: {first[:200]}") from None
    net = net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return LoadedUpsampler(module=net, config=cfg, sha256=digest, path=path)
