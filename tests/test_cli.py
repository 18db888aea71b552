"""End-to-end tests of the ``invcomp`` command line (encode, decode, compare, models) and its error handling.

The shipped 64x64 model codes the demo image once per module (``--iters 2``); the batch and overwrite
tests use a tiny seeded 32x32 DCGAN saved as a ``.pt`` path, which is fast and needs no registry.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import Result
from PIL import Image

from .conftest import DEMO_IMAGE, REPO, cli_runner, tiny_dcgan
from invcomp.cli import cli

MODEL = "dcgan-utkface64"
RES = 64
ENCODE_KEYS = {"input", "output", "bytes", "bpp", "psnr", "ssim", "ms_ssim", "lpips", "iters", "seconds", "model"}
COMPARE_KEYS = {"psnr", "mse", "ssim", "ms_ssim", "lpips", "bytes", "bpp", "cr"}




def run(*args: Any) -> Result:
    """Invoke the CLI in-process; anything but a clean ``sys.exit`` is a crash (a traceback for a user)."""
    r = cli_runner().invoke(cli, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), (
        f"crashed with {r.exception!r}; stderr: {r.stderr}")
    return r


def json_lines(r: Result) -> list[dict]:
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def assert_clean_error(r: Result, *needles: str, code: int = 1) -> str:
    """Exit ``code``, no traceback, and a first stderr line that is an error message naming ``needles``."""
    assert r.exit_code == code, (r.exit_code, r.output)
    assert "Traceback" not in r.output and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines, "nothing on stderr"
    first = lines[0] if code != 2 else r.stderr
    if code == 1:
        assert first.startswith("invcomp: error: "), first
        assert "internal error" not in r.stderr
    for n in needles:
        assert n in first, (n, r.stderr)
    return first


def no_leftovers(folder: Path) -> list[str]:
    """Temporary files that atomic writes must not leave behind."""
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "big")


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The demo image coded once with the shipped model: the folder, the .ivc path and the JSON row."""
    d = tmp_path_factory.mktemp("demo")
    out = d / "out.ivc"
    r = run("encode", DEMO_IMAGE, "--model", "dcgan-utkface64", "--iters", 2, "--json", "-o", out,
            "--coder", "elias")  # a version-1 inversion file: its bytes are edited below
    assert r.exit_code == 0, r.output
    rows = json_lines(r)
    assert len(rows) == 1
    return {"dir": d, "ivc": out, "row": rows[0], "result": r}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny 32x32 generator as a .pt path, and two small non-square images."""
    d = tmp_path_factory.mktemp("tiny")
    model = d / "tiny.pt"
    torch.save(tiny_dcgan(latent_dim=8, widths=(8, 4, 2), seed=0).state_dict(), model)
    with Image.open(DEMO_IMAGE) as im:
        im = im.convert("RGB")
        im.crop((10, 20, 50, 50)).save(d / "good.png")  # 40x30
        im.crop((60, 30, 90, 85)).save(d / "good2.png")  # 30x55
    (d / "bad.png").write_text("this is not a PNG\n")
    return {"dir": d, "model": str(model)}


# --- encode ---------------------------------------------------------------------------------------


def test_encode_json_row(demo: dict) -> None:
    row, ivc = demo["row"], demo["ivc"]
    assert ENCODE_KEYS <= set(row), ENCODE_KEYS - set(row)
    data = ivc.read_bytes()
    assert data[:3] == b"IVC"
    assert row["input"] == str(DEMO_IMAGE)
    assert row["output"] == str(ivc)
    assert row["bytes"] == len(data)
    assert row["bpp"] == pytest.approx(8 * len(data) / (RES * RES))
    assert row["iters"] == 2
    assert row["model"] == MODEL
    assert row["seconds"] >= 0
    # an 80-odd byte file for a 100-d latent at 6 bits
    assert 20 < row["bytes"] < 200
    # model id in the header = first 4 bytes of the weights' sha256
    weights = REPO / "pretrained" / json.loads((REPO / "pretrained" / "models.json").read_text())[MODEL]["weights"]
    assert data[4:8] == bytes.fromhex(sha256_of(weights)[:8])
    # PSNR and MSE agree with each other (peak 1)
    assert row["psnr"] == pytest.approx(10 * math.log10(1 / row["mse"]), abs=1e-3)
    assert 0 < row["ssim"] <= 1 and 0 < row["ms_ssim"] <= 1
    # identity: dlib's distance between the input and the decoded face when installed, else null
    from invcomp import identity

    assert "identity" in row
    assert (row["identity"] is None) == (identity.unavailable() is not None)
    if row["identity"] is not None:
        assert 0 <= row["identity"] < 2
    assert row["lpips"] is None or row["lpips"] >= 0
    # human summary goes nowhere else: stdout is exactly the JSON line
    assert len(demo["result"].stdout.strip().splitlines()) == 1
    assert no_leftovers(demo["dir"]) == []


def test_encode_is_deterministic(demo: dict, tmp_path: Path) -> None:
    again = tmp_path / "again.ivc"
    r = run("encode", DEMO_IMAGE, "--model", "dcgan-utkface64", "--iters", 2, "-o", again, "--coder", "elias")
    assert r.exit_code == 0, r.output
    assert again.read_bytes() == demo["ivc"].read_bytes()
    assert "again.ivc" in r.stdout  # human line


def test_encode_default_output_beside_input(tmp_path: Path, tiny: dict) -> None:
    src = tmp_path / "pic.png"
    src.write_bytes((tiny["dir"] / "good.png").read_bytes())
    r = run("encode", src, "--model", tiny["model"], "--iters", 0)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "pic.ivc").read_bytes()[:3] == b"IVC"


# --- decode ---------------------------------------------------------------------------------------


def test_decode_sizes_and_pixels(demo: dict) -> None:
    d = demo["dir"]
    full, native = d / "rec.png", d / "rec64.png"
    r = run("decode", demo["ivc"], "-o", full)
    assert r.exit_code == 0, r.output
    r = run("decode", demo["ivc"], "-o", native, "--native")
    assert r.exit_code == 0, r.output
    with Image.open(DEMO_IMAGE) as orig, Image.open(full) as a, Image.open(native) as b:
        assert orig.size == (124, 124)
        assert a.size == orig.size and a.mode == "RGB"
        assert b.size == (RES, RES) and b.mode == "RGB"
        # the full-size picture is the native one scaled back up (square input: no crop involved)
        up = b.resize((124, 124), Image.Resampling.LANCZOS)
        assert np.array_equal(np.asarray(up), np.asarray(a))
        # the fitted original, made here with PIL (crop is a no-op on a square image)
        x = np.asarray(orig.convert("RGB").resize((RES, RES), Image.Resampling.LANCZOS), dtype=np.float64)
        y = np.asarray(b, dtype=np.float64)
        assert y.std() > 5  # not a blank picture
    # the encoder's PSNR is that of the 8-bit native decode against the fitted original (computed here)
    mse = np.mean(((x - y) / 255.0) ** 2)
    assert 10 * math.log10(1 / mse) == pytest.approx(demo["row"]["psnr"], abs=1e-3)
    assert mse == pytest.approx(demo["row"]["mse"], rel=1e-4)


def test_decode_json_and_default_name(demo: dict, tmp_path: Path) -> None:
    ivc = tmp_path / "face.ivc"
    ivc.write_bytes(demo["ivc"].read_bytes())
    r = run("decode", ivc, "--json")
    assert r.exit_code == 0, r.output
    (row,) = json_lines(r)
    out = tmp_path / "face.decoded.png"
    assert row["output"] == str(out) and out.exists()
    assert (row["width"], row["height"], row["model"]) == (124, 124, MODEL)


# --- compare --------------------------------------------------------------------------------------


def test_compare_matches_encoder_metrics(demo: dict) -> None:
    d, ivc, enc = demo["dir"], demo["ivc"], demo["row"]
    native = d / "cmp64.png"
    assert run("decode", ivc, "-o", native, "--native").exit_code == 0
    r = run("compare", DEMO_IMAGE, native, "--bitstream", ivc, "--json")
    assert r.exit_code == 0, r.output
    (row,) = json_lines(r)
    assert COMPARE_KEYS <= set(row), COMPARE_KEYS - set(row)
    n = ivc.stat().st_size
    assert row["bytes"] == n
    assert row["bpp"] == pytest.approx(8 * n / (RES * RES))
    assert row["cr"]["raw_rgb24"] == pytest.approx(3 * RES * RES / n)
    assert row["cr"]["png"] > 1
    assert row["resolution"] == [RES, RES]
    # the same pixels at the same resolution: the same numbers as the encoder reported
    assert row["ssim"] == pytest.approx(enc["ssim"], abs=1e-4)
    assert row["ms_ssim"] == pytest.approx(enc["ms_ssim"], abs=1e-4)
    assert row["psnr"] == pytest.approx(enc["psnr"], abs=1e-3)


def test_compare_full_size_decode_is_close_to_encoder_metrics(demo: dict) -> None:
    """The default decode is 124x124; compare brings it back to 64x64 with Lanczos, which is not the exact
    inverse of the decoder's 64->124 upscale, so the figures differ slightly from the encoder's (~3e-4 SSIM
    on the demo image) though they are measured "at the model resolution"."""
    d, ivc, enc = demo["dir"], demo["ivc"], demo["row"]
    full = d / "cmp124.png"
    assert run("decode", ivc, "-o", full).exit_code == 0
    r = run("compare", DEMO_IMAGE, full, "--bitstream", ivc, "--json")
    assert r.exit_code == 0, r.output
    (row,) = json_lines(r)
    assert row["resolution"] == [RES, RES]
    assert row["ssim"] == pytest.approx(enc["ssim"], abs=5e-3)
    assert row["psnr"] == pytest.approx(enc["psnr"], abs=0.1)


def test_compare_human_and_size_mismatch(demo: dict) -> None:
    native = demo["dir"] / "h64.png"
    assert run("decode", demo["ivc"], "-o", native, "--native").exit_code == 0
    r = run("compare", DEMO_IMAGE, native, "--bitstream", demo["ivc"])
    assert r.exit_code == 0, r.output
    assert "PSNR" in r.stdout and "bpp" in r.stdout
    r = run("compare", DEMO_IMAGE, native)  # 124 vs 64 without --bitstream
    assert_clean_error(r, "sizes differ", "--bitstream")


def test_compare_identical_images(tmp_path: Path, tiny: dict) -> None:
    img = tiny["dir"] / "good.png"
    r = run("compare", img, img, "--json")
    assert r.exit_code == 0, r.output
    (row,) = json_lines(r)
    assert row["mse"] == 0
    assert row["ssim"] == pytest.approx(1.0, abs=1e-6)


class _FakeLpips(torch.nn.Module):
    """Stands in for LPIPS(alex) with a randomly initialised AlexNet (no download)."""

    def __init__(self) -> None:
        super().__init__()
        import lpips

        self.net = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False).eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.net(x, y, normalize=normalize)


@pytest.fixture
def fake_lpips(monkeypatch: pytest.MonkeyPatch) -> None:
    import warnings

    from invcomp import metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = _FakeLpips()
    monkeypatch.setattr(metrics, "get_lpips", lambda device="cpu": net)


def _two_images(folder: Path, side: int) -> tuple[Path, Path]:
    a, b = folder / f"a{side}.png", folder / f"b{side}.png"
    with Image.open(DEMO_IMAGE) as im:
        im = im.convert("RGB")
        im.crop((0, 0, side, side)).save(a)
        im.crop((5, 5, 5 + side, 5 + side)).save(b)
    return a, b


def test_compare_reports_lpips_when_available(tmp_path: Path, fake_lpips: None) -> None:
    a, b = _two_images(tmp_path, 32)
    r = run("compare", a, b, "--json")
    assert r.exit_code == 0, r.output
    assert isinstance(json_lines(r)[0]["lpips"], float)


def test_compare_small_images_when_lpips_available(tmp_path: Path, fake_lpips: None) -> None:
    a, b = _two_images(tmp_path, 16)
    r = run("compare", a, b, "--json")
    assert r.exit_code == 0, r.output
    assert json_lines(r)[0]["lpips"] is None


# --- models ---------------------------------------------------------------------------------------


def test_models_lists_shipped_model() -> None:
    reg = json.loads((REPO / "pretrained" / "models.json").read_text())[MODEL]
    weights = REPO / "pretrained" / reg["weights"]
    r = run("models", "--json")
    assert r.exit_code == 0, r.output
    rows = {row["name"]: row for row in json_lines(r)}
    row = rows[MODEL]
    assert row["latent_dim"] == 100
    assert row["resolution"] == RES
    assert row["architecture"] == "dcgan"
    assert row["sha256"] == sha256_of(weights)
    assert row["id"] == row["sha256"][:8]
    assert Path(row["weights"]).resolve() == weights.resolve()
    r = run("models")
    assert r.exit_code == 0
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith(MODEL))
    assert "100-d" in line and "64x64" in line and row["id"] in line


def test_models_empty_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVCOMP_PRETRAINED", str(tmp_path))
    r = run("models")
    assert r.exit_code == 0
    assert "no models registered" in r.stdout
    r = run("models", "--json")
    assert r.exit_code == 0 and r.stdout.strip() == ""


# --- batches --------------------------------------------------------------------------------------


def test_multiple_inputs_to_folder(tmp_path: Path, tiny: dict) -> None:
    d, model = tiny["dir"], tiny["model"]
    out = tmp_path / "ivc"
    r = run("encode", d / "good.png", d / "good2.png", "--model", model, "--iters", 0, "-o", f"{out}/")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["good.ivc", "good2.ivc"]
    assert all(p.read_bytes()[:3] == b"IVC" for p in out.iterdir())
    assert "2 ok, 0 failed" in r.stderr
    # and back, into a folder, at the original sizes
    pngs = tmp_path / "png"
    r = run("decode", out / "good.ivc", out / "good2.ivc", "--model", model, "-o", pngs)
    assert r.exit_code == 0, r.output
    with Image.open(pngs / "good.decoded.png") as a, Image.open(pngs / "good2.decoded.png") as b:
        assert a.size == (40, 30) and b.size == (30, 55)
    r = run("decode", out / "good.ivc", "--model", model, "--native", "-o", tmp_path / "n.png")
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "n.png") as n:
        assert n.size == (32, 32)


def test_batch_isolates_a_bad_file(tmp_path: Path, tiny: dict) -> None:
    d, model = tiny["dir"], tiny["model"]
    out = tmp_path / "out"
    r = run("encode", d / "good.png", d / "bad.png", d / "good2.png", "--model", model, "--iters", 0,
            "-o", f"{out}/", "--json")
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert sorted(p.name for p in out.iterdir()) == ["good.ivc", "good2.ivc"]
    rows = json_lines(r)
    assert len(rows) == 3
    errors = [x for x in rows if "error" in x]
    assert [x["input"] for x in errors] == [str(d / "bad.png")]
    assert "not an image" in errors[0]["error"]
    assert sorted(Path(x["output"]).name for x in rows if "error" not in x) == ["good.ivc", "good2.ivc"]
    assert "2 ok, 1 failed" in r.stderr
    assert "bad.png" in r.stderr


def test_batch_does_not_change_an_images_code(tmp_path: Path, tiny: dict) -> None:
    d, model = tiny["dir"], tiny["model"]
    r = run("encode", d / "good.png", d / "good2.png", "--model", model, "--iters", 0, "-o", f"{tmp_path}/b/")
    assert r.exit_code == 0, r.output
    alone = tmp_path / "alone.ivc"
    assert run("encode", d / "good2.png", "--model", model, "--iters", 0, "-o", alone).exit_code == 0
    assert alone.read_bytes() == (tmp_path / "b" / "good2.ivc").read_bytes()


def test_existing_output_needs_force(tmp_path: Path, tiny: dict) -> None:
    d, model = tiny["dir"], tiny["model"]
    out = tmp_path / "x.ivc"
    out.write_bytes(b"old contents")
    r = run("encode", d / "good.png", "--model", model, "--iters", 0, "-o", out)
    assert_clean_error(r, "exists", "--force")
    assert out.read_bytes() == b"old contents"
    r = run("encode", d / "good.png", "--model", model, "--iters", 0, "-o", out, "--force")
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:3] == b"IVC"
    # decode as well
    png = tmp_path / "x.png"
    png.write_bytes(b"old png")
    r = run("decode", out, "--model", model, "-o", png)
    assert_clean_error(r, "exists", "--force")
    assert png.read_bytes() == b"old png"
    r = run("decode", out, "--model", model, "-o", png, "--force")
    assert r.exit_code == 0, r.output
    with Image.open(png) as im:
        assert im.size == (40, 30)
    assert no_leftovers(tmp_path) == []


# --- bad input: one clear line, exit 1 (2 for usage), no traceback, no output --------------------


def test_decode_corrupt_file(demo: dict, tmp_path: Path) -> None:
    data = bytearray(demo["ivc"].read_bytes())
    data[len(data) // 2] ^= 0x40
    bad = tmp_path / "corrupt.ivc"
    bad.write_bytes(bytes(data))
    r = run("decode", bad, "-o", tmp_path / "c.png")
    assert_clean_error(r, "corrupt.ivc", "CRC32")
    assert not (tmp_path / "c.png").exists()
    assert no_leftovers(tmp_path) == []


@pytest.mark.parametrize("keep", [0, 2, 5, 10, -4, -1])
def test_decode_truncated_file(demo: dict, tmp_path: Path, keep: int) -> None:
    data = demo["ivc"].read_bytes()
    bad = tmp_path / "short.ivc"
    bad.write_bytes(data[:keep])
    r = run("decode", bad, "-o", tmp_path / "s.png")
    assert_clean_error(r, "short.ivc")
    msg = r.stderr.splitlines()[0]
    assert "truncated" in msg or "empty" in msg or "CRC32" in msg, msg
    assert not (tmp_path / "s.png").exists()


def test_decode_not_an_ivc(tmp_path: Path) -> None:
    f = tmp_path / "pic.ivc"
    f.write_bytes(DEMO_IMAGE.read_bytes())
    r = run("decode", f, "-o", tmp_path / "p.png")
    assert_clean_error(r, "not an invcomp file (unknown magic")
    assert not (tmp_path / "p.png").exists()


def test_decode_unknown_model_id(demo: dict, tmp_path: Path) -> None:
    data = demo["ivc"].read_bytes()
    foreign_id = bytes.fromhex("0badf00d")
    patched = with_crc(data[:4] + foreign_id + data[8:-4])
    assert len(patched) == len(data) and patched[:4] == data[:4]
    bad = tmp_path / "foreign.ivc"
    bad.write_bytes(patched)
    r = run("decode", bad, "-o", tmp_path / "f.png")
    assert_clean_error(r, "0badf00d", "`invcomp models`")
    assert not (tmp_path / "f.png").exists()
    # control: the same bytes with the real id (and a recomputed CRC) decode fine
    good = tmp_path / "same.ivc"
    good.write_bytes(with_crc(data[:-4]))
    assert good.read_bytes() == data


def test_decode_with_wrong_model(demo: dict, tmp_path: Path, tiny: dict) -> None:
    r = run("decode", demo["ivc"], "--model", tiny["model"], "-o", tmp_path / "w.png")
    assert_clean_error(r, demo["ivc"].read_bytes()[4:8].hex(), "invcomp models")
    assert not (tmp_path / "w.png").exists()


def test_encode_text_file_named_png(tmp_path: Path) -> None:
    f = tmp_path / "x.png"
    f.write_text("hello\n")
    r = run("encode", f, "--iters", 0)
    assert_clean_error(r, "x.png", "not an image")
    assert not (tmp_path / "x.ivc").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_missing_files(tmp_path: Path) -> None:
    r = run("encode", tmp_path / "missing.png", "--iters", 0)
    assert_clean_error(r, "missing.png", "cannot read")
    r = run("decode", tmp_path / "missing.ivc")
    assert_clean_error(r, "missing.ivc", "cannot read")
    r = run("compare", tmp_path / "missing.png", DEMO_IMAGE)
    assert_clean_error(r, "missing.png", "cannot read")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, needles", [
    (["--model", "nosuchmodel"], ["nosuchmodel", "`invcomp models`"]),
    (["--loss", "foo"], ["unknown loss", "foo"]),
    (["--loss", "0.5*ssim+mse+bar"], ["unknown loss", "bar"]),
])
def test_encode_bad_options(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    out = tmp_path / "o.ivc"
    r = run("encode", DEMO_IMAGE, "--iters", 0, "-o", out, *args)
    first = assert_clean_error(r, *needles)
    assert r.stderr.strip() == first  # exactly one line
    assert not out.exists()


@pytest.mark.parametrize("args, option", [
    (["--bits", "1"], "--bits"),
    (["--bits", "17"], "--bits"),
    (["--iters", "-1"], "--iters"),
    (["--fit", "stretch"], "--fit"),
    (["--lr", "0"], "--lr"),
])
def test_encode_usage_errors(tmp_path: Path, args: list[str], option: str) -> None:
    out = tmp_path / "o.ivc"
    r = run("encode", DEMO_IMAGE, "-o", out, *args)
    assert_clean_error(r, option, code=2)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_encode_cuda_without_gpu(tmp_path: Path) -> None:
    r = run("encode", DEMO_IMAGE, "--device", "cuda", "-o", tmp_path / "o.ivc")
    first = assert_clean_error(r, "CUDA")
    assert r.stderr.strip() == first


def test_single_bad_file_gives_one_stderr_line(tmp_path: Path) -> None:
    r = run("decode", tmp_path / "missing.ivc")
    assert r.exit_code == 1
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_real_process_shows_no_traceback(demo: dict, tmp_path: Path) -> None:
    """CliRunner catches exceptions itself; run one real process to see what a user sees."""
    data = bytearray(demo["ivc"].read_bytes())
    data[-1] ^= 1
    bad = tmp_path / "bad.ivc"
    bad.write_bytes(bytes(data))
    p = subprocess.run([sys.executable, "-m", "invcomp.cli", "decode", str(bad), "-o", str(tmp_path / "b.png")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr + p.stdout
    assert p.stderr.splitlines()[0] == f"invcomp: error: {bad}: corrupt .ivc file: CRC32 mismatch"
    assert p.stdout == ""
    assert not (tmp_path / "b.png").exists()


def test_stochastic_rounding_does_not_depend_on_the_batch(tmp_path: Path, tiny: dict) -> None:
    d, model = tiny["dir"], tiny["model"]
    common = ["--model", model, "--iters", 3, "--rounding", "stochastic", "--seed", 5]
    r = run("encode", d / "good.png", d / "good2.png", *common, "-o", f"{tmp_path}/b/")
    assert r.exit_code == 0, r.output
    r = run("encode", d / "good2.png", *common, "-o", tmp_path / "alone.ivc")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "alone.ivc").read_bytes() == (tmp_path / "b" / "good2.ivc").read_bytes()


def test_the_help_states_the_sizes_the_default_writes() -> None:
    r = run("--help")
    assert r.exit_code == 0
    assert "~80-byte" not in r.stdout  # what no mode writes: auto writes about 90-230 B a face, inversion ~57 B
    assert "90-230 B per face" in r.stdout and "about 57 B" in r.stdout, r.stdout


def _cli_in_a_fresh_process(*args: Any) -> tuple[int, str, bool]:
    """``invcomp ARGS`` in a new interpreter: (exit code, stderr, whether torch was imported by the time it ended)."""
    code = ("import sys\nfrom invcomp.cli import main\nrc = main(sys.argv[1:])\n"
            "sys.stdout.write('torch imported' if 'torch' in sys.modules else 'no torch')\nsys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, *[str(a) for a in args]], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    return p.returncode, p.stderr, p.stdout.endswith("torch imported")


@pytest.mark.parametrize("args", [("encode", "{m}.png"), ("encode", "{m}.png", "-o", "{t}/x.ivc"),
                                  ("decode", "{m}.ivc"), ("compare", "{m}.png", "{t}/b.png"),
                                  ("compare", "{t}/b.png", "{m}.png"), ("info", "{m}.ivc")])
def test_a_missing_input_fails_in_one_line_before_torch_is_imported(tmp_path: Path, args: tuple) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "b.png")
    missing = tmp_path / "nowhere" / "missing"
    rc, err, torch_imported = _cli_in_a_fresh_process(*[a.format(m=missing, t=tmp_path) for a in args])
    assert rc == 1 and "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("invcomp: error: ") and "no such file" in lines[0], err
    assert not torch_imported, "the missing path was found only after torch was imported"
    assert not (tmp_path / "x.ivc").exists()


@pytest.mark.parametrize("name", ["compat/dcgan-crop-square.ivc", "v2/dcgan.ivc", "v2/vaegan-c4.ivc"])
def test_info_reads_a_file_without_torch(name: str) -> None:
    """``invcomp info`` parses headers and looks models up by id: no network is loaded, so torch is not imported."""
    rc, err, torch_imported = _cli_in_a_fresh_process("info", str(REPO / "tests" / "data" / name), "--json")
    assert rc == 0, err
    assert not torch_imported


FAST_CODEC = ("--mode", "vaegan", "--model", "vaegan-utkface64-c4")  # one forward pass


@pytest.fixture
def coded_images(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the images the codec is asked to code (a spy on the photo codec's encode)."""
    from invcomp.faces.photo import PhotoCodec

    seen: list[str] = []
    real = PhotoCodec.encode

    def spy(self: Any, images: list, **kw: Any) -> list:
        seen.extend(Path(n).name for n in kw.get("names") or [])
        return real(self, images, **kw)

    monkeypatch.setattr(PhotoCodec, "encode", spy)
    return seen


def test_an_output_that_cannot_be_written_is_refused_before_any_coding(tmp_path: Path, coded_images: list,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file.txt"  # a regular file: nothing can be created under it, whoever runs this
    blocker.write_text("not a folder")
    r = run("encode", DEMO_IMAGE, "-o", blocker / "sub" / "face.ivc", *FAST_CODEC)
    first = assert_clean_error(r, "cannot write", "is a file, not a folder")
    assert len(r.stderr.strip().splitlines()) == 1 and coded_images == [], first
    srcs = []
    for name in ("a", "b", "c"):
        srcs.append(tmp_path / f"{name}.png")
        Image.open(DEMO_IMAGE).save(srcs[-1])
    r = run("encode", *srcs, "-o", f"{blocker}/sub/", *FAST_CODEC, "--json")
    assert r.exit_code == 1 and coded_images == [] and "Traceback" not in r.stderr
    assert [row["input"] for row in json_lines(r)] == [str(s) for s in srcs]
    assert all("is a file, not a folder" in row["error"] for row in json_lines(r))
    # one input beside an unwritable folder: only it fails, at once; the others are coded, reported in order
    ro = tmp_path / "ro"
    ro.mkdir()
    srcs[1] = ro / "b.png"
    Image.open(DEMO_IMAGE).save(srcs[1])
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != ro and real_access(p, mode, **kw))
    r = run("encode", *srcs, *FAST_CODEC, "--json", "--batch-size", 1)
    rows = json_lines(r)
    assert r.exit_code == 1 and [Path(row["input"]).name for row in rows] == ["a.png", "b.png", "c.png"]
    assert "error" not in rows[0] and "error" not in rows[2] and f"{ro} is not writable" in rows[1]["error"]
    assert coded_images == ["a.png", "c.png"] and not (ro / "b.ivc").exists()
    assert (tmp_path / "a.ivc").is_file() and (tmp_path / "c.ivc").is_file()
