"""Hardening, third round (issue 30), the decoder's side: crafted residual layers, decode budgets, special files,
errors that echo input bytes, and the fuzzer's new seeds and mutators."""
from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from invcomp.formats import ivc as bitstream
from invcomp.formats import layered as layers
from invcomp.errors import BitstreamError, InvcompError
from tests.conftest import DEMO_IMAGE, REPO

pytest.importorskip("compressai")


def _cli(*args: Any, timeout: float = 300, memory: int = 6 << 30) -> subprocess.CompletedProcess:
    """``invcomp ARGS`` in a fresh process (a crash is a signal, not an exception), under an address-space limit so
    that an unbounded read fails instead of filling the machine."""
    import resource

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run([sys.executable, "-m", "invcomp.cli", "--threads", "1", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit)


def _error_lines(r: subprocess.CompletedProcess) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def layered() -> tuple[bytes, bytes]:
    """A real layered file (base, tone, one residual layer at 64 px) and the installed residual network's key."""
    from invcomp.codecs import EncodeSettings, load_codec
    from invcomp.fuzz import codec_seeds

    codec = load_codec("dcgan-utkface64", EncodeSettings(init="random"), mode="layered", resolution=64,
                       layer_rates="tone,3")
    data = codec_seeds(codec, random.Random(0), 1)[0]
    assert [layer.kind for layer, _ in layers.split(data)[1]] == [layers.KIND_TONE, layers.KIND_RESIDUAL]
    return data, codec.residual.key


def _records(data: bytes) -> tuple[bytes, list[layers.Layer]]:
    """A layered file's bytes up to its first layer record, and its layers."""
    recs = layers.split(data)[1]
    return data[:len(data) - sum(len(r) for _, r in recs)], [layer for layer, _ in recs]


def rewrite(data: bytes, key: bytes, resolution: int, payload: bytes, *, keep_tone: bool = False,
            copies: int = 1) -> bytes:
    """``data`` with its residual layer at ``resolution`` holding ``payload`` (CRC-valid under ``key``), repeated
    ``copies`` times; the tone layer dropped unless ``keep_tone``."""
    head, recs = _records(data)
    tone = [r for r in recs if r.kind == layers.KIND_TONE][:int(keep_tone)]
    res = next(r for r in recs if r.kind == layers.KIND_RESIDUAL)
    new = [layers.Layer(layers.KIND_RESIDUAL, payload, res.rate, resolution)] * copies
    return head + b"".join(r.record(key) for r in tone + new)


# --- 1. a crafted residual layer: one line, not a signal ---------------------------------------------------
def test_the_63_byte_file_and_other_forged_residual_layers_are_one_line_errors_not_signals(
        layered: tuple[bytes, bytes], tmp_path: Path) -> None:
    """Issue 30, item 1: the residual layer rewritten to 1024 px with a 1-byte payload (CRCs valid) crashed
    ``invcomp decode`` in CompressAI's rANS decoder (exit 139). Now each forged stream is refused in one line."""
    data, key = layered
    rng = random.Random(1)
    start = (1 << 62 | 12345).to_bytes(8, "little")  # a legal first state: the decoder goes on into the payload
    cases = {"one-byte": b"\x00", "escape-run": start + b"\xff" * (1 << 16), "words": start + rng.randbytes(1 << 16),
             "zeros": bytes(1 << 18), "random": rng.randbytes(1 << 12)}
    files = []
    for name, payload in cases.items():
        f = tmp_path / f"{name}.ivc"
        f.write_bytes(rewrite(data, key, 1024, payload))
        files.append(f)
    assert len(files[0].read_bytes()) < 70  # the was 63 bytes (the base record's size varies)
    r = _cli("decode", files[0], "-o", tmp_path / "one.png")
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])  # not -11 (SIGSEGV) nor 139
    assert _error_lines(r) == [f"invcomp: error: {files[0]}: corrupt .ivc file: the residual layer's stream is 1 byte; "
                               "an rANS stream is whole 32-bit words, at least 2"], r.stderr
    r = _cli("decode", *files[1:], "-o", tmp_path / "out")
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    errors = [line for line in _error_lines(r) if line.startswith("invcomp: error: ")]
    assert len(errors) == len(files) - 1, r.stderr
    for f, line in zip(files[1:], errors):
        assert line.startswith(f"invcomp: error: {f}: corrupt .ivc file: the residual layer's stream"), line
    assert "Traceback" not in r.stderr and not list((tmp_path / "out").glob("*.png"))


def test_the_rans_decoder_matches_compressai_on_every_canonical_stream_and_refuses_the_rest() -> None:
    """invcomp's bounds-checked rANS decoder gives CompressAI's symbols for CompressAI's streams (escapes
    included), refuses every proper prefix of them, and any other stream it accepts re-encodes to itself."""
    from compressai import ans

    from compressai.entropy_models import GaussianConditional
    from compressai.models.google import get_scale_table

    from invcomp.coding import gaussian, rans

    g = GaussianConditional(None, scale_bound=0.11)
    g.update_scale_table(get_scale_table(), force=True)
    t = gaussian.tables()  # the shipped tables the residual layers code with (tests/test_rans.py: CompressAI's)
    args = (g._quantized_cdf.tolist(), g._cdf_length.tolist(), g._offset.tolist())
    enc, dec = ans.RansEncoder(), ans.RansDecoder()
    rng = random.Random(0)
    for n in (1, 7, 768, 3072):
        idx = [rng.randrange(len(t.cdfs)) for _ in range(n)]
        sym = [rng.choice([int(rng.gauss(0, 2)), rng.randint(-3000, 3000), -(2**26), 2**26]) for _ in idx]
        data = enc.encode_with_indexes(sym, idx, *args)
        assert len(data) >= rans.min_stream_bytes(idx, t)
        assert rans.decode(data, idx, t) == dec.decode_with_indexes(data, idx, *args) == sym
        for cut in range(0, len(data), 4 if n > 7 else 1):  # every proper prefix: refused, never read past
            with pytest.raises(BitstreamError):
                rans.decode(data[:cut], idx, t)
        with pytest.raises(BitstreamError):  # a word more than the code of its symbols
            rans.decode(data + bytes(4), idx, t)
    accepted = 0
    for _ in range(3000):  # random streams: refused, or canonical (then CompressAI agrees, within the stream)
        n = rng.choice([1, 2, 5, 16])
        idx = [rng.randrange(len(t.cdfs)) for _ in range(n)]
        data = rng.randbytes(4 * rng.randint(2, 6))
        try:
            got = rans.decode(data, idx, t)
        except BitstreamError:
            continue
        accepted += 1
        assert enc.encode_with_indexes(got, idx, *args) == data
        assert dec.decode_with_indexes(data, idx, *args) == got
    assert accepted < 3000
    with pytest.raises(InvcompError, match="CDF index outside"):
        rans.decode(bytes(8), [len(t.cdfs)], t)
    # the shape and the tables decide the least bytes: 1024 px is 48 x 64 x 64 symbols; at the widest scale each
    # costs at least 9 bits, at the narrowest almost nothing (rANS codes many symbols per byte)
    big, small = [len(t.cdfs) - 1] * (48 * 64 * 64), [0] * (48 * 64 * 64)
    assert rans.min_stream_bytes(big, t) > 200_000 and rans.min_stream_bytes(small, t) == 8
    with pytest.raises(BitstreamError, match="at least"):
        rans.decode(bytes(100_000), big, t)


# --- 2. every decoded size within the budget, before any work -----------------------------------------------
class _Worked(Exception):
    pass


@pytest.fixture
def no_residual_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any residual layer's work (decoding or encoding) raises :class:`_Worked`: a budget must refuse first."""
    from invcomp.nets.residual import ResidualCoder

    def worked(*a: Any, **k: Any) -> Any:
        raise _Worked()

    monkeypatch.setattr(ResidualCoder, "decompress", worked)
    monkeypatch.setattr(ResidualCoder, "compress", worked)
    monkeypatch.setattr(ResidualCoder, "context", worked)


def test_sixteen_layers_at_4080_are_refused_before_any_work(layered: tuple[bytes, bytes], no_residual_work: None) -> None:
    """Issue 30, item 2: a 963-byte file of 16 layers at 4080 px took 58.7 s and 8.1 GB to decode to 124x124."""
    from invcomp.codecs import load_codec
    from invcomp.faces.decode import decode_any

    data, key = layered
    head = bytes(_records(data)[0])
    header = bitstream.unpack(data)[0]
    f = rewrite(data, key, 4080, b"\0" * 50, copies=16)
    assert layers.count(f) == 17 and len(f) < 1100
    for mp in (None, 64_000_000, 200_000_000):
        with pytest.raises(InvcompError, match="layer 1 \\(residual\\)|add up to") as e:
            decode_any(f, cache={}, max_pixels=mp)
        assert "\n" not in str(e.value)
    codec = load_codec(mode="layered", for_decode=True)  # the API: the codec's own decode, at its default limit
    with pytest.raises(InvcompError, match="add up to 266,342,400 pixels"):
        codec.decode(f)
    with pytest.raises(InvcompError, match="memory budget"):
        codec.decode(rewrite(data, key, 4080, b"\0" * 50))
    # one layer within the budget does reach the residual network; one past it does not
    for side, reaches in ((1024, True), (1600, True), (1696, False)):  # 1,664 px is the largest for a small picture
        one = rewrite(data, key, side, bytes(8))
        with pytest.raises(_Worked if reaches else InvcompError):
            decode_any(one, cache={}, max_pixels=None)
    assert header.width * header.height < 64_000_000 and head


def test_the_budget_formula_and_every_file_kind(layered: tuple[bytes, bytes]) -> None:
    from invcomp.codecs import budget
    from invcomp.codecs.modes.gc import gc_header
    from invcomp.formats import photo as container
    from invcomp.landmarks.align import Placement

    assert budget.memory_budget(64_000_000) == 384 * 2**20 + 16 * 64_000_000
    data, key = layered
    ok = budget.check_file
    # plain: the declared picture; --native skips it
    h = bitstream.Header(model_id=b"\xab\xcd", latent_dim=0, resolution=0, width=5000, height=5000, bits=6,
                         coder="prior", norm=None, mode=0, version=2)
    plain = bitstream.pack_v2(h, 77, bytes(40))
    ok(plain, 25_000_000)
    with pytest.raises(InvcompError, match="5000x5000 = 25,000,000 pixel image, over the limit of 24,999,999"):
        ok(plain, 24_999_999)
    ok(plain, 1000, native=True)
    with pytest.raises(InvcompError, match="layer 2 \\(residual\\) is 64x64"):  # a layer counts with --native too
        ok(data, 1000, native=True)
    # GC and SC: the picture (whatever --native says) and its tiles
    gc = bitstream.pack_v2(gc_header(b"\x01\x02", 8000, 8000, 4), None, b"\x00" * 4)
    ok(gc, 64_000_000)
    with pytest.raises(InvcompError, match="8000x8000"):
        ok(gc, 63_999_999, native=True)
    sc = bitstream.pack_v2(gc_header(b"\x01\x02", 6000, 6000, 5), None, b"\x00" * 4)
    ok(sc, 64_000_000)
    # photo: 64 faces pasted over a 4000x4000 frame (issue 30, item 5's 4,168-byte file) add up to 1 Gpx
    face = rewrite(data, key, 256, bytes(8))
    frame = [container.FaceRecord(Placement(2000, 2000, 6000, 0), data) for _ in range(64)]
    photo = container.pack(container.Photo(4000, 4000, frame))
    with pytest.raises(InvcompError, match="add up to"):
        ok(photo, 64_000_000)
    # photo: every face a layered file: each face's layers count, and their sum
    small = container.pack(container.Photo(300, 200, [container.FaceRecord(Placement(100, 100, 80, 0), face)] * 8))
    ok(small, 64_000_000)
    big_faces = container.pack(container.Photo(300, 200, [container.FaceRecord(None, rewrite(data, key, 1024, bytes(8)))] * 64))
    with pytest.raises(InvcompError, match="add up to"):
        ok(big_faces, 64_000_000)
    with pytest.raises(InvcompError, match="face 1's layer 1"):
        ok(container.pack(container.Photo(300, 200, [container.FaceRecord(None, rewrite(data, key, 2048, bytes(8)))])),
           64_000_000)


def test_the_encoder_refuses_layers_over_the_budget(no_residual_work: None) -> None:
    """Issue 30, item 2 (encode side): ``--layer-rates 3@4080`` (8.8 GB for an 8-layer web job) is refused when the
    codec is made, before any image is looked at; the same budget as decoding."""
    from invcomp.codecs import load_codec
    from invcomp.codecs.modes.layered import check_plan, parse_plan

    for kw in ({"layer_rates": "tone,3@4080"}, {"resolution": 4080}, {"layer_rates": ",".join(["3@2048"] * 8)}):
        with pytest.raises(InvcompError, match="--layer-rates .*(memory budget|add up to)"):
            load_codec("dcgan-utkface64", mode="layered", **kw)
    check_plan(parse_plan("tone,2@128,3@1664", 128, 8), 128, 64_000_000, "x")
    with pytest.raises(InvcompError):
        check_plan(parse_plan("3@1680", 128, 8), 128, 64_000_000, "x")
    check_plan(parse_plan("3@2048", 2048, 8), 2048, 300_000_000, "x")  # a raised limit admits larger layers
    codec = load_codec("dcgan-utkface64", mode="layered", layer_rates="3@1024")
    assert codec.max_pixels == 64_000_000


def test_cli_encode_refuses_a_4080_layer_in_one_line(tmp_path: Path) -> None:
    r = _cli("encode", DEMO_IMAGE, "--mode", "layered", "--layer-rates", "tone,3@4080", "-o", tmp_path / "x.ivc",
             timeout=120)
    assert r.returncode == 1 and len(_error_lines(r)) == 1, r.stderr
    assert "memory budget" in r.stderr and not (tmp_path / "x.ivc").exists()


# --- 3. special files and a byte cap that does not trust stat -------------------------------------------------
def test_read_capped_refuses_devices_fifos_and_sockets_and_caps_what_it_reads(tmp_path: Path) -> None:
    from invcomp.files import read_capped

    with pytest.raises(InvcompError, match="character device"):
        read_capped("/dev/zero", 100)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    out: list[Any] = []

    def read() -> None:
        try:
            read_capped(fifo, 100)
        except InvcompError as e:
            out.append(str(e))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive() and "FIFO" in out[0], out  # refused at once: no writer is waited for
    sock_path = tmp_path / "s"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock_path))
    with pytest.raises(InvcompError, match="socket"):
        read_capped(sock_path, 100)
    s.close()
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 100)
    assert read_capped(f, 100) == b"x" * 100
    with pytest.raises(InvcompError, match="larger than"):
        read_capped(f, 99)
    status = Path("/proc/self/status")  # a regular file whose stat says 0 bytes
    if status.exists() and status.stat().st_size == 0:
        assert read_capped(status, 1 << 20).startswith(b"Name:")
        with pytest.raises(InvcompError, match="larger than"):
            read_capped(status, 10)
    with pytest.raises(InvcompError, match="folder"):
        read_capped(tmp_path, 100)


@pytest.mark.parametrize("command", ["decode", "info"])
def test_dev_zero_and_a_fifo_are_one_line_refusals(command: str, tmp_path: Path) -> None:
    """Issue 30, item 4: ``invcomp decode /dev/zero`` reached 12.7 GB, ``info`` 3.8 GB."""
    fifo = tmp_path / "pipe.ivc"
    os.mkfifo(fifo)
    args = [command, "/dev/zero", fifo] + (["-o", tmp_path / "out"] if command == "decode" else [])
    t0 = time.monotonic()
    r = _cli(*args, timeout=120)
    assert r.returncode == 1, r.stderr[-2000:]
    lines = [line for line in _error_lines(r) if line.startswith("invcomp: error: ")]
    assert len(lines) == 2 and "Traceback" not in r.stderr, r.stderr
    assert "/dev/zero: it is a character device, not a regular file" in lines[0]
    assert "FIFO" in lines[1] and time.monotonic() - t0 < 100


def test_load_image_refuses_a_device() -> None:
    from invcomp.imageio import load_image

    with pytest.raises(InvcompError, match="character device"):
        load_image("/dev/zero")


# --- errors never echo input bytes ------------------------------------------------------------------------------
SECRET = b"Qz7:Xk9#Wv2!Jq5@Zr8%Yp4&Hn6*Lm3+\n"  # what no message says by chance, in any 3 bytes


def _windows(text: bytes) -> set[str]:
    """Every 3 bytes of ``text``, as text and as hex. (A CRC-valid version-2 file's 2-byte model id may be named:
    it is that file's field, which `invcomp models` lists.)"""
    s = text.decode("latin-1")
    return {s[i:i + 3] for i in range(len(s) - 2)} | {text[i:i + 3].hex() for i in range(len(text) - 2)}


@pytest.mark.parametrize("prefix", [b"", b"IVC", b"IVC\x01", b"\xb2", b"\xb2\x01\x02\x60", b"\xb3", b"\xb3\x00"])
def test_errors_never_echo_input_bytes(prefix: bytes, tmp_path: Path) -> None:
    """Issue 30: ``bad magic b'roo'`` for /etc/passwd. No message, of decode or info, quotes the input."""
    from invcomp.faces.decode import decode_any
    from invcomp.service.describe import describe

    data = prefix + SECRET
    for body in (data, data + bitstream.crc16(data)):
        msgs = []
        for fn in (lambda: decode_any(body, cache={}), lambda: describe(body)):
            try:
                fn()
            except InvcompError as e:
                msgs.append(str(e))
        assert msgs, body
        for m in msgs:
            leaked = {w for w in _windows(SECRET) if w in m}
            assert not leaked, (m, leaked)


def test_a_json_file_that_is_not_utf8_is_refused_without_quoting_it(tmp_path: Path) -> None:
    from invcomp.files import read_json_object

    f = tmp_path / "x.json"
    f.write_bytes(b'{"a": "\xfe\xfd"}')
    with pytest.raises(InvcompError) as e:
        read_json_object(f, "settings")
    assert "0xfe" not in str(e.value) and "\\xfe" not in str(e.value) and "not UTF-8" in str(e.value)


# --- 5. the fuzzer reaches residual records, photo files of layered faces, GC and SC files --------------------------
def test_fuzzer_seeds_and_mutators_reach_the_new_records(layered: tuple[bytes, bytes]) -> None:
    from invcomp import fuzz
    from invcomp.formats import photo as container

    data, key = layered
    rng = random.Random(4)
    seeds = [data] + fuzz.photo_seeds([data], rng, 4, layered=True)
    assert any(container.is_photo(s) and any(layers.is_layered(f.data) for f in container.unpack(s).faces)
               for s in seeds)
    seen = set()
    for _ in range(300):
        m = fuzz.mutate(data, "layer", rng, layer_keys=[key])
        try:
            plain, recs = layers.split(m)
        except BitstreamError:
            continue  # an order the container refuses: still CRC-valid, still reached the parser
        for layer, rec in recs:
            layers.check(layer, rec, key, 1)  # the record's CRC is valid under the decoder's key
            if layer.kind == layers.KIND_RESIDUAL:
                seen.add((layer.resolution >= 1024, len(layer.payload) < 8))
    assert {(True, True), (False, False)} <= seen
    for _ in range(50):
        p = fuzz.mutate(seeds[-1], "photo", rng, layer_keys=[key])
        assert container.is_photo(p) and bitstream.crc16(p[:-2]) == p[-2:]


def test_fuzz_sample_over_layered_photo_gc_and_sc_seeds_never_crashes(layered: tuple[bytes, bytes]) -> None:
    from invcomp import fuzz

    data, key = layered
    rng = random.Random(6)
    seeds = [data] + fuzz.photo_seeds([data], rng, 3, layered=True) + fuzz.gc_seeds(rng, 2)
    stats = fuzz.run_fuzz(240, seed=6, seeds=seeds, by_header=True, layer_keys=[key], time_limit=30.0,
                          max_pixels=1_000_000)
    d = stats.as_dict()
    assert d["crashes"] == 0 and d["hangs"] == 0, d["crash_examples"]
    assert {"layer", "photo", "gc"} <= set(d["by_mutator"])
