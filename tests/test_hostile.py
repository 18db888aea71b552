"""What `invcomp encode` does with hostile and unusual images (the table in the README).

Each case is either coded correctly (exit 0, a valid .ivc whose header records the right size) or
refused with one error line, a non-zero exit, no traceback and no output file.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from invcomp.cli import cli
from invcomp.service.describe import describe

from .conftest import DEMO_IMAGE, tiny_dcgan


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(w: int, h: int) -> bytes:
    """A real PNG of w x h black pixels: rows of zeros deflate ~1000:1, so the file is small and the image huge."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit grayscale
    comp = zlib.compressobj(9)
    row = b"\x00" * (w + 1)
    data = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _rgb(w: int = 40, h: int = 30) -> Image.Image:
    arr = np.zeros((h, w, 3), np.uint8)
    arr[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)
    arr[..., 1] = 128
    return Image.fromarray(arr)


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    return _save(_rgb(40, 20), "JPEG", exif=exif.tobytes())


def _animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (24, 24), c) for c in ((255, 0, 0), (0, 0, 255))]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _mode(mode: str) -> bytes:
    base = _rgb()
    if mode == "I;16":
        arr = (np.asarray(base.convert("L"), np.uint16) * 257).astype(np.uint16)
        return _save(Image.fromarray(arr), "PNG")
    if mode == "CMYK":
        return _save(base.convert("CMYK"), "JPEG")
    if mode == "RGBA":
        a = base.convert("RGBA")
        a.putalpha(128)
        return _save(a, "PNG")
    if mode == "P+transparency":
        p = base.convert("P")
        return _save(p, "PNG", transparency=0)
    return _save(base.convert(mode), "PNG")


PNG = _save(_rgb(), "PNG")
JPG = _save(_rgb(), "JPEG")

# name, file suffix, bytes factory, expected (width, height) or None for a refusal, message fragment
CASES: list[tuple[str, str, Callable[[], bytes], Optional[tuple[int, int]], str]] = [
    ("0-byte file", ".png", lambda: b"", None, "the file is empty"),
    ("text file named .png", ".png", lambda: b"hello, I am not an image\n", None, "not an image that Pillow can read"),
    ("truncated PNG", ".png", lambda: PNG[: len(PNG) // 2], None, "cannot decode image"),
    ("truncated JPEG", ".jpg", lambda: JPG[: len(JPG) // 2], None, "cannot decode image"),
    ("16-bit PNG", ".png", lambda: _mode("I;16"), (40, 30), ""),
    ("CMYK JPEG", ".jpg", lambda: _mode("CMYK"), (40, 30), ""),
    ("RGBA PNG", ".png", lambda: _mode("RGBA"), (40, 30), ""),
    ("palette with transparency", ".png", lambda: _mode("P+transparency"), (40, 30), ""),
    ("grayscale", ".png", lambda: _mode("L"), (40, 30), ""),
    ("1-bit", ".png", lambda: _mode("1"), (40, 30), ""),
    ("EXIF-rotated JPEG", ".jpg", _exif_rotated, (20, 40), ""),
    ("animated GIF", ".gif", lambda: _animated("GIF"), (24, 24), "first frame"),
    ("animated WebP", ".webp", lambda: _animated("WEBP"), (24, 24), "first frame"),
    ("1x1 image", ".png", lambda: _save(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), (1, 1), ""),
    ("decompression bomb 20000x20000", ".png", lambda: bomb_png(20000, 20000), None, "exceeds the limit of 64,000,000"),
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("model")
    torch.save(tiny_dcgan().state_dict(), d / "tiny.pt")
    return str(d / "tiny.pt")


@pytest.mark.parametrize("name,suffix,make,size,message", CASES, ids=[c[0] for c in CASES])
def test_encode_hostile_input(tmp_path: Path, tiny_model: str, caplog, name, suffix, make, size, message) -> None:
    src = tmp_path / f"input{suffix}"
    src.write_bytes(make())
    out = tmp_path / "out.ivc"
    r = CliRunner().invoke(cli, ["encode", str(src), "--model", tiny_model, "--iters", "0", "-o", str(out)])
    assert "Traceback" not in r.output + r.stderr
    if size is None:
        assert r.exit_code == 1, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], r.stderr
        assert not out.exists()
        assert not list(tmp_path.glob(".*.tmp"))
    else:
        assert r.exit_code == 0, r.stderr
        row = describe(out.read_bytes())  # a grayscale input is a photo file (its grayscale flag) around the face
        assert (row["width"], row["height"]) == size
        if message:  # a warning through logging (stderr in a real run; captured by pytest here)
            assert message in r.stderr + caplog.text


def test_max_pixels_flag_raises_the_limit(tmp_path: Path, tiny_model: str) -> None:
    """Above the raised limit the refusal comes from invcomp; below it the image really decodes (1.2 GB of pixels
    is too much for a unit test, so a 9000x9000 bomb with a limit of 80 Mpx stands in)."""
    src = tmp_path / "bomb.png"
    src.write_bytes(bomb_png(9000, 9000))
    args = ["encode", str(src), "--model", tiny_model, "--iters", "0", "-o", str(tmp_path / "o.ivc")]
    r = CliRunner().invoke(cli, args + ["--max-pixels", "50000000"])
    assert r.exit_code == 1 and "81,000,000 pixels exceeds the limit of 50,000,000" in r.stderr
    r = CliRunner().invoke(cli, args + ["--max-pixels", "81000000"])
    assert r.exit_code == 0, r.stderr
    assert describe((tmp_path / "o.ivc").read_bytes())["width"] == 9000


def test_demo_image_is_not_hostile(tmp_path: Path, tiny_model: str) -> None:
    r = CliRunner().invoke(cli, ["encode", str(DEMO_IMAGE), "--model", tiny_model, "--iters", "0",
                                 "-o", str(tmp_path / "d.ivc")])
    assert r.exit_code == 0 and r.stderr == ""
