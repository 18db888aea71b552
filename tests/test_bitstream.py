"""Tests for :mod:`invcomp.formats.ivc` (the ``.ivc`` container).

Expected bytes are written out by hand from the layout table in the module
docstring, not produced by the module itself.
"""
from __future__ import annotations

import struct
import time
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from invcomp.formats.ivc import Header, pack, unpack
from invcomp.errors import BitstreamError, InvcompError

MODEL_ID = bytes.fromhex("52c46b11")


def sample_header(**kw) -> Header:
    fields = dict(
        model_id=MODEL_ID, latent_dim=100, resolution=64, width=124, height=124, bits=6, coder="gamma",
        norm=9.5, scaling="l2", rounding="nearest", prior="normal", fit="crop",
    )
    fields.update(kw)
    return Header(**fields)


PAYLOAD, NBITS = b"\xa3\x80", 9

# The sample file, byte by byte.
BODY = (
    b"IVC"                      # magic
    + b"\x01"                   # version 1
    + b"\x52\xc4\x6b\x11"       # model id
    + b"\x08"                   # flags: prior normal 0, fit crop 0, nearest 0, scaling l2 -> bit 3 = 0x08, norm present
    + b"\x18"                   # quant: 6 << 2 | gamma(0) = 24 = 0x18
    + b"\x64"                   # latent 100
    + b"\x40"                   # resolution 64
    + b"\x7c"                   # width 124
    + b"\x7c"                   # height 124
    + b"\x48\xc0"               # float16 9.5 = 0 10010 0011000000
    + b"\x09"                   # nbits 9
    + b"\xa3\x80"               # payload: ceil(9 / 8) = 2 bytes
)
EXPECTED = BODY + zlib.crc32(BODY).to_bytes(4, "big")
# Offsets into EXPECTED (for the truncation / corruption tests).
OFF_FLAGS, OFF_QUANT, OFF_LATENT, OFF_NBITS, OFF_PAYLOAD = 8, 9, 10, 16, 17
OFF_CRC = len(BODY)


def with_crc(body: bytes) -> bytes:
    """A body followed by its (correct) CRC32, so the error found is the one under test, not the CRC."""
    return body + struct.pack(">I", zlib.crc32(body))


def replace(data: bytes, pos: int, new: bytes, n_old: int = 1) -> bytes:
    return data[:pos] + new + data[pos + n_old:]


# ---------------------------------------------------------------- byte-exact layout


def test_float16_constant_is_what_the_table_says() -> None:
    assert struct.pack(">e", 9.5) == b"\x48\xc0"
    assert len(EXPECTED) == 23


def test_pack_is_byte_exact() -> None:
    assert pack(sample_header(), PAYLOAD, NBITS) == EXPECTED


def test_unpack_of_hand_made_bytes() -> None:
    header, payload, nbits = unpack(EXPECTED)
    assert header == sample_header()
    assert (payload, nbits) == (PAYLOAD, NBITS)
    assert header.norm == 9.5 and header.bits == 6 and header.coder == "gamma"


def test_unpack_accepts_bytearray_and_memoryview() -> None:
    assert unpack(bytearray(EXPECTED))[0] == sample_header()
    assert unpack(memoryview(EXPECTED))[0] == sample_header()


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"), (16383, b"\xff\x7f"),
     (16384, b"\x80\x80\x01"), (65535, b"\xff\xff\x03")],
)
def test_varint_width(value: int, encoded: bytes) -> None:
    # 300 = 0b10_0101100 -> low group 0101100 | 0x80 = 0xac, then 0b10 = 0x02.
    data = pack(sample_header(width=value), PAYLOAD, NBITS)
    start = OFF_LATENT + 2  # after latent (1 byte) and resolution (1 byte)
    assert data[start:start + len(encoded)] == encoded
    assert data[start + len(encoded)] == 0x7C  # height follows immediately
    assert len(data) == len(EXPECTED) + len(encoded) - 1
    assert unpack(data)[0].width == value


def test_multi_byte_varints_everywhere() -> None:
    h = sample_header(latent_dim=512, resolution=4096, width=300, height=65535, bits=16, coder="omega")
    body = (
        b"IVC\x01" + MODEL_ID + b"\x08"
        + bytes([16 << 2 | 2])        # 0x42
        + b"\x80\x04"                 # 512 = 4 * 128
        + b"\x80\x20"                 # 4096 = 32 * 128
        + b"\xac\x02"                 # 300
        + b"\xff\xff\x03"             # 65535
        + b"\x48\xc0"
        + b"\x09" + PAYLOAD
    )
    assert pack(h, PAYLOAD, NBITS) == with_crc(body)
    assert unpack(with_crc(body))[0] == h


@pytest.mark.parametrize(
    ("kw", "flags"),
    [
        ({}, 0x08),
        ({"scaling": "max"}, 0x00),
        ({"prior": "uniform"}, 0x09),
        ({"fit": "squash"}, 0x0A),
        ({"rounding": "stochastic"}, 0x0C),
        ({"prior": "uniform", "fit": "squash", "rounding": "stochastic", "scaling": "max"}, 0x07),
        ({"prior": "uniform", "fit": "squash", "rounding": "stochastic"}, 0x0F),
    ],
)
def test_flags_byte(kw: dict, flags: int) -> None:
    data = pack(sample_header(**kw), PAYLOAD, NBITS)
    assert data[OFF_FLAGS] == flags
    assert data == with_crc(replace(BODY, OFF_FLAGS, bytes([flags])))
    assert unpack(data)[0] == sample_header(**kw)


@pytest.mark.parametrize(("coder", "quant"), [("gamma", 0x18), ("delta", 0x19), ("omega", 0x1A)])
def test_quant_byte_coders(coder: str, quant: int) -> None:
    data = pack(sample_header(coder=coder), PAYLOAD, NBITS)
    assert data[OFF_QUANT] == quant


@pytest.mark.parametrize(("bits", "quant"), [(2, 0x08), (16, 0x40)])
def test_quant_byte_bit_depths(bits: int, quant: int) -> None:
    assert pack(sample_header(bits=bits), PAYLOAD, NBITS)[OFF_QUANT] == quant


def test_norm_free_omits_the_norm_field() -> None:
    h = sample_header(norm=None)
    body = b"IVC\x01" + MODEL_ID + b"\x18\x18\x64\x40\x7c\x7c" + b"\x09" + PAYLOAD  # flags 0x08 | 0x10
    data = pack(h, PAYLOAD, NBITS)
    assert data == with_crc(body)
    assert len(data) == len(EXPECTED) - 2
    assert unpack(data) == (h, PAYLOAD, NBITS)


def test_empty_payload() -> None:
    body = BODY[:OFF_NBITS] + b"\x00"
    assert pack(sample_header(), b"", 0) == with_crc(body)
    assert unpack(with_crc(body)) == (sample_header(), b"", 0)


def test_max_payload_bits_by_hand() -> None:
    # 32 * 100 + 64 = 3264 bits = 408 bytes; 3264 = 0b11001_1000000 -> varint 0xc0 0x19
    payload = bytes(408)
    data = pack(sample_header(), payload, 3264)
    assert data[OFF_NBITS:OFF_NBITS + 2] == b"\xc0\x19"
    assert unpack(data)[2] == 3264
    with pytest.raises(BitstreamError):
        pack(sample_header(), payload + b"\x00", 3265)
    over = with_crc(BODY[:OFF_NBITS] + b"\xc1\x19" + payload + b"\x00")
    with pytest.raises(BitstreamError, match="payload bit length"):
        unpack(over)


# ---------------------------------------------------------------- pack refuses bad input


@pytest.mark.parametrize(
    "kw",
    [
        {"model_id": b"\x00" * 3}, {"latent_dim": 0}, {"latent_dim": 65536}, {"resolution": 4097},
        {"width": 0}, {"height": 65536}, {"bits": 1}, {"bits": 17}, {"coder": "rice"}, {"scaling": "l1"},
        {"rounding": "up"}, {"prior": "laplace"}, {"fit": "pad"}, {"mode": 8}, {"mode": -1}, {"norm": -1.0},
        {"norm": 70000.0}, {"norm": float("nan")}, {"norm": float("inf")},
    ],
)
def test_pack_rejects_invalid_header(kw: dict) -> None:
    with pytest.raises(BitstreamError, match="invalid .ivc field"):
        pack(sample_header(**kw), PAYLOAD, NBITS)


@pytest.mark.parametrize(("payload", "nbits"), [(b"\xa3", 9), (b"\xa3\x80\x00", 9), (b"", 1), (b"\x00", -1)])
def test_pack_rejects_payload_size_mismatch(payload: bytes, nbits: int) -> None:
    with pytest.raises(BitstreamError, match="payload"):
        pack(sample_header(), payload, nbits)


# ---------------------------------------------------------------- hypothesis round trip


def _f16(bits16: int) -> float:
    return struct.unpack(">e", bits16.to_bytes(2, "big"))[0]


finite_nonneg_f16 = st.integers(0, 0x7BFF).map(_f16)  # sign 0, exponent < 31: every finite float16 >= 0

headers = st.builds(
    Header,
    model_id=st.binary(min_size=4, max_size=4),
    latent_dim=st.integers(1, 65535),
    resolution=st.integers(1, 4096),
    width=st.integers(1, 65535),
    height=st.integers(1, 65535),
    bits=st.integers(2, 16),
    coder=st.sampled_from(["gamma", "delta", "omega"]),
    norm=st.none() | finite_nonneg_f16,
    scaling=st.sampled_from(["max", "l2"]),
    rounding=st.sampled_from(["nearest", "stochastic"]),
    prior=st.sampled_from(["normal", "uniform"]),
    fit=st.sampled_from(["crop", "squash"]),
)


@st.composite
def files(draw):
    h = draw(headers)
    nbits = draw(st.integers(0, min(32 * h.latent_dim + 64, 2000)))
    payload = bytearray(draw(st.binary(min_size=(nbits + 7) // 8, max_size=(nbits + 7) // 8)))
    if nbits % 8:
        payload[-1] &= 0xFF ^ (0xFF >> (nbits % 8))  # canonical: padding bits are zero
    return h, bytes(payload), nbits


@settings(max_examples=300, deadline=None)
@given(files())
def test_round_trip(f) -> None:
    h, payload, nbits = f
    data = pack(h, payload, nbits)
    assert data[:4] == b"IVC\x01"
    assert zlib.crc32(data[:-4]) == int.from_bytes(data[-4:], "big")
    assert data[-4 - len(payload):-4] == payload
    assert unpack(data) == (h, payload, nbits)


# ---------------------------------------------------------------- error cases


def test_bitstream_error_is_a_value_error() -> None:
    assert issubclass(BitstreamError, InvcompError) and issubclass(BitstreamError, ValueError)


@pytest.mark.parametrize("data", [b"PNG\x01" + EXPECTED[4:], b"ivc" + EXPECTED[3:], b"\x89PNG\r\n\x1a\n", b"X", b"IX"])
def test_bad_magic(data: bytes) -> None:
    with pytest.raises(BitstreamError, match="magic"):
        unpack(data)


@pytest.mark.parametrize("data", [b"root:x:0:0:root:/root:/bin/bash\n", b"\x89PNG\r\n\x1a\n", b"X", b"IX", b"\x00\x01"])
def test_bad_magic_names_every_magic_and_echoes_no_byte_of_the_input(data: bytes) -> None:
    with pytest.raises(BitstreamError) as e:
        unpack(data)
    msg = str(e.value)
    assert msg.startswith("not an invcomp file (unknown magic") and "\n" not in msg, msg
    for magic in ("b'IVC'", "0xB2", "0xB3"):  # version 1, version 2 (and layered), photo files
        assert magic in msg, (magic, msg)
    assert data[:3].decode("latin-1") not in msg.replace("IVC", "") and repr(data[:3]) not in msg, msg


@pytest.mark.parametrize("version", [0, 2, 255])
def test_unknown_version(version: int) -> None:
    data = with_crc(replace(BODY, 3, bytes([version])))
    with pytest.raises(BitstreamError, match="version"):
        unpack(data)


@pytest.mark.parametrize("sample", ["norm", "norm_free"])
def test_truncation_at_every_length(sample: str) -> None:
    full = EXPECTED if sample == "norm" else pack(sample_header(norm=None), PAYLOAD, NBITS)
    for cut in range(len(full)):
        with pytest.raises(BitstreamError, match="truncated") as ei:
            unpack(full[:cut])
        assert "\n" not in str(ei.value)
    assert unpack(full)[2] == NBITS


def test_truncation_names_the_field() -> None:
    with pytest.raises(BitstreamError, match="payload"):
        unpack(EXPECTED[:OFF_PAYLOAD + 1])
    with pytest.raises(BitstreamError, match="crc32"):
        unpack(EXPECTED[:OFF_CRC + 2])
    with pytest.raises(BitstreamError, match="norm"):
        unpack(EXPECTED[:15])


@pytest.mark.parametrize("bit", range(16))
def test_crc_mismatch_for_flipped_payload_bit(bit: int) -> None:
    data = bytearray(EXPECTED)
    data[OFF_PAYLOAD + bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(BitstreamError, match="CRC"):
        unpack(bytes(data))


def test_crc_mismatch_for_wrong_crc() -> None:
    with pytest.raises(BitstreamError, match="CRC"):
        unpack(EXPECTED[:-1] + bytes([EXPECTED[-1] ^ 0x01]))


@pytest.mark.parametrize("extra", [b"\x00", b"IVC", EXPECTED])
def test_trailing_bytes(extra: bytes) -> None:
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        unpack(EXPECTED + extra)


@pytest.mark.parametrize(
    ("quant", "word"),
    [(17 << 2, "bits 17"), (31 << 2, "bits 31"), (1 << 2, "bits 1"), (0 << 2, "bits 0"),
     (6 << 2 | 3, "quantiser byte"), (0x80 | 6 << 2, "quantiser byte")],
)
def test_out_of_range_quant_byte_with_valid_crc(quant: int, word: str) -> None:
    data = with_crc(replace(BODY, OFF_QUANT, bytes([quant])))
    with pytest.raises(BitstreamError, match=word):
        unpack(data)


@pytest.mark.parametrize("flags", [0xC0, 0xE8])  # modes 6 and 7 (0-5 are taken: 4 GC, 5 SC)
def test_unknown_mode_with_valid_crc(flags: int) -> None:
    # The container carries any mode 0..7 (three flag bits); the codec table refuses one it does not know.
    from invcomp.codecs import codec_for_header
    from invcomp.errors import InvcompError

    header = unpack(with_crc(replace(BODY, OFF_FLAGS, bytes([flags]))))[0]
    assert header.mode == flags >> 5
    with pytest.raises(InvcompError, match=f"mode {flags >> 5}, which this invcomp does not know"):
        codec_for_header(header)


@pytest.mark.parametrize(
    ("norm16", "ok"),
    [(b"\x7c\x00", False), (b"\x7e\x00", False), (b"\xbc\x00", False), (b"\x7b\xff", True), (b"\x00\x00", True)],
)
def test_norm_values_with_valid_crc(norm16: bytes, ok: bool) -> None:
    # +inf, NaN, -1.0 are refused; 65504 (largest finite) and 0 are fine.
    data = with_crc(replace(BODY, 14, norm16, 2))
    if ok:
        assert unpack(data)[0].norm == struct.unpack(">e", norm16)[0]
    else:
        with pytest.raises(BitstreamError, match="norm"):
            unpack(data)


@pytest.mark.parametrize(
    ("pos", "old_len", "new", "word"),
    [
        (OFF_LATENT, 1, b"\x00", "latent dim 0"),                      # 0 is out of range 1..65535
        (OFF_LATENT, 1, b"\x80\x80\x04", "latent dim"),                 # 65536
        (OFF_LATENT + 1, 1, b"\x81\x20", "resolution"),                 # 4097
        (OFF_LATENT + 2, 1, b"\x00", "image size"),                     # width 0
        (OFF_LATENT + 3, 1, b"\x80\x80\x04", "height"),                 # 65536
    ],
)
def test_out_of_range_sizes_with_valid_crc(pos: int, old_len: int, new: bytes, word: str) -> None:
    with pytest.raises(BitstreamError, match=word):
        unpack(with_crc(replace(BODY, pos, new, old_len)))


def _fast_and_small(data: bytes, word: str) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(BitstreamError, match=word):
            unpack(data)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 0.5
    assert peak < 4 * len(data) + 200_000  # nothing sized by the declared length


def test_huge_latent_dim_rejected_without_allocating() -> None:
    huge = b"\xff" * 9 + b"\x7f"  # a 70-bit varint
    _fast_and_small(with_crc(replace(BODY, OFF_LATENT, huge)), "latent dim")


def test_huge_nbits_rejected_without_allocating() -> None:
    huge = b"\xff" * 8 + b"\x0f"  # about 2**60 bits
    _fast_and_small(with_crc(replace(BODY, OFF_NBITS, huge)), "payload bit length")
    # just over the bound for D = 100 (3265 bits), without the payload present: a field error, not "truncated"
    _fast_and_small(BODY[:OFF_NBITS] + b"\xc1\x19", "payload bit length")


def test_endless_varint_is_refused_after_its_longest_legal_length() -> None:
    data = BODY[:OFF_LATENT] + b"\x80" * 100_000  # value stays 0, never ends
    with pytest.raises(BitstreamError, match="latent dim is longer than 3 bytes"):
        unpack(data)
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(BODY[:OFF_LATENT] + b"\x80\x80")


def test_exhaustive_single_byte_corruption() -> None:
    samples = [EXPECTED, pack(sample_header(norm=None, prior="uniform"), PAYLOAD, NBITS)]
    checked = 0
    for good in samples:
        for pos in range(len(good)):
            for value in range(256):
                if value == good[pos]:
                    continue
                bad = good[:pos] + bytes([value]) + good[pos + 1:]
                try:
                    result = unpack(bad)
                except BitstreamError:
                    checked += 1
                    continue
                raise AssertionError(f"corrupt byte {pos}={value:#04x} accepted: {result}")
    assert checked == 255 * (len(samples[0]) + len(samples[1]))


def test_non_canonical_files_are_refused() -> None:
    """A file that parses must re-pack to the same bytes: no over-long varints, no set padding bits."""
    h = Header(model_id=b"\x01\x02\x03\x04", latent_dim=100, resolution=64, width=124, height=124, bits=6,
               coder="gamma", norm=9.5)
    with pytest.raises(BitstreamError, match="padding"):
        pack(h, b"\x81", 1)  # the single code bit is 1, a padding bit is set
    good = pack(h, b"\x80", 1)
    body = bytearray(good[:-4])
    body[-1] |= 0x01  # set a padding bit in the payload byte (the last before the CRC), then fix the CRC
    bad = bytes(body) + struct.pack(">I", zlib.crc32(bytes(body)))
    with pytest.raises(BitstreamError, match="padding"):
        unpack(bad)
    i = good.index(bytes([100]), 10)  # the latent-dim varint
    body = good[:i] + bytes([100 | 0x80, 0x00]) + good[i + 1:-4]  # 100 written in two bytes
    with pytest.raises(BitstreamError, match="minimal"):
        unpack(body + struct.pack(">I", zlib.crc32(body)))
