"""Tests for :mod:`invcomp.coding.quantize` (QSGD-style latent quantisation)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from invcomp.errors import InvcompError
from invcomp.coding.quantize import dequantize, fake_quantize, quantize

SCALINGS = ("max", "l2")
BITS = range(2, 17)


def latents(seed: int = 0, n: int = 16, d: int = 100) -> torch.Tensor:
    """Seeded standard-normal latents ``(n, d)``."""
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def levels(bits: int) -> int:
    """Positive level count, from the definition (independent of the module)."""
    return 2 ** (bits - 1) - 1


def true_norm(z: torch.Tensor, scaling: str) -> torch.Tensor:
    return z.abs().amax(1) if scaling == "max" else z.norm(dim=1)


def error(z: torch.Tensor, q) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-coordinate reconstruction error and the per-row step ``norm / s``, in float64."""
    step = q.norm.double()[:, None] / levels(q.bits)
    return (z.double() - q.levels.double() * step).abs(), step


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("bits", BITS)
def test_nearest_error_bound(bits: int, scaling: str) -> None:
    z = latents(bits)
    s = levels(bits)
    q = quantize(z, bits, scaling=scaling)
    assert q.levels.shape == z.shape and q.levels.dtype == torch.int64
    assert q.levels.abs().max().item() <= s
    err, step = error(z, q)
    assert (err <= step / 2 + 1e-6).all()
    # independent float64 reference: round(s * |z| / norm), away from ties
    r = z.double().abs() / q.norm.double()[:, None] * s
    ref = torch.floor(r + 0.5) * torch.sign(z.double())
    clear = (r - torch.floor(r) - 0.5).abs() > 1e-2  # float32 r is off by <= ~0.002 levels
    assert torch.equal(q.levels.double()[clear], ref[clear])
    assert torch.allclose(dequantize(q).double(), q.levels.double() * step, atol=1e-6)


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("bits", BITS)
def test_stochastic_error_bound(bits: int, scaling: str) -> None:
    z = latents(100 + bits)
    s = levels(bits)
    q = quantize(z, bits, scaling=scaling, rounding="stochastic", seed=bits)
    assert q.levels.abs().max().item() <= s
    err, step = error(z, q)
    assert (err < step + 1e-6).all()
    # the level is floor(r) or floor(r) + 1 (clamped to s)
    r = z.double().abs() / q.norm.double()[:, None] * s
    mag = q.levels.abs().double()
    assert ((mag - r) > -1 - 1e-3).all() and ((mag - r) < 1 + 1e-3).all()


def test_stochastic_is_unbiased() -> None:
    z = torch.tensor([[0.3, -0.7, 0.05, 1.0, -0.2]])
    bits, runs, tol = 3, 4000, 0.015  # s = 3; std of the mean <= 0.5 / 3 / sqrt(4000) = 0.0026
    mean = sum(dequantize(quantize(z, bits, rounding="stochastic", seed=k)) for k in range(runs)) / runs
    assert torch.allclose(mean, z, atol=tol)
    # nearest rounding is biased on this vector by more than the tolerance
    nearest = dequantize(quantize(z, bits))
    assert (nearest - z).abs().max().item() > 5 * tol


def test_stochastic_seeding() -> None:
    z = latents(7)
    a = quantize(z, 4, rounding="stochastic", seed=123)
    b = quantize(z, 4, rounding="stochastic", seed=123)
    c = quantize(z, 4, rounding="stochastic", seed=124)
    assert torch.equal(a.levels, b.levels) and torch.equal(a.norm, b.norm)
    assert not torch.equal(a.levels, c.levels)


@pytest.mark.parametrize("rounding", ("nearest", "stochastic"))
@pytest.mark.parametrize("scaling", SCALINGS)
def test_zero_vector(scaling: str, rounding: str) -> None:
    z = torch.zeros(3, 10)
    q = quantize(z, 8, scaling=scaling, rounding=rounding, seed=1)
    assert torch.equal(q.levels, torch.zeros(3, 10, dtype=torch.int64))
    assert torch.equal(q.norm, torch.zeros(3))
    out = dequantize(q)
    assert torch.isfinite(out).all() and torch.equal(out, torch.zeros(3, 10))


@pytest.mark.parametrize("rounding", ("nearest", "stochastic"))
@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("bits", BITS)
def test_single_coordinate_at_full_norm(bits: int, scaling: str, rounding: str) -> None:
    s = levels(bits)
    z = torch.zeros(2, 20)
    z[0, 3] = 2.5  # float16-exact values, so the stored norm is the value itself
    z[1, 7] = -0.75
    q = quantize(z, bits, scaling=scaling, rounding=rounding, seed=bits)
    expected = torch.zeros(2, 20, dtype=torch.int64)
    expected[0, 3], expected[1, 7] = s, -s
    assert torch.equal(q.levels, expected)
    assert torch.equal(q.norm, torch.tensor([2.5, 0.75]))
    assert torch.equal(dequantize(q), z)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_negative_values_keep_sign(scaling: str) -> None:
    z = latents(3)
    neg = -z.abs() - 0.5  # all clearly negative
    q = quantize(neg, 6, scaling=scaling)
    assert (q.levels <= 0).all() and (q.levels < 0).any()
    qz = quantize(z, 6, scaling=scaling)
    nz = qz.levels != 0
    assert torch.equal(torch.sign(qz.levels[nz]), torch.sign(z[nz]).long())
    assert torch.equal(quantize(-z, 6, scaling=scaling).levels, -qz.levels)


@pytest.mark.parametrize("scaling", SCALINGS)
def test_norm_is_float16_ceiling(scaling: str) -> None:
    z = latents(11) * 3.7
    q = quantize(z, 8, scaling=scaling)
    norm = q.norm.numpy()
    true = true_norm(z, scaling).numpy()
    assert np.array_equal(norm.astype(np.float16).astype(np.float32), norm)
    assert (norm >= true).all()
    # the smallest such value: the next float16 down is below the true norm
    below = np.nextafter(norm.astype(np.float16), np.float16(-np.inf)).astype(np.float32)
    assert (below < true).all()


def test_invalid_inputs_raise() -> None:
    z = latents(0, 2, 10)
    for bad in (float("nan"), float("inf")):
        zb = z.clone()
        zb[1, 4] = bad
        with pytest.raises(InvcompError):
            quantize(zb, 8)
    big = z.clone()
    big[0, 0] = 70000.0
    for scaling in SCALINGS:
        with pytest.raises(InvcompError):
            quantize(big, 8, scaling=scaling)
    wide = torch.full((1, 100), 10000.0)  # max 10000 fits float16, l2 norm 100000 does not
    assert quantize(wide, 8, scaling="max").levels.eq(127).all()
    with pytest.raises(InvcompError):
        quantize(wide, 8, scaling="l2")
    for bits in (0, 1, 17):
        with pytest.raises(InvcompError):
            quantize(z, bits)
    with pytest.raises(InvcompError):
        quantize(z, 8, scaling="l1")
    with pytest.raises(InvcompError):
        quantize(z, 8, rounding="floor")
    with pytest.raises(InvcompError):
        fake_quantize(z, 8, scaling="mean")


def test_norm_override_clamps() -> None:
    z = torch.tensor([[4.0, -1.0, 0.5]])
    q = quantize(z, 3, norm=torch.tensor([2.0]))
    assert q.levels.tolist() == [[3, -2, 1]]  # s = 3: 4/2*3 clamps to 3; 1/2*3 = 1.5 -> 2; 0.75 -> 1
    zero = quantize(z, 3, norm=torch.tensor([0.0]))
    assert zero.levels.tolist() == [[0, 0, 0]] and torch.equal(dequantize(zero), torch.zeros(1, 3))


def test_nearest_ties_round_away_from_zero() -> None:
    z = torch.tensor([[2.0, 1.0, -1.0, 0.0]])  # s = 3, norm 2: r = 3, 1.5, 1.5, 0
    assert quantize(z, 3).levels.tolist() == [[3, 2, -2, 0]]


@pytest.mark.parametrize("scaling", SCALINGS)
def test_fake_quantize_straight_through(scaling: str) -> None:
    z = latents(5, 4, 100).requires_grad_(True)
    out = fake_quantize(z, 4, scaling=scaling)
    out.sum().backward()
    assert torch.equal(z.grad, torch.ones_like(z))
    ref = dequantize(quantize(z.detach(), 4, scaling=scaling))
    assert torch.allclose(out.detach(), ref, atol=1e-6)
    assert not torch.allclose(out.detach(), z.detach(), atol=1e-3)


def test_l2_scaling_zeroes_most_coordinates_at_4_bits() -> None:
    z = latents(1, 64, 100)  # P(|z_i| < ||z|| / 14) is about 0.52 for d = 100
    zeros_l2 = (quantize(z, 4, scaling="l2").levels == 0).float().mean().item()
    zeros_max = (quantize(z, 4, scaling="max").levels == 0).float().mean().item()
    assert zeros_l2 > 0.5
    assert zeros_max < 0.5
