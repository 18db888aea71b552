"""Faces in real photos: the similarity fit, the crop and paste-back geometry, the photo container, and the CLI on
real and synthetic photos (the astronaut photo that scikit-image ships; faces pasted at known placements)."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from invcomp.cli import cli
from invcomp.errors import BitstreamError, InvcompError
from invcomp.faces import background
from invcomp.landmarks import align
from invcomp.landmarks import detect
from invcomp.formats import photo as container
from invcomp.faces.photo import PhotoOptions, is_gray

from .conftest import DEMO_IMAGE, cli_runner, tiny_dcgan

needs_dlib = pytest.mark.skipif(detect.unavailable() is not None, reason=str(detect.unavailable()))


def astronaut() -> Image.Image:
    skimage = pytest.importorskip("skimage.data")
    return Image.fromarray(skimage.astronaut())


def synthetic(face: Image.Image, p: align.Placement, size: tuple[int, int], fill: int = 90) -> Image.Image:
    """``face`` (a square crop) pasted into a ``size`` frame at placement ``p`` with a hard mask."""
    frame = Image.new("RGB", size, (fill, fill + 20, fill + 40))
    return align.paste(frame, face, p, feather=0.0)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("model")
    torch.save(tiny_dcgan().state_dict(), d / "tiny.pt")
    return str(d / "tiny.pt")


# --- geometry (pure) -------------------------------------------------------------------------------------------
@given(st.floats(0.2, 5), st.floats(-math.pi, math.pi), st.floats(-50, 50), st.floats(-50, 50))
@settings(max_examples=60, deadline=None)
def test_fit_similarity_recovers_a_known_transform(scale, theta, tx, ty) -> None:
    src = np.random.default_rng(0).uniform(-1, 1, (5, 2))
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    s, th, t = align.fit_similarity(src, scale * src @ rot.T + [tx, ty])
    assert s == pytest.approx(scale, rel=1e-9)
    assert math.cos(th - theta) == pytest.approx(1, abs=1e-9)
    np.testing.assert_allclose(t, [tx, ty], atol=1e-7)


def test_placement_from_the_templates_own_image_is_that_placement() -> None:
    p = align.Placement(301.5, 188.25, 143.0, 17.5)
    q = align.placement_from_landmarks(p.to_frame(align.template()))
    assert (q.cx, q.cy, q.side, q.angle) == pytest.approx((p.cx, p.cy, p.side, p.angle), abs=1e-6)
    assert align.alignment_error(q, p, 64) < 1e-6
    assert align.alignment_error(align.Placement(p.cx + p.side / 64, p.cy, p.side, p.angle), p, 64) == pytest.approx(1.0)


def test_a_positive_angle_turns_the_crop_counter_clockwise_as_seen() -> None:
    tl, tr = align.Placement(50, 50, 20, 90).corners()[:2]
    assert tl == pytest.approx([40, 60]) and tr == pytest.approx([40, 40])  # the top edge now runs upwards


@pytest.mark.parametrize("angle,side", [(0, 160), (23.0, 120), (-30, 60), (12, 300)])
def test_warp_crop_takes_back_what_paste_put_there(angle, side) -> None:
    face = Image.open(DEMO_IMAGE).convert("RGB").resize((128, 128), Image.LANCZOS)
    p = align.Placement(210.0, 170.0, float(side), float(angle))
    frame = synthetic(face, p, (420, 360))
    back = np.asarray(align.warp_crop(frame, p, 64), dtype=np.float64)
    want = np.asarray(face.resize((64, 64), Image.LANCZOS), dtype=np.float64)
    inner = slice(6, 58)  # the hard paste's resampled edge aside
    psnr = 10 * np.log10(255 ** 2 / ((back[inner, inner] - want[inner, inner]) ** 2).mean())
    assert psnr > 27, psnr


def test_warp_crop_repeats_the_edge_outside_the_frame() -> None:
    frame = Image.new("RGB", (100, 80), (200, 10, 10))
    crop = np.asarray(align.warp_crop(frame, align.Placement(5, 5, 60, 10), 32))
    assert (np.abs(crop.astype(int) - [200, 10, 10]) <= 1).all()
    with pytest.raises(ValueError):
        align.warp_crop(frame, align.Placement(-500, -500, 30, 0), 32)


def test_paste_touches_only_the_crops_box_and_feathers_its_edge() -> None:
    frame = Image.new("RGB", (200, 200), (0, 0, 0))
    align.paste(frame, Image.new("RGB", (64, 64), (255, 255, 255)), align.Placement(100, 100, 80, 0))
    a = np.asarray(frame)[..., 0]
    assert a[100, 100] == 255 and a[:59].max() == 0 and a[142:].max() == 0  # box 60..140
    assert 0 < a[100, 61] < 255  # the feathered edge


# --- the container (pure) -------------------------------------------------------------------------------------
placements = st.builds(align.Placement, st.floats(-2000, 9000), st.floats(-2000, 9000), st.floats(1, 9000),
                       st.floats(-180, 179.9))
faces = st.lists(st.tuples(st.one_of(st.none(), placements), st.binary(min_size=1, max_size=300)), min_size=1, max_size=5)


@given(st.integers(1, 9000), st.integers(1, 9000), faces, st.booleans(),
       st.sampled_from(["none", "thumb", "webp", "jpegxl"]), st.binary(min_size=1, max_size=50))
@settings(max_examples=80, deadline=None)
def test_container_round_trips_canonically(w, h, recs, grayscale, bg, bg_data) -> None:
    photo = container.Photo(w, h, [container.FaceRecord(p, d) for p, d in recs], grayscale, bg,
                            b"" if bg == "none" else bg_data)
    data = container.pack(photo)
    back = container.unpack(data)
    assert (back.width, back.height, back.grayscale, back.background) == (w, h, grayscale, bg)
    assert [f.data for f in back.faces] == [d for _, d in recs]
    for (p, _), f in zip(recs, back.faces):
        if p is None:
            assert f.placement is None
        else:
            q = container.quantise(p)
            assert f.placement == q
            assert abs(q.cx - p.cx) <= 0.25 and abs(q.side - max(p.side, 2)) <= 0.25
            assert abs((q.angle - p.angle + 180) % 360 - 180) <= 1 / 128 + 1e-9
    assert container.pack(back) == data
    assert sum(container.overhead(photo)[k] for k in ("container", "placements", "lengths", "faces", "background")) == len(data)


def test_container_refuses_every_cut_and_every_flipped_bit() -> None:
    photo = container.Photo(640, 480, [container.FaceRecord(align.Placement(300, 200, 150, 5), b"\xb2" + bytes(30))],
                            background="thumb", background_data=bytes(range(25)))
    data = container.pack(photo)
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            container.unpack(data[:n])
    for i in range(len(data) * 8):
        bad = bytearray(data)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(BitstreamError):  # CRC-16 catches every single-bit error; a flipped magic is not a photo
            container.unpack(bytes(bad))


@pytest.mark.parametrize("photo,message", [
    (container.Photo(10, 10, []), "1..64 faces"),
    (container.Photo(10, 10, [container.FaceRecord(None, b"x")] * 65), "1..64 faces"),
    (container.Photo(0, 10, [container.FaceRecord(None, b"x")]), "size"),
    (container.Photo(10, 10, [container.FaceRecord(None, b"")]), "face file of 0 bytes"),
    (container.Photo(10, 10, [container.FaceRecord(None, b"x")], background="webp"), "background"),
])
def test_container_refuses_what_it_cannot_hold(photo, message) -> None:
    with pytest.raises(BitstreamError, match=message):
        container.pack(photo)


# --- background layers -----------------------------------------------------------------------------------------
def test_background_specs_parse_or_say_why() -> None:
    assert background.parse("none") == ("none", None) and background.parse("WebP:30") == ("webp", 30)
    for bad in ("webp", "webp:x", "avif:101", "png:5", "thumb:3"):
        with pytest.raises(InvcompError, match="--background"):
            background.parse(bad)


@pytest.mark.parametrize("name,q", [("thumb", None), ("webp", 40), ("jpeg", 30)])
def test_background_layers_decode_to_the_frames_size(name, q) -> None:
    if name == "thumb":
        pytest.importorskip("thumbhash")
    img = astronaut().resize((300, 200))
    data = background.encode(img, name, q, [align.Placement(150, 60, 80, 0)])
    out = background.decode(name, data, 300, 200)
    assert out.size == (300, 200) and out.mode == "RGB"
    assert np.abs(np.asarray(out, float).mean((0, 1)) - np.asarray(img, float).mean((0, 1))).max() < 12
    with pytest.raises(BitstreamError):
        background.decode(name, data, 100, 50) if name != "thumb" else background.decode(name, b"\x00", 10, 10)


def test_flatten_blurs_only_the_inside_of_the_faces() -> None:
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8))
    out = np.asarray(background.flatten(img, [align.Placement(80, 60, 80, 0)])).astype(int)
    a = np.asarray(img).astype(int)
    assert (out[:, :35] == a[:, :35]).all() and out[55:65, 75:85].std() < a[55:65, 75:85].std() / 3


def test_gray_detection_and_options() -> None:
    assert is_gray(Image.new("RGB", (4, 4), (7, 7, 7))) and not is_gray(Image.new("RGB", (4, 4), (7, 7, 8)))
    with pytest.raises(InvcompError, match="goes with --fit align"):
        PhotoOptions(framing="crop", background="thumb").check()


# --- detection and the CLI on photos ----------------------------------------------------------------------------
@needs_dlib
def test_the_detector_finds_the_astronaut_and_the_aligned_crop_is_her_face() -> None:
    img = astronaut()
    faces = detect.detect(img)
    assert faces and 170 < faces[0].box[0] < 200 and 60 < faces[0].box[1] < 100
    p = align.placement_from_landmarks(faces[0].points)
    assert 95 < p.side < 130 and abs(p.angle) < 8 and 200 < p.cx < 250 and 105 < p.cy < 145


PHOTOS = DEMO_IMAGE.parents[1] / "photos"


def _iou(a: tuple, b: tuple) -> float:
    ix, iy = max(0.0, min(a[2], b[2]) - max(a[0], b[0])), max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def _true_faces(name: str) -> tuple[list, list]:
    """The hand-checked face boxes and ignore boxes of ``photos.json`` (x0, y0, x1, y1)."""
    entry = json.loads((PHOTOS / "photos.json").read_text())["photos"][name]
    return entry["faces"], entry["ignore"]


@needs_dlib
@pytest.mark.parametrize("name", ["astronaut-collins.png", *sorted(p.name for p in PHOTOS.glob("*.jpg"))])
def test_the_detector_finds_exactly_the_true_faces(name: str) -> None:
    """photos.json: each detection overlaps a true face (IoU >= 0.3), or lies in an ignore box; every true face is
    found. The astronaut's mission patch, which dlib scores 0.12, is not a face."""
    img = astronaut() if name == "astronaut-collins.png" else Image.open(PHOTOS / name).convert("RGB")
    faces, ignore = _true_faces(name)
    found = detect.detect(img)
    for f in found:
        cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
        assert any(_iou(f.box, t) >= 0.3 for t in faces) or any(
            g[0] <= cx <= g[2] and g[1] <= cy <= g[3] for g in ignore), f"false face at {f.box} (score {f.score:.2f})"
    for t in faces:
        assert any(_iou(f.box, t) >= 0.3 for f in found), f"the face at {t} was not found"


@needs_dlib
def test_faces_all_codes_only_the_astronauts_face(tmp_path: Path, tiny_model: str) -> None:
    astronaut().save(tmp_path / "astro.png")
    r = run(["encode", str(tmp_path / "astro.png"), "--model", tiny_model, "--iters", "0", "--fit", "align",
             "--faces", "all", "-o", str(tmp_path / "a.ivc"), "--json"])
    assert r.exit_code == 0, r.stderr
    photo = json.loads(r.stdout)["photo"]
    assert (photo["faces_found"], photo["faces_coded"]) == (1, 1), photo


@needs_dlib
@pytest.mark.parametrize("angle,side", [(0, 150), (25, 200), (-20, 110)])
def test_alignment_recovers_a_known_placement(angle, side) -> None:
    face = Image.open(DEMO_IMAGE).convert("RGB")
    ref = align.placement_from_landmarks(detect.detect(face)[0].points)  # where the face's own crop puts it
    truth = align.Placement(330, 240, float(side), float(angle))
    frame = synthetic(face, truth, (640, 480))
    found = align.placement_from_landmarks(detect.detect(frame)[0].points)
    # the truth, composed with the face's own offset from the template
    k = truth.side / face.size[0]
    want = align.Placement(*truth.to_frame(np.array([[ref.cx, ref.cy]]) / face.size[0])[0], ref.side * k, angle + ref.angle)
    assert align.alignment_error(found, want, 64) < 2.0


def run(args: list[str]):
    r = cli_runner().invoke(cli, args)
    assert "Traceback" not in (r.output or "") + (r.stderr or "")
    return r


@needs_dlib
def test_encode_align_decodes_to_the_original_frame_with_the_face_in_place(tmp_path: Path, tiny_model: str) -> None:
    src, out, png = tmp_path / "astro.png", tmp_path / "a.ivc", tmp_path / "a.png"
    astronaut().save(src)
    r = run(["encode", str(src), "--model", tiny_model, "--iters", "0", "--background", "webp:10", "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["fit"] == "align" and row["photo"]["faces_coded"] == 1 and row["photo"]["bytes"]["placements"] == 8
    assert row["bytes"] == out.stat().st_size == row["photo"]["bytes"]["total"]
    r = run(["decode", str(out), "--model", tiny_model, "-o", str(png), "--json"])
    assert r.exit_code == 0, r.stderr
    dec = Image.open(png)
    assert dec.size == (512, 512) and dec.mode == "RGB"
    a, b = np.asarray(astronaut(), float), np.asarray(dec, float)
    assert np.abs(a[400:, :100] - b[400:, :100]).mean() < 25  # the background layer, far from the face
    r = run(["info", str(out), "--json"])
    info = json.loads(r.stdout)
    assert info["format"] == "photo" and info["faces"][0]["file"]["format"] == "version 1"


@needs_dlib
def test_no_background_decodes_the_face_alone_and_native_the_crop(tmp_path: Path, tiny_model: str) -> None:
    src, out = tmp_path / "astro.png", tmp_path / "a.ivc"
    astronaut().save(src)
    assert run(["encode", str(src), "--model", tiny_model, "--iters", "0", "--fit", "align", "-o", str(out)]).exit_code == 0
    assert run(["decode", str(out), "--model", tiny_model, "-o", str(tmp_path / "f.png")]).exit_code == 0
    dec = Image.open(tmp_path / "f.png")
    assert dec.mode == "RGBA" and dec.size == (512, 512)
    alpha = np.asarray(dec.getchannel("A"))
    assert alpha[120, 225] == 255 and alpha[450, 30] == 0
    assert run(["decode", str(out), "--model", tiny_model, "--native", "-o", str(tmp_path / "n.png")]).exit_code == 0
    assert Image.open(tmp_path / "n.png").size == (32, 32)


@needs_dlib
def test_faces_all_codes_every_face_up_to_the_limit(tmp_path: Path, tiny_model: str) -> None:
    face = Image.open(DEMO_IMAGE).convert("RGB")
    frame = Image.new("RGB", (900, 300), (60, 90, 120))
    for i in range(3):
        frame.paste(face.resize((150, 150)), (60 + 290 * i, 70))
    src = tmp_path / "three.png"
    frame.save(src)
    for limit, n in ((16, 3), (2, 2)):
        r = run(["encode", str(src), "--model", tiny_model, "--iters", "0", "--faces", "all", "--max-faces", str(limit),
                 "-o", str(tmp_path / f"{limit}.ivc"), "--json"])
        assert r.exit_code == 0, r.stderr
        assert json.loads(r.stdout)["photo"]["faces_coded"] == n
        assert len(container.unpack((tmp_path / f"{limit}.ivc").read_bytes()).faces) == n


@needs_dlib
def test_no_face_falls_back_or_refuses_as_asked(tmp_path: Path, tiny_model: str, caplog) -> None:
    src = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(src)
    r = run(["encode", str(src), "--model", tiny_model, "--iters", "0", "--fit", "align", "-o", str(tmp_path / "a.ivc")])
    assert r.exit_code == 0 and "no face found; coded the centre crop" in r.stderr + caplog.text
    assert not container.is_photo((tmp_path / "a.ivc").read_bytes())
    r = run(["encode", str(src), "--model", tiny_model, "--iters", "0", "--fit", "align", "--on-no-face", "error",
             "-o", str(tmp_path / "b.ivc")])
    assert r.exit_code == 1 and r.stderr.strip().splitlines()[-1].endswith("--on-no-face crop codes the centre crop instead")
    assert not (tmp_path / "b.ivc").exists()


@needs_dlib
def test_auto_keeps_an_aligned_crop_plain_and_aligns_a_photo(tmp_path: Path, tiny_model: str) -> None:
    a, b = tmp_path / "face.ivc", tmp_path / "photo.ivc"
    astronaut().save(tmp_path / "astro.png")
    assert run(["encode", str(DEMO_IMAGE), "--model", tiny_model, "--iters", "0", "-o", str(a)]).exit_code == 0
    assert run(["encode", str(tmp_path / "astro.png"), "--model", tiny_model, "--iters", "0", "-o", str(b)]).exit_code == 0
    assert not container.is_photo(a.read_bytes()) and container.is_photo(b.read_bytes())
    r = run(["encode", str(DEMO_IMAGE), "--model", tiny_model, "--iters", "0", "--fit", "crop", "-o", str(tmp_path / "c.ivc")])
    assert r.exit_code == 0 and (tmp_path / "c.ivc").read_bytes() == a.read_bytes()  # auto on a crop: crop's bytes


def test_grayscale_input_decodes_to_grayscale(tmp_path: Path, tiny_model: str) -> None:
    src, out = tmp_path / "g.png", tmp_path / "g.ivc"
    Image.open(DEMO_IMAGE).convert("L").save(src)
    assert run(["encode", str(src), "--model", tiny_model, "--iters", "0", "-o", str(out)]).exit_code == 0
    photo = container.unpack(out.read_bytes())
    assert photo.grayscale and photo.faces[0].placement is None
    assert run(["decode", str(out), "--model", tiny_model, "-o", str(tmp_path / "g.png.out.png")]).exit_code == 0
    dec = Image.open(tmp_path / "g.png.out.png")
    assert dec.mode == "L" and dec.size == (124, 124)


def test_bitstream_unpack_names_a_photo_file() -> None:
    from invcomp.formats import ivc as bitstream

    data = container.pack(container.Photo(8, 8, [container.FaceRecord(None, b"x")]))
    with pytest.raises(BitstreamError, match="photo file"):
        bitstream.unpack(data)


def test_info_describes_every_kind_of_file(tmp_path: Path, tiny_model: str) -> None:
    out = tmp_path / "x.ivc"
    assert run(["encode", str(DEMO_IMAGE), "--model", tiny_model, "--iters", "0", "--fit", "crop", "-o", str(out)]).exit_code == 0
    r = run(["info", str(out), str(tmp_path / "missing.ivc")])
    assert r.exit_code == 1 and "latent_dim: 8" in r.stdout and "crc: CRC-32" in r.stdout
    assert "missing.ivc: cannot read" in r.stderr.splitlines()[0] and "1 ok, 1 failed" in r.stderr
    bad = tmp_path / "bad.ivc"
    bad.write_bytes(out.read_bytes()[:-1] + b"\x00")
    r = run(["info", str(bad)])
    assert r.exit_code == 1 and "CRC" in r.stderr



# --- hostile photos (the README's hostile-input table) -----------------------------------------------------------
def _photo_with(face_side: int, centre: tuple[float, float], size: tuple[int, int], angle: float = 0.0) -> Image.Image:
    face = Image.open(DEMO_IMAGE).convert("RGB")
    frame = astronaut().resize(size).filter(__import__("PIL.ImageFilter").ImageFilter.GaussianBlur(6))
    return align.paste(frame, face, align.Placement(centre[0], centre[1], float(face_side), angle), feather=0.05)


def encode_json(tmp_path: Path, img_or_bytes, tiny_model: str, *extra: str, name: str = "in.png"):
    src, out = tmp_path / name, tmp_path / (name + ".ivc")
    if isinstance(img_or_bytes, bytes):
        src.write_bytes(img_or_bytes)
    else:
        img_or_bytes.save(src)
    r = run(["encode", str(src), "--model", tiny_model, "--iters", "0", "-o", str(out), "--json", *extra])
    return r, out


@needs_dlib
def test_a_face_partly_outside_the_frame_is_aligned_with_its_edge_repeated(tmp_path: Path, tiny_model: str) -> None:
    r, out = encode_json(tmp_path, _photo_with(200, (40, 150), (480, 320)), tiny_model, "--fit", "align")
    assert r.exit_code == 0, r.stderr
    p = container.unpack(out.read_bytes()).faces[0].placement
    assert p is not None and p.cx - p.side / 2 < 0  # the crop reaches past the left edge
    assert run(["decode", str(out), "--model", tiny_model, "-o", str(tmp_path / "d.png")]).exit_code == 0
    assert Image.open(tmp_path / "d.png").size == (480, 320)


@needs_dlib
def test_a_tiny_face_is_left_uncoded_with_a_warning(tmp_path: Path, tiny_model: str, caplog) -> None:
    img = Image.new("RGB", (400, 300), (90, 100, 110))
    img.paste(Image.open(DEMO_IMAGE).convert("RGB").resize((24, 24), Image.LANCZOS), (200, 150))
    faces = detect.detect(img)
    r, out = encode_json(tmp_path, img, tiny_model, "--fit", "align")
    assert r.exit_code == 0 and not container.is_photo(out.read_bytes())  # the centre crop, said in one line
    assert ("no face found" in r.stderr + caplog.text) or (faces and faces[0].size < detect.MIN_FACE)


@needs_dlib
def test_a_hundred_faces_code_the_largest_up_to_the_limit(tmp_path: Path, tiny_model: str, caplog) -> None:
    face = Image.open(DEMO_IMAGE).convert("RGB").resize((90, 90), Image.LANCZOS)
    img = Image.new("RGB", (1000, 1000), (120, 120, 120))
    for k in range(100):
        img.paste(face, (100 * (k % 10) + 5, 100 * (k // 10) + 5))
    found = len(detect.detect(img))
    assert found >= 60  # the detector sees most of them
    r, out = encode_json(tmp_path, img, tiny_model, "--faces", "all")
    assert r.exit_code == 0, r.stderr
    assert len(container.unpack(out.read_bytes()).faces) == 16
    assert f"{found} faces found; coded the 16 largest" in r.stderr + caplog.text


@needs_dlib
def test_an_exif_rotated_photo_is_aligned_upright(tmp_path: Path, tiny_model: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    buf = io.BytesIO()
    astronaut().rotate(90, expand=True).save(buf, "JPEG", quality=92, exif=exif.tobytes())
    r, out = encode_json(tmp_path, buf.getvalue(), tiny_model, "--fit", "align", name="rot.jpg")
    assert r.exit_code == 0, r.stderr
    photo = container.unpack(out.read_bytes())
    assert (photo.width, photo.height) == (512, 512) and abs(photo.faces[0].placement.angle) < 10


@needs_dlib
@pytest.mark.slow
def test_a_64_megapixel_photo_codes_within_the_pixel_limit(tmp_path: Path, tiny_model: str) -> None:
    big = _photo_with(1600, (4000, 2600), (8000, 8000))
    r, out = encode_json(tmp_path, big, tiny_model, "--fit", "align", name="big.png")
    assert r.exit_code == 0, r.stderr
    photo = container.unpack(out.read_bytes())
    assert (photo.width, photo.height) == (8000, 8000) and 1200 < photo.faces[0].placement.side < 2000
    r = run(["decode", str(out), "--model", tiny_model, "--max-pixels", "1000000", "-o", str(tmp_path / "d.png")])
    assert r.exit_code == 1 and "over the limit of 1,000,000" in r.stderr and not (tmp_path / "d.png").exists()


@needs_dlib
def test_an_aligned_crop_given_to_align_is_aligned_near_identity(tmp_path: Path, tiny_model: str) -> None:
    r, out = encode_json(tmp_path, Image.open(DEMO_IMAGE), tiny_model, "--fit", "align")
    assert r.exit_code == 0, r.stderr
    p = container.unpack(out.read_bytes()).faces[0].placement
    c = align.crop_placement(124, 124)
    assert align.alignment_error(p, c, 64) < 8 and abs(p.angle) < 8


def test_fuzzed_photo_files_decode_or_fail_cleanly() -> None:
    """Photo files around real face files of the shipped generator, mutated (CRC kept valid for the field mutators),
    through what `invcomp decode` runs: never a crash or a hang."""
    import random

    from invcomp.codecs import load_codec
    from invcomp.fuzz import codec_seeds, photo_seeds, run_fuzz

    rng = random.Random(0)
    faces = codec_seeds(load_codec("dcgan-utkface64"), rng, 3)
    stats = run_fuzz(1200, seed=1, seeds=photo_seeds(faces, rng, 16), by_header=True, time_limit=30.0)
    assert stats.slowest_s < 30
    assert stats.counts["crash"] == 0, stats.crashes[:2]
    assert stats.counts["hang"] == 0 and stats.counts["ok"] > 0 and stats.counts["error"] > 600


@needs_dlib
def test_compare_with_a_photo_file_measures_the_face_in_the_frame(tmp_path: Path, tiny_model: str) -> None:
    astronaut().save(tmp_path / "a.png")
    assert run(["encode", str(tmp_path / "a.png"), "--model", tiny_model, "--iters", "0", "--background", "thumb",
                "-o", str(tmp_path / "a.ivc")]).exit_code == 0
    assert run(["decode", str(tmp_path / "a.ivc"), "--model", tiny_model, "-o", str(tmp_path / "d.png")]).exit_code == 0
    r = run(["compare", str(tmp_path / "a.png"), str(tmp_path / "d.png"), "--bitstream", str(tmp_path / "a.ivc"), "--json"])
    assert r.exit_code == 0, r.stderr
    row = json.loads(r.stdout)
    assert len(row["faces"]) == 1 and 0 < row["faces"][0]["face_ssim"] < 1 and row["bytes"] == (tmp_path / "a.ivc").stat().st_size
    r = run(["compare", str(tmp_path / "a.png"), str(DEMO_IMAGE), "--bitstream", str(tmp_path / "a.ivc")])
    assert r.exit_code == 1 and "frame is 512x512" in r.stderr


@needs_dlib
def test_a_byte_target_holds_the_whole_photo_file(tmp_path: Path, tiny_model: str) -> None:
    pytest.importorskip("thumbhash")
    sizes = []
    for n in (75, 100):
        r, out = encode_json(tmp_path, astronaut(), tiny_model, "--background", "thumb", "--target-bytes", str(n),
                             name=f"a{n}.png")
        assert r.exit_code == 0, r.stderr
        assert container.is_photo(out.read_bytes()) and out.stat().st_size <= n
        sizes.append(out.stat().st_size)
    assert sizes[0] <= sizes[1]  # the face gets what the wrapper and the ThumbHash leave
    r, out = encode_json(tmp_path, astronaut(), tiny_model, "--background", "thumb", "--target-bytes", "30", name="b.png")
    assert r.exit_code == 1 and "--target-bytes 30" in r.stderr and not out.exists()
