"""The codec contract: a new mode is one class registered from outside the package, and the CLI (encode, decode,
compare), ``invcomp bench``, batch, the web API and the fuzzer take it with no other code changed; the service layer
is the one home of defaults (the layer order is tests/test_layers.py's)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest
import torch
from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.cli import cli
from invcomp.codecs import Codec, EncodeSettings, load_codec, register_mode, unregister_mode
from invcomp.codecs.settings import resolve_one_pass
from invcomp.errors import InvcompError
from invcomp.fuzz import codec_seeds, run_fuzz

from .conftest import REPO, cli_runner

SIDE = 4


class IdentityCodec(Codec):
    """A toy mode: the symbols are the 4x4 image's 48 pixel values; 8-bit max-norm QSGD; synthesis is a reshape."""

    mode = 7
    mode_key = "identity"
    title = "identity (test)"

    def __init__(self, settings: Optional[EncodeSettings] = None) -> None:
        s = resolve_one_pass(settings or EncodeSettings(), bits=8, scaling="max", mode=self.title)
        super().__init__(name="identity4", model_id=b"\xee\x01\x02\x03", resolution=SIDE, latent_dim=3 * SIDE * SIDE,
                         settings=s)

    @classmethod
    def load(cls, spec: Optional[str], settings: Optional[EncodeSettings] = None, *, device: str = "cpu",
             for_decode: bool = False, **options: Any) -> "IdentityCodec":
        if spec not in (None, "identity4") or options:
            raise InvcompError(f"the identity mode has one model, identity4, and no options (got {spec!r})")
        return cls(None if for_decode else settings)

    @classmethod
    def claims(cls, spec: str) -> bool:
        return spec == "identity4"

    @classmethod
    def models(cls) -> list[str]:
        return ["identity4"]

    @classmethod
    def for_header(cls, header: bitstream.Header, *, device: str = "cpu") -> "IdentityCodec":
        return cls()

    def find_symbols(self, target: torch.Tensor, progress: Any) -> tuple[torch.Tensor, list[dict]]:
        if progress is not None:
            progress(target.shape[0])
        return target.flatten(1), [{} for _ in range(target.shape[0])]

    def synthesise(self, z: torch.Tensor) -> torch.Tensor:
        return z.view(-1, 3, SIDE, SIDE).clamp(-1, 1)


@pytest.fixture
def identity_mode() -> Iterator[type[IdentityCodec]]:
    register_mode(IdentityCodec)
    try:
        yield IdentityCodec
    finally:
        unregister_mode(IdentityCodec.mode)


def _image(path: Path, seed: int, size: tuple[int, int] = (SIDE, SIDE)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB").save(path)
    return path


def _run(*args: object) -> Any:
    return cli_runner().invoke(cli, [str(a) for a in args])


def test_a_registered_mode_goes_through_cli_encode_decode_and_compare(identity_mode: type, tmp_path: Path) -> None:
    src = _image(tmp_path / "a.png", 0)
    r = _run("encode", src, "--model", "identity4", "-o", tmp_path / "a.ivc", "--json")
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["mode"] == "identity" and row["model"] == "identity4"
    header = bitstream.unpack((tmp_path / "a.ivc").read_bytes())[0]
    assert (header.mode, header.latent_dim, header.bits) == (7, 48, 8)
    r = _run("decode", tmp_path / "a.ivc", "-o", tmp_path / "a.png.out.png", "--json")  # found from the header
    assert r.exit_code == 0, r.stderr
    back = np.asarray(Image.open(tmp_path / "a.png.out.png"), dtype=np.int16)
    orig = np.asarray(Image.open(src), dtype=np.int16)
    assert np.abs(back - orig).max() <= 3  # 8-bit QSGD of pixel values: an independent bound
    r = _run("compare", src, tmp_path / "a.png.out.png", "--bitstream", tmp_path / "a.ivc", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["ssim"] > 0.99
    # the mode prefix names it too, and a search option is refused in one line, not ignored
    assert _run("encode", src, "--model", "identity:identity4", "-o", tmp_path / "b.ivc").exit_code == 0
    r = _run("encode", src, "--model", "identity4", "--iters", 5, "-o", tmp_path / "c.ivc")
    assert r.exit_code == 1 and "iters" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.ivc").exists()


def test_a_registered_mode_goes_through_bench(identity_mode: type, tmp_path: Path) -> None:
    faces = tmp_path / "faces"
    faces.mkdir()
    for i in range(3):
        _image(faces / f"{i}.png", i, (9, 7))
    r = _run("bench", faces, "--codecs", "invcomp:identity4,png", "--out", tmp_path / "out", "--no-plots", "--no-lpips")
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "per_image.csv").open()))
    mine = [x for x in rows if x["codec"] == "invcomp:identity4"]
    assert len(mine) == 3 and all(float(x["ssim"]) > 0.99 for x in mine)
    # the bench's files are what `invcomp encode` writes for the same images
    for x in mine:
        out = tmp_path / (Path(x["image"]).stem + ".ivc")
        assert _run("encode", faces / x["image"], "--model", "identity4", "-o", out).exit_code == 0
        assert out.stat().st_size == int(x["bytes"])
    doc = json.loads((tmp_path / "out" / "invcomp_identity4.json").read_text())
    assert doc["settings"]["lpips"] is False


def test_a_registered_mode_goes_through_the_fuzzer(identity_mode: type) -> None:
    import random

    codec = IdentityCodec()
    seeds = codec_seeds(codec, random.Random(0), 4)
    assert all(bitstream.unpack(s)[0].mode == 7 for s in seeds)
    stats = run_fuzz(600, seed=3, codec=codec).as_dict()
    assert stats["crashes"] == 0 and stats["hangs"] == 0, stats["crash_examples"]
    assert stats["errors"] > 400


def test_a_registered_mode_goes_through_batch(identity_mode: type, tmp_path: Path) -> None:
    """The worker that batch's local processes and Ray actors run (in this process, where the mode is registered)."""
    from invcomp.batch.work import ENCODE, JobSpec, WorkItem, Worker
    from invcomp.service.encode import codec_defaults

    srcs = [_image(tmp_path / f"{i}.png", i, (9, 7)) for i in range(3)]
    items = [WorkItem(str(i), str(s), str(tmp_path / f"{i}.ivc")) for i, s in enumerate(srcs)]
    done = Worker(JobSpec(ENCODE, codec_defaults(model="identity4"))).run(items)["results"]
    assert [r["ok"] for r in done] == [True] * 3 and {r["row"]["mode"] for r in done} == {"identity"}
    r = _run("encode", srcs[1], "--model", "identity4", "-o", tmp_path / "cli.ivc")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "1.ivc").read_bytes() == (tmp_path / "cli.ivc").read_bytes()  # batch writes what encode writes


def test_a_registered_mode_goes_through_the_web_api(identity_mode: type, tmp_path: Path) -> None:
    """The web API's catalog and form check take the mode and its model; the task a web worker runs codes the
    upload as ``invcomp encode`` does, then decodes it."""
    pytest.importorskip("fastapi")
    from invcomp.web.catalog import Catalog
    from invcomp.web.config import Limits
    from invcomp.web.store import INPUT, IVC, PNG
    from invcomp.web.tasks import Tasks
    from invcomp.web.uploads import encode_options

    catalog = Catalog()
    assert "identity" in catalog.modes() and "identity4" in catalog.model_names()
    options = encode_options({"mode": "identity", "model": "identity4"}, catalog, Limits())
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / INPUT).write_bytes(_image(tmp_path / "upload.png", 5, (9, 7)).read_bytes())  # uploads keep no name
    row = Tasks("cpu", 1_000_000).run("encode", folder, options, "face.png", start=lambda n: None, tick=lambda n: None)
    assert row["mode"] == "identity" and row["decoded"]["width"] == 9
    r = _run("encode", folder / INPUT, "--mode", "identity", "--model", "identity4", "-o", tmp_path / "cli.ivc")
    assert r.exit_code == 0, r.stderr
    assert (folder / IVC).read_bytes() == (tmp_path / "cli.ivc").read_bytes()
    assert Image.open(folder / PNG).size == (9, 7)


def test_an_unregistered_mode_is_refused_in_one_line(tmp_path: Path) -> None:
    register_mode(IdentityCodec)
    data = IdentityCodec().encode([Image.new("RGB", (4, 4))])[0].data
    unregister_mode(IdentityCodec.mode)
    (tmp_path / "x.ivc").write_bytes(data)
    r = _run("decode", tmp_path / "x.ivc")
    assert r.exit_code == 1 and "mode 7, which this invcomp does not know" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.decoded.png").exists()


def test_the_api_defaults_are_the_cli_defaults(tmp_path: Path) -> None:
    # one home for defaults: an encoder start (the model ships one) and 50 steps at 0.2, for the API and the CLI
    codec = load_codec("dcgan-utkface64")
    s = codec.settings
    assert (s.init, s.iters, s.lr, s.bits, s.scaling, s.loss, s.restarts) == ("encoder", 50, 0.2, 6, "l2", "ssim", 1)
    assert load_codec("dcgan-utkface64", EncodeSettings(init="random")).settings.lr == 0.5
    assert load_codec("dcgan-utkface64", EncodeSettings(init="encoder")).settings.init == "encoder"
    src = REPO / "experiments" / "data" / "portraits" / "astronaut-face.png"
    from invcomp.service.encode import EncodeRequest, build_encoder

    # the default codec is the use-case layer's (the whole-frame codec), the same for the Python API and the CLI
    api = build_encoder(EncodeRequest(iters=3)).codec.encode([Image.open(src).convert("RGB")])[0].data
    assert _run("encode", src, "--iters", 3, "-o", tmp_path / "a.ivc").exit_code == 0
    assert (tmp_path / "a.ivc").read_bytes() == api
    # and load_codec() alone is the face codec's own default, --mode auto, as `invcomp encode --mode auto` codes
    api = load_codec(settings=EncodeSettings(iters=3)).encode([Image.open(src).convert("RGB")])[0].data
    assert _run("encode", src, "--mode", "auto", "--iters", 3, "-o", tmp_path / "b.ivc").exit_code == 0
    assert (tmp_path / "b.ivc").read_bytes() == api


def test_bench_measures_vaegan_beside_inversion_as_encode_codes_them(tmp_path: Path) -> None:
    faces = tmp_path / "faces"
    faces.mkdir()
    for i, size in enumerate([(70, 60), (130, 140)]):
        _image(faces / f"{i}.png", i, size)
    codecs = "invcomp,invcomp:vaegan-utkface64-c4,webp"
    r = _run("bench", faces, "--codecs", codecs, "--iters", 2, "--out", tmp_path / "out", "--no-plots", "--no-lpips")
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "out" / "per_image.csv").open()))
    # the plain `invcomp` entry is the inversion codec of --model (dcgan-utkface64), as `invcomp encode --model` codes
    for label, args in (("invcomp", ["--iters", 2, "--model", "dcgan-utkface64"]),
                        ("invcomp:vaegan-utkface64-c4", ["--model", "vaegan-utkface64-c4"])):
        mine = {x["image"]: x for x in rows if x["codec"] == label and x["mode"] == "fixed"}
        assert len(mine) == 2, label
        for name, x in mine.items():
            out = tmp_path / f"{label.replace(':', '_')}-{name}.ivc"
            assert _run("encode", faces / name, *args, "-o", out).exit_code == 0
            assert out.stat().st_size == int(x["bytes"]), (label, name)
    eq = [x for x in rows if x["codec"] == "webp" and x["mode"] == "equal_bytes"]
    assert {x["reference"] for x in eq} == {"invcomp", "invcomp:vaegan-utkface64-c4"}
    md = (tmp_path / "out" / "equal_bytes.md").read_text()
    assert "## invcomp:vaegan-utkface64-c4 4 bits" in md and "## invcomp 6 bits" in md


class SearchingToyCodec(IdentityCodec):
    """A toy mode that searches: its symbols are the pixels at 3 bits; the search starts at the image's mean colour
    (the preview, 0 steps) and reaches the pixels in 4 steps."""

    mode = 6  # 0..5 are invcomp's, 7 the identity toy's
    mode_key = "search-toy"
    title = "searching toy (test)"
    searches = True

    def __init__(self, settings: Optional[EncodeSettings] = None) -> None:
        super().__init__()
        self.name, self.model_id = "search4", b"\xee\x01\x02\x04"
        self.settings = EncodeSettings(bits=3, scaling="max", iters=4 if settings is None or settings.iters is None
                                       else settings.iters)

    @classmethod
    def claims(cls, spec: str) -> bool:
        return spec == "search4"

    def find_symbols(self, target: torch.Tensor, progress: Any) -> tuple[torch.Tensor, list[dict]]:
        x = target.flatten(1)
        start = target.mean((2, 3), keepdim=True).expand_as(target).flatten(1)
        return start + (x - start) * min(1.0, (self.settings.iters or 0) / 4), [{} for _ in range(x.shape[0])]


def test_auto_predicted_decision_equals_the_full_decision_on_toy_modes(identity_mode: type) -> None:
    """``--mode auto`` skips a search where its preview, raised by the largest gain a search made, cannot win: the
    files it keeps are the ones the full decision (every search run) keeps, and some searches were skipped."""
    from invcomp.codecs.loader import codec_for_header
    from invcomp.codecs.modes.auto import AutoCodec

    register_mode(SearchingToyCodec)
    try:
        rng = np.random.default_rng(0)
        images = [Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8), "RGB") for _ in range(4)]
        images += [Image.new("RGB", (SIDE, SIDE), (200, 30, 90)), Image.new("RGB", (SIDE, SIDE), (10, 120, 240))]
        ramp = np.linspace(0, 255, SIDE * SIDE * 3).reshape(SIDE, SIDE, 3).astype(np.uint8)
        images.append(Image.fromarray(ramp, "RGB"))
        for slope in (0.00001, 0.004, 0.05):
            full = AutoCodec([IdentityCodec(), SearchingToyCodec()], decoder_for=codec_for_header, slope=slope,
                             search_gain=None).encode(images)
            gains = []
            for e in full:  # the search against its preview, bit depth by bit depth (the toy codes 3 bits; 2 and 4 too)
                by = {c["codec"]: c["ssim"] for c in e.extra["auto"]["candidates"]}
                gains += [by[f"search-toy:search4{b}"] - by[f"search-toy:search4@0{b}"] for b in ("", "/2bit", "/4bit")]
            bound = max(gains)  # the largest gain seen, as SEARCH_GAIN is set on validation faces
            predicted = AutoCodec([IdentityCodec(), SearchingToyCodec()], decoder_for=codec_for_header, slope=slope,
                                  search_gain=bound).encode(images)
            assert [e.data for e in predicted] == [e.data for e in full], slope
            if slope == 0.00001:  # bytes are cheap: the exact 8-bit file beats any search of noise, so none is run
                assert any(not e.extra["auto"]["searched"] for e in predicted)
            assert all(e.extra["auto"]["searched"] == ["search-toy:search4"] for e in full)
        # a bound below the gains a search makes skips searches that would have won: the decision changes
        slope = 0.004
        full = AutoCodec([IdentityCodec(), SearchingToyCodec()], decoder_for=codec_for_header, slope=slope,
                         search_gain=None).encode(images)
        wrong = AutoCodec([IdentityCodec(), SearchingToyCodec()], decoder_for=codec_for_header, slope=slope,
                          search_gain=0.0).encode(images)
        assert [e.data for e in wrong] != [e.data for e in full]
    finally:
        unregister_mode(SearchingToyCodec.mode)


def test_auto_quality_sweep_is_monotone_on_toy_modes(identity_mode: type) -> None:
    """Each --quality level prices a byte at half the level below's: the files kept grow, and so does their SSIM."""
    from invcomp.codecs.loader import codec_for_header
    from invcomp.codecs.modes.auto import AutoCodec
    from invcomp.service.encode import parse_quality

    register_mode(SearchingToyCodec)
    try:
        rng = np.random.default_rng(1)
        images = [Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8), "RGB") for _ in range(6)]
        points = []
        for q in ("1", "low", "medium", "high", "5"):
            picked = AutoCodec([IdentityCodec(), SearchingToyCodec()], decoder_for=codec_for_header,
                               slope=parse_quality(q, base=0.005)).encode(images)
            points.append((np.mean([len(e.data) for e in picked]), np.mean([e.ssim() for e in picked])))
        assert all(b0 <= b1 and s0 <= s1 + 1e-9 for (b0, s0), (b1, s1) in zip(points, points[1:])), points
        assert points[0][0] < points[-1][0]  # the sweep spans both modes, not one file five times
    finally:
        unregister_mode(SearchingToyCodec.mode)
