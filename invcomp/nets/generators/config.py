"""The JSON config that travels beside every generator's weights."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from invcomp.errors import InvcompError

ARCHITECTURES = ("dcgan", "pgan", "custom")
PRIORS = ("normal", "uniform")


@dataclass(frozen=True)
class GeneratorConfig:
    """What a loader needs besides the state_dict.

    ``prior`` is the latent distribution the generator was trained on:
    ``normal`` (N(0, I)) or ``uniform`` (U(-1, 1)). ``widths`` is informative
    (the loaders infer shapes from the weights). ``norm_free`` says that
    G(c z) = G(z) for c > 0 (PGAN pixel-normalises z first), so bitstreams
    store no norm. ``options`` holds architecture switches that the weights
    cannot tell (PGAN: alpha, leaky, normalization, output_activation).
    ``training`` records how the weights were made.
    """

    architecture: str
    latent_dim: int
    resolution: int
    prior: str = "normal"
    widths: list[int] = field(default_factory=list)
    norm_free: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise InvcompError(f"unknown architecture {self.architecture!r}; known: {', '.join(ARCHITECTURES)}")
        if self.prior not in PRIORS:
            raise InvcompError(f"unknown prior {self.prior!r}; use normal or uniform")
        if self.latent_dim < 1 or self.resolution < 1:
            raise InvcompError("latent_dim and resolution must be positive")

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, path: Path) -> "GeneratorConfig":
        try:
            data = json.loads(Path(path).read_text())
            return cls(**{k: data[k] for k in data if k in cls.__dataclass_fields__})
        except (OSError, json.JSONDecodeError, TypeError, KeyError) as e:
            raise InvcompError(f"bad generator config {path}: {e}") from None
