"""The defects a new user hit (issue: one codec contract), each pinned by a test that failed before its fix."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from invcomp.cli import cli

from .conftest import DEMO_IMAGE, REPO, cli_runner


def _run(*args: object, **kw: Any) -> Any:
    return cli_runner().invoke(cli, [str(a) for a in args], **kw)


def _photo(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    """A smooth non-square picture with the demo face in its centre square."""
    face = Image.open(DEMO_IMAGE).convert("RGB")
    side = min(size)
    rng = np.random.default_rng(seed)
    bg = Image.fromarray(rng.integers(0, 256, (4, 6, 3), dtype=np.uint8), "RGB").resize(size, Image.Resampling.BILINEAR)
    bg.paste(face.resize((side, side)), ((size[0] - side) // 2, (size[1] - side) // 2))
    bg.save(path)
    return path


def test_non_square_crop_decodes_in_place_and_compare_measures_what_encode_did(tmp_path: Path) -> None:
    src = _photo(tmp_path / "wide.png", (451, 300))
    r = _run("encode", src, "--mode", "inversion", "--iters", 0, "-o", tmp_path / "w.ivc", "--json")
    assert r.exit_code == 0, r.stderr
    enc = json.loads(r.stdout)
    r = _run("decode", tmp_path / "w.ivc", "-o", tmp_path / "w.png", "--json")
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout)
    assert (row["width"], row["height"], row["coded_box"]) == (451, 300, [75, 0, 300, 300])
    out = np.asarray(Image.open(tmp_path / "w.png"))
    assert (out[:, :75] == 128).all() and (out[:, 375:] == 128).all()  # the uncoded sides: plain grey
    r = _run("compare", src, tmp_path / "w.png", "--bitstream", tmp_path / "w.ivc", "--json")
    assert r.exit_code == 0, r.stderr
    assert abs(json.loads(r.stdout)["ssim"] - enc["ssim"]) < 0.02  # was 0.13 against 0.48 with the stretched frame
    human = _run("decode", tmp_path / "w.ivc", "-o", tmp_path / "w2.png")
    assert "rest of the frame is grey" in human.stdout


def test_the_default_fills_a_non_square_frame_and_reports_what_compare_measures(tmp_path: Path) -> None:
    src = _photo(tmp_path / "wide.png", (451, 300))
    r = _run("encode", src, "--iters", 0, "-o", tmp_path / "w.ivc", "--json")
    assert r.exit_code == 0, r.stderr
    enc = json.loads(r.stdout)
    r = _run("decode", tmp_path / "w.ivc", "-o", tmp_path / "w.png", "--json")
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout)
    assert (row["width"], row["height"], row["coded_box"]) == (451, 300, None)  # the whole frame is coded
    out, ref = np.asarray(Image.open(tmp_path / "w.png")).astype(float), np.asarray(Image.open(src)).astype(float)
    assert out.shape == ref.shape and not (out[:, :75] == 128).all() and not (out[:, 375:] == 128).all()
    r = _run("compare", src, tmp_path / "w.png", "--bitstream", tmp_path / "w.ivc", "--json")
    assert r.exit_code == 0, r.stderr
    assert abs(json.loads(r.stdout)["frame_ssim"] - enc["ssim"]) < 0.02  # encode reports the whole picture, as compare


def test_a_file_does_not_depend_on_its_batch_position_or_batch_size(tmp_path: Path) -> None:
    others = [_photo(tmp_path / f"o{i}.png", (90 + 10 * i, 80), seed=i) for i in range(3)]
    common = ["--iters", 25]  # the default start (the warm-start network), a short search
    assert _run("encode", DEMO_IMAGE, *common, "-o", tmp_path / "alone.ivc").exit_code == 0
    alone = (tmp_path / "alone.ivc").read_bytes()
    for k, (batch, size) in enumerate([([DEMO_IMAGE, others[0]], 8), ([others[0], others[1], DEMO_IMAGE], 8),
                                       ([others[2], DEMO_IMAGE, others[1], others[0]], 3)]):
        out = tmp_path / f"b{k}"
        r = _run("encode", *batch, *common, "--batch-size", size, "-o", f"{out}/")
        assert r.exit_code == 0, r.stderr
        assert (out / "astronaut-face.ivc").read_bytes() == alone, (k, batch, size)


def test_vaegan_refuses_search_options_in_one_line(tmp_path: Path) -> None:
    for opts in (["--restarts", 2], ["--loss", "mse"], ["--init", "random"], ["--iters", 5], ["--lr", 0.1]):
        r = _run("encode", DEMO_IMAGE, "--mode", "vaegan", "--channels", 4, *opts, "-o", tmp_path / "v.ivc")
        assert r.exit_code == 1 and opts[0] in r.stderr and len(r.stderr.strip().splitlines()) == 1, (opts, r.stderr)
        assert not (tmp_path / "v.ivc").exists()
    r = _run("encode", DEMO_IMAGE, "--mode", "vaegan", "--channels", 4, "--encoder", DEMO_IMAGE, "-o", tmp_path / "v.ivc")
    assert r.exit_code == 1 and "warm_start" in r.stderr


def test_restarts_from_a_warm_start_are_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    r = _run("encode", DEMO_IMAGE, "--iters", 1, "--restarts", 2, "-o", tmp_path / "a.ivc")
    assert r.exit_code == 0, r.stderr
    warnings = [rec for rec in caplog.records if "restarts from a warm start" in rec.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelname == "WARNING" and "\n" not in warnings[0].getMessage()
    caplog.clear()
    assert _run("encode", DEMO_IMAGE, "--iters", 1, "--init", "random", "--restarts", 2, "-o", tmp_path / "b.ivc",
                ).exit_code == 0
    assert not [rec for rec in caplog.records if "restarts" in rec.getMessage()]


def test_decoding_with_a_model_of_another_mode_names_the_modes(tmp_path: Path) -> None:
    assert _run("encode", DEMO_IMAGE, "--model", "dcgan-utkface64", "--iters", 0, "-o", tmp_path / "inv.ivc").exit_code == 0
    r = _run("decode", tmp_path / "inv.ivc", "--model", "vaegan-utkface64-c4", "-o", tmp_path / "x.png")
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "this is a GAN-inversion (mode 0) file, not VAE-GAN (mode 1)" in r.stderr
    assert "--mode" not in r.stderr and not (tmp_path / "x.png").exists()


def test_json_lines_follow_the_input_order(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    good2 = _photo(tmp_path / "good2.png", (70, 70))
    r = _run("encode", DEMO_IMAGE, bad, good2, "--iters", 0, "--json", "-o", f"{tmp_path}/out/")
    assert r.exit_code == 1
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [Path(x["input"]).name for x in rows] == ["astronaut-face.png", "bad.png", "good2.png"]
    assert "error" in rows[1] and "bytes" in rows[0] and "bytes" in rows[2]


def test_a_file_name_for_two_inputs_is_refused(tmp_path: Path) -> None:
    other = _photo(tmp_path / "other.png", (70, 70))
    r = _run("encode", DEMO_IMAGE, other, "--iters", 0, "-o", tmp_path / "out" / "two.ivc")
    assert r.exit_code == 1 and "two.ivc" in r.stderr and "folder" in r.stderr
    assert not (tmp_path / "out").exists()


def test_folders_are_inputs(tmp_path: Path) -> None:
    faces = tmp_path / "faces"
    (faces / "sub").mkdir(parents=True)
    _photo(faces / "a.png", (64, 64))
    _photo(faces / "sub" / "b.jpg", (80, 64))
    (faces / "notes.txt").write_text("not an image")
    r = _run("encode", faces, "--iters", 0, "-o", f"{tmp_path}/ivc/", "--json")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "ivc").iterdir()) == ["a.ivc", "b.ivc"]
    r = _run("decode", tmp_path / "ivc", "-o", f"{tmp_path}/png/")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["a.decoded.png", "b.decoded.png"]


def test_stdin_and_stdout_in_a_real_pipe(tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "invcomp.cli"]
    data = subprocess.run([*exe, "encode", "-", "--iters", "0", "-o", "-"], input=DEMO_IMAGE.read_bytes(),
                          capture_output=True, check=True, timeout=300).stdout
    assert data[:1] == b"\xb3" and data[1] & 0x10  # the default: a photo file with its detail layer
    png = subprocess.run([*exe, "decode", "-", "-o", "-"], input=data, capture_output=True, check=True,
                         timeout=300).stdout
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(__import__("io").BytesIO(png)).size == (124, 124)


def test_help_does_not_import_torch() -> None:
    code = ("import sys; from invcomp.cli import cli; from click.testing import CliRunner; "
            "r = CliRunner().invoke(cli, ['--help']); r2 = CliRunner().invoke(cli, ['encode', '--help']); "
            "assert r.exit_code == 0 and r2.exit_code == 0, r.output; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.parametrize(("cpus", "load", "want"), [(2, 0.0, 2), (2, 1.2, 1), (8, 2.6, 5), (2, 9.0, 1), (4, 0.4, 4)])
def test_auto_threads(cpus: int, load: float, want: int) -> None:
    from invcomp.cli.threads import auto_threads

    assert auto_threads(cpus, load) == want


def test_the_readme_does_not_repeat_a_bullet() -> None:
    lines = [ln.strip() for ln in (REPO / "README.md").read_text().splitlines() if ln.strip().startswith(("- ", "* "))]
    repeated = {ln for ln in lines if lines.count(ln) > 1 and len(ln) > 20}
    assert not repeated, repeated
