"""Tests for :mod:`invcomp.metrics` and :func:`invcomp.search.losses.parse_loss` / ``make_loss``.

SSIM is checked against scikit-image, MS-SSIM against a small NumPy
re-implementation of the module doc's definition, and the rate figures
against hand values.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from invcomp import metrics
from invcomp.search import losses
from invcomp.errors import InvcompError, LpipsUnavailable


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small convolutions: intra-op threads only add contention on a small, busy CPU. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pair(side: int = 64, seed: int = 0, noise: float = 0.15, n: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """A random image batch in [-1, 1] and a noisy copy (correlated, so SSIM is well above 0)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, side, side, generator=g, dtype=torch.float64) * 2 - 1
    y = (x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(-1, 1)
    return x.float(), y.float()


def unit_np(x: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> float64 (N, H, W, 3) in [0, 1]."""
    return ((x.double().numpy() + 1) / 2).transpose(0, 2, 3, 1)


# ---------------------------------------------------------------- identities and hand values


def test_identical_images() -> None:
    x, _ = pair()
    assert torch.allclose(metrics.ssim(x, x), torch.ones(2), atol=1e-6)
    assert torch.allclose(metrics.ms_ssim(x, x), torch.ones(2), atol=1e-6)
    assert torch.equal(metrics.mse(x, x), torch.zeros(2))
    assert torch.isinf(metrics.psnr(x, x)).all() and (metrics.psnr(x, x) > 0).all()


def test_psnr_for_a_constant_offset() -> None:
    # 0.2 in [-1, 1] units is 0.1 in [0, 1] units: MSE 0.01, PSNR = 10 log10(1 / 0.01) = 20 dB
    x = torch.zeros(2, 3, 8, 8)
    y = x + 0.2
    assert torch.allclose(metrics.mse(x, y), torch.full((2,), 0.01), rtol=1e-5)
    assert torch.allclose(metrics.psnr(x, y), torch.full((2,), 20.0), atol=1e-4)
    # 0.02 in [0, 1] units: 10 log10(1 / 4e-4) = 33.9794 dB
    assert metrics.psnr(x, x - 0.04)[0].item() == pytest.approx(33.9794001, abs=1e-4)


def test_mse_is_per_image_and_in_unit_range() -> None:
    x = torch.zeros(3, 3, 4, 4)
    y = x.clone()
    y[1] = 1.0      # 0.5 in unit range -> 0.25
    y[2, 0] = -1.0  # one channel of three differs by 0.5 -> 0.25 / 3
    assert torch.allclose(metrics.mse(x, y), torch.tensor([0.0, 0.25, 0.25 / 3]))
    # inputs are clamped to [-1, 1] first: 3.0 counts as 1.0
    assert torch.allclose(metrics.mse(x, torch.full_like(x, 3.0)), torch.full((3,), 0.25))


# ---------------------------------------------------------------- SSIM vs scikit-image


@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_skimage(seed: int) -> None:
    x, y = pair(seed=seed, noise=0.3 + 0.3 * seed)
    ours = metrics.ssim(x, y)
    a, b = unit_np(x), unit_np(y)
    for i in range(2):
        ref = structural_similarity(
            a[i], b[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=2,
        )
        # skimage filters with reflect padding but then averages only over pixels at least 5 px
        # (the window radius) from the border, i.e. exactly the "valid" pixels pytorch-msssim keeps;
        # both use a normalised 11-tap Gaussian (skimage: truncate 3.5 * 1.5 -> radius 5). The
        # remaining difference is float32 arithmetic, orders of magnitude below the 1e-3 tolerance
        # and below the effect of any real mistake (wrong K, window or data range moves SSIM by > 1e-2).
        assert ours[i].item() == pytest.approx(ref, abs=1e-4)
    assert 0.05 < ours.min() and ours.max() < 0.95  # a mid-range value: the comparison means something


def test_ssim_is_not_mse_in_disguise() -> None:
    # Same MSE, very different structure: a constant offset keeps structure (high SSIM),
    # noise of the same power destroys it.
    x = pair(side=32, seed=3, n=1)[0] * 0.5
    offset = x + 0.2
    g = torch.Generator().manual_seed(9)
    noise = x + 0.2 * torch.sign(torch.randn(x.shape, generator=g))
    assert torch.allclose(metrics.mse(x, offset), metrics.mse(x, noise), rtol=1e-5)
    assert metrics.ssim(x, offset).item() > metrics.ssim(x, noise).item() + 0.1


# ---------------------------------------------------------------- MS-SSIM


@pytest.mark.parametrize(
    ("side", "levels"),
    # L is the largest L <= 5 with side > 10 * 2**(L - 1): thresholds 10, 20, 40, 80, 160
    [(8, 1), (16, 1), (20, 1), (21, 2), (32, 2), (40, 2), (41, 3), (64, 3), (80, 3), (81, 4), (128, 4),
     (160, 4), (161, 5), (256, 5), (4096, 5)],
)
def test_ms_ssim_levels(side: int, levels: int) -> None:
    assert metrics.ms_ssim_levels(side) == levels


def test_ms_ssim_at_one_scale_is_ssim() -> None:
    x, y = pair(side=16, noise=0.2)
    assert torch.allclose(metrics.ms_ssim(x, y), metrics.ssim(x, y), atol=1e-6)
    assert (metrics.ssim(x, y) < 0.99).all()


def _gauss() -> np.ndarray:
    t = np.arange(11) - 5.0
    g = np.exp(-(t**2) / (2 * 1.5**2))
    return g / g.sum()


def _filt(img: np.ndarray) -> np.ndarray:
    """'valid' separable Gaussian filtering of a (H, W) array."""
    g = _gauss()
    h = np.array([np.convolve(row, g, mode="valid") for row in img])
    return np.array([np.convolve(col, g, mode="valid") for col in h.T]).T


def _ssim_cs(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    c1, c2 = 0.01**2, 0.03**2
    ma, mb = _filt(a), _filt(b)
    va, vb, cov = _filt(a * a) - ma**2, _filt(b * b) - mb**2, _filt(a * b) - ma * mb
    cs = (2 * cov + c2) / (va + vb + c2)
    s = (2 * ma * mb + c1) / (ma**2 + mb**2 + c1) * cs
    return float(s.mean()), float(cs.mean())


def ms_ssim_ref(a: np.ndarray, b: np.ndarray, levels: int) -> float:
    """MS-SSIM of two (H, W, 3) images in [0, 1] with even sides, per the module doc."""
    w = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333][:levels])
    w = w / w.sum()
    vals = []
    for c in range(3):
        p, q = a[..., c], b[..., c]
        prod = 1.0
        for i in range(levels):
            s, cs = _ssim_cs(p, q)
            if i < levels - 1:
                prod *= max(cs, 0.0) ** w[i]
                p = p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2).mean((1, 3))
                q = q.reshape(q.shape[0] // 2, 2, q.shape[1] // 2, 2).mean((1, 3))
            else:
                prod *= max(s, 0.0) ** w[i]
        vals.append(prod)
    return float(np.mean(vals))


@pytest.mark.parametrize(("side", "levels"), [(64, 3), (32, 2)])
def test_ms_ssim_matches_reference(side: int, levels: int) -> None:
    x, y = pair(side=side, seed=side, noise=0.25)
    ours = metrics.ms_ssim(x, y)
    a, b = unit_np(x), unit_np(y)
    for i in range(2):
        ref = ms_ssim_ref(a[i], b[i], levels)
        assert ours[i].item() == pytest.approx(ref, abs=1e-4)
    # and it is not simply SSIM at full resolution
    assert not torch.allclose(ours, metrics.ssim(x, y), atol=1e-3)


# ---------------------------------------------------------------- shape checks


@pytest.mark.parametrize("fn", [metrics.mse, metrics.psnr, metrics.ssim, metrics.ms_ssim])
@pytest.mark.parametrize(
    ("sx", "sy"),
    [((1, 3, 16, 16), (1, 3, 16, 17)), ((2, 3, 16, 16), (1, 3, 16, 16)), ((3, 16, 16), (3, 16, 16))],
)
def test_shape_mismatch(fn, sx: tuple, sy: tuple) -> None:
    with pytest.raises(ValueError):
        fn(torch.zeros(sx), torch.zeros(sy))


# ---------------------------------------------------------------- rate figures


def test_bpp_hand_values() -> None:
    assert metrics.bpp(100, 64, 64) == 800 / 4096 == 0.1953125
    assert metrics.bpp(25, 124, 124) == pytest.approx(200 / 15376)
    assert metrics.bpp(3, 2, 3) == 4.0


def test_compression_ratio_hand_values() -> None:
    assert metrics.compression_ratio(100, 3 * 64 * 64) == 122.88
    assert metrics.compression_ratio(50, 25) == 0.5
    assert metrics.compression_ratio(0, 100) == math.inf


# ---------------------------------------------------------------- LPIPS availability


def _lpips_available() -> bool:
    try:
        metrics.get_lpips("cpu")
        return True
    except LpipsUnavailable:
        return False


@pytest.fixture(scope="module")
def lpips_available() -> bool:
    return _lpips_available()


def test_lpips_or_none_warns_once(lpips_available: bool, caplog, monkeypatch) -> None:
    x, y = pair(side=32, n=1)
    monkeypatch.setattr(metrics, "_warned", False)  # other tests in this process may have warned already
    with caplog.at_level(logging.WARNING, logger="invcomp.metrics"):
        first = metrics.lpips_or_none(x, y)
        second = metrics.lpips_or_none(x, y)
    warnings = [r for r in caplog.records if r.name == "invcomp.metrics" and r.levelno == logging.WARNING]
    if lpips_available:
        assert isinstance(first, list) and len(first) == 1 and first == second
        assert warnings == []
    else:
        assert first is None and second is None
        assert len(warnings) == 1
        assert "LPIPS unavailable" in warnings[0].getMessage()
        assert "\n" not in warnings[0].getMessage()


def test_quality_rows(lpips_available: bool) -> None:
    x, y = pair(side=32, n=2)
    rows = metrics.quality(x, y, with_lpips=False)
    assert len(rows) == 2 and set(rows[0]) == {"psnr", "mse", "ssim", "ms_ssim", "lpips", "identity"}
    assert rows[1]["lpips"] is None and rows[1]["identity"] is None  # not asked for
    assert rows[1]["psnr"] == pytest.approx(-10 * math.log10(rows[1]["mse"]), rel=1e-5)
    assert rows[0]["ssim"] == pytest.approx(metrics.ssim(x, y)[0].item())


def test_make_loss_lpips_unavailable(lpips_available: bool) -> None:
    if lpips_available:
        pytest.skip("LPIPS weights are available here")
    with pytest.raises(LpipsUnavailable) as ei:
        losses.make_loss("lpips")
    assert isinstance(ei.value, InvcompError)
    with pytest.raises(LpipsUnavailable):
        losses.make_loss("0.5*ssim+0.5*lpips")  # fails early, even in a mix
    with pytest.raises(LpipsUnavailable):
        metrics.lpips_distance(*pair(side=32, n=1))


# ---------------------------------------------------------------- loss specs


@pytest.mark.parametrize(
    ("spec", "terms"),
    [
        ("0.8*ssim+0.2*mse", [(0.8, "ssim"), (0.2, "mse")]),
        ("ms-ssim", [(1.0, "ms-ssim")]),
        ("ssim", [(1.0, "ssim")]),
        (" 2 * MSE + .5*ssim ", [(2.0, "mse"), (0.5, "ssim")]),
        ("1.*ms-ssim", [(1.0, "ms-ssim")]),
    ],
)
def test_parse_loss(spec: str, terms: list) -> None:
    assert losses.parse_loss(spec) == terms


@pytest.mark.parametrize("spec", ["foo", "-1*ssim", "0*mse", "0.0*ssim+mse", "ssim+", "", "ssim*0.5", "1e-3*mse", "ssim mse"])
def test_parse_loss_rejects(spec: str) -> None:
    with pytest.raises(InvcompError):
        losses.parse_loss(spec)


def test_make_loss_mix_is_the_weighted_sum() -> None:
    x, y = pair(side=32, n=2)
    mix = losses.make_loss("0.8*ssim+0.2*mse")(x, y)
    expected = 0.8 * (1 - metrics.ssim(x, y)) + 0.2 * metrics.mse(x, y)
    assert torch.allclose(mix, expected, atol=1e-6)
    assert torch.allclose(losses.make_loss("ms-ssim")(x, y), 1 - metrics.ms_ssim(x, y), atol=1e-6)
    with pytest.raises(InvcompError):
        losses.make_loss("nope")


def test_lpips_offline_is_said_once_in_one_short_line_and_not_retried(caplog, monkeypatch) -> None:
    import socket
    import urllib.error

    lpips = pytest.importorskip("lpips")
    tries = []

    def offline(*args, **kwargs):  # what torchvision's download of the AlexNet weights raises without a network
        tries.append(1)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(lpips, "LPIPS", offline)
    monkeypatch.setattr(metrics, "_LPIPS", {})  # as in a fresh process
    monkeypatch.setattr(metrics, "_LPIPS_FAILED", None, raising=False)
    monkeypatch.setattr(metrics, "_warned", False)
    x, y = pair(side=32, n=1)
    with caplog.at_level(logging.WARNING, logger="invcomp.metrics"):
        for _ in range(3):
            assert metrics.lpips_or_none(x, y) is None
            assert metrics.quality(x, y)[0]["lpips"] is None
        with pytest.raises(LpipsUnavailable, match="cannot be downloaded"):
            metrics.get_lpips("cuda:0")  # another device: the download is not tried again either
    assert len(tries) == 1
    said = [r.getMessage() for r in caplog.records if r.name == "invcomp.metrics" and r.levelno >= logging.WARNING]
    assert said == ["LPIPS unavailable (its AlexNet weights cannot be downloaded): reported as n/a"]
