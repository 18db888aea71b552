"""The generative decoder stage (:mod:`invcomp.nets.upsampler`) and its trainer: shapes, determinism across thread
counts, the weights round trip, and a tiny training run that checkpoints and resumes (no ../shared, no download)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from invcomp.errors import InvcompError
from invcomp.nets.upsampler import (LoadedUpsampler, Upsampler, UpsamplerConfig, load_upsampler, save_upsampler,
                                    upscale)

TINY = UpsamplerConfig(width=8, blocks=1, context_width=12, context_blocks=1, up_widths=(8, 4))


def tiny_net(seed: int = 0) -> Upsampler:
    """A tiny random network whose every layer matters (the small-initialised tail is re-drawn)."""
    torch.manual_seed(seed)
    net = Upsampler(TINY)
    with torch.no_grad():
        net.tail.weight.normal_(0, 0.2)
    return net.eval()


def pictures(n: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=gen) * 2 - 1


@pytest.mark.parametrize("size", [(64, 64), (16, 16), (9, 17), (1, 1)])
def test_output_is_four_times_the_input(size: tuple[int, int]) -> None:
    h, w = size
    x = pictures(2, h, w)
    with torch.no_grad():
        y = tiny_net()(x)
    assert y.shape == (2, 3, 4 * h, 4 * w)
    z = upscale(tiny_net(), x)
    assert z.shape == y.shape and float(z.min()) >= -1 and float(z.max()) <= 1


def test_a_fresh_network_is_bicubic() -> None:
    torch.manual_seed(0)
    net = Upsampler(TINY).eval()
    x = pictures(1, 32, 32)
    with torch.no_grad():
        gap = (net(x) - F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)).abs().max()
    assert float(gap) < 1e-5  # the tail starts at zero: exactly bicubic


def test_forward_is_identical_on_one_and_two_threads() -> None:
    net, x = tiny_net(), pictures(3, 64, 64)
    before = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            with torch.no_grad():
                outs.append(net(x))
        assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
        decoded = []
        for threads in (2, 1):  # the decoder entry point: the caller's thread count never changes the bytes
            torch.set_num_threads(threads)
            decoded.append(upscale(net, x))
            assert torch.get_num_threads() == threads  # restored
        assert torch.equal(decoded[0], decoded[1])
    finally:
        torch.set_num_threads(before)


def test_a_face_decodes_the_same_alone_or_in_a_batch() -> None:
    net, x = tiny_net(), pictures(4, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x)[2:3], net(x[2:3]), atol=1e-5)


def test_weights_round_trip(tmp_path: Path) -> None:
    net = tiny_net(seed=3)
    cfg = UpsamplerConfig.from_json_dict(TINY.to_json_dict() | {"training": {"step": 7}})
    path = save_upsampler(net, cfg, tmp_path / "up.pt")
    assert json.loads(path.with_suffix(".json").read_text())["up_widths"] == [8, 4]
    torch.load(path, weights_only=True)  # a plain state_dict
    loaded = load_upsampler(path)
    assert isinstance(loaded, LoadedUpsampler) and loaded.config == cfg and len(loaded.sha256) == 64
    assert not loaded.module.training and not any(p.requires_grad for p in loaded.module.parameters())
    x = pictures(2, 16, 16)
    assert torch.equal(upscale(net, x), upscale(loaded.module, x))


def test_weights_of_another_shape_are_refused(tmp_path: Path) -> None:
    path = save_upsampler(tiny_net(), TINY, tmp_path / "up.pt")
    bigger = UpsamplerConfig.from_json_dict(TINY.to_json_dict() | {"width": 10})
    path.with_suffix(".json").write_text(json.dumps(bigger.to_json_dict()))
    with pytest.raises(InvcompError, match="do not match"):
        load_upsampler(path)
    with pytest.raises(InvcompError, match="not found"):
        load_upsampler(tmp_path / "missing.pt")
    with pytest.raises(InvcompError, match="two x2 stages"):
        UpsamplerConfig(up_widths=(8,))


def test_degrade_keeps_shape_and_range() -> None:
    from invcomp.train.upsample_data import degrade

    gen = torch.Generator().manual_seed(0)
    x = pictures(1, 64, 64)[0]
    for _ in range(20):
        y = degrade(x, gen)
        assert y.shape == x.shape and float(y.abs().max()) <= 1


def _fake_cache(root: Path, n_train: int = 6, n_val: int = 2) -> None:
    """A cache in the layout of experiments/upsample_data.py, of smooth random faces."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        big = rng.integers(0, 256, (n, 3, 8, 8)).astype(np.float32)
        x256 = F.interpolate(torch.from_numpy(big), size=(256, 256), mode="bilinear", align_corners=False)
        x64 = F.interpolate(x256, size=(64, 64), mode="area")
        base = x64 + torch.from_numpy(rng.normal(0, 6, x64.shape).astype(np.float32))
        for kind, a in (("x256", x256), ("x64", x64), ("base", base)):
            a.clamp(0, 255).round().to(torch.uint8).numpy().tofile(root / f"{split}_{kind}.u8")
        meta = {"n": n, "names": [f"{split}{i}.jpg" for i in range(n)], "sizes": {"x256": 256, "x64": 64, "base": 64}}
        (root / f"{split}.json").write_text(json.dumps(meta))


def test_tiny_training_run_checkpoints_and_resumes(tmp_path: Path) -> None:
    from invcomp.train.upsample import UpsampleTrainConfig, train_upsampler

    data, out = tmp_path / "cache", tmp_path / "run"
    data.mkdir()
    _fake_cache(data)
    cfg = UpsampleTrainConfig(data=str(data), out=str(out), width=8, blocks=1, context_width=8, context_blocks=1,
                              up_widths=(8, 4), ndf=4, batch_size=2, crop=16, adv_warmup=2, steps=3, log_every=1,
                              eval_faces=2, threads=0)
    path = train_upsampler(cfg)
    assert path == out / "upsampler.pt" and (out / "latest.pt").exists() and (out / "val_0000003.png").exists()
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["best"] > -1
    train_upsampler(UpsampleTrainConfig(**{**cfg.__dict__, "steps": 5}))
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 5
    text = (out / "train.log").read_text()
    assert "resumed from" in text and "steps/s" in text and " d " in text  # the adversarial terms ran
    assert load_upsampler(path).config.training["config"]["crop"] == 16


def test_a_fresh_run_starts_from_init_weights(tmp_path: Path) -> None:
    """--init: a committed (float16) snapshot seeds G and its EMA of a fresh run; at step 0 the EMA is that snapshot."""
    from invcomp.train.upsample import UpsampleTrainConfig, train_upsampler

    data = tmp_path / "cache"
    data.mkdir()
    _fake_cache(data)
    shape = dict(width=8, blocks=1, context_width=8, context_blocks=1, up_widths=(8, 4))
    torch.manual_seed(3)
    seed_net = Upsampler(UpsamplerConfig(**shape))
    with torch.no_grad():
        for p in seed_net.parameters():
            p.normal_(0, 0.05)
    init = tmp_path / "init.pt"
    torch.save({k: v.half() for k, v in seed_net.state_dict().items()}, init)
    cfg = UpsampleTrainConfig(data=str(data), out=str(tmp_path / "run"), **shape, ndf=4, batch_size=2, crop=16,
                              adv_warmup=2, steps=0, log_every=1, eval_faces=2, threads=0)
    path = train_upsampler(cfg, init=init)
    got = load_upsampler(path).module.state_dict()
    want = {k: v.half().float() for k, v in seed_net.state_dict().items()}
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert "started G and its EMA from" in (tmp_path / "run" / "train.log").read_text()
