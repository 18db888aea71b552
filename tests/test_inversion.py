"""Tests for :mod:`invcomp.search.inversion` with a tiny, well-conditioned synthetic generator.

The generator is ``z (8) -> tanh(W z) -> (3, 16, 16)`` with ``W`` having
orthogonal columns, so the MSE inversion problem has a unique, reachable
optimum at ``z_true``. Only the MSE loss is used (SSIM is slow on a busy CPU).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from invcomp.search.inversion import QuantSpec, initial_latents, invert, lr_at

D, R = 8, 16


class TinyG(nn.Module):
    """A fixed random map ``(M, 8) -> (M, 3, 16, 16)`` in (-1, 1); eval mode, frozen."""

    latent_dim = D

    def __init__(self, seed: int = 0, gain: float = 8.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(3 * R * R, D, generator=g, dtype=torch.float64))
        self.lin = nn.Linear(D, 3 * R * R, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(q.float() * gain)  # orthogonal columns: W^T W = gain^2 I
        self.requires_grad_(False)
        self.eval()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # tanh(h) written as 2 sigmoid(2h) - 1: torch.tanh is very slow on a contended 2-core CPU
        return (2 * torch.sigmoid(2 * self.lin(z)) - 1).view(-1, 3, R, R)


def mse_unit(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image MSE in [0, 1] units, written independently of invcomp.metrics."""
    return (((x + 1) / 2 - (y + 1) / 2) ** 2).flatten(1).mean(1)


def z_true(n: int = 3, seed: int = 5) -> torch.Tensor:
    return torch.randn(n, D, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny tensors: intra-op threads only add contention on a small, busy CPU. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gen() -> TinyG:
    return TinyG()


# ---------------------------------------------------------------- lr schedule


def test_lr_warmup_is_linear() -> None:
    # iters=105, warmup=0.05 -> n_warm = round(5.25) = 5: lr * 1/5, 2/5, ..., 5/5
    assert [lr_at(s, 105, 0.5) for s in range(5)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-12)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (5, 0.5),                  # t = 0: the peak
        (30, 0.4267766952966369),  # t = 0.25: 0.25 * (1 + sqrt(2)/2)
        (55, 0.25),                # t = 0.5: half the peak
        (80, 0.0732233047033631),  # t = 0.75: 0.25 * (1 - sqrt(2)/2)
        (104, 1.2336e-4),          # t = 0.99: 0.25 * (1 + cos(0.99 pi)), about 0
    ],
)
def test_lr_cosine_hand_values(step: int, expected: float) -> None:
    assert lr_at(step, 105, 0.5) == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_lr_shape_over_a_run() -> None:
    iters, lr = 300, 0.5
    n_warm = 15  # round(0.05 * 300)
    sched = [lr_at(s, iters, lr) for s in range(iters)]
    assert all(a < b for a, b in zip(sched[:n_warm], sched[1:n_warm]))          # strictly rising
    assert all(a > b for a, b in zip(sched[n_warm:], sched[n_warm + 1:]))       # strictly falling
    assert max(sched) == pytest.approx(lr)
    assert sched[n_warm - 1] == pytest.approx(lr) and sched[n_warm] == pytest.approx(lr)
    assert 0 < sched[-1] < 1e-4 * lr
    assert all(0 < v <= lr for v in sched)


def test_lr_tiny_runs() -> None:
    assert lr_at(0, 1, 0.3) == pytest.approx(0.3)  # n_warm is at least 1
    assert lr_at(0, 10, 0.3, warmup=0.0) == pytest.approx(0.3)
    assert lr_at(0, 10, 0.3, warmup=0.5) == pytest.approx(0.06)  # n_warm = 5


def test_invert_uses_the_schedule(gen: TinyG) -> None:
    seen: list[tuple[int, int, float, tuple]] = []
    target = gen(z_true(2))
    invert(gen, target, loss="mse", iters=40, lr=0.3, warmup=0.1,
           callback=lambda step, iters, lr, loss: seen.append((step, iters, lr, tuple(loss.shape))))
    assert [s[0] for s in seen] == list(range(40))
    assert all(s[1] == 40 for s in seen) and all(s[3] == (2,) for s in seen)
    lrs = [s[2] for s in seen]
    assert len(set(lrs)) > 30  # not constant
    # independent: warm-up of round(4) steps, then cosine over the remaining 36
    expected = [0.3 * (s + 1) / 4 if s < 4 else 0.3 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 36)) for s in range(40)]
    assert lrs == pytest.approx(expected, rel=1e-9)
    assert lrs == pytest.approx([lr_at(s, 40, 0.3, 0.1) for s in range(40)], rel=1e-12)


# ---------------------------------------------------------------- recovery


def test_recovers_latent_and_image(gen: TinyG) -> None:
    zt = z_true(3)
    target = gen(zt)
    res = invert(gen, target, loss="mse", iters=200, lr=0.2, norm_weight=0.0, seed=1)
    assert res.z.shape == (3, D) and res.loss.shape == (3,) and res.float_loss.shape == (3,)
    assert torch.equal(res.restart, torch.zeros(3, dtype=torch.long))
    recon_mse = mse_unit(gen(res.z), target)
    assert (recon_mse < 1e-3).all()
    assert (res.z - zt).abs().max() < 0.05
    # the start was far away: this is real progress, not a lucky init
    z0 = initial_latents(3, D, seed=1)
    assert (mse_unit(gen(z0), target) > 1e-2).all()
    # reported loss is the loss of the returned latent (no quantiser: loss == float_loss)
    assert torch.allclose(res.loss, recon_mse, rtol=1e-4, atol=1e-9)
    assert torch.equal(res.loss, res.float_loss)


def test_generator_is_not_modified(gen: TinyG) -> None:
    before = gen.lin.weight.clone()
    invert(gen, gen(z_true(1)), loss="mse", iters=5)
    assert torch.equal(gen.lin.weight, before)
    assert gen.lin.weight.grad is None
    assert not gen.training


def test_batch_equals_single(gen: TinyG) -> None:
    zt = z_true(3)
    target = gen(zt)
    z0 = torch.randn(3, D, generator=torch.Generator().manual_seed(11))
    kw = dict(loss="mse", iters=60, lr=0.2, restarts=1)
    together = invert(gen, target, init=z0, **kw)
    for i in range(3):
        alone = invert(gen, target[i:i + 1], init=z0[i:i + 1], **kw)
        assert torch.allclose(together.z[i], alone.z[0], atol=1e-4)
        assert torch.allclose(together.loss[i], alone.loss[0], atol=1e-4)


def test_tensor_init_is_used_and_iters_zero(gen: TinyG) -> None:
    z0 = torch.randn(2, D, generator=torch.Generator().manual_seed(3))
    target = gen(z_true(2))
    res = invert(gen, target, loss="mse", iters=0, init=z0)
    assert torch.equal(res.z, z0)
    assert torch.allclose(res.loss, mse_unit(gen(z0), target), rtol=1e-5)
    assert torch.equal(invert(gen, target, loss="mse", iters=0, init="mean").z, torch.zeros(2, D))


def test_bad_init_shape(gen: TinyG) -> None:
    with pytest.raises(ValueError):
        invert(gen, gen(z_true(2)), loss="mse", iters=1, init=torch.zeros(3, D))


# ---------------------------------------------------------------- determinism and restarts


def test_deterministic_for_a_seed(gen: TinyG) -> None:
    target = gen(z_true(2)) * 0.9
    kw = dict(loss="mse", iters=30, lr=0.2, restarts=2)
    a = invert(gen, target, seed=7, **kw)
    b = invert(gen, target, seed=7, **kw)
    c = invert(gen, target, seed=8, **kw)
    assert torch.equal(a.z, b.z) and torch.equal(a.loss, b.loss) and torch.equal(a.restart, b.restart)
    assert not torch.allclose(a.z, c.z, atol=1e-3)


def test_restarts_never_worse_and_first_restart_is_the_single_run(gen: TinyG) -> None:
    # an unreachable target (noise) so that restarts land in different places
    target = torch.rand(3, 3, R, R, generator=torch.Generator().manual_seed(2)) * 2 - 1
    rows1: list[torch.Tensor] = []
    rows3: list[torch.Tensor] = []
    kw = dict(loss="mse", iters=40, lr=0.3, seed=4)
    one = invert(gen, target, restarts=1, callback=lambda s, i, lr, l: rows1.append(l.clone()), **kw)
    three = invert(gen, target, restarts=3, callback=lambda s, i, lr, l: rows3.append(l.clone()), **kw)
    assert rows3[0].shape == (9,)
    # rows 0..2 of the 3-restart batch follow exactly the 1-restart trajectory (same init)
    for a, b in zip(rows1, rows3):
        assert torch.allclose(a, b[:3], rtol=1e-4, atol=1e-7)
    assert (three.loss <= one.loss + 1e-6).all()
    assert ((three.restart >= 0) & (three.restart < 3)).all()
    # the reported loss is that of the returned latent
    assert torch.allclose(three.loss, mse_unit(gen(three.z), target), rtol=1e-4)


def test_best_restart_is_selected_per_image(gen: TinyG) -> None:
    # iters=0: each restart's latent is its start, known independently: restart 0 from `init`
    # (seed), restart r >= 1 from the prior drawn with seed + r; every image's row is drawn alone.
    n, restarts, seed = 6, 4, 10
    target = gen(z_true(n, seed=99))
    starts = torch.stack([torch.randn(D, generator=torch.Generator().manual_seed(seed + r)).expand(n, D)
                          for r in range(restarts)])
    losses = torch.stack([mse_unit(gen(starts[r]), target) for r in range(restarts)])  # (restarts, n)
    best = losses.argmin(0)
    assert len(set(best.tolist())) > 1  # the choice differs between images, so this checks the indexing
    res = invert(gen, target, loss="mse", iters=0, restarts=restarts, seed=seed)
    assert torch.equal(res.restart, best)
    assert torch.equal(res.z, starts[best, torch.arange(n)])
    assert torch.allclose(res.loss, losses.min(0).values, rtol=1e-5)


def test_uniform_prior_stays_in_the_box(gen: TinyG) -> None:
    far = torch.full((2, D), 3.0)
    far[1] = -3.0
    target = gen(far)  # best fit lies outside [-1, 1]^D
    res = invert(gen, target, loss="mse", iters=60, lr=0.5, prior="uniform", restarts=2, seed=3)
    assert res.z.abs().max() <= 1.0
    assert (res.z.abs() == 1.0).any()  # the clamp was active
    # the no-clamp run (normal prior, no regulariser) does leave the box: the clamp is what keeps it in
    free = invert(gen, target, loss="mse", iters=60, lr=0.5, norm_weight=0.0, seed=3)
    assert free.z.abs().max() > 1.5


def test_uniform_random_init_in_box() -> None:
    z = torch.cat([initial_latents(1, D, prior="uniform", seed=s) for s in range(50)])
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.9 and z.max() > 0.9


@pytest.mark.parametrize("prior", ["normal", "uniform"])
def test_random_init_does_not_depend_on_batch_position(prior: str) -> None:
    alone = initial_latents(1, D, prior=prior, seed=5)
    batch = initial_latents(7, D, prior=prior, seed=5)
    assert all(torch.equal(batch[i], alone[0]) for i in range(7))
    assert not torch.equal(initial_latents(1, D, prior=prior, seed=6), alone)


# ---------------------------------------------------------------- quantiser-aware


def hand_quant(z: torch.Tensor, bits: int) -> torch.Tensor:
    """l2-scaled nearest quantise/dequantise, norm rounded up to float16 (independent of invcomp.coding.quantize)."""
    s = 2 ** (bits - 1) - 1
    out = []
    for row in z.double().numpy():
        norm = float(np.sqrt((row.astype(np.float32) ** 2).sum(dtype=np.float32)))
        h = np.float16(norm)
        if float(h) < norm:
            h = np.nextafter(h, np.float16(np.inf))
        step = float(h)
        mag = np.minimum(np.floor(np.abs(row) / step * s + 0.5), s)
        out.append(np.sign(row) * mag * step / s)
    return torch.tensor(np.array(out), dtype=torch.float32)


def test_quant_aware_loss_is_the_dequantised_loss(gen: TinyG) -> None:
    target = gen(z_true(3))
    res = invert(gen, target, loss="mse", iters=60, lr=0.2, quant=QuantSpec(bits=3, scaling="l2"), seed=2)
    zq = hand_quant(res.z, 3)
    # 3 bits, s = 3: every coordinate is a multiple of norm/3 with |level| <= 3
    assert torch.allclose(res.loss, mse_unit(gen(zq), target), rtol=1e-4, atol=1e-8)
    assert torch.allclose(res.float_loss, mse_unit(gen(res.z), target), rtol=1e-4, atol=1e-8)
    assert (res.loss > res.float_loss).all()  # 3-bit rounding costs something here
    assert not torch.allclose(res.loss, res.float_loss, rtol=1e-3)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kw",
    [
        {"target": torch.zeros(3, R, R)},
        {"target": torch.zeros(1, 1, 3, R, R)},
        {"restarts": 0},
        {"iters": -1},
        {"init": "nope"},
    ],
)
def test_bad_inputs(gen: TinyG, kw: dict) -> None:
    args = dict(target=torch.zeros(1, 3, R, R), loss="mse", iters=1)
    args.update(kw)
    target = args.pop("target")
    with pytest.raises(ValueError):
        invert(gen, target, **args)
