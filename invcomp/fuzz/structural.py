"""The fuzzer's structural mutators: CRC-valid files with header fields at edge values, mode and model-id
swaps, and files built from scratch, for both format versions (used by :mod:`invcomp.fuzz`)."""
from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass
from typing import Optional

from invcomp.formats import ivc as bitstream
from invcomp.formats.framing import MAGIC_PHOTO
from invcomp.errors import InvcompError


def _recrc(body: bytes) -> bytes:
    """``body`` with a valid CRC of its version (CRC-16 for version 2 and photo files, CRC-32 for version 1)."""
    if body[:1] in (bytes([bitstream.MAGIC_V2]), PHOTO):
        return body + bitstream.crc16(body)
    return body + struct.pack(">I", zlib.crc32(body))


def _body(b: bytes) -> bytearray:
    return bytearray(b[:-2] if b[:1] in (bytes([bitstream.MAGIC_V2]), PHOTO) else b[:-4])


PHOTO = bytes([MAGIC_PHOTO])


EDGES = {
    "latent": [0, 1, 2, 7, 8, 99, 100, 101, 127, 128, 255, 256, 511, 512, 513, 65535, 65536, 2**21 - 1],
    "res": [0, 1, 2, 8, 63, 64, 65, 128, 4096, 4097, 2**14],
    "width": [0, 1, 2, 64, 65535, 65536, 2**21 - 1],
    "height": [0, 1, 2, 64, 65535, 65536, 2**21 - 1],
    "bits": [0, 1, 2, 3, 15, 16, 17, 31, 63],
    "coder": [0, 1, 2, 3],
    "mode": list(range(8)),
    "norm": [b"\x00\x00", b"\x80\x00", b"\x7c\x00", b"\xfc\x00", b"\x7e\x00", b"\x7b\xff", b"\x00\x01", b"\xbc\x00", None],
    "nbits": [0, 1, 7, 8, 9, 2**14, 2**21 - 1],
}
"""Edge values for each header field (out-of-range ones included), for the structural mutators."""


@dataclass
class RawV1:
    """A version-1 file as raw field values, written without any range check (for structural mutation)."""

    model_id: bytes
    flags: int
    quant: int
    latent: int
    res: int
    width: int
    height: int
    norm: Optional[bytes]  # 2 bytes of float16, or None (absent)
    nbits: int
    payload: bytes
    version: int = 1

    @classmethod
    def parse(cls, data: bytes) -> "RawV1":
        header, payload, nbits = bitstream.unpack(data)
        tmp = bitstream.pack(header, payload, nbits)
        norm = None if header.norm is None else struct.pack(">e", header.norm)
        return cls(header.model_id, tmp[8], tmp[9], header.latent_dim, header.resolution, header.width, header.height,
                   norm, nbits, payload)

    def pack(self) -> bytes:
        out = bytearray(bitstream.MAGIC) + bytes([self.version & 0xFF]) + self.model_id
        out += bytes([self.flags & 0xFF, self.quant & 0xFF])
        for v in (self.latent, self.res, self.width, self.height):
            out += bitstream._varint(v)
        if self.norm is not None:
            out += self.norm
        out += bitstream._varint(self.nbits) + self.payload
        return _recrc(bytes(out))


def _structural_v2(data: bytes, kind: str, rng: random.Random, model_ids: list[bytes]) -> bytes:
    """CRC-valid structural mutations of a version-2 file: the flags, size, norm byte and payload at edge
    values, mode and model-id swaps (``model_ids`` cut to 2 bytes), or a version-2 file from scratch."""
    header, rest, _ = bitstream.unpack(data)
    ids = [m for m in model_ids if len(m) == 2] + [m[:2] for m in model_ids if len(m) == 4] + [bytes(2), b"\xff\xff"]
    mid, flags = header.model_id, data[3]
    width, height, escape = header.width, header.height, bool(flags & 1)
    if kind == "scratch":
        mid, flags, rest = rng.choice(ids + [rng.randbytes(2)]), rng.randrange(256), rng.randbytes(rng.randrange(0, 80))
        width, height, escape = rng.choice(EDGES["width"][1:4]), rng.choice(EDGES["height"][1:4]), bool(flags & 1)
    elif kind == "swap":
        mid = rng.choice(ids + [rng.randbytes(2)])
        if rng.random() < 0.7:
            flags = (flags & 0x1F) | (rng.randrange(8) << 5)
    else:
        field_ = rng.choice(["mode", "fit", "bits", "escape", "width", "height", "norm", "payload"])
        if field_ == "mode":
            flags = (flags & 0x1F) | (rng.randrange(8) << 5)
        elif field_ == "fit":
            flags ^= 0x10
        elif field_ == "bits":
            flags = (flags & ~0x0E) | (rng.randrange(8) << 1)
        elif field_ == "escape":
            escape = not escape
        elif field_ in ("width", "height"):
            v = rng.choice([1, 2, 4095, 4096, 4097, 65535, 65536])
            width, height = (v, height) if field_ == "width" else (width, v)
            escape = escape or v > 4096
        elif field_ == "norm":
            rest = bytes([rng.choice([0, 1, 128, 255])]) + rest[1:]
        else:
            rest = rng.choice([rest[:-1], rest + bytes([rng.randrange(256)]), b"", rest[:1]])
    out = bytearray([bitstream.MAGIC_V2]) + mid + bytes([(flags & ~1) | escape])
    if escape:
        out += bitstream._varint(width) + bitstream._varint(height)
    else:
        out += (((width - 1) & 0xFFF) << 12 | ((height - 1) & 0xFFF)).to_bytes(3, "big")
    return _recrc(bytes(out + rest))


def structural(data: bytes, kind: str, rng: random.Random, model_ids: list[bytes]) -> Optional[bytes]:
    """A CRC-valid structural mutation (``edge_field``, ``swap`` or ``scratch``) of a parseable file; ``None``
    when ``data`` does not parse."""
    if data[:1] == bytes([bitstream.MAGIC_V2]) and (kind != "scratch" or rng.random() < 0.5):
        try:
            return _structural_v2(data, kind, rng, model_ids)
        except InvcompError:
            return None
    model_ids = [m for m in model_ids if len(m) == 4] or [bytes(data[4:8])]
    if kind == "scratch":
        return _scratch_v1(rng, model_ids)
    try:
        raw = RawV1.parse(data)
    except InvcompError:  # not parseable: the caller mutates its header bytes instead
        return None
    if kind == "edge_field":
        for name in rng.sample(sorted(EDGES), rng.randint(1, 3)):
            v = rng.choice(EDGES[name])
            if name == "bits":
                raw.quant = (raw.quant & 3) | (v << 2)
            elif name == "coder":
                raw.quant = (raw.quant & ~3) | v
            elif name == "mode":
                raw.flags = (raw.flags & 0x1F) | (v << 5)
            elif name == "norm":
                raw.norm = v
                raw.flags = raw.flags | 0x10 if v is None else raw.flags & ~0x10
            elif name == "nbits":
                raw.nbits = rng.choice([v, max(0, raw.nbits - 1), raw.nbits + 1])
            else:
                setattr(raw, name, v)
    elif kind == "swap":
        raw.model_id = rng.choice(model_ids + [bytes(4), b"\xff" * 4, rng.randbytes(4)])
        if rng.random() < 0.7:
            raw.flags = (raw.flags & 0x1F) | (rng.randrange(8) << 5)
    return raw.pack()


def _scratch_v1(rng: random.Random, model_ids: list[bytes]) -> bytes:
    """A version-1 file built from scratch, field by field, with edge values."""
    raw = RawV1(rng.choice(model_ids + [rng.randbytes(4)]), rng.randrange(256), rng.randrange(256),
                *(rng.choice(EDGES[f] + [rng.randrange(1, 70000)]) for f in ("latent", "res", "width", "height")),
                rng.choice(EDGES["norm"]), 0, b"", version=rng.choice([1, 1, 1, 0, 2, 255]))
    raw.flags = raw.flags | 0x10 if raw.norm is None else raw.flags & ~0x10
    raw.payload = rng.randbytes(rng.choice([0, 1, rng.randrange(1, 600)]))
    raw.nbits = rng.choice([8 * len(raw.payload), max(0, 8 * len(raw.payload) - rng.randrange(8)), rng.randrange(5000)])
    return raw.pack()
