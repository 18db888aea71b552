"""The latent encoder (:mod:`invcomp.nets.warmstart`), its trainer (:mod:`invcomp.train.warmstart`) and its click command."""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from invcomp.data import split_of
from invcomp.nets.warmstart import WarmStartConfig, WarmStartNet, default_widths, load_warm_start, predict_latents, save_warm_start
from invcomp.zoo.warmstart import check_warm_start
from invcomp.cli.train import warm_start as encoder_cmd
from invcomp.errors import InvcompError
from invcomp.nets.generators.dcgan import DCGANArch, DCGANGenerator
from invcomp.zoo.registry import LoadedGenerator, load_generator
from invcomp.train.warmstart import WarmStartTrainConfig, kl_to_prior, train_warm_start

D, R = 6, 16


def varied_dcgan(latent_dim: int = D, widths: tuple[int, ...] = (8, 4), seed: int = 0) -> DCGANGenerator:
    """A tiny DCGAN whose images depend strongly on z (per-channel BN statistics, last layer scaled to unit std).

    A randomly initialised DCGAN's outputs hardly change with z, which would make latent recovery untestable.
    """
    torch.manual_seed(seed)
    g = DCGANGenerator(DCGANArch(latent_dim=latent_dim, widths=widths))
    for m in g.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative: one batch sets the exact statistics
    with torch.no_grad():
        g.train()(torch.randn(512, latent_dim))
        g.eval()
        pre = g.main[:-1](torch.randn(512, latent_dim)[:, :, None, None])
        g.main[-2].weight.mul_(1.0 / pre.std())
    return g.eval()


def save_generator(path: Path, seed: int = 0, **json_cfg: object) -> Path:
    torch.save(varied_dcgan(seed=seed).state_dict(), path)
    if json_cfg:
        path.with_suffix(".json").write_text(json.dumps({"architecture": "dcgan", "latent_dim": D, "resolution": R,
                                                         **json_cfg}))
    return path


def make_faces(folder: Path, n_train: int = 16, with_val: bool = True) -> Path:
    """``n_train`` training images (and, with ``with_val``, two validation ones) of coloured squares, 24x24."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    names = [f"face{i:03d}.png" for i in range(400)]
    train = [n for n in names if split_of(n) == "train"][:n_train]
    val = [n for n in names if split_of(n) == "val"][:2] if with_val else []
    assert len(train) == n_train and len(val) == (2 if with_val else 0)
    for name in train + val:
        arr = np.zeros((24, 24, 3), np.uint8) + rng.integers(0, 255, 3, dtype=np.uint8)
        arr[6:18, 6:18] = rng.integers(0, 255, 3, dtype=np.uint8)
        Image.fromarray(arr).save(folder / name)
    return folder


def tcfg(gen: Path, data: Path, out: Path, **kw: object) -> WarmStartTrainConfig:
    base = {"batch_size": 16, "lr": 1e-3, "steps": 60, "widths": (8, 16), "snapshot_every": 20, "eval_faces": 4,
            "log_every": 10}
    return WarmStartTrainConfig(generator=str(gen), data=str(data), out=str(out), **{**base, **kw})


@pytest.fixture(autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)  # other test files must not inherit a single thread


# --- the module ---------------------------------------------------------------------------------


def test_output_shapes_and_bad_shapes() -> None:
    e = WarmStartNet(WarmStartConfig(resolution=R, latent_dim=D, widths=(4, 8)))
    mu, logvar = e(torch.rand(3, 3, R, R) * 2 - 1)
    assert mu.shape == (3, D) and logvar.shape == (3, D)
    with pytest.raises(ValueError, match=r"\(2, 3, 32, 32\)"):
        e(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(3, 16, 16\)"):
        e(torch.zeros(3, R, R))
    with pytest.raises(InvcompError, match="needs 2 positive widths"):
        WarmStartConfig(resolution=R, latent_dim=D, widths=(4, 8, 16))
    with pytest.raises(InvcompError, match="power of two"):
        WarmStartConfig(resolution=24, latent_dim=D)
    assert WarmStartConfig(resolution=64, latent_dim=D).widths == default_widths(64) == (32, 64, 128, 256)


def test_uniform_prior_squashes_mu_and_norm_free_puts_it_on_the_sphere() -> None:
    torch.manual_seed(0)
    normal = WarmStartNet(WarmStartConfig(resolution=R, latent_dim=D, widths=(4, 8)))
    with torch.no_grad():
        normal.head.bias.copy_(torch.linspace(-3, 3, 2 * D))  # raw means well outside (-1, 1)
    uniform = WarmStartNet(WarmStartConfig(resolution=R, latent_dim=D, prior="uniform", widths=(4, 8)))
    uniform.load_state_dict(normal.state_dict())
    sphere = WarmStartNet(WarmStartConfig(resolution=R, latent_dim=D, widths=(4, 8), norm_free=True))
    sphere.load_state_dict(normal.state_dict())
    x = torch.rand(8, 3, R, R) * 2 - 1
    raw = predict_latents(normal, x)
    assert raw.abs().max() > 1.5
    mu_u = predict_latents(uniform, x)
    assert mu_u.abs().max() <= 1 and torch.allclose(mu_u, torch.tanh(raw), atol=1e-6)
    mu_s = predict_latents(sphere, x)
    assert torch.allclose(mu_s.norm(dim=1), torch.full((8,), math.sqrt(D)), atol=1e-4)
    assert torch.allclose(mu_s / mu_s.norm(dim=1, keepdim=True), raw / raw.norm(dim=1, keepdim=True), atol=1e-5)


def test_rows_do_not_interact_and_predict_restores_mode() -> None:
    torch.manual_seed(0)
    e = WarmStartNet(WarmStartConfig(resolution=R, latent_dim=D, widths=(4, 8))).train()
    x = torch.rand(5, 3, R, R) * 2 - 1
    together = predict_latents(e, x)
    alone = torch.cat([predict_latents(e, x[i:i + 1]) for i in range(5)])
    assert torch.allclose(together, alone, atol=1e-6)
    assert e.training and together.device.type == "cpu" and not together.requires_grad


def test_kl_matches_torch_distributions() -> None:
    mu, logvar = torch.randn(4, D), torch.randn(4, D)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * logvar).exp()),
                                            torch.distributions.Normal(0.0, 1.0)).mean(1)
    assert torch.allclose(kl_to_prior(mu, logvar, "normal"), ref, atol=1e-5)
    v = 1.0 / 3.0  # uniform prior: the Gaussian of U(-1, 1)'s variance
    assert torch.allclose(kl_to_prior(torch.zeros(2, D), torch.full((2, D), math.log(v)), "uniform"),
                          torch.zeros(2), atol=1e-6)
    assert (kl_to_prior(torch.zeros(2, D), torch.zeros(2, D), "uniform") > 0.1).all()


# --- files --------------------------------------------------------------------------------------


def _saved(tmp_path: Path, **kw: object) -> tuple[WarmStartNet, WarmStartConfig, Path]:
    cfg = WarmStartConfig(resolution=R, latent_dim=D, widths=(4, 8), generator_sha256="ab" * 32, generator_name="g",
                        training={"step": 3}, **kw)
    torch.manual_seed(1)
    e = WarmStartNet(cfg)
    p = tmp_path / "enc.pt"
    save_warm_start(e, cfg, p)
    return e, cfg, p


def test_save_load_round_trip(tmp_path: Path) -> None:
    e, cfg, p = _saved(tmp_path, prior="uniform")
    assert json.loads(p.with_suffix(".json").read_text())["generator_sha256"] == "ab" * 32
    loaded = load_warm_start(p)
    assert loaded.config == cfg and loaded.sha256 == hashlib.sha256(p.read_bytes()).hexdigest()
    assert not loaded.module.training and not any(q.requires_grad for q in loaded.module.parameters())
    x = torch.rand(4, 3, R, R) * 2 - 1
    with torch.no_grad():
        a, b = e.eval()(x), loaded.module(x)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporary files left behind


class _Boom:
    def __reduce__(self):  # runs `touch` when unpickled without weights_only
        return (os.system, (f"touch {self.marker}",))


def test_load_refuses_pickled_code(tmp_path: Path) -> None:
    _, _, p = _saved(tmp_path)
    boom = _Boom()
    boom.marker = str(tmp_path / "pwned")
    torch.save({"head.weight": boom}, p)
    with pytest.raises(InvcompError, match="weights_only"):
        load_warm_start(p)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "no_json", "bad_json", "bad_config", "wrong_shape", "no_pt"])
def test_load_damaged_files_one_line_error(tmp_path: Path, damage: str) -> None:
    _, cfg, p = _saved(tmp_path)
    j = p.with_suffix(".json")
    if damage == "truncate":
        p.write_bytes(p.read_bytes()[:100])
    elif damage == "garbage":
        p.write_bytes(b"\x00not a checkpoint" * 10)
    elif damage == "no_json":
        j.unlink()
    elif damage == "bad_json":
        j.write_text("{nope")
    elif damage == "bad_config":
        j.write_text(json.dumps({**cfg.to_json_dict(), "prior": "cauchy"}))
    elif damage == "wrong_shape":
        j.write_text(json.dumps({**cfg.to_json_dict(), "widths": [4, 16]}))
    elif damage == "no_pt":
        p.unlink()
    with pytest.raises(InvcompError) as ei:
        load_warm_start(p)
    assert "\n" not in str(ei.value) and str(ei.value)


def test_check_encoder_refuses_another_generator(tmp_path: Path) -> None:
    ga = load_generator(str(save_generator(tmp_path / "gen_a.pt", seed=0)))
    gb = load_generator(str(save_generator(tmp_path / "gen_b.pt", seed=1)))
    cfg = WarmStartConfig(resolution=R, latent_dim=D, widths=(4, 8), generator_sha256=ga.sha256, generator_name=ga.name)
    save_warm_start(WarmStartNet(cfg), cfg, tmp_path / "enc.pt")
    enc = load_warm_start(tmp_path / "enc.pt")
    check_warm_start(enc, ga)
    with pytest.raises(InvcompError, match="gen_a.*gen_b"):
        check_warm_start(enc, gb)
    other = LoadedGenerator(ga.name, ga.module, replace(ga.config, latent_dim=D + 1), ga.sha256)
    with pytest.raises(InvcompError, match="latent_dim"):
        check_warm_start(enc, other)
    other = LoadedGenerator(ga.name, ga.module, replace(ga.config, resolution=2 * R), ga.sha256)
    with pytest.raises(InvcompError, match="resolution"):
        check_warm_start(enc, other)


# --- training -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One 60-step run on 16 synthetic faces for a tiny DCGAN; the per-step losses are recorded."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("enc")
    gen, data, out = save_generator(root / "g.pt"), make_faces(root / "faces"), root / "run"
    losses: list[dict[str, float]] = []
    path = train_warm_start(tcfg(gen, data, out), progress=False, callback=lambda s, l: losses.append(l))
    return {"gen": gen, "data": data, "out": out, "path": path, "losses": losses}


def test_training_loss_falls_and_writes_outputs(trained: dict) -> None:
    out, losses = trained["out"], trained["losses"]
    assert trained["path"] == out / "encoder.pt"
    for name in ("encoder.pt", "encoder.json", "checkpoint.pt", "train.log", "reconstructions.png"):
        assert (out / name).is_file(), name
    assert len(losses) == 60
    first = np.mean([l["total"] for l in losses[:10]])
    last = np.mean([l["total"] for l in losses[-10:]])
    assert last < 0.8 * first, (first, last)
    info = json.loads((out / "encoder.json").read_text())
    tr = info["training"]
    assert tr["data"] == str(trained["data"]) and tr["device"] == "cpu" and 0 < tr["step"] <= 60
    assert -1 <= tr["val_ssim"] <= 1 and "seconds" in tr
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 60 and math.isclose(ck["best"], tr["val_ssim"], abs_tol=1e-4)
    log = (out / "train.log").read_text()
    assert "val SSIM" in log and "no validation images" not in log


def test_trained_encoder_beats_the_mean_latent(trained: dict) -> None:
    gen = load_generator(str(trained["gen"]))
    enc = load_warm_start(trained["path"])
    check_warm_start(enc, gen)
    z = torch.randn(256, D, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        x = gen.module(z)
    err = (predict_latents(enc.module, x) - z).pow(2).mean()
    baseline = z.pow(2).mean()  # predicting the prior's mean, 0, for every image
    assert err < 0.7 * baseline, (float(err), float(baseline))


def test_resume_continues_and_matches_an_uninterrupted_run(trained: dict, tmp_path: Path) -> None:
    gen, data = trained["gen"], trained["data"]
    straight = train_warm_start(tcfg(gen, data, tmp_path / "a", steps=6, snapshot_every=3), progress=False)
    steps: list[int] = []
    train_warm_start(tcfg(gen, data, tmp_path / "b", steps=3, snapshot_every=3), progress=False)
    train_warm_start(tcfg(gen, data, tmp_path / "b", steps=6, snapshot_every=3), progress=False,
                  callback=lambda s, l: steps.append(s))
    assert steps == [4, 5, 6]
    a = torch.load(straight.parent / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 6
    assert all(torch.equal(a["E"][k], b["E"][k]) for k in a["E"])
    assert "resumed from" in (tmp_path / "b" / "train.log").read_text()
    other = save_generator(tmp_path / "other.pt", seed=5)
    with pytest.raises(InvcompError, match="another generator"):
        train_warm_start(tcfg(other, data, tmp_path / "b", steps=8), progress=False)


def test_minutes_stop_checkpoints(trained: dict, tmp_path: Path) -> None:
    path = train_warm_start(tcfg(trained["gen"], trained["data"], tmp_path / "m", minutes=1e-9), progress=False)
    assert path.is_file() and torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=True)["step"] < 60
    assert "stopped by --minutes" in (tmp_path / "m" / "train.log").read_text()


def test_eval_faces_zero_says_snapshots_are_not_scored(trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_warm_start(tcfg(trained["gen"], trained["data"], out, steps=3, snapshot_every=2, eval_faces=0), progress=False)
    text = (out / "train.log").read_text()
    assert text.count("not scored (no validation faces)") == 2 and "nan" not in text
    assert json.loads((out / "encoder.json").read_text())["training"]["val_ssim"] is None
    assert not (out / "reconstructions.png").exists()


@pytest.mark.parametrize("gen_cfg", [{"prior": "uniform"}, {"prior": "normal", "norm_free": True}])
def test_other_priors_train_without_validation_faces(tmp_path: Path, gen_cfg: dict) -> None:
    gen = save_generator(tmp_path / "g.pt", **gen_cfg)
    data = make_faces(tmp_path / "faces", n_train=8, with_val=False)
    enc = load_warm_start(train_warm_start(tcfg(gen, data, tmp_path / "run", steps=4, snapshot_every=2), progress=False))
    assert enc.config.prior == gen_cfg["prior"] and enc.config.norm_free == gen_cfg.get("norm_free", False)
    mu = predict_latents(enc.module, torch.rand(5, 3, R, R) * 2 - 1)
    if gen_cfg["prior"] == "uniform":
        assert mu.abs().max() <= 1
    else:
        assert torch.allclose(mu.norm(dim=1), torch.full((5,), math.sqrt(D)), atol=1e-4)
    assert "scored on 4 training faces instead" in (tmp_path / "run" / "train.log").read_text()


def test_cli_runs_and_reports_bad_input_in_one_line(trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    args = ["--generator", str(trained["gen"]), "--data", str(trained["data"]), "--out", str(out), "--steps", "3",
            "--batch-size", "4", "--widths", "4,8", "--snapshot-every", "2", "--eval-faces", "2", "--device", "cpu"]
    r = CliRunner().invoke(encoder_cmd, args)
    assert r.exit_code == 0, r.output
    assert "best encoder:" in r.output and (out / "encoder.pt").is_file()
    assert load_warm_start(out / "encoder.pt").config.widths == (4, 8)
    r = CliRunner().invoke(encoder_cmd, args[:-2] + ["--device", "cpu", "--no-resume", "--widths", "4"])
    assert r.exit_code == 1 and "needs 2 positive widths" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(encoder_cmd, ["--generator", str(tmp_path / "nope.pt")] + args[2:])
    assert r.exit_code == 1 and "unknown model" in r.output


# --- amortising the search --------------------------------------------------------------------


def _searched(gen: Path, data: Path, out: Path, names: list[str] | None = None) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """The search's own latents for the training faces of ``data`` (as experiments/collect_latents.py saves them)."""
    from invcomp.data import load_faces
    from invcomp.search.inversion import invert

    faces, found = load_faces(data, R, split="train")
    x = faces.float() / 127.5 - 1
    g = load_generator(str(gen))
    z = invert(g.module, x, loss="mse", iters=40, lr=0.1).z
    torch.save({"names": names or found, "z": z, "settings": "test"}, out)
    return out, x, z


def test_amortised_training_moves_the_encoder_to_the_search_latents(trained: dict, tmp_path: Path) -> None:
    gen, data = trained["gen"], trained["data"]
    latents, x, z = _searched(gen, data, tmp_path / "lat.pt")
    path = train_warm_start(tcfg(gen, data, tmp_path / "a", steps=40, snapshot_every=20, latents=str(latents),
                                 init=str(trained["path"]), quant_in_loop=True, w_search=10.0, lr=1e-3), progress=False)
    before = (predict_latents(load_warm_start(trained["path"]).module, x) - z).pow(2).mean()
    after = (predict_latents(load_warm_start(path).module, x) - z).pow(2).mean()
    assert after < 0.8 * before, (float(before), float(after))
    log = (tmp_path / "a" / "train.log").read_text()
    assert f"amortised: {len(z)} faces" in log and "E starts from" in log and "G(Q(E(x)))" in log


def test_amortised_training_refuses_faces_that_are_not_training_faces(trained: dict, tmp_path: Path) -> None:
    gen, data = trained["gen"], trained["data"]
    from invcomp.data import load_faces

    names = load_faces(data, R, split="train")[1]
    latents, _, _ = _searched(gen, data, tmp_path / "lat.pt", names=names[:-1] + ["held-out.png"])
    with pytest.raises(InvcompError, match="not training faces"):
        train_warm_start(tcfg(gen, data, tmp_path / "a", steps=2, latents=str(latents)), progress=False)
