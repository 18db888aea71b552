"""`invcomp train pgan`: the run-time-alpha forward against PGANGenerator, the critic's pieces, the growing
schedule, and a tiny CPU run that writes a loadable generator and resumes exactly."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner, Result
from PIL import Image

from invcomp.cli import cli
from invcomp.data import split_of
from invcomp.errors import InvcompError
from invcomp.nets.generators.pgan import PGANArch, PGANGenerator, load_pgan
from invcomp.zoo.registry import load_generator
from invcomp.train.pgan import (
    PGANTrainConfig,
    generator_state_at,
    grow_forward,
    init_equalized,
    phase_at,
    real_at,
    resolved_depths,
    scale_count,
    schedule_length,
)
from invcomp.train.pgan_d import PGANDiscriminator, gradient_penalty, minibatch_stddev


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These networks are tiny: extra threads only cost time on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _random_g(depths: tuple[int, ...], latent: int = 5, seed: int = 0) -> PGANGenerator:
    torch.manual_seed(seed)
    g = PGANGenerator(PGANArch(latent_dim=latent, depths=depths))
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 1)  # random biases too, so a dropped bias or scale would show
    return g.eval()


# ---------------------------------------------------------------- generator: run-time alpha

@pytest.mark.parametrize("depths", [(8, 4), (8, 6, 4)])
@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_grow_forward_equals_pgan_generator_at_the_last_scale(depths: tuple[int, ...], alpha: float) -> None:
    g = _random_g(depths)
    ref = PGANGenerator(replace(g.arch, alpha=alpha))
    ref.load_state_dict(g.state_dict())
    z = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = grow_forward(g, z, len(depths) - 1, alpha, clamp=True)
        assert torch.equal(ours, ref.eval()(z))
        if alpha == 0.0:
            assert torch.equal(ours, g(z))
        raw = grow_forward(g, z, len(depths) - 1, alpha)
    assert raw.abs().max() > 1.0  # unclamped for training (N(0, 1) biases push it out of range) ...
    assert torch.equal(raw.clamp(-1, 1), ours)  # ... and otherwise the same


@pytest.mark.parametrize("alpha", [0.0, 0.25])
def test_grow_forward_at_a_lower_scale_equals_the_saved_smaller_generator(alpha: float) -> None:
    g = _random_g((8, 6, 4))
    state = generator_state_at(g, 1)
    assert not any(k.startswith(("scaleLayers.1.", "toRGBLayers.2.")) for k in state)
    small = load_pgan(state, alpha=alpha)
    assert small.resolution == 8
    z = torch.randn(2, 5, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(grow_forward(g, z, 1, alpha, clamp=True), small(z))


def test_alpha_one_is_the_upsampled_previous_scale() -> None:
    g = _random_g((8, 6, 4))
    z = torch.randn(2, 5)
    with torch.no_grad():
        low = F.interpolate(grow_forward(g, z, 1, 0.0), scale_factor=2, mode="nearest")
        assert torch.equal(grow_forward(g, z, 2, 1.0), low)


def test_init_equalized_is_their_init() -> None:
    g = PGANGenerator(PGANArch(latent_dim=16, depths=(32, 32)))
    init_equalized(g)
    w = g.scaleLayers[0][0].module.weight.detach()
    assert abs(float(w.std()) - 1.0) < 0.05 and all(float(m.module.bias.detach().abs().max()) == 0 for m in g.toRGBLayers)


# ---------------------------------------------------------------- critic

def test_minibatch_stddev_hand_computation() -> None:
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = minibatch_stddev(x)
    assert y.shape == (4, 4, 2, 2)
    assert torch.equal(y[:, :3], x)
    a = x.numpy()
    expected = np.sqrt(a.var(axis=0, ddof=1) + 1e-8).mean()
    assert np.allclose(y[:, 3].numpy(), expected, rtol=1e-12)


def test_minibatch_stddev_groups_and_small_batches() -> None:
    x = torch.randn(8, 2, 3, 3, dtype=torch.float64)
    y = minibatch_stddev(x, group_size=4)  # two groups: samples {0, 2, 4, 6} and {1, 3, 5, 7}
    a = x.numpy()
    for m in (0, 1):
        members = [m, m + 2, m + 4, m + 6]
        expected = np.sqrt(a[members].var(axis=0, ddof=1) + 1e-8).mean()
        assert np.allclose(y[members, 2].numpy(), expected, rtol=1e-12)
    six = torch.randn(6, 2, 2, 2, dtype=torch.float64)  # not a multiple of 4: one group of 6
    assert np.allclose(minibatch_stddev(six)[:, 2].numpy(), np.sqrt(six.numpy().var(0, ddof=1) + 1e-8).mean())
    assert torch.equal(minibatch_stddev(six[:1])[:, 2], torch.zeros(1, 2, 2, dtype=torch.float64))


def test_discriminator_shapes_layout_and_fade() -> None:
    torch.manual_seed(0)
    d = PGANDiscriminator((8, 6, 4))
    init_equalized(d)
    keys = set(d.state_dict())
    assert {"fromRGBLayers.2.module.weight", "scaleLayers.1.1.module.weight", "groupScaleZero.1.module.bias",
            "decisionLayer.module.weight"} <= keys
    assert d.scaleLayers[1][1].module.weight.shape == (6, 4, 3, 3)  # depths[2] -> depths[1]
    assert d.groupScaleZero[0].module.weight.shape == (8, 9, 3, 3)  # + the stddev channel
    for s, side in enumerate((4, 8, 16)):
        assert d(torch.randn(4, 3, side, side), s).shape == (4, 1)
    x = torch.randn(4, 3, 16, 16)
    for s, y in ((2, x), (1, F.avg_pool2d(x, 2))):  # alpha 1: only the pooled branch counts (at 8x8 too)
        assert torch.allclose(d(y, s, 1.0), d(F.avg_pool2d(y, 2), s - 1, 0.0))
    d(x, 2, 1.0).sum().backward()
    assert float(d.fromRGBLayers[2].module.weight.grad.abs().max()) == 0.0
    with pytest.raises(ValueError, match="16, 16"):
        d(torch.randn(4, 3, 8, 8), 2)


def test_gradient_penalty_hand_computation() -> None:
    real, fake = torch.randn(5, 2, 3, 3), torch.randn(5, 2, 3, 3)
    w = torch.randn(2, 3, 3)
    w = (w / w.norm() * 3.0).requires_grad_(True)  # a linear critic: its input gradient is w, norm 3

    def linear(x: torch.Tensor) -> torch.Tensor:
        return (x * w).flatten(1).sum(1)

    gp = gradient_penalty(linear, real, fake)
    assert torch.allclose(gp, torch.full((5,), 4.0))  # (3 - 1)**2 for every sample
    gp.mean().backward()  # through the input gradient into the critic's weights: d/dw (|w| - 1)**2
    assert torch.allclose(w.grad, 2 * (3.0 - 1.0) * w.detach() / 3.0, atol=1e-5)

    mix = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])  # a quadratic critic 0.5 |x|**2: gradient x_hat
    quad = gradient_penalty(lambda x: 0.5 * x.pow(2).flatten(1).sum(1), real, fake, mix=mix)
    x_hat = mix.view(5, 1, 1, 1) * real + (1 - mix.view(5, 1, 1, 1)) * fake
    assert torch.allclose(quad, (x_hat.flatten(1).norm(dim=1) - 1) ** 2)


# ---------------------------------------------------------------- schedule

def test_schedule_grows_4_8_16_with_linear_fades() -> None:
    got = [phase_at(i, 3, 3, 2) for i in range(15)]
    assert [p.resolution for p in got] == [4] * 3 + [8] * 5 + [16] * 7
    assert [p.alpha for p in got] == [0, 0, 0, 1, 0.5, 0, 0, 0, 1, 0.5, 0, 0, 0, 0, 0]
    assert [p.fading for p in got] == [False] * 3 + [True] * 2 + [False] * 3 + [True] * 2 + [False] * 5
    assert schedule_length(3, 3, 2) == 13
    assert [phase_at(10 + i, 2, 10, 4).alpha for i in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert [phase_at(i, 2, 2, 0).scale for i in range(5)] == [0, 0, 1, 1, 1]  # no fade
    assert phase_at(99, 1, 3, 2).scale == 0


def test_sizes_are_checked() -> None:
    assert scale_count(64) == 5 and scale_count(4) == 1
    with pytest.raises(InvcompError, match="power of two"):
        scale_count(48)
    assert resolved_depths(PGANTrainConfig("d", "o", resolution=64)) == (256, 256, 256, 128, 64)
    with pytest.raises(InvcompError, match="needs 3"):
        resolved_depths(PGANTrainConfig("d", "o", resolution=16, depths=(8, 8)))


def test_real_images_follow_the_scale_and_fade() -> None:
    real = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    idx, keep = torch.tensor([2, 0]), torch.tensor([False, False])
    full = real[idx].float() / 127.5 - 1
    assert torch.equal(real_at(real, idx, keep, 2, 0.0), full)
    assert torch.equal(real_at(real, idx, torch.tensor([True, False]), 2, 0.0)[0], full[0].flip(2))
    eight = F.avg_pool2d(full, 2)
    assert torch.allclose(real_at(real, idx, keep, 1, 0.0), eight)
    faded = real_at(real, idx, keep, 1, 1.0)
    assert torch.allclose(faded, F.interpolate(F.avg_pool2d(eight, 2), scale_factor=2, mode="nearest"))


# ---------------------------------------------------------------- the command

def _images(folder: Path, n_train: int = 24, n_val: int = 2) -> None:
    """Flat-colour squares named so that ``n_val`` land in the validation split."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    counts = {"train": 0, "val": 0}
    wanted = {"train": n_train, "val": n_val}
    i = 0
    while counts != wanted:
        name = f"face{i:04d}.png"
        i += 1
        split = split_of(name)
        if split == "holdout" or counts[split] == wanted[split]:
            continue
        arr = np.zeros((20, 20, 3), np.uint8) + rng.integers(0, 255, 3, dtype=np.uint8)
        arr[5:15, 5:15] = rng.integers(0, 255, 3, dtype=np.uint8)
        Image.fromarray(arr).save(folder / name)
        counts[split] += 1


def _run(data: Path, out: Path, *extra: str, depths: str = "8,8,4") -> Result:
    args = ["train", "pgan", "--data", str(data), "--out", str(out), "--resolution", "16", "--depths", depths,
            "--latent-dim", "16", "--batch-size", "4", "--steps-per-phase", "3", "--fade-steps", "2",
            "--snapshot-every", "4", "--eval-faces", "2", "--eval-iters", "2", "--device", "cpu", *extra]
    return CliRunner().invoke(cli, args)


def _ckpt(out: Path) -> dict:
    return torch.load(out / "checkpoint.pt", weights_only=True)


def test_tiny_run_writes_a_loadable_generator_and_resumes_exactly(tmp_path: Path) -> None:
    data, run = tmp_path / "faces", tmp_path / "run"
    _images(data)
    r = _run(data, run)
    assert r.exit_code == 0, r.output
    for name in ("checkpoint.pt", "generator.pt", "generator.json", "train.log", "train_config.json", "samples.png"):
        assert (run / name).exists(), name
    ck = _ckpt(run)
    assert (ck["step"], ck["scale"], ck["alpha"]) == (13, 2, 0.0)
    for opt in ("optG", "optD"):  # Adam restarted at 16x16 (step 8)
        assert max(int(v["step"]) for v in ck[opt]["state"].values()) == 5
    cfg = json.loads((run / "generator.json").read_text())
    assert (cfg["architecture"], cfg["latent_dim"], cfg["resolution"], cfg["widths"]) == ("pgan", 16, 16, [8, 8, 4])
    assert cfg["options"] == {"alpha": 0.0, "leaky": 0.2, "normalization": True, "output_activation": "none"}
    assert cfg["training"]["val_ssim"] is not None  # two validation faces: the final phase was scored
    g = load_generator(str(run / "generator.pt"))
    assert isinstance(g.module, PGANGenerator) and g.config.norm_free and g.module.resolution == 16
    with torch.no_grad():
        x = g.module(torch.randn(2, 16))
    assert x.shape == (2, 3, 16, 16) and x.abs().max() <= 1.0
    log_text = (run / "train.log").read_text()
    assert "scale 1 (8x8)" in log_text and "scale 2 (16x16)" in log_text

    part = tmp_path / "part"  # stopped in the 8x8 stable phase: the latest generator is 8x8 ...
    assert _run(data, part, "--steps", "6").exit_code == 0
    assert (_ckpt(part)["step"], _ckpt(part)["scale"]) == (6, 1)
    assert load_generator(str(part / "generator.pt")).module.resolution == 8
    assert _run(data, part).exit_code == 0  # ... and resuming repeats the uninterrupted run
    assert "resumed from" in (part / "train.log").read_text()
    a, b = _ckpt(run), _ckpt(part)
    assert b["step"] == 13
    for net in ("G", "D", "G_ema"):
        for k in a[net]:
            assert torch.allclose(a[net][k], b[net][k], atol=1e-6), (net, k)

    r = _run(data, run, "--steps", "15")  # more steps than the schedule: stays at 16x16
    assert r.exit_code == 0, r.output
    assert (_ckpt(run)["step"], _ckpt(run)["scale"]) == (15, 2)
    assert (run / "train.log").read_text().count("resumed from") == 1

    r = _run(data, run, depths="8,6,4")  # a different network cannot resume this checkpoint
    assert r.exit_code == 1 and "--no-resume" in r.output


def test_bad_options_fail_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "faces"
    _images(data, n_train=4, n_val=0)
    r = _run(data, tmp_path / "run", depths="8,8")
    assert r.exit_code == 1 and "needs 3 positive depths" in r.output and "Traceback" not in r.output
    assert _run(data, tmp_path / "run", depths="8,x,4").exit_code == 2
