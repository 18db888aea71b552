"""The search's own Adam (invcomp.search.adam) against torch.optim.Adam, and early stopping in the search."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from invcomp.search.adam import Adam
from invcomp.search.inversion import invert


def _torch_steps(p0: torch.Tensor, grads: list[torch.Tensor], lrs: list[float]) -> torch.Tensor:
    p = p0.clone().requires_grad_(True)
    opt = torch.optim.Adam([p], lr=lrs[0], betas=(0.9, 0.999))
    for g, lr in zip(grads, lrs):
        opt.param_groups[0]["lr"] = lr
        p.grad = g.clone()
        opt.step()
    return p.detach()


def test_adam_matches_torch_optim_bit_for_bit() -> None:
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(3, 100, generator=gen)
    grads = [torch.randn(3, 100, generator=gen) * 10 ** (k % 3 - 1) for k in range(25)]
    lrs = [0.5 * (k + 1) / 25 for k in range(25)]
    p = p0.clone().requires_grad_(True)
    opt = Adam([p], lr=lrs[0])
    for g, lr in zip(grads, lrs):
        opt.set_lr(lr)
        p.grad = g.clone()
        opt.step()
    assert torch.equal(p.detach(), _torch_steps(p0, grads, lrs))


def test_adam_skips_parameters_without_gradient() -> None:
    a, b = torch.ones(4, requires_grad=True), torch.ones(4, requires_grad=True)
    opt = Adam([a, b], lr=0.1)
    a.grad = torch.ones(4)
    opt.step()
    assert torch.equal(b.detach(), torch.ones(4)) and not torch.equal(a.detach(), torch.ones(4))
    b.grad = torch.ones(4)  # b's first step is a first step (bias correction of step 1), as torch.optim's would be
    opt.zero_grad()
    b.grad = torch.ones(4)
    opt.step()
    assert torch.allclose(b.detach(), torch.full((4,), 0.9), atol=1e-6)


def test_search_imports_no_torch_optim() -> None:
    code = ("import sys, torch\nfrom torch import nn\nfrom invcomp.search.inversion import invert\n"
            "class G(nn.Module):\n    latent_dim = 4\n    def __init__(self):\n        super().__init__(); self.l = nn.Linear(4, 48)\n"
            "    def forward(self, z): return self.l(z).view(-1, 3, 4, 4).tanh()\n"
            "invert(G().eval(), torch.zeros(1, 3, 4, 4), loss='mse', iters=3)\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[-1] == "False"


class _Linear(nn.Module):
    """A toy generator: z (N, 8) -> (N, 3, 4, 4), smooth, so a search converges and then stalls."""

    latent_dim = 8

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.l = nn.Linear(8, 48)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.l(z).view(-1, 3, 4, 4).tanh()


def test_early_stopping_stops_rows_that_stall_and_keeps_quality() -> None:
    G = _Linear().eval()
    with torch.no_grad():
        target = G(torch.randn(4, 8, generator=torch.Generator().manual_seed(1)))
    start = invert(G, target, loss="mse", iters=0)
    early = invert(G, target, loss="mse", iters=300, lr=0.1, norm_weight=0, patience=5, min_delta=1e-6)
    assert early.steps is not None and int(early.steps.max()) < 300  # a converged row stops
    assert bool((early.loss < 0.05 * start.loss).all())  # after most of the way down


def test_early_stopping_row_does_not_depend_on_its_batch() -> None:
    G = _Linear().eval()
    with torch.no_grad():
        target = G(torch.randn(3, 8, generator=torch.Generator().manual_seed(2)))
    together = invert(G, target, loss="mse", iters=80, lr=0.1, patience=4)
    alone = invert(G, target[1:2], loss="mse", iters=80, lr=0.1, patience=4)
    assert torch.allclose(together.z[1], alone.z[0], atol=1e-5)
    assert int(together.steps[1]) == int(alone.steps[0])


def test_patience_must_be_positive() -> None:
    with pytest.raises(ValueError, match="patience"):
        invert(_Linear().eval(), torch.zeros(1, 3, 4, 4), iters=3, patience=0)


def test_cli_patience_is_reported_and_refused_when_negative(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    from pathlib import Path

    from invcomp.cli import cli

    from .conftest import cli_runner

    src = Path(__file__).resolve().parents[1] / "experiments/data/portraits/astronaut-face.png"
    run = cli_runner().invoke
    r = run(cli, ["encode", str(src), "--model", "dcgan-utkface64", "--iters", "40", "--patience", "2", "-o",
                  str(tmp_path / "a.ivc"), "--json"])
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["patience"] == 2 and row["iters"] == 40
    assert run(cli, ["decode", str(tmp_path / "a.ivc"), "-o", str(tmp_path / "a.png")]).exit_code == 0
    r = run(cli, ["encode", str(src), "--model", "dcgan-utkface64", "--patience", "-1", "-o", str(tmp_path / "b.ivc")])
    assert r.exit_code != 0 and not (tmp_path / "b.ivc").exists()
