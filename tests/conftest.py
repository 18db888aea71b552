"""Shared test helpers: where ``../shared`` is, and a marker that skips tests when it is absent."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

import pytest

# Tests never read or write the user's real model registry (~/.config/invcomp).
os.environ["INVCOMP_HOME"] = tempfile.mkdtemp(prefix="invcomp-home-")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
DEMO_IMAGE = REPO / "experiments" / "data" / "portraits" / "astronaut-face.png"

F = TypeVar("F", bound=Callable)


def shared_path(*parts: str) -> Path:
    """A path inside ``../shared`` (which a user's fresh machine does not have)."""
    return SHARED.joinpath(*parts)


def needs_shared(*parts: str) -> Callable[[F], F]:
    """Decorator: mark a test ``needs_shared`` and skip it when ``../shared/<parts>`` is absent."""
    target = shared_path(*parts)
    skip = pytest.mark.skipif(not target.exists(), reason=f"{target} is absent (../shared is optional)")

    def deco(fn: F) -> F:
        return pytest.mark.needs_shared(skip(fn))

    return deco


@pytest.fixture
def shared_dir() -> Path:
    """The ``../shared`` folder; skips the test when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (../shared is optional)")
    return SHARED


def tiny_dcgan(latent_dim: int = 8, widths: tuple[int, ...] = (8, 4, 2), *, bias: bool = False, seed: int = 0):
    """A small seeded DCGAN generator (32x32 by default) with non-trivial BatchNorm statistics, in eval mode.

    Random running stats and affine BN parameters make sure a loader that dropped the buffers would be caught.
    """
    import torch

    from invcomp.nets.generators.dcgan import DCGANArch, DCGANGenerator

    torch.manual_seed(seed)
    g = DCGANGenerator(DCGANArch(latent_dim=latent_dim, widths=widths, bias=bias))
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return g.eval()


def cli_runner():  # type: ignore[no-untyped-def]
    """A click CliRunner that keeps stderr apart from stdout on every click version."""
    from click.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)  # click < 8.2
    except TypeError:  # click >= 8.2 keeps result.stderr apart by default
        return CliRunner()
