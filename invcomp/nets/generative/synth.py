"""SC's synthesiser S: the code where it was dropped, from the kept code, the mask and the semantic map.

SC (Agustsson et al.'s selective compression) keeps the code inside the preserved regions and synthesises the
rest. Here the synthesis is split in two: S predicts, for every dropped cell, a distribution over the L centres
of each of the C channels, conditioned on the kept code (one-hot, zero where dropped), the cell mask and the
semantic map (one-hot at the semantic grid, 8 px a cell, brought to the code grid by a stride-2 convolution; an
all-zero plane and a flag where the file has no map); the decoder takes each distribution's most likely centre,
and GC's own generator G (frozen) draws the whole picture from the completed code. So in preserved cells the
symbols are exactly GC's, and the pixels differ from GC's only where G's receptive field reaches a synthesised
cell (near the region's border). S is a stack of dilated 3x3 convolutions at /16 (receptive field 31 cells), so it
is cheap at any size; it is trained (:mod:`invcomp.train.sc`) with cross-entropy against the encoder's own
symbols under random preserved masks, which is a conditional generative model of the code, not the paper's
adversarial synthesis in pixel space (see the model card).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from invcomp.errors import InvcompError
from invcomp.nets.generative.semantic import CLASSES


@dataclass(frozen=True)
class SCConfig:
    """Shape of an SC synthesiser over GC model ``base`` (whose weights' sha256 is ``base_sha256``)."""

    base: str
    base_sha256: str
    channels: int
    centres: int
    classes: int = len(CLASSES)
    width: int = 64
    dilations: tuple[int, ...] = (1, 2, 4, 4, 2, 1)
    halo: int = 1
    architecture: str = "sc"
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture != "sc":
            raise InvcompError(f"not an SC config: architecture {self.architecture!r}")
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if self.classes < 2 or self.width < 1 or not self.dilations or self.halo < 0:
            raise InvcompError("an SC config needs >= 2 classes, a positive width, dilations and a halo >= 0")

    def to_json_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_json(cls, path: Path) -> "SCConfig":
        try:
            data = json.loads(Path(path).read_text())
            return cls(**{k: data[k] for k in data if k in cls.__dataclass_fields__})
        except FileNotFoundError:
            raise InvcompError(f"SC config not found: {path}") from None
        except (OSError, ValueError, TypeError, AttributeError) as e:
            raise InvcompError(f"bad SC config {path}: {e}") from None


class Synthesiser(nn.Module):
    """S: symbols ``(N, C, h, w)``, cell mask ``(N, h, w)`` bool, semantic grid ``(N, 2h, 2w)`` int64 or ``None``
    -> logits ``(N, C, L, h, w)``."""

    def __init__(self, cfg: SCConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c_sem = 16
        self.sem = nn.Conv2d(cfg.classes, c_sem, 4, 2, 1)
        c_in = cfg.channels * cfg.centres + 2 + c_sem
        layers: list[nn.Module] = [nn.Conv2d(c_in, cfg.width, 3, 1, 1), nn.ReLU(inplace=True)]
        for d in cfg.dilations:
            layers += [nn.Conv2d(cfg.width, cfg.width, 3, 1, d, dilation=d), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(cfg.width, cfg.channels * cfg.centres, 1)

    def forward(self, symbols: torch.Tensor, mask: torch.Tensor, semantic: Optional[torch.Tensor]) -> torch.Tensor:
        cfg = self.cfg
        n, c, h, w = symbols.shape
        keep = mask[:, None].float()
        onehot = F.one_hot(symbols.clamp(0, cfg.centres - 1), cfg.centres).permute(0, 1, 4, 2, 3).float()
        onehot = onehot.reshape(n, c * cfg.centres, h, w) * keep
        if semantic is None:
            sem, flag = torch.zeros(n, cfg.classes, 2 * h, 2 * w), torch.zeros(n, 1, h, w)
        else:
            if semantic.shape[-2:] != (2 * h, 2 * w):
                raise ValueError(f"a ({h}, {w}) code grid has a ({2 * h}, {2 * w}) semantic grid, got {tuple(semantic.shape)}")
            sem, flag = F.one_hot(semantic, cfg.classes).permute(0, 3, 1, 2).float(), torch.ones(n, 1, h, w)
        x = torch.cat([onehot, keep, flag, self.sem(sem.to(onehot))], 1)
        return self.head(self.body(x)).view(n, c, cfg.centres, h, w)


@torch.no_grad()
def complete(S: Synthesiser, symbols: torch.Tensor, mask: torch.Tensor, semantic: Optional[torch.Tensor]) -> torch.Tensor:
    """The full symbols ``(C, h, w)``: the kept ones where ``mask`` ``(h, w)``, S's most likely centre elsewhere."""
    logits = S(symbols[None].clamp(min=0), mask[None], None if semantic is None else semantic[None])[0]
    return torch.where(mask[None], symbols, logits.argmax(1))


def save_synth(S: Synthesiser, cfg: SCConfig, path: Path) -> None:
    """float32 state_dict (S is small) to ``path``, the config to ``path.with_suffix('.json')``."""
    from invcomp.files import atomic_save, write_json

    atomic_save({k: v.detach().cpu().clone() for k, v in S.state_dict().items()}, Path(path))
    write_json(cfg.to_json_dict(), Path(path).with_suffix(".json"))


def load_synth(path: str | Path, state: Optional[Mapping[str, torch.Tensor]] = None) -> Synthesiser:
    """S in eval mode from a state_dict (``weights_only=True``) and the ``.json`` beside it."""
    from invcomp.files import load_state_dict

    S = Synthesiser(SCConfig.from_json(Path(path).with_suffix(".json")))
    try:
        S.load_state_dict({k: v.float() for k, v in (state or load_state_dict(Path(path))).items()})
    except RuntimeError as e:
        raise InvcompError(f"{path} does not match its config: {str(e).splitlines()[0]}") from None
    for p in S.parameters():
        p.requires_grad_(False)
    return S.eval()
