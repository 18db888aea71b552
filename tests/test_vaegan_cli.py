"""``invcomp encode --mode vaegan`` and decoding mode-1 files through the CLI; modes never cross."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invcomp.codecs import InversionCodec
from invcomp.formats.ivc import MODE_VAEGAN, unpack
from invcomp.cli import cli
from invcomp.errors import BitstreamError
from invcomp.zoo.registry import load_generator
from invcomp.imageio import fit_image, from_image
from invcomp.nets.vaegan import VAEGANConfig, build_vaegan, load_vaegan, reconstruct, save_vaegan

from .conftest import cli_runner, tiny_dcgan

CFG = VAEGANConfig(resolution=16, channels=4, downsample=8, widths=(8, 8, 8), bits=5)




@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    torch.manual_seed(0)
    save_vaegan(build_vaegan(CFG), CFG, tmp_path / "vg.pt")
    torch.save(tiny_dcgan().state_dict(), tmp_path / "g.pt")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8), "RGB").save(tmp_path / "x.png")
    return {"vg": tmp_path / "vg.pt", "g": tmp_path / "g.pt", "img": tmp_path / "x.png", "dir": tmp_path}


def _run(*args: object):  # type: ignore[no-untyped-def]
    return cli_runner().invoke(cli, [str(a) for a in args])


def test_vaegan_encode_decode_round_trip(files: dict[str, Path]) -> None:
    d = files["dir"]
    r = _run("encode", files["img"], "-o", d / "x.ivc", "--mode", "vaegan", "--model", files["vg"], "--channels", 4,
             "--device", "cpu", "--json")
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout.splitlines()[0])
    data = (d / "x.ivc").read_bytes()
    header = unpack(data)[0]
    assert row["mode"] == "vaegan" and row["bits"] == 5 and row["bytes"] == len(data)
    assert header.mode == MODE_VAEGAN and header.latent_dim == 4 * 2 * 2 and header.bits == 5
    r = _run("decode", d / "x.ivc", "-o", d / "y.png", "--native", "--model", files["vg"], "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    decoded = from_image(Image.open(d / "y.png").convert("RGB"))
    # independent expectation: the model's own quantised forward pass on the coded pixels
    m = load_vaegan(files["vg"])
    target = from_image(fit_image(Image.open(files["img"]).convert("RGB"), 16, "crop"))[None]
    with torch.no_grad():
        expected = reconstruct(m.analysis, m.synthesis, target, 5, CFG.scaling).clamp(-1, 1)[0]
    assert torch.allclose(decoded, expected, atol=4 / 255)


def test_channels_must_match_the_model(files: dict[str, Path]) -> None:
    r = _run("encode", files["img"], "-o", files["dir"] / "x.ivc", "--mode", "vaegan", "--model", files["vg"],
             "--channels", 8, "--device", "cpu")
    assert r.exit_code == 1 and "4 channels, not 8" in r.stderr and "Traceback" not in r.stderr
    assert not (files["dir"] / "x.ivc").exists()


def test_vaegan_without_channels_or_model_is_a_clear_error(files: dict[str, Path]) -> None:
    r = _run("encode", files["img"], "-o", files["dir"] / "x.ivc", "--mode", "vaegan", "--device", "cpu")
    assert r.exit_code == 1 and "--channels" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_channels_without_vaegan_mode_is_refused(files: dict[str, Path]) -> None:
    r = _run("encode", files["img"], "-o", files["dir"] / "x.ivc", "--model", files["g"], "--channels", 4,
             "--device", "cpu")
    assert r.exit_code == 1 and "--mode vaegan" in r.stderr


def test_a_vaegan_file_never_decodes_as_inversion(files: dict[str, Path]) -> None:
    d = files["dir"]
    assert _run("encode", files["img"], "-o", d / "x.ivc", "--mode", "vaegan", "--model", files["vg"],
                "--device", "cpu").exit_code == 0
    data = (d / "x.ivc").read_bytes()
    with pytest.raises(BitstreamError, match="VAE-GAN"):
        InversionCodec(load_generator(str(files["g"]))).decode(data)
    r = _run("decode", d / "x.ivc", "-o", d / "y.png", "--model", files["g"], "--device", "cpu")
    assert r.exit_code == 1 and "Traceback" not in r.stderr and not (d / "y.png").exists()


def test_an_inversion_file_never_decodes_with_a_vaegan_model(files: dict[str, Path]) -> None:
    d = files["dir"]
    r = _run("encode", files["img"], "-o", d / "x.ivc", "--model", files["g"], "--iters", 1, "--device", "cpu")
    assert r.exit_code == 0, r.stderr
    r = _run("decode", d / "x.ivc", "-o", d / "y.png", "--model", files["vg"], "--device", "cpu")
    assert r.exit_code == 1 and "Traceback" not in r.stderr and not (d / "y.png").exists()
    assert len(r.stderr.strip().splitlines()) == 1
