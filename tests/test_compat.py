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
from invcomp.zoo import index as registry  # the lookups by id, and the alias notice said once
from invcomp.zoo.registry import ALIAS_TOLERANCE, ALIAS_TOLERANCE_RESIZED, list_models

from .conftest import REPO, cli_runner

DATA = Path(__file__).parent / "data" / "compat"
NAMES = sorted(p.stem for p in DATA.glob("*.ivc"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("native", [True, False])
def test_old_files_decode_to_the_same_pixels(name: str, native: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_told", set())  # said once per process: reset, so that this test sees it
    want = DATA / f"{name}.native.png" if native else DATA / f"{name}.png"
    if not want.exists():
        pytest.skip("the old full-size decode of a non-square crop was the stretched frame (fixed)")
    out = tmp_path / "out.png"
    r = cli_runner().invoke(cli, ["decode", str(DATA / f"{name}.ivc"), "-o", str(out), *(["--native"] if native else [])])
    assert r.exit_code == 0, r.stderr
    got, ref = np.asarray(Image.open(out)).astype(int), np.asarray(Image.open(want)).astype(int)
    assert got.shape == ref.shape
    # The generators and VAE-GANs of the first releases ship in float16 since pretrained/ had to fit in 50 MiB
    # (experiments/pack_fp16.py): their files decode through an alias, within ALIAS_TOLERANCE, and the user is told.
    # Everything else decodes to the very same pixels.
    if np.array_equal(got, ref):
        return
    assert np.abs(got - ref).max() <= (ALIAS_TOLERANCE if native else ALIAS_TOLERANCE_RESIZED)
    assert "earlier release" in caplog.text and f"within {ALIAS_TOLERANCE}/255" in caplog.text


@pytest.mark.parametrize("name", NAMES)
def test_old_files_name_their_release_through_an_alias(name: str) -> None:
    from invcomp.formats import ivc as bitstream
    from invcomp.zoo.registry import find_by_id

    from invcomp.formats import photo as container

    data = (DATA / f"{name}.ivc").read_bytes()
    files = [f.data for f in container.unpack(data).faces] if container.is_photo(data) else [data]
    for face in files:  # a photo file names its models in its face files
        entry = find_by_id(bitstream.unpack(face)[0].model_id)
        assert entry is not None
        if entry.alias_of is not None:  # the alias keeps the release's id, and decodes with the current model's file
            current = {e.name: e for e in list_models()}[entry.alias_of]
            assert entry.weights == current.weights and entry.stored_sha256 == current.sha256 != entry.sha256


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
    # The generators and VAE-GANs were stored in float16 later still (experiments/pack_fp16.py): new files carry the
    # float16 model's id and come from its search.
    # Issue 33 shipped the amortised warm-start network (dcgan-utkface64-encoder-1abad1d5) and a search from a warm
    # start peaks at a rate of 0.2: the encoder start's file is what they write, from then on.
    wants = [DATA / "encode-since-amortised-encoder" / f"{name}.ivc", DATA / "encode-since-fp16-generator" / f"{name}.ivc",
             DATA / "encode-since-fp16-warm-start" / f"{name}.ivc", DATA / f"{name}.ivc"]
    assert data == next(w for w in wants if w.exists()).read_bytes()


def test_an_alias_only_decodes(tmp_path: Path) -> None:
    aliases = [e.name for e in list_models() if e.alias_of]
    assert aliases  # the float32 releases of the generators and VAE-GANs
    r = cli_runner().invoke(cli, ["encode", str(REPO / "experiments" / "data" / "portraits" / "astronaut-face.png"),
                                  "-o", str(tmp_path / "a.ivc"), "--model", aliases[0], "--iters", "0"])
    assert r.exit_code != 0 and "only to decode the files of an earlier release" in r.stderr
    assert not (tmp_path / "a.ivc").exists()
