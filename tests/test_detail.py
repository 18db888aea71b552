"""The whole-frame detail layer (issue 32): the default writes a photo file whose decode is the complete picture at
the input's own size; the record's format, its network's id and tamper checks, its budget, its determinism, and the
files of earlier releases, which must not change."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from invcomp.errors import BitstreamError, InvcompError
from invcomp.formats import photo as container
from invcomp.formats.framing import crc16

from .conftest import REPO

UNCODED = np.array([128, 128, 128], float)
PORTRAIT = REPO / "experiments" / "data" / "portraits" / "astronaut-face.png"
FAST = ("--iters", "4")  # the search is not what these tests test


def _cli(*args: str, threads: int = 1) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invcomp.cli", "--threads", str(threads), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=600)


def _encoder(**kw):  # type: ignore[no-untyped-def]
    from invcomp.service.encode import EncodeRequest, build_encoder

    return build_encoder(EncodeRequest(device="cpu", iters=4, **kw))


def _roundtrip(img: Image.Image, **kw) -> tuple[bytes, Image.Image, object]:  # type: ignore[no-untyped-def]
    from invcomp.faces.decode import decode_any

    enc = _encoder(**kw)
    e = enc.codec.encode([img], goal=enc.goal)[0]
    assert not isinstance(e, Exception), e
    return e.data, decode_any(e.data, cache={}, device="cpu")[2], e


# --- the record's format (pure) ---------------------------------------------------------------------------------
def _photo(detail: container.Detail | None = None, w: int = 40, h: int = 30) -> container.Photo:
    return container.Photo(w, h, [container.FaceRecord(None, b"\x01\x02\x03")], detail=detail)


def test_a_detail_record_round_trips_and_is_counted() -> None:
    d = container.Detail(b"\xab\xcd", 6, 33, bytes(range(200)))
    data = container.pack(_photo(d))
    assert container.unpack(data) == _photo(d)
    o = container.overhead(_photo(d))
    assert o["detail"] == 2 + 1 + 1 + 2 + 200 and o["total"] == len(data)
    assert data[1] & 0x10  # the flag bit


def test_a_file_without_detail_is_the_earlier_format_byte_for_byte() -> None:
    # the earlier release's bytes for this photo, written out by hand from its format table
    want = bytes([0xB3, 0x00]) + ((40 - 1) << 12 | (30 - 1)).to_bytes(3, "big") + bytes([1, 0, 3, 1, 2, 3])
    assert container.pack(_photo()) == want + crc16(want)


@pytest.mark.parametrize("field, value, message", [
    ("side", 0, "detail side of 0"), ("side", 41, "exceeds 40"), ("data", b"", "empty detail layer")])
def test_a_bad_detail_record_is_refused(field: str, value: object, message: str) -> None:
    good = container.pack(_photo(container.Detail(b"\xab\xcd", 2, 20, b"xyz")))
    body = bytearray(good[:-2])
    tail = len(b"xyz") + 1 + 1  # data, its length, the side (one byte each here)
    if field == "side":
        body[-tail] = value  # type: ignore[assignment]
    else:
        body = body[:-4] + bytes([0])
    with pytest.raises(BitstreamError, match=message):
        container.unpack(bytes(body) + crc16(bytes(body)))


def test_reserved_flag_bits_and_a_cut_record_are_refused() -> None:
    good = container.pack(_photo(container.Detail(b"\xab\xcd", 2, 20, b"xyz")))
    for bit in (0x20, 0x40, 0x80):
        body = bytearray(good[:-2])
        body[1] |= bit
        with pytest.raises(BitstreamError, match="flags"):
            container.unpack(bytes(body) + crc16(bytes(body)))
    for cut in range(1, 8):  # every prefix of the record, with a valid CRC
        body = good[:-2 - cut]
        with pytest.raises(BitstreamError):
            container.unpack(body + crc16(body))


def test_detail_size_keeps_the_aspect_and_never_grows() -> None:
    assert container.detail_size(128, 128, 256) == (128, 128)
    assert container.detail_size(4000, 3000, 256) == (256, 192)
    assert container.detail_size(3000, 1, 256) == (256, 1)
    assert container.detail_size(1, 1, 256) == (1, 1)


# --- the default writes a complete picture ------------------------------------------------------------------------
def _gradient(w: int, h: int) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([255 * x / max(1, w - 1), 255 * y / max(1, h - 1), np.full((h, w), 90.0)], -1)
    return Image.fromarray(a.round().astype(np.uint8), "RGB")


@pytest.mark.parametrize("size", [(1, 1), (17, 9), (4000, 3000)])
def test_any_input_decodes_to_a_complete_picture_of_its_size(size: tuple[int, int]) -> None:
    img = _gradient(*size) if size != (1, 1) else Image.new("RGB", (1, 1), (200, 40, 40))
    data, out, _ = _roundtrip(img)
    assert container.unpack(data).detail is not None
    assert out.size == img.size and out.mode == "RGB"  # no alpha: nothing left uncoded
    a, b = np.asarray(img, dtype=float), np.asarray(out, dtype=float)
    # complete: no part of the frame is left uncoded (transparent, or the uncoded grey the paste-back leaves). These
    # are not faces, so the face code is a poor base; the detail layer still brings the frame near the input.
    assert np.abs(a - b).mean() < 60
    corners = [b[0, 0], b[0, -1], b[-1, 0], b[-1, -1]]
    assert not any(np.array_equal(c, UNCODED) for c in corners) or size == (1, 1)


def test_a_face_crop_comes_back_whole_not_a_face_in_an_empty_frame() -> None:
    img = Image.open(PORTRAIT).convert("RGB")
    data, out, e = _roundtrip(img)
    assert out.size == img.size and out.mode == "RGB"
    a, b = np.asarray(img, dtype=float), np.asarray(out, dtype=float)
    border = np.ones(a.shape[:2], bool)
    border[12:-12, 12:-12] = False  # the frame's edge, where a pasted face square leaves grey or nothing
    # an empty frame (the uncoded grey) would miss the input's edge by this much; the whole picture misses by far less
    empty = np.abs(a[border] - UNCODED).mean()
    assert np.abs(a[border] - b[border]).mean() < 0.6 * empty, (np.abs(a[border] - b[border]).mean(), empty)
    # the report measures the whole picture at the input's size, as the decoder writes it
    assert tuple(e.target.shape) == (3, img.height, img.width)
    assert np.array_equal(np.asarray(e.extra["decoded_frame"]()), np.asarray(out))


def test_a_face_in_a_wide_frame_fills_the_frame() -> None:
    face = Image.open(PORTRAIT).convert("RGB")
    img = Image.new("RGB", (face.width * 3, face.height), (30, 120, 60))
    img.paste(face, (face.width, 0))
    _, out, _ = _roundtrip(img)
    a, b = np.asarray(img, dtype=float), np.asarray(out, dtype=float)
    left = slice(0, face.width // 2)  # a part of the frame far from the face
    assert np.abs(a[:, left] - b[:, left]).mean() < 0.4 * np.abs(a[:, left] - UNCODED).mean()


def test_the_detail_layer_buys_quality_and_more_rate_buys_more() -> None:
    from invcomp import metrics
    from invcomp.imageio import from_image

    img = Image.open(PORTRAIT).convert("RGB")
    x = from_image(img)[None]
    ssim = {}
    for spec in ("none", "0", "2"):
        data, out, _ = _roundtrip(img, background="thumb", fit="align", mode="inversion", detail=spec)
        ssim[spec] = (len(data), float(metrics.ssim(from_image(out.convert("RGB"))[None], x)[0]))
    assert ssim["none"][0] < ssim["0"][0] < ssim["2"][0]
    assert ssim["none"][1] < ssim["0"][1] < ssim["2"][1]


def test_grayscale_input_decodes_to_one_channel() -> None:
    img = Image.open(PORTRAIT).convert("L").convert("RGB")
    data, out, _ = _roundtrip(img)
    assert container.unpack(data).grayscale and out.mode == "L" and out.size == img.size


def test_a_byte_goal_is_met_by_the_detail_rate() -> None:
    img = Image.open(PORTRAIT).convert("RGB")
    lowest = len(_roundtrip(img, detail="0")[0])  # the faces with the lowest detail rate
    small, _, _ = _roundtrip(img, target_bytes=lowest + 5)
    large, _, _ = _roundtrip(img, target_bytes=lowest + 300)
    assert len(small) <= lowest + 5 and len(large) <= lowest + 300
    d_small, d_large = container.unpack(small).detail, container.unpack(large).detail
    assert d_small is not None and d_large is not None and d_small.rate < d_large.rate


def test_a_goal_the_faces_alone_exceed_falls_back_to_the_faces_under_it() -> None:
    img = Image.open(PORTRAIT).convert("RGB")
    data, out, _ = _roundtrip(img, target_bytes=60)
    assert len(data) <= 60 and out.size == img.size


def test_detail_is_refused_where_it_cannot_go() -> None:
    from invcomp.service.encode import parse_detail

    with pytest.raises(InvcompError, match="--detail must be"):
        parse_detail("fast")
    with pytest.raises(InvcompError, match="--detail must be"):
        parse_detail("-1")
    with pytest.raises(InvcompError, match="rates are 0..7"):
        _encoder(detail="9")
    from invcomp.service.encode import EncodeRequest, build_encoder

    with pytest.raises(InvcompError, match="face codecs"):
        build_encoder(EncodeRequest(device="cpu", mode="gc", detail="0"))
    assert parse_detail("none") is None and parse_detail("0.6") == 0.5


def test_naming_a_mode_keeps_that_codec_alone() -> None:
    img = Image.open(PORTRAIT).convert("RGB")
    data, _, _ = _roundtrip(img, mode="inversion")
    assert not container.is_photo(data)  # the plain file of an aligned crop, as before


# --- the network: id, tamper check, budget, determinism ------------------------------------------------------------
def _detail_file() -> bytes:
    data, _, _ = _roundtrip(Image.open(PORTRAIT).convert("RGB"))
    return data


def test_an_unknown_network_is_one_line_error(tmp_path: Path) -> None:
    p = container.unpack(_detail_file())
    forged = container.pack(replace(p, detail=replace(p.detail, key=b"\x00\x00")))  # type: ignore[arg-type]
    src = tmp_path / "x.ivc"
    src.write_bytes(forged)
    r = _cli("decode", str(src), "-o", str(tmp_path / "x.png"))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "detail layer needs the residual network 0000" in r.stderr
    assert not (tmp_path / "x.png").exists()


def test_tampered_detail_weights_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from invcomp.faces.detail import DEFAULT_NETWORK, load_network
    from invcomp.files import pretrained_dir

    key = container.unpack(_detail_file()).detail.key  # type: ignore[union-attr]
    root = tmp_path / "pretrained"
    shutil.copytree(pretrained_dir(), root)
    cfg = json.loads((root / "layered" / f"{DEFAULT_NETWORK}.json").read_text())
    weights = root / "layered" / cfg["weights"]
    blob = bytearray(weights.read_bytes())
    blob[-100] ^= 1
    weights.write_bytes(bytes(blob))
    monkeypatch.setenv("INVCOMP_PRETRAINED", str(root))
    with pytest.raises(InvcompError, match="does not match the sha256"):
        load_network(key, {})


def test_a_detail_picture_over_the_budget_is_refused_before_decoding() -> None:
    from invcomp.codecs import budget

    p = container.unpack(_detail_file())
    # a 2000 x 2000 frame whose detail picture is the whole frame: a 4-Mpx network pass (2 GB)
    big = container.pack(replace(p, width=2000, height=2000, detail=replace(p.detail, side=2000)))  # type: ignore[arg-type]
    with pytest.raises(InvcompError, match="detail layer"):
        budget.check_file(big, 8_000_000)
    fine = container.pack(replace(p, width=2000, height=2000, detail=replace(p.detail, side=256)))  # type: ignore[arg-type]
    budget.check_file(fine, 8_000_000)  # the default side: a 256-px network pass and its correction fit


@pytest.mark.slow
def test_the_detail_layer_is_the_same_on_1_and_2_threads(tmp_path: Path) -> None:
    img = _gradient(150, 110)
    face = Image.open(PORTRAIT).convert("RGB").resize((90, 90))
    img.paste(face, (30, 10))
    src = tmp_path / "in.png"
    img.save(src)
    outs = {}
    for t in (1, 2):
        r = _cli("encode", str(src), "-o", str(tmp_path / f"t{t}.ivc"), *FAST, threads=t)
        assert r.returncode == 0, r.stderr[-2000:]
        r = _cli("decode", str(tmp_path / f"t{t}.ivc"), "-o", str(tmp_path / f"t{t}.png"), threads=t)
        assert r.returncode == 0, r.stderr[-2000:]
        outs[t] = ((tmp_path / f"t{t}.ivc").read_bytes(), np.asarray(Image.open(tmp_path / f"t{t}.png")))
    assert container.unpack(outs[1][0]).detail is not None
    assert outs[1][0] == outs[2][0] and np.array_equal(outs[1][1], outs[2][1])


def test_decoding_a_detail_file_needs_no_compressai(tmp_path: Path) -> None:
    src = tmp_path / "x.ivc"
    src.write_bytes(_detail_file())
    code = ("import sys; from invcomp.faces.decode import decode_any; "
            f"decode_any(open({str(src)!r}, 'rb').read(), cache={{}}); print('compressai' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "False"


def test_a_quality_sweep_rises_monotonically() -> None:
    from invcomp import metrics
    from invcomp.imageio import from_image

    img = Image.open(PORTRAIT).convert("RGB")
    x = from_image(img)[None]
    points = []
    for q in ("1", "low", "medium", "high", "5"):
        data, out, _ = _roundtrip(img, quality=q)
        points.append((len(data), float(metrics.ssim(from_image(out.convert("RGB"))[None], x)[0])))
    assert all(b[0] >= a[0] and b[1] >= a[1] for a, b in zip(points, points[1:])), points
    assert points[-1][0] > points[0][0], points  # and it moves: the top level spends more than the bottom one


def test_quality_goes_with_the_automatic_detail_rate_only() -> None:
    with pytest.raises(InvcompError, match="--quality must be"):
        _encoder(quality="best")
    with pytest.raises(InvcompError, match="--quality must be"):
        _encoder(quality="9")
    with pytest.raises(InvcompError, match="fixed --detail rate"):
        _encoder(quality="high", detail="1")
    with pytest.raises(InvcompError, match="not both"):
        _encoder(quality="high", target_bytes=200)


def test_the_cli_reports_a_goal_met_by_the_detail_rate(tmp_path: Path) -> None:
    out = tmp_path / "t.ivc"
    r = _cli("encode", str(PORTRAIT), *FAST, "--target-bytes", "200", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    row = json.loads(r.stdout)
    assert out.stat().st_size <= 200 and row["target"]["reached"] is True
    assert row["photo"]["detail"]["bytes"] > 0
    r = _cli("decode", str(out), "-o", str(tmp_path / "t.png"))
    assert r.returncode == 0 and "detail layer" in r.stdout


def test_the_detail_network_trainer_runs_resumes_and_keeps_a_model(tmp_path: Path) -> None:
    pytest.importorskip("compressai")  # training's likelihoods are CompressAI's
    import torch

    from invcomp.train.frame_residual import FrameResidualConfig, train_frame_residual

    g = torch.Generator().manual_seed(0)
    n = 3
    data = {"ids": [f"f{i}" for i in range(n)],
            "x128": torch.randint(0, 256, (2 * n, 3, 128, 128), dtype=torch.uint8, generator=g),
            "b128": torch.randint(0, 256, (2 * n, 3, 128, 128), dtype=torch.uint8, generator=g),
            "x256": torch.randint(0, 256, (n, 3, 256, 256), dtype=torch.uint8, generator=g),
            "b256": torch.randint(0, 256, (n, 3, 256, 256), dtype=torch.uint8, generator=g)}
    torch.save(data, tmp_path / "bases.pt")
    cfg = FrameResidualConfig(data=str(tmp_path / "bases.pt"), out=str(tmp_path / "run"), steps=2, batch_size=2,
                              eval_faces=1, snapshot_every=2, threads=1)
    model = train_frame_residual(cfg, progress=False)
    assert model.is_file() and json.loads((tmp_path / "run" / "model.json").read_text())["training"]["step"] == 2
    again = train_frame_residual(replace(cfg, steps=3), progress=False)  # resumes at step 2, runs one more
    assert json.loads((tmp_path / "run" / "model.json").read_text())["training"]["step"] == 3 and again == model
