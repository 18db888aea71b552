"""Byte framing shared by the container formats (pure): the magic bytes of every file kind, CRC-16, minimal LEB128
varints and a bounds-checked reader."""
from __future__ import annotations

import binascii
import struct

from invcomp.errors import BitstreamError

# The first bytes of each file kind (:func:`invcomp.formats.sniff.sniff` tells them apart): the only place they are written.
MAGIC_V1 = b"IVC"  # version 1: b"IVC", then the version byte
MAGIC_V2 = 0xB2  # version 2, and layered files (mode 3 in the flags)
MAGIC_PHOTO = 0xB3  # a photo file: the frame, its placements and face files, the background


def crc16(data: bytes) -> bytes:
    """CRC-16/CCITT of ``data`` (initial 0xFFFF), big-endian: catches every error burst of up to 16 bits."""
    return struct.pack(">H", binascii.crc_hqx(data, 0xFFFF))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise BitstreamError(f"truncated .ivc file: ends inside the {what} field at byte {len(self.data)}")
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def varint(self, what: str, limit: int) -> int:
        n = shift = 0
        max_bytes = max(1, -(-limit.bit_length() // 7))  # a minimal varint of a value <= limit is never longer
        while True:
            if shift >= 7 * max_bytes:
                raise BitstreamError(f"invalid .ivc field: {what} is longer than {max_bytes} bytes")
            b = self.take(1, what)[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if n > limit:
                raise BitstreamError(f"invalid .ivc field: {what} exceeds {limit}")
            if not b & 0x80:
                if b == 0 and shift > 7:
                    raise BitstreamError(f"invalid .ivc field: {what} is not a minimal varint")
                return n
