"""``invcomp encode --init encoder|mean|random`` and ``--encoder``: the warm start through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invcomp.cli import cli
from invcomp.nets.warmstart import WarmStartConfig, WarmStartNet, predict_latents, save_warm_start
from invcomp.files import sha256_file
from invcomp.imageio import fit_image, from_image
from invcomp.coding.quantize import dequantize, quantize

from .conftest import cli_runner
from .test_warmstart import D, R, save_generator, varied_dcgan


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    gen = save_generator(tmp_path / "g.pt")
    cfg = WarmStartConfig(resolution=R, latent_dim=D, widths=(4, 8), generator_sha256=sha256_file(gen), generator_name="g")
    torch.manual_seed(3)
    save_warm_start(WarmStartNet(cfg), cfg, tmp_path / "enc.pt")
    other = WarmStartConfig(resolution=R, latent_dim=D, widths=(4, 8), generator_sha256="cd" * 32, generator_name="h")
    save_warm_start(WarmStartNet(other), other, tmp_path / "other.pt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8), "RGB").save(tmp_path / "x.png")
    return {"gen": gen, "enc": tmp_path / "enc.pt", "other": tmp_path / "other.pt", "img": tmp_path / "x.png",
            "dir": tmp_path}


def _encode(f: dict[str, Path], *extra: str):  # type: ignore[no-untyped-def]
    args = ["encode", str(f["img"]), "-o", str(f["dir"] / "x.ivc"), "--model", str(f["gen"]), "--device", "cpu",
            "--bits", "8", "--json", "--force", *extra]
    return cli_runner().invoke(cli, args)


def test_encoder_init_with_zero_iterations_codes_the_encoders_guess(files: dict[str, Path]) -> None:
    r = _encode(files, "--encoder", str(files["enc"]), "--init", "encoder", "--iters", "0")
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout.splitlines()[0])
    assert row["init"] == "encoder" and row["iters"] == 0
    r = cli_runner().invoke(cli, ["decode", str(files["dir"] / "x.ivc"), "-o", str(files["dir"] / "y.png"), "--native",
                               "--model", str(files["gen"]), "--device", "cpu"])
    assert r.exit_code == 0, r.stderr
    decoded = from_image(Image.open(files["dir"] / "y.png").convert("RGB"))

    # independent expectation: E's latent for the coded pixels, QSGD at 8 bits (l2), one G pass
    from invcomp.nets.warmstart import load_warm_start

    target = from_image(fit_image(Image.open(files["img"]).convert("RGB"), R, "crop"))[None]
    z = predict_latents(load_warm_start(files["enc"]).module, target)
    g = varied_dcgan()
    with torch.no_grad():
        expected = g(dequantize(quantize(z, 8, scaling="l2"))).clamp(-1, 1)[0]
    assert torch.allclose(decoded, expected, atol=4 / 255)  # 8-bit PNG rounding, in [-1, 1] units
    from_encoder = (files["dir"] / "x.ivc").read_bytes()
    assert _encode(files, "--init", "random", "--iters", "0").exit_code == 0
    assert (files["dir"] / "x.ivc").read_bytes() != from_encoder  # the start really came from the encoder


def test_mean_init_with_zero_iterations_is_g_of_zero(files: dict[str, Path]) -> None:
    r = _encode(files, "--init", "mean", "--iters", "0")
    assert r.exit_code == 0, r.stderr
    r = cli_runner().invoke(cli, ["decode", str(files["dir"] / "x.ivc"), "-o", str(files["dir"] / "y.png"), "--native",
                               "--model", str(files["gen"]), "--device", "cpu"])
    assert r.exit_code == 0, r.stderr
    decoded = from_image(Image.open(files["dir"] / "y.png").convert("RGB"))
    with torch.no_grad():
        expected = varied_dcgan()(torch.zeros(1, D)).clamp(-1, 1)[0]
    assert torch.allclose(decoded, expected, atol=4 / 255)


def test_auto_init_without_an_encoder_is_random(files: dict[str, Path]) -> None:
    r = _encode(files, "--iters", "1")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[0])["init"] == "random"


def test_encoder_init_without_an_encoder_fails_in_one_line(files: dict[str, Path]) -> None:
    r = _encode(files, "--init", "encoder")
    assert r.exit_code == 1
    assert "has no warm-start network" in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (files["dir"] / "x.ivc").exists()


def test_an_encoder_for_another_generator_is_refused(files: dict[str, Path]) -> None:
    r = _encode(files, "--encoder", str(files["other"]), "--init", "encoder")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert "h" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (files["dir"] / "x.ivc").exists()


def test_default_iterations_depend_on_the_start(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from invcomp.codecs import settings

    # small stand-ins so the test is quick; the CLI must read the constants, not hard-code 200 / 300
    monkeypatch.setattr(settings, "ITERS_FROM_WARM_START", 3)
    monkeypatch.setattr(settings, "ITERS_FROM_PRIOR", 5)
    r = _encode(files, "--encoder", str(files["enc"]))
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout.splitlines()[0])
    assert (row["init"], row["iters"]) == ("encoder", 3)
    r = _encode(files, "--init", "random")
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout.splitlines()[0])
    assert (row["init"], row["iters"]) == ("random", 5)
    r = _encode(files, "--encoder", str(files["enc"]), "--iters", "2")
    assert json.loads(r.stdout.splitlines()[0])["iters"] == 2


def test_default_iters_constants() -> None:
    from invcomp.codecs.settings import EncodeSettings, resolve_search
    from invcomp.errors import InvcompError

    warm = resolve_search(EncodeSettings(), has_warm_start=True)
    assert (warm.iters, warm.lr, warm.patience) == (50, 0.2, 0)
    cold = resolve_search(EncodeSettings(), has_warm_start=False)
    assert (cold.iters, cold.lr, cold.patience) == (300, 0.5, 0)
    for init in ("random", "mean"):
        assert resolve_search(EncodeSettings(init=init), has_warm_start=True).iters == 300
    assert resolve_search(EncodeSettings(lr=0.7, patience=4), has_warm_start=True).lr == 0.7
    with pytest.raises(InvcompError, match="patience"):
        resolve_search(EncodeSettings(patience=-1), has_warm_start=True)
