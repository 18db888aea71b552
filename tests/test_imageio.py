"""Tests for :mod:`invcomp.imageio`; every image file is built here with Pillow / NumPy."""
from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invcomp.errors import InvcompError
from invcomp.imageio import (
    UNCODED_FILL, crop_box, decode_image_bytes, fit_image, from_image, load_image, quantize_pixels, restore_size, to_pil,
    to_uint8,
)

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def px(img: Image.Image, x: int, y: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(img)[y, x])


def near(a, b, tol: int = 6) -> bool:
    return all(abs(int(p) - int(q)) <= tol for p, q in zip(a, b))


def noise_png(side: int = 64, seed: int = 0) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    b = io.BytesIO()
    Image.fromarray(arr).save(b, "PNG")
    return b.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def header_only_png(w: int, h: int) -> bytes:
    """A PNG signature + IHDR (8-bit RGB) declaring w x h, + IEND: no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


# ---------------------------------------------------------------- transparency


def test_rgba_alpha_composites_on_white(tmp_path: Path) -> None:
    arr = np.zeros((4, 6, 4), dtype=np.uint8)
    arr[..., :3] = (255, 0, 0)          # red everywhere
    arr[:, :2, 3] = 0                   # left: fully transparent -> white
    arr[:, 2:4, 3] = 255                # middle: opaque -> red
    arr[:, 4:, 3] = 128                 # right: half -> pink: G, B = 255 * (1 - 128/255) = 127
    img = load_image(save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png"))
    assert img.mode == "RGB" and img.size == (6, 4)
    assert px(img, 0, 0) == WHITE
    assert px(img, 2, 0) == RED
    assert near(px(img, 5, 3), (255, 127, 127), tol=1)


def test_la_alpha_composites_on_white(tmp_path: Path) -> None:
    arr = np.zeros((3, 4, 2), dtype=np.uint8)  # black
    arr[:, :2, 1] = 0
    arr[:, 2:, 1] = 255
    img = load_image(save(Image.fromarray(arr, "LA"), tmp_path / "la.png"))
    assert img.mode == "RGB"
    assert px(img, 0, 0) == WHITE and px(img, 3, 2) == BLACK


@pytest.mark.parametrize("fmt", ["png", "gif"])
def test_palette_transparency_is_white(tmp_path: Path, fmt: str) -> None:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0] + [255, 0, 0] + [0, 0, 255] + [0, 0, 0] * 253)  # 0 black, 1 red, 2 blue
    img.paste(1, (0, 0, 4, 8))   # left half red
    img.paste(2, (4, 0, 8, 8))   # right half blue
    img.paste(0, (0, 0, 2, 2))   # top-left 2x2 black, but index 0 is transparent
    path = save(img, tmp_path / f"p.{fmt}", transparency=0)
    out = load_image(path)
    assert out.mode == "RGB"
    assert px(out, 0, 0) == WHITE        # transparent black -> white, not black
    assert px(out, 3, 5) == RED and px(out, 6, 6) == BLUE


# ---------------------------------------------------------------- bit depths and modes


def test_16_bit_grayscale(tmp_path: Path) -> None:
    arr = np.array([[65535, 0, 32768, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(arr), tmp_path / "g16.png")
    assert Image.open(path).mode.startswith("I")  # really a 16-bit file
    out = np.asarray(load_image(path))
    assert out.shape == (1, 4, 3)
    assert out[0, 0].tolist() == [255] * 3
    assert out[0, 1].tolist() == [0] * 3
    assert out[0, 2].tolist() == [128] * 3  # 32768 / 65535 * 255 = 127.5019 -> 128


def test_dark_16_bit_grayscale_is_not_brightened(tmp_path: Path) -> None:
    # 200 / 65535 of full scale is black in 8 bits; imageio.to_rgb picks the peak from the data
    # (65535 only if some value exceeds 255), so this near-black image comes out as 200/255 grey.
    arr = np.array([[0, 100, 200]], dtype=np.uint16)
    out = np.asarray(load_image(save(Image.fromarray(arr), tmp_path / "dark16.png")))
    assert out[..., 0].tolist() == [[0, 0, 1]]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    img = Image.new("CMYK", (30, 20), (0, 0, 0, 0))          # white
    img.paste((255, 0, 0, 0), (0, 0, 15, 20))                 # left: pure cyan
    path = save(img, tmp_path / "c.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (30, 20)
    assert near(px(out, 3, 10), (0, 255, 255), tol=10)
    assert near(px(out, 26, 10), WHITE, tol=10)


def test_grayscale_and_1_bit(tmp_path: Path) -> None:
    g = np.array([[0, 77, 200, 255]], dtype=np.uint8)
    out = np.asarray(load_image(save(Image.fromarray(g, "L"), tmp_path / "g.png")))
    assert out.shape == (1, 4, 3) and (out == g[..., None]).all()
    bw = Image.new("1", (5, 2), 0)
    bw.putpixel((4, 1), 1)
    out = load_image(save(bw, tmp_path / "bw.png"))
    assert out.mode == "RGB" and px(out, 4, 1) == WHITE and px(out, 0, 0) == BLACK


def test_float_mode_via_to_rgb() -> None:
    from invcomp.imageio import to_rgb

    f = Image.fromarray(np.array([[0.0, 0.5, 1.0, 2.0]], dtype=np.float32), "F")
    assert np.asarray(to_rgb(f))[0, :, 0].tolist() == [0, 128, 255, 255]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), BLUE)   # stored: 40 wide, 20 high
    img.paste(RED, (0, 0, 10, 10))           # stored top-left corner red
    exif = Image.Exif()
    exif[0x0112] = 6                         # "rotate 90 CW to display"
    path = save(img, tmp_path / "rot.jpg", exif=exif.tobytes(), quality=95)
    assert Image.open(path).size == (40, 20)
    out = load_image(path)
    assert out.size == (20, 40)
    # rotating 90 degrees clockwise takes the top-left corner to the top-right corner
    assert near(px(out, 17, 2), RED, tol=40)
    assert near(px(out, 2, 2), BLUE, tol=40)
    assert near(px(out, 17, 37), BLUE, tol=40)


def test_animated_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE), Image.new("RGB", (8, 8), GREEN)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert getattr(Image.open(path), "n_frames", 1) == 3
    out = load_image(path)
    assert out.size == (8, 8) and px(out, 4, 4) == RED


def test_one_pixel_image(tmp_path: Path) -> None:
    out = load_image(save(Image.new("RGB", (1, 1), (10, 20, 30)), tmp_path / "one.png"))
    assert out.size == (1, 1) and px(out, 0, 0) == (10, 20, 30)
    for fit in ("crop", "squash"):
        big = fit_image(out, 64, fit)
        assert big.size == (64, 64) and near(px(big, 30, 30), (10, 20, 30), tol=1)


# ---------------------------------------------------------------- errors


def _one_line_error(path: Path, **kw) -> str:
    with pytest.raises(InvcompError) as ei:
        load_image(path, **kw)
    msg = str(ei.value)
    assert msg and "\n" not in msg
    return msg


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.png").write_bytes(b"")
    assert "empty" in _one_line_error(tmp_path / "e.png")


def test_text_file_named_png(tmp_path: Path) -> None:
    (tmp_path / "t.png").write_text("hello, not a picture\nsecond line\n")
    assert "not an image" in _one_line_error(tmp_path / "t.png")


def test_truncated_png(tmp_path: Path) -> None:
    data = noise_png()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    assert "cannot decode" in _one_line_error(tmp_path / "half.png")


def test_truncated_jpeg(tmp_path: Path) -> None:
    b = io.BytesIO()
    Image.open(io.BytesIO(noise_png())).save(b, "JPEG", quality=90)
    data = b.getvalue()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    assert "cannot decode" in _one_line_error(tmp_path / "half.jpg")


def test_missing_file(tmp_path: Path) -> None:
    msg = _one_line_error(tmp_path / "nope.png")
    assert "cannot read" in msg and "nope.png" in msg


def test_directory_is_not_an_image(tmp_path: Path) -> None:
    assert "cannot read" in _one_line_error(tmp_path)


def test_over_max_pixels(tmp_path: Path) -> None:
    path = save(Image.new("RGB", (20, 20), RED), tmp_path / "big.png")
    msg = _one_line_error(path, max_pixels=100)
    assert "20x20" in msg and "400" in msg and "limit of 100" in msg
    assert load_image(path, max_pixels=400).size == (20, 20)  # the limit is inclusive


def test_header_over_default_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    # 9000 x 9000 = 81 Mpx > 64 Mpx default; the file has no pixel data, so only a header check can refuse it
    path = tmp_path / "huge.png"
    path.write_bytes(header_only_png(9000, 9000))
    t0 = time.perf_counter()
    msg = _one_line_error(path)
    assert time.perf_counter() - t0 < 1.0
    assert "9000x9000" in msg and "limit of 64,000,000" in msg


def test_header_20000_square_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "huge2.png"
    path.write_bytes(header_only_png(20000, 20000))
    t0 = time.perf_counter()
    msg = _one_line_error(path)
    assert time.perf_counter() - t0 < 1.0
    assert "limit" in msg and "400000000" in msg.replace(",", "")


def test_raised_max_pixels_is_honoured_above_pillows_guard() -> None:
    # With max_pixels raised to 1e9 a 20000x20000 header passes invcomp's check; the file has no
    # pixel data, so the right outcome is a decode error, not "refused as a decompression bomb".
    with pytest.raises(InvcompError) as ei:
        decode_image_bytes(header_only_png(20000, 20000), max_pixels=10**9)
    assert "decompression bomb" not in str(ei.value)


# ---------------------------------------------------------------- geometry


def stripes_100x50() -> Image.Image:
    """100 x 50: green | red | blue | green, 25 px each."""
    arr = np.zeros((50, 100, 3), dtype=np.uint8)
    arr[:, :25] = GREEN
    arr[:, 25:50] = RED
    arr[:, 50:75] = BLUE
    arr[:, 75:] = GREEN
    return Image.fromarray(arr)


def test_fit_crop_keeps_the_centre() -> None:
    out = fit_image(stripes_100x50(), 32, "crop")
    assert out.size == (32, 32)
    # the 50 x 50 centre (x = 25..74) is red | blue: no green survives
    assert near(px(out, 1, 16), RED, tol=10) and near(px(out, 30, 16), BLUE, tol=10)
    assert np.asarray(out)[..., 1].max() < 40


def test_fit_squash_keeps_the_whole_frame() -> None:
    out = fit_image(stripes_100x50(), 32, "squash")
    assert out.size == (32, 32)
    # horizontally squeezed by 100 / 32: four stripes of 8 px each, top to bottom unchanged
    assert near(px(out, 1, 5), GREEN, tol=10) and near(px(out, 11, 5), RED, tol=10)
    assert near(px(out, 20, 26), BLUE, tol=10) and near(px(out, 30, 26), GREEN, tol=10)


def test_fit_crop_portrait() -> None:
    arr = np.zeros((90, 30, 3), dtype=np.uint8)
    arr[:30] = RED
    arr[30:60] = BLUE
    arr[60:] = GREEN
    out = fit_image(Image.fromarray(arr), 30, "crop")
    assert out.size == (30, 30) and (np.asarray(out) == BLUE).all()  # the middle third, no resampling


def test_fit_rejects_unknown_mode() -> None:
    with pytest.raises(InvcompError):
        fit_image(stripes_100x50(), 32, "pad")  # type: ignore[arg-type]


@pytest.mark.parametrize("fit", ["crop", "squash"])
@pytest.mark.parametrize("size", [(100, 50), (50, 100), (37, 91), (64, 64), (1, 3)])
def test_restore_size(fit: str, size: tuple[int, int]) -> None:
    square = fit_image(Image.new("RGB", size, RED), 32, fit)
    back = restore_size(square, *size, fit=fit)
    assert back.size == size and back.mode == "RGB"


def test_restore_crop_vs_squash_geometry() -> None:
    img = stripes_100x50()
    squashed = restore_size(fit_image(img, 64, "squash"), 100, 50, "squash")
    assert near(px(squashed, 5, 25), GREEN, tol=20) and near(px(squashed, 37, 25), RED, tol=20)
    cropped = restore_size(fit_image(img, 64, "crop"), 100, 50, "crop")
    # the coded square (the centre 50 x 50: red | blue) goes back where it came from, at its own scale, and the
    # uncoded sides are grey, not a stretched copy of the square
    assert near(px(cropped, 30, 25), RED, tol=20) and near(px(cropped, 70, 25), BLUE, tol=20)
    assert px(cropped, 5, 25) == UNCODED_FILL and px(cropped, 95, 25) == UNCODED_FILL
    assert px(cropped, 24, 10) == UNCODED_FILL and near(px(cropped, 26, 10), RED, tol=20)


@pytest.mark.parametrize("size", [(451, 300), (300, 451), (7, 100)])
def test_crop_decode_puts_the_square_back_in_place(size: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    back = restore_size(fit_image(img, 64, "crop"), *size, "crop")
    left, top, side = crop_box(*size)
    square = back.crop((left, top, left + side, top + side))
    # re-fitting the decoded frame gives back the coded square (what compare --bitstream measures)
    a = np.asarray(fit_image(back, 64, "crop"), dtype=np.float64)
    b = np.asarray(fit_image(img, 64, "crop"), dtype=np.float64)
    c = np.asarray(fit_image(square, 64, "crop"), dtype=np.float64)
    assert np.array_equal(a, c) and np.abs(a - b).mean() < 40
    outside = np.asarray(back, dtype=np.int16).copy()
    outside[top:top + side, left:left + side] = UNCODED_FILL
    assert (outside == np.array(UNCODED_FILL)).all()


# ---------------------------------------------------------------- tensor <-> image


def test_uint8_round_trip_is_exact() -> None:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (17, 23, 3), dtype=np.uint8)
    arr[0, :3] = [[0, 0, 0], [255, 255, 255], [127, 128, 1]]
    x = from_image(Image.fromarray(arr))
    assert x.shape == (3, 17, 23) and x.dtype == torch.float32
    assert x.min() == -1.0 and x.max() == 1.0
    assert x[:, 0, 1].tolist() == [1.0, 1.0, 1.0]
    assert np.array_equal(to_uint8(x), arr)
    assert np.array_equal(np.asarray(to_pil(x)), arr)


def test_all_256_levels_round_trip() -> None:
    arr = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    assert np.array_equal(to_uint8(from_image(Image.fromarray(arr))), arr)


def test_to_uint8_rounds_and_clamps() -> None:
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 5.0, -1 + 0.6 / 127.5, -1 + 0.4 / 127.5]).view(1, 1, 7).repeat(3, 1, 1)
    assert to_uint8(x)[0, :, 0].tolist() == [0, 0, 128, 255, 255, 1, 0]  # 0.0 -> 127.5 -> rounds to even 128


@pytest.mark.parametrize("shape", [(1, 3, 4, 4), (4, 4, 4), (4, 4), (1, 4, 4), (4, 4, 3)])
def test_to_uint8_rejects_wrong_shape(shape: tuple) -> None:
    with pytest.raises(ValueError):
        to_uint8(torch.zeros(shape))


def test_quantize_pixels_matches_the_uint8_grid() -> None:
    x = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1
    q = quantize_pixels(x)
    assert torch.allclose(q, from_image(to_pil(x)), atol=1e-6)
