"""Backward compatibility: ``.ivc`` files written by invcomp before the codec contract (commit d87303d) decode to
the same pixels, and the same settings still write the same bytes.

The fixtures in ``tests/data/compat`` were written by that commit's ``codec.encode_batch`` / ``encode_vaegan`` and
decoded by its ``codec.decode`` / ``decode_vaegan`` (``NAME.native.png`` at the model resolution, ``NAME.png`` at the
original size). Full-size PNGs are kept only where the old geometry was right: a non-square ``crop`` file used to
be stretched over the frame, and now decodes in place (README, "Decoding").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invcomp.cli import cli
from invcomp.codecs import EncodeSettings, load_codec

from .conftest import REPO, cli_runner

DATA = Path(__file__).parent / "data" / "compat"
NAMES = sorted(p.stem for p in DATA.glob("*.ivc"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("native", [True, False])
def test_old_files_decode_to_the_same_pixels(name: str, native: bool, tmp_path: Path) -> None:
    want = DATA / f"{name}.native.png" if native else DATA / f"{name}.png"
    if not want.exists():
        pytest.skip("the old full-size decode of a non-square crop was the stretched frame (fixed)")
    out = tmp_path / "out.png"
    r = cli_runner().invoke(cli, ["decode", str(DATA / f"{name}.ivc"), "-o", str(out), *(["--native"] if native else [])])
    assert r.exit_code == 0, r.stderr
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(want)))


def _wide() -> Image.Image:
    hop = Image.open(REPO / "experiments" / "data" / "portraits" / "grace-hopper.png").convert("RGB")
    return hop.crop((0, 40, 150, 140))


def _face() -> Image.Image:
    return Image.open(REPO / "experiments" / "data" / "portraits" / "astronaut-face.png").convert("RGB")


@pytest.mark.parametrize(("name", "spec", "settings"), [
    ("dcgan-crop-square", "dcgan-utkface64", EncodeSettings(iters=20, init="encoder", coder="elias")),
    ("dcgan-crop-wide", "dcgan-utkface64", EncodeSettings(iters=20, init="random", coder="omega")),
    ("dcgan-squash-wide-stochastic", "dcgan-utkface64",
     EncodeSettings(iters=20, init="random", fit="squash", rounding="stochastic", bits=4, scaling="max", seed=3)),
    ("vaegan-c4", "vaegan-utkface64-c4", EncodeSettings(coder="elias")),
])
def test_the_same_settings_write_the_same_bytes(name: str, spec: str, settings: EncodeSettings) -> None:
    data = load_codec(spec, settings).encode([_face() if name == "dcgan-crop-square" else _wide()])[0].data
    # The warm-start network was stored in float16 later (dcgan-utkface64-encoder-f3acde28, README "Warm start"): its
    # first guess moved by < 8e-4, so a search from it writes other bytes. Decoding is unchanged (the test above);
    # this file is what the float16 network writes, from then on.
    want = DATA / "encode-since-fp16-warm-start" / f"{name}.ivc"
    assert data == (want if want.exists() else DATA / f"{name}.ivc").read_bytes()
