"""Container v2: range coding under each model's prior, a compact header, canonical files, golden files decoded
bit-exactly, a prior that is part of the model id, and rate control."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.coding import tables as prior
from invcomp.codecs import EncodeSettings, load_codec
from invcomp.codecs.entropy import parse
from invcomp.codecs.rate import RateTarget, bytes_for_bpp, control, encode_to
from invcomp.errors import InvcompError
from invcomp.zoo import registry

from .conftest import DEMO_IMAGE, REPO

SHIPPED = [e.name for e in registry.list_models() if e.kind not in ("gc", "sc") and e.alias_of is None]  # whole-image modes: tests/test_gc.py, test_sc.py
GOLDEN = REPO / "tests" / "data" / "v2"


def _demo() -> Image.Image:
    return Image.open(DEMO_IMAGE).convert("RGB")


def _settings(name: str, **kw: object) -> EncodeSettings:
    return EncodeSettings(**kw) if name.startswith("vaegan") else EncodeSettings(iters=0, init="random", **kw)


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    """The demo face coded by every shipped model (no search: the start is coded as it is)."""
    return {name: load_codec(name, _settings(name)).encode([_demo()])[0].data for name in SHIPPED}


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_model_round_trips_through_its_prior(name: str) -> None:
    codec = load_codec(name, _settings(name))
    assert codec.tables is not None and codec.model_id_v2 is not None
    enc = codec.encode([_demo()])[0]
    assert enc.data[0] == bitstream.MAGIC_V2 and enc.header.version == 2 and enc.header.coder == "prior"
    header, q = parse(enc.data, codec)
    assert torch.equal(q.levels[0], enc.levels)  # the levels the encoder chose, exactly
    assert (header.width, header.height, header.latent_dim) == (124, 124, codec.latent_dim)
    _, recon = load_codec(name, for_decode=True).decode(enc.data)
    assert torch.equal(recon, enc.recon)


@pytest.mark.parametrize("name", SHIPPED)
def test_the_header_is_at_most_10_bytes(name: str, files: dict[str, bytes]) -> None:
    codec = load_codec(name, for_decode=True)
    header, rest, _ = bitstream.unpack(files[name])
    payload = rest if codec.norm_free else rest[1:]
    assert len(files[name]) - len(payload) == (9 if codec.norm_free else 10)


@pytest.mark.parametrize("name", ["dcgan-utkface64", "pgan-utkface64", "vaegan-utkface64-c4"])
def test_every_single_byte_change_and_every_truncation_is_refused(name: str, files: dict[str, bytes]) -> None:
    data = files[name]
    codec = load_codec(name, for_decode=True)
    for i in range(len(data)):
        for v in range(256):
            if v == data[i]:
                continue
            bad = data[:i] + bytes([v]) + data[i + 1:]
            with pytest.raises(InvcompError):
                parse(bad, codec)
    for n in range(len(data)):
        with pytest.raises(InvcompError):
            parse(data[:n], codec)


def test_a_payload_that_is_not_the_shortest_coding_is_refused(files: dict[str, bytes]) -> None:
    """Files are canonical: a payload with a byte appended (CRC fixed) decodes to the same levels, and is refused."""
    data = files["dcgan-utkface64"]
    codec = load_codec("dcgan-utkface64", for_decode=True)
    longer = data[:-2] + b"\xff"
    longer += bitstream.crc16(longer)
    with pytest.raises(InvcompError, match="not the canonical coding"):
        parse(longer, codec)


def test_sizes_over_4096_use_the_escape_and_small_ones_may_not() -> None:
    h = bitstream.Header(model_id=b"\x01\x02", latent_dim=0, resolution=0, width=5000, height=7, bits=6, coder="prior",
                         norm=None, version=2)
    data = bitstream.pack_v2(h, 100, b"\x12\x34")
    assert len(data) == 1 + 2 + 1 + 2 + 1 + 1 + 2 + 2  # 5000 takes a 2-byte varint, 7 one byte
    assert bitstream.unpack(data)[0].width == 5000
    small = bytearray(data[:4]) + bitstream._varint(7) + bitstream._varint(7) + data[7:-2]
    with pytest.raises(InvcompError, match="not canonical"):
        bitstream.unpack(bytes(small) + bitstream.crc16(bytes(small)))


# --- golden files: committed bytes, committed levels --------------------------------------------------------------
GOLDEN_CASES = {"dcgan": "dcgan-utkface64", "pgan": "pgan-utkface64", "vaegan-c4": "vaegan-utkface64-c4"}


def _write_golden() -> None:  # pragma: no cover  (run by hand when the format changes on purpose)
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for key, name in GOLDEN_CASES.items():
        enc = load_codec(name, _settings(name)).encode([_demo()])[0]
        (GOLDEN / f"{key}.ivc").write_bytes(enc.data)
        (GOLDEN / f"{key}.json").write_text(json.dumps({"model": name, "levels": enc.levels.tolist(),
                                                        "norm": enc.header.norm}) + "\n")


@pytest.mark.parametrize("key", sorted(GOLDEN_CASES))
def test_golden_files_decode_to_their_committed_levels(key: str) -> None:
    expected = json.loads((GOLDEN / f"{key}.json").read_text())
    codec = load_codec(expected["model"], for_decode=True)
    header, q = parse((GOLDEN / f"{key}.ivc").read_bytes(), codec)
    assert q.levels[0].tolist() == expected["levels"]
    assert header.norm == expected["norm"]


def test_golden_decode_is_the_same_at_every_thread_count(tmp_path: Path) -> None:
    """The PNG of a golden file, from fresh processes with 1 and 2 threads: the same bytes."""
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"{threads}.png"
        subprocess.run([sys.executable, "-m", "invcomp.cli", "--threads", str(threads), "decode",
                        str(GOLDEN / "dcgan.ivc"), "-o", str(out)], check=True, capture_output=True, timeout=300)
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


# --- the prior is part of the model id ---------------------------------------------------------------------------------
def test_a_changed_prior_changes_the_model_id_and_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    e = {m.name: m for m in registry.list_models()}["dcgan-utkface64"]
    assert e.model_id_v2 == registry.decode_id(e.sha256, e.config_sha256, e.prior_sha256)
    assert registry.decode_id(e.sha256, e.config_sha256, "0" * 64) != e.model_id_v2
    assert registry.decode_id(e.sha256, "0" * 64, e.prior_sha256) != e.model_id_v2
    dst = tmp_path / "pretrained"
    shutil.copytree(registry.pretrained_dir(), dst, ignore=shutil.ignore_patterns("*.png", "*.log", "pgan-*", "vaegan-*"))
    doc = json.loads(e.prior.read_text())
    doc["tables"]["6"][0][30] += 1
    doc["tables"]["6"][0][31] -= 1
    (dst / e.prior.name).write_text(json.dumps(doc))
    monkeypatch.setenv("INVCOMP_PRETRAINED", str(dst))
    with pytest.raises(InvcompError, match="prior for model 'dcgan-utkface64' does not match the registry sha256"):
        load_codec("dcgan-utkface64", for_decode=True)


def test_a_bad_prior_document_is_one_line_naming_it() -> None:
    with pytest.raises(InvcompError, match="bad prior x.json: table for 3 bits"):
        prior.Prior.from_json({"format": "invcomp-prior", "version": 1, "precision": 16, "scaling": "l2",
                               "norm_unit": 100, "groups": [0], "tables": {"3": [[1, 2, 3]]}}, "x.json")


def test_elias_coders_still_write_version_1() -> None:
    for coder in ("elias", "gamma", "delta", "omega"):
        data = load_codec("dcgan-utkface64", _settings("dcgan-utkface64", coder=coder)).encode([_demo()])[0].data
        assert data[:4] == b"IVC\x01"
    with pytest.raises(InvcompError, match="coder 'prior'"):
        load_codec("dcgan-utkface64", _settings("dcgan-utkface64", coder="prior", scaling="max")).encode([_demo()])


# --- rate control on a tiny generator --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory: pytest.TempPathFactory):
    from invcomp.codecs import InversionCodec

    from .conftest import tiny_dcgan

    d = tmp_path_factory.mktemp("tinyrate")
    torch.save(tiny_dcgan(latent_dim=16, widths=(8, 4, 2), seed=1).state_dict(), d / "tiny.pt")
    codec = load_codec(str(d / "tiny.pt"), EncodeSettings(iters=0, init="random"))
    assert isinstance(codec, InversionCodec)
    codec.tables = prior.fit_prior(torch.randn(400, 16), scaling="l2", norm_free=False)
    codec.model_id_v2 = b"\x7e\x57"
    return codec


@pytest.mark.parametrize("budget", [12, 14, 16, 18, 20, 24])
def test_rate_control_never_exceeds_the_budget(tiny_codec, budget: int) -> None:
    from invcomp.codecs.base import prepare

    images = [_demo(), _demo().rotate(90), _demo().crop((0, 0, 60, 90))]
    target = torch.stack([prepare(im, tiny_codec.resolution, "crop") for im in images])
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(budget))
    for e in encode_to(tiny_codec, z, [im.size for im in images], target, RateTarget(max_bytes=budget)):
        assert not isinstance(e, Exception), e
        assert len(e.data) <= budget and e.extra["reached"]
        assert parse(e.data, tiny_codec)[1].levels[0].tolist() == e.levels.tolist()


def test_rate_control_refuses_an_impossible_budget_per_image(tiny_codec) -> None:
    from invcomp.codecs.base import prepare

    images = [_demo(), Image.new("RGB", (20000, 10))]  # the second needs the size escape: 1 byte more
    target = torch.stack([prepare(im, tiny_codec.resolution, "crop") for im in images])
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    err = encode_to(tiny_codec, z[:1], [images[0].size], target[:1], RateTarget(max_bytes=1))[0]
    assert isinstance(err, InvcompError)
    smallest = int(str(err).split(" is ")[1].split()[0])
    out = encode_to(tiny_codec, z, [im.size for im in images], target, RateTarget(max_bytes=smallest))
    assert len(out[0].data) <= smallest
    assert isinstance(out[1], InvcompError) and f"at most {smallest} bytes" in str(out[1])


def test_target_ssim_gives_the_smallest_file_that_reaches_it_or_flags_it(tiny_codec) -> None:
    from invcomp.codecs.base import prepare

    target = prepare(_demo(), tiny_codec.resolution, "crop")
    z = torch.randn(16, generator=torch.Generator().manual_seed(3))
    best = control(tiny_codec, z, (64, 64), target, RateTarget(min_ssim=1.0))
    assert best.extra["reached"] is False
    reachable = best.extra["ssim_at_choice"] - 0.05
    got = control(tiny_codec, z, (64, 64), target, RateTarget(min_ssim=reachable))
    assert got.extra["reached"] and got.extra["ssim_at_choice"] >= reachable and len(got.data) <= len(best.data)


def test_bpp_budget_is_at_the_model_resolution() -> None:
    assert bytes_for_bpp(0.1, 64) == 51 and bytes_for_bpp(0.5, 32) == 64


def test_version_2_bytes_do_not_depend_on_threads_or_batch(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from invcomp.cli import cli

    other = tmp_path / "other.png"
    _demo().rotate(90).save(other)
    got = []
    for threads, batch in ((1, 1), (2, 2), (2, 1)):
        out = tmp_path / f"o{threads}{batch}"
        r = CliRunner().invoke(cli, ["--threads", str(threads), "encode", str(DEMO_IMAGE), str(other), "--iters", "5",
                                     "--batch-size", str(batch), "-o", f"{out}/"])
        assert r.exit_code == 0, r.output
        got.append([(out / n).read_bytes() for n in ("astronaut-face.ivc", "other.ivc")])
    from invcomp.formats import photo as container

    assert got[0] == got[1] == got[2]
    assert container.unpack(got[0][0]).faces[0].data[0] == bitstream.MAGIC_V2  # the default's face file: version 2


def test_models_lists_the_version_2_ids_that_errors_name() -> None:
    from click.testing import CliRunner

    from invcomp.cli import cli

    r = CliRunner().invoke(cli, ["models", "--json"])
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in map(json.loads, r.stdout.splitlines())}
    for e in registry.list_models():
        assert rows[e.name]["id_v2"] == e.model_id_v2.hex() and rows[e.name]["entropy_prior"] == str(e.prior)
    human = CliRunner().invoke(cli, ["models"]).stdout
    assert f"(v2 {registry.list_models()[0].model_id_v2.hex()})" in human
