"""Tests of ``invcomp bench``: codec byte counts, the equal-bytes search, the output files, and bad input.

Synthetic images and a tiny seeded 32x32 DCGAN (``--iters 2``) keep this fast; nothing needs ../shared.
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import Result
from PIL import Image

from invcomp.classic import kmeans
from invcomp.classic.codecs import CODEC_NAMES, build_codecs, check_available, parse_codecs
from invcomp.bench.report import RESULT_KEYS
from invcomp.bench.run import COLUMNS, Coded, Inputs, run_equal_bytes, run_fixed
from invcomp.classic.search import Knob, find_closest
from invcomp.cli.bench import bench
from invcomp.errors import InvcompError
from invcomp.imageio import from_image

from .conftest import cli_runner, tiny_dcgan

R = 32
CODECS = build_codecs()
E2E_CODECS = ["png", "jpeg", "webp", "kmeans", "invcomp"]
BITS = [4, 6]


def synthetic(seed: int, w: int = R, h: int = R) -> Image.Image:
    """A smooth colour ramp plus noise: compressible, but not trivially."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / max(w, h)], -1) + rng.normal(0, 12, (h, w, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


def inputs_of(images: list[Image.Image]) -> Inputs:
    return Inputs([f"im{i}" for i in range(len(images))], images, torch.stack([from_image(im) for im in images]))




def invoke(*args: Any) -> Result:
    r = cli_runner().invoke(bench, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), f"crashed: {r.exception!r}; {r.stderr}"
    return r


def stderr_lines(r: Result) -> list[str]:
    return [ln for ln in r.stderr.splitlines() if ln.strip()]


# --- codecs ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [n for n in CODEC_NAMES if n != "invcomp"])
def test_codec_bytes_are_the_whole_file(name: str) -> None:
    codec = CODECS[name]
    reason = check_available(codec)
    if reason is not None:
        assert name in ("avif", "jpeg2000", "heif", "jpegxl", "thumbhash", "blurhash"), reason  # the core ones run everywhere
        pytest.skip(reason)
    img = synthetic(1)
    inputs = inputs_of([img])
    coded = Coded(codec, inputs)
    rows = run_fixed(coded, with_lpips=False)
    assert len(rows) == len(codec.fixed)
    for q, row in zip(codec.fixed, rows):
        data = codec.encode(img, q)
        assert isinstance(data, bytes) and len(data) > 0
        assert row["bytes"] == len(coded.get(0, q)[0]) == coded.size(0, q)
        assert row["bpp"] == pytest.approx(8 * row["bytes"] / (R * R))
        if name == "kmeans":
            assert kmeans.decode(data).size == (R, R)
        elif codec.placeholder:  # a hash, not an image file; it decodes to its own small picture
            assert codec.decode(data).size[0] <= 32
            continue
        else:
            if name == "heif":
                import pillow_heif

                pillow_heif.register_heif_opener()
            if name == "jpegxl":
                import pillow_jxl  # noqa: F401
            with Image.open(io.BytesIO(data)) as im:  # a file Pillow itself reads back
                im.load()
                assert im.size == (R, R)
        assert codec.decode(data).size == (R, R)
        assert math.isfinite(row["ssim"]) and row["decode_seconds"] >= 0 and row["encode_seconds"] >= 0
    if name == "png":
        assert rows[0]["psnr"] == math.inf and rows[0]["ssim"] == pytest.approx(1.0)


@pytest.mark.parametrize("w,h", [(R, R), (33, 7), (1, 1)])
def test_kmeans_file_size_and_round_trip(w: int, h: int) -> None:
    img = synthetic(2, w, h)
    data = kmeans.encode(img)
    assert len(data) == 12 + 4 + math.ceil(2 * w * h / 8) == kmeans.file_size(w, h)
    out = np.asarray(kmeans.decode(data)).reshape(-1, 3)
    assert out.shape == (w * h, 3)
    assert len(np.unique(out, axis=0)) <= 4
    assert kmeans.encode(img) == data  # fixed seed: deterministic


def test_kmeans_four_colours_are_lossless() -> None:
    pal = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [10, 20, 30]], np.uint8)
    idx = np.random.default_rng(0).integers(0, 4, (R, R))
    img = Image.fromarray(pal[idx], "RGB")
    assert np.array_equal(np.asarray(kmeans.decode(kmeans.encode(img))), np.asarray(img))
    with pytest.raises(InvcompError):
        kmeans.decode(kmeans.encode(img)[:-1])


def test_parse_codecs() -> None:
    assert parse_codecs("jpeg, png,jpeg") == ["jpeg", "png"]
    from invcomp.classic.codecs import CLASSIC_NAMES, peer_names

    assert parse_codecs("all") == list(CLASSIC_NAMES + peer_names() + ("invcomp",))
    assert {"jpegxl", "thumbhash", "blurhash"} <= set(parse_codecs("all"))
    with pytest.raises(InvcompError, match="bpg"):
        parse_codecs("jpeg,bpg")


# --- equal-bytes search ---------------------------------------------------------------------------------------

def _check_result(res: Any, target: int) -> None:
    assert res.bytes == res.tried[res.quality]
    assert abs(res.bytes - target) == min(abs(b - target) for b in res.tried.values())


def test_search_matches_an_exhaustive_jpeg_scan() -> None:
    img = synthetic(3)
    jpeg = CODECS["jpeg"]
    sizes = {q: len(jpeg.encode(img, q)) for q in range(1, 96)}
    lo, hi = min(sizes.values()), max(sizes.values())
    assert any(b < a for a, b in zip(list(sizes.values()), list(sizes.values())[1:])), "want a non-monotone case"
    for t in [*range(lo, hi + 1), hi + 500]:  # every reachable byte count, and one beyond
        res = find_closest(lambda q: sizes[q], t, jpeg.knob, max_steps=12)
        _check_result(res, t)
        assert not res.cannot_reach
        assert abs(res.bytes - t) == min(abs(b - t) for b in sizes.values()), (t, res)
        assert res.steps <= 2 + 12 + 4


def test_search_on_a_monotone_float_knob_converges() -> None:
    # JPEG 2000-like: a larger ratio gives fewer bytes; log-bisected.
    knob = Knob(1000.0, 1.0, integer=False, log=True)

    def size(r: float) -> int:
        return int(50_000 / r) + 100

    for t in (150, 777, 5000, 40_000):
        res = find_closest(size, t, knob, max_steps=40)
        _check_result(res, t)
        assert abs(res.bytes - t) <= max(2, 0.01 * t)
    capped = find_closest(size, 5000, knob, max_steps=3)
    assert capped.steps <= 2 + 3


def test_unreachable_target_is_reported_not_dropped() -> None:
    img = synthetic(4)
    jpeg = CODECS["jpeg"]
    min_bytes = min(len(jpeg.encode(img, q)) for q in range(1, 96))
    res = find_closest(lambda q: len(jpeg.encode(img, q)), 10, jpeg.knob)
    assert res.cannot_reach and res.bytes > 10 and res.quality == 1
    assert res.bytes == len(jpeg.encode(img, 1)) and res.bytes <= min_bytes + 16
    rows = run_equal_bytes(Coded(jpeg, inputs_of([img, synthetic(5)])), [10, 10_000], 4, with_lpips=False)
    assert [r["cannot_reach"] for r in rows] == [True, False]
    assert rows[0]["bytes"] > rows[0]["target_bytes"] == 10
    assert all(r["mode"] == "equal_bytes" and r["bits"] == 4 and math.isfinite(r["ssim"]) for r in rows)


# --- the command, end to end ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    tmp = tmp_path_factory.mktemp("bench")
    torch.save(tiny_dcgan().state_dict(), tmp / "tiny.pt")
    images = tmp / "images"
    images.mkdir()
    for i, (w, h) in enumerate([(40, 48), (32, 32), (64, 40), (50, 50)]):
        synthetic(10 + i, w, h).save(images / f"face{i}.png")
    out = tmp / "out"
    r = invoke(images, "--codecs", ",".join(E2E_CODECS), "--limit", 3, "--out", out, "--model", tmp / "tiny.pt",
               "--iters", 2, "--bits", ",".join(map(str, BITS)), "--json", "--no-lpips", "--no-identity")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return out, r


def test_json_files_follow_the_compressai_format(bench_run: tuple[Path, Result]) -> None:
    out, r = bench_run
    for name in E2E_CODECS:
        doc = json.loads((out / f"{name}.json").read_text())
        assert doc["name"] == name and isinstance(doc["description"], str) and doc["description"]
        res = doc["results"]
        assert set(res) == set(RESULT_KEYS)
        lengths = {len(v) for v in res.values()}
        assert len(lengths) == 1
        expected = len(BITS) if name == "invcomp" else len(CODECS[name].fixed)
        assert lengths == {expected} and len(doc["quality"]) == expected
        assert res["bpp"] == sorted(res["bpp"])
        st = doc["settings"]
        assert st["invcomp"]["iters"] == 2 and st["bits"] == BITS and st["images"] == 3 and st["resolution"] == R
        assert st["model"] == "tiny" and "invcomp bench" in st["command"] and "--limit 3" in st["command"]
        assert "unavailable" not in doc
    summaries = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert [s["codec"] for s in summaries] == E2E_CODECS and all(s["available"] for s in summaries)


def test_per_image_csv_holds_every_row(bench_run: tuple[Path, Result]) -> None:
    out, _ = bench_run
    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(rows[0]) == set(COLUMNS)
    n = 3
    expected = n * len(BITS) + n + n * 8 + n * 7 + n  # invcomp, png, jpeg, webp, kmeans fixed points
    expected += 2 * n * len(BITS)  # jpeg and webp at equal bytes
    assert len(rows) == expected
    assert {r["image"] for r in rows} == {"face0.png", "face1.png", "face2.png"}
    ivc = {(r["image"], r["bits"]): int(r["bytes"]) for r in rows if r["codec"] == "invcomp"}
    eq = [r for r in rows if r["mode"] == "equal_bytes"]
    assert {r["codec"] for r in eq} == {"jpeg", "webp"}
    for r in eq:
        assert int(r["target_bytes"]) == ivc[(r["image"], r["bits"])]
        assert r["cannot_reach"] in ("True", "False")
        if r["cannot_reach"] == "True":
            assert int(r["bytes"]) > int(r["target_bytes"])
    for r in rows:
        assert float(r["bpp"]) == pytest.approx(8 * int(r["bytes"]) / (R * R))
        assert r["mode"] in ("fixed", "equal_bytes") and r["lpips"] == "" and r["identity"] == ""
    km = [r for r in rows if r["codec"] == "kmeans"]
    assert all(int(r["bytes"]) == 12 + 4 + math.ceil(2 * R * R / 8) for r in km)


def test_markdown_and_plots_are_written(bench_run: tuple[Path, Result]) -> None:
    out, _ = bench_run
    md = (out / "equal_bytes.md").read_text()
    for b in BITS:
        assert f"## invcomp {b} bits" in md and f"| invcomp {b} bits | 3 |" in md
    assert "| jpeg | 3 |" in md and "| webp | 3 |" in md and "| png |" not in md
    for name in ("rd_ssim.png", "rd_psnr.png", "rd_ms_ssim.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 200


# --- bad input and missing pieces -----------------------------------------------------------------------------

def _one_error_line(r: Result, *needles: str) -> None:
    assert r.exit_code == 1, (r.stdout, r.stderr)
    lines = stderr_lines(r)
    assert len(lines) == 1 and lines[0].startswith("invcomp: error: "), lines
    assert "Traceback" not in r.stderr and all(n in lines[0] for n in needles), lines


def test_unknown_codec_is_one_line(tmp_path: Path) -> None:
    _one_error_line(invoke(tmp_path, "--codecs", "jpeg,bpg", "--out", tmp_path / "o"), "bpg")


def test_missing_or_empty_folder_is_one_line(tmp_path: Path) -> None:
    args = ("--codecs", "png", "--size", 16, "--out", tmp_path / "o", "--no-plots")
    _one_error_line(invoke(tmp_path / "nope", *args), "nope")
    (tmp_path / "empty").mkdir()
    _one_error_line(invoke(tmp_path / "empty", *args), "no images")


def test_unavailable_codec_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
    import PIL.features

    real = PIL.features.check
    monkeypatch.setattr(PIL.features, "check", lambda f: False if f == "avif" else real(f))
    (tmp_path / "in").mkdir()
    synthetic(0).save(tmp_path / "in" / "a.png")
    r = invoke(tmp_path / "in", "--codecs", "avif,kmeans", "--size", 16, "--out", tmp_path / "o", "--no-plots")
    assert r.exit_code == 0, r.stderr
    doc = json.loads((tmp_path / "o" / "avif.json").read_text())
    assert "AVIF" in doc["unavailable"] and doc["results"]["bpp"] == []
    assert "avif: unavailable" in r.stdout and "kmeans default" in r.stdout
    assert sum("avif" in rec.getMessage() for rec in caplog.records if rec.levelname == "WARNING") == 1  # warned once
    assert "avif" in (tmp_path / "o" / "equal_bytes.md").read_text()


def test_missing_matplotlib_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    (tmp_path / "in").mkdir()
    synthetic(0).save(tmp_path / "in" / "a.png")
    _one_error_line(invoke(tmp_path / "in", "--codecs", "png", "--size", 16, "--out", tmp_path / "o"), "matplotlib")


def test_split_holdout_codes_only_the_held_out_files(tmp_path: Path) -> None:
    # UTKFace-like names, two held out and ten not, by the documented rule, recomputed here with hashlib:
    # held out when the first 8 hex digits of sha256(name), as a fraction of 2**32, are below 22 per mille.
    import hashlib

    def split_of(name: str) -> str:
        return "holdout" if int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) * 1000 / 2**32 < 22 else "other"

    images = tmp_path / "images"
    images.mkdir()
    names = [f"{i}_0_0_2017.jpg" for i in range(400)]
    held = [n for n in names if split_of(n) == "holdout"][:2]
    others = [n for n in names if split_of(n) != "holdout"][:10]
    assert len(held) == 2
    for i, n in enumerate(held + others):
        synthetic(i).save(images / n, "JPEG")
    r = invoke(images, "--codecs", "png", "--size", R, "--split", "holdout", "--out", tmp_path / "out", "--no-plots",
               "--no-lpips")
    assert r.exit_code == 0, r.stderr
    with open(tmp_path / "out" / "per_image.csv") as f:
        coded = {row["image"] for row in csv.DictReader(f)}
    assert coded == set(held)
    st = json.loads((tmp_path / "out" / "png.json").read_text())["settings"]
    assert st["split"] == "holdout" and st["images"] == 2
