"""The ``.ivc`` container: header fields + payload + CRC32 <-> bytes (pure).

Layout of format version 1 (multi-byte integers big-endian; ``varint`` is
unsigned LEB128: 7 bits per byte, low group first, high bit = "more"):

=====  =========  ==========================================================
bytes  field      meaning
=====  =========  ==========================================================
3      magic      ``b"IVC"``
1      version    1
4      model id   first 4 bytes of sha256 of the generator's weights file
1      flags      bit 0 prior (0 normal, 1 uniform); bit 1 fit (0 crop,
                  1 squash); bit 2 rounding (0 nearest, 1 stochastic);
                  bit 3 scaling (0 max, 1 l2); bit 4 norm-free (no norm
                  field); bits 5-7 mode (0 GAN inversion, 1 VAE-GAN,
                  2 inversion+tone, whose payload starts with its
                  8-byte tone record; 3 layered, version 2 only, see
                  :mod:`invcomp.formats.layered`; others refused by the table)
1      quant      ``bits << 2 | coder``; bits 2..16, coder 0 gamma,
                  1 delta, 2 omega; bit 7 is 0
var    latent     latent dimension D, varint (1..65535); in mode 1 the
                  number of coded symbols C*h*w of the code map
var    res        model resolution R, varint (1..4096)
var    width      original width, varint (1..65535)
var    height     original height, varint (1..65535)
2      norm       float16 (absent when the norm-free flag is set)
var    nbits      payload length in bits, varint (<= 32 * D + 64)
n      payload    ``ceil(nbits / 8)`` bytes of Elias codes, zero-padded
4      crc32      CRC-32 (zlib) of every byte before it
=====  =========  ==========================================================

Format version 2 (the default where the model ships a prior; see :mod:`invcomp.coding.tables`) keeps only what the
model does not imply:

=====  =========  ==========================================================
bytes  field      meaning
=====  =========  ==========================================================
1      magic      ``0xB2`` (version 1 files begin with ``I``)
2      model id   first 2 bytes of sha256 over the weights', config's and
                  prior's sha256 (:func:`registry.decode_id`)
1      flags      bits 7-5 mode; bit 4 fit (0 crop, 1 squash); bits 3-1
                  bits - 2 (bit depth 2..9); bit 0 size escape
3      size       (width - 1) << 12 | (height - 1) when both are <= 4096;
                  else (escape bit) varint width, varint height
1      norm       code k in 1..255: norm = k * unit (the prior's); absent
                  for norm-free models (implied by the model)
n      payload    (mode 2: the tone record) levels range-coded (:mod:`prior`)
2      crc16      CRC-16/CCITT (initial 0xFFFF) of every byte before it
=====  =========  ==========================================================

Latent dimension, resolution and scaling come from the model; rounding is not stored. :func:`unpack` parses
both versions; for version 2 the model-implied fields are 0 / ``None``, and the norm byte and payload
come back as one "rest" for the codec to split.

The version-1 payload holds, per latent coordinate, Elias(|q| + 1) then a sign bit
(1 = negative) when q != 0 (see :mod:`invcomp.coding.elias`). Every declared size
is checked against these limits before anything is allocated. Files are
canonical: varints are minimal and padding bits are zero, so a file that
parses re-packs to the same bytes.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, replace
from typing import Optional

from invcomp.formats import layered as layers
from invcomp.errors import BitstreamError
from invcomp.formats.framing import MAGIC_PHOTO, MAGIC_V1, MAGIC_V2, _Reader, _varint, crc16  # noqa: F401  (crc16 re-exported)

MAGIC = MAGIC_V1
VERSION = 1
MODEL_ID_BYTES = 4
CODER_IDS = {"gamma": 0, "delta": 1, "omega": 2}
MODE_INVERSION, MODE_VAEGAN, MODE_INVERSION_TONE, MODE_LAYERED = 0, 1, 2, 3
MAX_LATENT, MAX_RES, MAX_SIDE = 65535, 4096, 65535
MODEL_ID_BYTES_V2 = 2
BITS_V2 = (2, 9)
SMALL_SIDE = 4096


@dataclass(frozen=True)
class Header:
    """Everything but the payload. ``norm`` is ``None`` for norm-free generators."""

    model_id: bytes
    latent_dim: int
    resolution: int
    width: int
    height: int
    bits: int
    coder: str
    norm: Optional[float]
    scaling: str = "max"
    rounding: str = "nearest"
    prior: str = "normal"
    fit: str = "crop"
    mode: int = 0
    version: int = VERSION

    def validate(self) -> None:
        """Raise :class:`BitstreamError` for any field outside its range."""
        if self.version == 2:
            return validate_v2(self)
        checks = [
            (len(self.model_id) == MODEL_ID_BYTES, f"model id must be {MODEL_ID_BYTES} bytes"),
            (1 <= self.latent_dim <= MAX_LATENT, f"latent dim {self.latent_dim} out of range 1..{MAX_LATENT}"),
            (1 <= self.resolution <= MAX_RES, f"resolution {self.resolution} out of range 1..{MAX_RES}"),
            (1 <= self.width <= MAX_SIDE and 1 <= self.height <= MAX_SIDE,
             f"image size {self.width}x{self.height} out of range 1..{MAX_SIDE}"),
            (2 <= self.bits <= 16, f"bits {self.bits} out of range 2..16"),
            (self.coder in CODER_IDS, f"unknown coder {self.coder!r}"),
            (self.scaling in ("max", "l2"), f"unknown scaling {self.scaling!r}"),
            (self.rounding in ("nearest", "stochastic"), f"unknown rounding {self.rounding!r}"),
            (self.prior in ("normal", "uniform"), f"unknown prior {self.prior!r}"),
            (self.fit in ("crop", "squash"), f"unknown fit {self.fit!r}"),
            (isinstance(self.mode, int) and 0 <= self.mode <= 7, f"mode {self.mode} out of range 0..7"),
            (self.norm is None or (0.0 <= self.norm <= 65504.0), f"norm {self.norm} is not a finite float16 >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise BitstreamError(f"invalid .ivc field: {msg}")


def validate_v2(h: "Header") -> None:
    """The version-2 fields' ranges (:class:`BitstreamError`)."""
    checks = [
        (len(h.model_id) == MODEL_ID_BYTES_V2, f"model id must be {MODEL_ID_BYTES_V2} bytes"),
        (1 <= h.width <= MAX_SIDE and 1 <= h.height <= MAX_SIDE, f"image size {h.width}x{h.height} out of range 1..{MAX_SIDE}"),
        (BITS_V2[0] <= h.bits <= BITS_V2[1], f"bits {h.bits} out of range {BITS_V2[0]}..{BITS_V2[1]}"),
        (h.fit in ("crop", "squash"), f"unknown fit {h.fit!r}"),
        (isinstance(h.mode, int) and 0 <= h.mode <= 7, f"mode {h.mode} out of range 0..7"),
    ]
    for ok, msg in checks:
        if not ok:
            raise BitstreamError(f"invalid .ivc field: {msg}")


def pack_v2(header: "Header", norm_code: "int | None", payload: bytes) -> bytes:
    """A version-2 file: ``norm_code`` is the norm byte (``None``: norm-free) and ``payload`` the coded levels."""
    validate_v2(header)
    escape = header.width > SMALL_SIDE or header.height > SMALL_SIDE
    flags = header.mode << 5 | (header.fit == "squash") << 4 | (header.bits - BITS_V2[0]) << 1 | escape
    out = bytearray([MAGIC_V2]) + header.model_id + bytes([flags])
    if escape:
        out += _varint(header.width) + _varint(header.height)
    else:
        out += ((header.width - 1) << 12 | (header.height - 1)).to_bytes(3, "big")
    if norm_code is not None:
        if not 1 <= norm_code <= 255:
            raise BitstreamError(f"norm code {norm_code} out of range 1..255")
        out.append(norm_code)
    out += payload
    return bytes(out + crc16(bytes(out)))


def _unpack_v2(data: bytes) -> tuple["Header", bytes, int]:
    if len(data) < 9:  # magic, id, flags, size, crc: the shortest possible file
        raise BitstreamError(f"truncated .ivc file: only {len(data)} bytes")
    if crc16(data[:-2]) != data[-2:]:
        raise BitstreamError("corrupt .ivc file: CRC-16 mismatch")
    r = _Reader(data[:-2])
    r.pos = 1
    model_id = r.take(MODEL_ID_BYTES_V2, "model id")
    flags = r.take(1, "flags")[0]
    if flags & 1:
        width, height = r.varint("width", MAX_SIDE), r.varint("height", MAX_SIDE)
        if width <= SMALL_SIDE and height <= SMALL_SIDE:
            raise BitstreamError("invalid .ivc field: a size escape for a size that fits 12 bits (not canonical)")
    else:
        packed = int.from_bytes(r.take(3, "size"), "big")
        width, height = (packed >> 12) + 1, (packed & 0xFFF) + 1
    header = Header(model_id=model_id, latent_dim=0, resolution=0, width=width, height=height,
                    bits=((flags >> 1) & 7) + BITS_V2[0], coder="prior", norm=None, scaling="l2", rounding="nearest",
                    prior="normal", fit="squash" if flags & 0x10 else "crop", mode=flags >> 5, version=2)
    header.validate()
    rest = data[r.pos:-2]
    return header, rest, 8 * len(rest)


def max_file_bytes() -> int:
    """The largest legal ``.ivc`` file: every field at its limit (readers refuse anything larger unread)."""
    varints = len(_varint(MAX_LATENT)) + len(_varint(MAX_RES)) + 2 * len(_varint(MAX_SIDE))
    nbits = max_payload_bits(MAX_LATENT)
    return len(MAGIC) + 1 + MODEL_ID_BYTES + 2 + varints + 2 + len(_varint(nbits)) + (nbits + 7) // 8 + 4


def max_payload_bits(latent_dim: int) -> int:
    """Upper bound on a legal payload: no level code is longer than 32 bits (16-bit levels, any coder)."""
    return 32 * latent_dim + 64


def pack(header: Header, payload: bytes, nbits: int) -> bytes:
    """A header and an Elias payload of ``nbits`` bits as version-1 ``.ivc`` bytes."""
    if header.version != VERSION:
        raise BitstreamError(f"pack writes version {VERSION}, not {header.version} (that is pack_v2)")
    header.validate()
    if not 0 <= nbits <= max_payload_bits(header.latent_dim) or len(payload) != (nbits + 7) // 8:
        raise BitstreamError(f"payload of {len(payload)} bytes does not hold {nbits} bits")
    if nbits % 8 and payload[-1] & (0xFF >> (nbits % 8)):
        raise BitstreamError("invalid .ivc payload: padding bits after the last code are not zero")
    flags = (
        (header.prior == "uniform")
        | (header.fit == "squash") << 1
        | (header.rounding == "stochastic") << 2
        | (header.scaling == "l2") << 3
        | (header.norm is None) << 4
        | header.mode << 5
    )
    out = bytearray(MAGIC)
    out += bytes([VERSION]) + header.model_id + bytes([flags, header.bits << 2 | CODER_IDS[header.coder]])
    for v in (header.latent_dim, header.resolution, header.width, header.height):
        out += _varint(v)
    if header.norm is not None:
        out += struct.pack(">e", header.norm)
    out += _varint(nbits) + payload
    out += struct.pack(">I", zlib.crc32(out))
    return bytes(out)


BAD_MAGIC = "not an invcomp file (unknown magic; .ivc files begin with b'IVC', 0xB2 or 0xB3)"
"""The refusal of bytes that are no kind of ``.ivc`` file: it names every magic (version 1, version 2 and layered,
photo) and echoes no byte of the input (which may be any file a user pointed at)."""


def unpack(data: bytes) -> tuple[Header, bytes, int]:
    """Parse ``.ivc`` bytes into ``(header, payload, nbits)``; raises :class:`BitstreamError` on any defect.
    Version 2: the model-implied fields are 0 / ``None``, and ``payload`` is all after the size (norm byte, levels)."""
    data = bytes(data)
    if not data:
        raise BitstreamError("truncated .ivc file: only 0 bytes")
    if len(data) < len(MAGIC) and data[0] != MAGIC_V2:
        if MAGIC.startswith(data):
            raise BitstreamError(f"truncated .ivc file: only {len(data)} bytes")
        raise BitstreamError(BAD_MAGIC)
    if data[0] == MAGIC_V2 and layers.is_layered(data):  # mode 3: its base record; invcomp.formats.layered reads the layers
        header, rest, nbits = _unpack_v2(layers.base_file(data))
        return replace(header, mode=layers.MODE_LAYERED), rest, nbits
    if data[0] == MAGIC_V2:
        return _unpack_v2(data)
    if data[0] == MAGIC_PHOTO:
        raise BitstreamError("this is a photo file (a frame and its face files), not one face file: decode it with "
                             "`invcomp decode`; `invcomp info` lists its faces")
    if data[:3] != MAGIC:
        raise BitstreamError(BAD_MAGIC)
    r = _Reader(data)
    r.pos = 3
    version = r.take(1, "version")[0]
    if version != VERSION:
        raise BitstreamError(f"unsupported .ivc format version {version} (this invcomp reads version {VERSION})")
    model_id = r.take(MODEL_ID_BYTES, "model id")
    flags, quant = r.take(2, "flags")
    latent = r.varint("latent dim", MAX_LATENT)
    res = r.varint("resolution", MAX_RES)
    width = r.varint("width", MAX_SIDE)
    height = r.varint("height", MAX_SIDE)
    norm = None if flags & 0x10 else float(struct.unpack(">e", r.take(2, "norm"))[0])
    nbits = r.varint("payload bit length", max_payload_bits(max(latent, 1)))
    payload = r.take((nbits + 7) // 8, "payload")
    body_end = r.pos
    crc = r.take(4, "crc32")
    if len(data) > r.pos:
        raise BitstreamError(f"invalid .ivc file: {len(data) - r.pos} unexpected bytes after the CRC")
    if struct.unpack(">I", crc)[0] != zlib.crc32(data[:body_end]):
        raise BitstreamError("corrupt .ivc file: CRC32 mismatch")
    coders = {v: k for k, v in CODER_IDS.items()}
    if quant & 0x80 or (quant & 3) not in coders:
        raise BitstreamError(f"invalid .ivc field: quantiser byte {quant:#04x}")
    header = Header(
        model_id=model_id, latent_dim=latent, resolution=res, width=width, height=height,
        bits=quant >> 2, coder=coders[quant & 3], norm=norm,
        scaling="l2" if flags & 8 else "max", rounding="stochastic" if flags & 4 else "nearest",
        prior="uniform" if flags & 1 else "normal", fit="squash" if flags & 2 else "crop", mode=flags >> 5,
    )
    header.validate()
    if nbits % 8 and payload[-1] & (0xFF >> (nbits % 8)):
        raise BitstreamError("invalid .ivc payload: padding bits after the last code are not zero")
    return header, payload, nbits
