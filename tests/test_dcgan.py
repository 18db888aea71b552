"""Tests for :mod:`invcomp.nets.generators.dcgan`: shape inference, loading, and a real third-party checkpoint; and for
its trainer :mod:`invcomp.train.dcgan` on the loop all trainers share, :mod:`invcomp.train.loop`."""
from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from .conftest import DEMO_IMAGE, needs_shared, shared_path, tiny_dcgan
from invcomp.errors import InvcompError
from invcomp.nets.generators.dcgan import DCGANArch, DCGANGenerator, infer_arch, load_dcgan, standard_arch
from invcomp.zoo.registry import load_generator
from invcomp.train.dcgan import DCGANTrainConfig, train_dcgan
from invcomp.train.loop import Score, Trainer, run_training

ANIME = ("models", "dcgan-anime32", "generator.pt")


def fixed_z(n: int, d: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


# --- infer_arch ---------------------------------------------------------------------------------


def test_standard_arch_widths_follow_pytorch_examples() -> None:
    # pytorch/examples dcgan: ngf*8, ngf*4, ngf*2, ngf for 64x64
    assert standard_arch(100, 64, 64).widths == (512, 256, 128, 64)
    assert standard_arch(100, 8, 32).widths == (32, 16, 8)
    assert standard_arch(100, 64, 8).widths == (64,)


@pytest.mark.parametrize("res", [0, 4, 48, 100])
def test_standard_arch_rejects_bad_resolution(res: int) -> None:
    with pytest.raises(InvcompError):
        standard_arch(100, 8, res)


@pytest.mark.parametrize(
    "latent, ngf, res, widths",
    [(100, 8, 32, (32, 16, 8)), (64, 4, 64, (32, 16, 8, 4)), (7, 3, 8, (3,))],
)
def test_infer_arch_recovers_shape(latent: int, ngf: int, res: int, widths: tuple[int, ...]) -> None:
    g = DCGANGenerator(standard_arch(latent, ngf, res))
    arch = infer_arch(g.state_dict())
    assert arch.latent_dim == latent
    assert arch.resolution == res
    assert arch.widths == widths
    assert arch.channels == 3
    assert arch.bias is False
    # and the module really produces that resolution
    assert g.eval()(fixed_z(1, latent)).shape == (1, 3, res, res)


def test_infer_arch_detects_bias() -> None:
    g = DCGANGenerator(DCGANArch(latent_dim=5, widths=(6, 4), bias=True))
    sd = g.state_dict()
    assert "main.0.bias" in sd and "main.6.bias" in sd  # conv biases exist
    arch = infer_arch(sd)
    assert arch.bias is True
    assert (arch.latent_dim, arch.widths, arch.resolution) == (5, (6, 4), 16)
    # round trip: the loaded module has the biases and gives the same output
    g2 = load_dcgan(sd)
    assert g2.arch.bias is True
    z = fixed_z(3, 5)
    assert torch.equal(g.eval()(z), g2(z))


def test_infer_arch_of_single_channel_output() -> None:
    g = DCGANGenerator(DCGANArch(latent_dim=4, widths=(4,), channels=1))
    assert infer_arch(g.state_dict()).channels == 1


# --- load_dcgan ---------------------------------------------------------------------------------


def test_load_dcgan_reproduces_original_exactly() -> None:
    g = tiny_dcgan(latent_dim=10, widths=(8, 4), seed=3)
    loaded = load_dcgan(g.state_dict())
    assert not loaded.training
    z = fixed_z(4, 10)
    with torch.no_grad():
        want = g(z)
        got = loaded(z)
    assert got.shape == (4, 3, 16, 16)
    assert torch.equal(got, want)
    # the BN statistics matter (so "exactly" above means the buffers were loaded)
    fresh = DCGANGenerator(loaded.arch).eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(z), want)
    for k, v in g.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_load_dcgan_accepts_4d_latents() -> None:
    g = load_dcgan(tiny_dcgan(latent_dim=6, widths=(4,), seed=1).state_dict())
    z = fixed_z(2, 6)
    with torch.no_grad():
        assert torch.equal(g(z), g(z[:, :, None, None]))


def test_load_dcgan_strips_module_prefix() -> None:
    g = tiny_dcgan(latent_dim=6, widths=(4, 2), seed=2)
    wrapped = OrderedDict(("module." + k, v) for k, v in g.state_dict().items())
    assert infer_arch(wrapped).widths == (4, 2)
    loaded = load_dcgan(wrapped)
    z = fixed_z(2, 6)
    with torch.no_grad():
        assert torch.equal(loaded(z), g(z))


def test_load_dcgan_output_in_tanh_range() -> None:
    g = load_dcgan(tiny_dcgan(seed=4).state_dict())
    with torch.no_grad():
        x = g(fixed_z(8, 8) * 10)
    assert x.min() >= -1 and x.max() <= 1


# --- malformed state_dicts ----------------------------------------------------------------------


def _sd() -> dict[str, torch.Tensor]:
    return dict(tiny_dcgan(latent_dim=6, widths=(8, 4), seed=5).state_dict())


def _without(key: str) -> dict[str, torch.Tensor]:
    sd = _sd()
    del sd[key]
    return sd


def _with(**extra: torch.Tensor) -> dict[str, torch.Tensor]:
    sd = _sd()
    sd.update({k.replace("__", "."): v for k, v in extra.items()})
    return sd


def _renumbered(step: int) -> dict[str, torch.Tensor]:
    """Keys with block stride ``step`` instead of 3 (e.g. a layout without ReLU modules)."""
    out = {}
    for k, v in _sd().items():
        _, idx, name = k.split(".")
        i = int(idx)
        out[f"main.{(i // 3) * step + i % 3}.{name}"] = v
    return out


def _rechained() -> dict[str, torch.Tensor]:
    sd = _sd()
    w = sd["main.3.weight"]  # (8, 4, 4, 4): in=8 must equal main.0's out
    sd["main.3.weight"] = torch.zeros(w.shape[0] + 1, *w.shape[1:])
    return sd


def _bad_kernel() -> dict[str, torch.Tensor]:
    sd = _sd()
    sd["main.0.weight"] = torch.zeros(6, 8, 3, 3)
    return sd


def _bn_width_mismatch() -> dict[str, torch.Tensor]:
    sd = _sd()
    sd["main.1.running_mean"] = torch.zeros(5)
    return sd


MALFORMED = {
    "empty": lambda: {},
    "missing BN buffer": lambda: _without("main.1.running_var"),
    "missing BN weight": lambda: _without("main.4.weight"),
    "missing conv weight": lambda: _without("main.3.weight"),
    "missing last conv": lambda: _without("main.6.weight"),
    "extra foreign key": lambda: _with(foo__bar=torch.zeros(1)),
    "extra key on a ReLU index": lambda: _with(main__2__weight=torch.zeros(8)),
    "extra bias on one conv only": lambda: _with(main__3__bias=torch.zeros(4)),
    "wrong layer indices (stride 2)": lambda: _renumbered(2),
    "wrong layer indices (stride 4)": lambda: _renumbered(4),
    "non-chaining channels": _rechained,
    "3x3 kernel": _bad_kernel,
    "BN width mismatch": _bn_width_mismatch,
    "only one conv": lambda: {"main.0.weight": torch.zeros(6, 3, 4, 4)},
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_state_dict_raises_invcomp_error(case: str) -> None:
    sd = MALFORMED[case]()
    with pytest.raises(InvcompError) as info:
        load_dcgan(sd)
    msg = str(info.value)
    assert msg and "\n" not in msg


def test_valid_control_for_malformed_cases() -> None:
    """The unmodified dict used by the malformed cases loads (so each failure above is due to its defect)."""
    g = load_dcgan(_sd())
    assert g.arch == DCGANArch(latent_dim=6, widths=(8, 4))


def test_wrong_index_message_names_layout() -> None:
    with pytest.raises(InvcompError, match="pytorch/examples layout"):
        infer_arch(_renumbered(2))


def test_non_chaining_message_names_layer() -> None:
    with pytest.raises(InvcompError, match=r"main\.0"):
        infer_arch(_rechained())


# --- a real third-party checkpoint (../shared, optional) ------------------------------------------


@needs_shared(*ANIME)
def test_anime32_checkpoint_loads_as_a_working_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    from invcomp.zoo import registry

    path = shared_path(*ANIME)
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    gen = registry.load_generator(str(path))
    monkeypatch.undo()
    assert calls and all(c.get("weights_only") is True for c in calls)

    assert gen.config.latent_dim == 100
    assert gen.config.resolution == 32
    assert gen.config.prior == "normal"
    assert gen.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not gen.module.training

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    assert set(gen.module.state_dict()) == set(ckpt)
    for k, v in ckpt.items():
        assert torch.equal(gen.module.state_dict()[k], v), k

    z = fixed_z(4, 100, seed=0)
    with torch.no_grad():
        x = gen.module(z)
        x4 = gen.module(z[:, :, None, None])
    assert x.shape == (4, 3, 32, 32)
    assert torch.equal(x, x4)
    assert x.min() >= -1 and x.max() <= 1
    std = x.flatten(1).std(1)
    assert (std > 0.1).all(), std  # not flat
    # spatial structure: neighbouring pixels correlate far more than in noise
    a, b = x[..., :, :-1].flatten(), x[..., :, 1:].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.5
    # different z give different images
    for i in range(4):
        for j in range(i + 1, 4):
            assert (x[i] - x[j]).abs().mean() > 0.05, (i, j)


@needs_shared(*ANIME)
def test_anime32_cli_round_trip(tmp_path: Path) -> None:
    from invcomp.cli import cli

    model = str(shared_path(*ANIME))
    src = tmp_path / "crop32.png"
    with Image.open(DEMO_IMAGE) as im:
        im.convert("RGB").crop((46, 46, 78, 78)).save(src)
    out, rec = tmp_path / "c.ivc", tmp_path / "c.png"
    runner = CliRunner()
    r = runner.invoke(cli, ["encode", str(src), "--model", model, "--iters", "2", "-o", str(out)])
    assert r.exit_code == 0, r.output
    data = out.read_bytes()
    assert data[:3] == b"IVC"
    assert data[4:8] == bytes.fromhex(hashlib.sha256(Path(model).read_bytes()).hexdigest()[:8])

    r = runner.invoke(cli, ["decode", str(out), "--model", model, "-o", str(rec)])
    assert r.exit_code == 0, r.output
    with Image.open(rec) as im:
        assert im.size == (32, 32)
        assert im.mode == "RGB"

    # without --model the id is not registered: a clear error, not a crash
    r = runner.invoke(cli, ["decode", str(out), "-o", str(tmp_path / "again.png")])
    assert r.exit_code == 1
    assert data[4:8].hex() in r.stderr
    assert not (tmp_path / "again.png").exists()


# --- training: the shared loop (invcomp.train.loop) and the DCGAN trainer on it ------------------


class _Counting(Trainer):
    """A trainer without networks: its weight is the number of steps taken; ``scores[step]`` is the score of a
    snapshot after ``step`` steps (missing: not scored)."""

    product, desc = "model.pt", "test"

    def __init__(self, out: Path, scores: dict[int, float]) -> None:
        self.out, self.device, self.scores = out, torch.device("cpu"), scores
        self.w, self.saved, self.loaded = 0, [], None

    def train_step(self, step: int) -> dict[str, float]:
        assert step == self.w
        self.w += 1
        return {"loss": 1.0 / self.w}

    def evaluate(self, step: int) -> Score:
        return Score(self.scores.get(step), what="fake score")

    def save_best(self, step: int, seconds: float, score: float | None) -> None:
        self.saved.append(step)
        torch.save({"w": self.w, "score": score}, self.out / self.product)

    def state_dict(self, step: int) -> dict:
        return {"w": torch.tensor(self.w)}

    def load_state_dict(self, state: dict) -> None:
        self.loaded, self.w = dict(state), int(state["w"])


def _loop(tmp_path: Path, trainer: _Counting, steps: int, **kw: object) -> Path:
    kw = {"minutes": None, "snapshot_every": 3, "progress": False, **kw}
    return run_training(tmp_path, lambda out: trainer, steps=steps, **kw)  # type: ignore[arg-type]


def test_loop_snapshots_keep_the_best_and_resume(tmp_path: Path) -> None:
    first = _Counting(tmp_path, {3: 0.5, 6: 0.4, 7: 0.45})
    seen: list[int] = []
    path = _loop(tmp_path, first, 7, callback=lambda s, l: seen.append(s))
    assert path == tmp_path / "model.pt" and seen == list(range(1, 8))
    assert first.saved == [3]  # 0.4 and 0.45 at steps 6 and 7 (off schedule: the last step) do not beat 0.5
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (set(ck), ck["step"], ck["best"], int(ck["w"])) == ({"w", "step", "best", "seconds"}, 7, 0.5, 7)

    again = _Counting(tmp_path, {9: 0.6, 12: 0.55})
    _loop(tmp_path, again, 12)
    assert again.loaded is not None and again.loaded["step"] == 7 and again.saved == [9]
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (ck["step"], ck["best"], int(ck["w"])) == (12, 0.6, 12)
    text = (tmp_path / "train.log").read_text()
    assert "resumed from" in text and "best val SSIM 0.5000" in text and "done at step 12; best val SSIM 0.6000" in text
    assert "stopped by --minutes" not in text


def test_loop_unscored_snapshots_keep_the_latest_and_say_so(tmp_path: Path) -> None:
    t = _Counting(tmp_path, {})
    _loop(tmp_path, t, 4)
    assert t.saved == [3, 4]
    text = (tmp_path / "train.log").read_text()
    assert text.count("not scored (no validation faces), keeping the latest") == 2
    assert "fake score" not in text and "done at step 4; no snapshot was scored, model.pt is the latest" in text
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["best"] == float("-inf")


def test_loop_ignores_the_step_number_older_runs_stored_as_best(tmp_path: Path) -> None:
    _loop(tmp_path, _Counting(tmp_path, {}), 3)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    torch.save({**ck, "best": 3.0}, tmp_path / "checkpoint.pt")  # what DCGAN and VAE-GAN wrote without val faces
    t = _Counting(tmp_path, {6: 0.2})
    _loop(tmp_path, t, 6)
    assert t.saved == [6] and torch.load(tmp_path / "checkpoint.pt", weights_only=True)["best"] == 0.2


def test_loop_deadline_stops_with_a_checkpoint_and_a_note(tmp_path: Path) -> None:
    t = _Counting(tmp_path, {})
    _loop(tmp_path, t, 50, minutes=1e-9)
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ck["step"] < 50 and t.saved[-1] == ck["step"] and (tmp_path / "model.pt").exists()
    assert f"stopped by --minutes at step {ck['step']} of 50; run again to resume" in (tmp_path / "train.log").read_text()
    with pytest.raises(InvcompError, match="snapshot-every"):
        _loop(tmp_path, t, 50, snapshot_every=0)


def _faces(folder: Path, n: int = 12) -> Path:
    """``n`` random-colour squares (no ``split_of`` filtering: some land in train, maybe none in val)."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        arr = np.zeros((20, 20, 3), np.uint8) + rng.integers(0, 255, 3, dtype=np.uint8)
        arr[5:15, 5:15] = rng.integers(0, 255, 3, dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"face{i:03d}.png")
    return folder


def _dcgan(data: Path, out: Path, steps: int, **kw: object) -> Path:
    cfg = DCGANTrainConfig(data=str(data), out=str(out), resolution=8, latent_dim=4, ngf=4, ndf=4, batch_size=4,
                           steps=steps, snapshot_every=2, eval_iters=1, **kw)  # type: ignore[arg-type]
    return train_dcgan(cfg, progress=False)


def test_dcgan_without_validation_faces_says_snapshots_are_not_scored(tmp_path: Path) -> None:
    out = tmp_path / "run"
    _dcgan(_faces(tmp_path / "faces"), out, 4, eval_faces=0)
    text = (out / "train.log").read_text()
    assert "2.0000" not in text and "4.0000" not in text  # the step number was printed as a val SSIM
    assert "eval_faces is 0: snapshots are not scored" in text
    assert text.count("not scored (no validation faces)") == 2
    assert json.loads((out / "generator.json").read_text())["training"]["val_ssim"] is None
    assert torch.load(out / "checkpoint.pt", weights_only=True)["best"] == float("-inf")


def test_dcgan_stops_at_the_deadline_and_resumes(tmp_path: Path) -> None:
    data, out = _faces(tmp_path / "faces"), tmp_path / "run"
    _dcgan(data, out, 2, eval_faces=0)
    _dcgan(data, out, 4, eval_faces=0, minutes=1e-9)  # the deadline has passed before the first step
    assert "stopped by --minutes at step 2 of 4" in (out / "train.log").read_text()
    path = _dcgan(data, out, 4, eval_faces=0)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 4 and set(ck) >= {"G", "D", "G_ema", "optG", "optD", "step", "best", "seconds"}
    assert (out / "train.log").read_text().count("resumed from") == 2
    g = load_generator(str(path))
    assert g.config.resolution == 8 and json.loads((out / "generator.json").read_text())["training"]["step"] == 4
    with torch.no_grad():
        assert g.module(torch.randn(2, 4)).shape == (2, 3, 8, 8)
