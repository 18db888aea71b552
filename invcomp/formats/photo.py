"""The photo container: a frame with face records and an optional background layer, as bytes (pure).

A photo file holds the original frame's size, where each face goes, the face files themselves (each a whole
``.ivc`` file of any face mode, decoded by its own model), and what paints the rest of the frame:

=====  ==========  ==============================================================
bytes  field       meaning
=====  ==========  ==============================================================
1      magic       ``0xB3`` (version-1 files begin with ``I``, version 2 with 0xB2)
1      flags       bit 0 grayscale (decode to one channel); bits 2-1 background
                   (0 none, 1 placeholder, 2 classic codec); bit 3 size escape;
                   bit 4 a detail layer follows; bits 7-5 zero
3      size        (width - 1) << 12 | (height - 1) when both are <= 4096;
                   else (escape bit) varint width, varint height
1      faces       n, 1..:data:`MAX_FACES`
---    per face    n records:
var    side        S: the crop's side in half pixels (>= 2); 0: the face file
                   covers the whole frame by its own fit (no placement follows)
var    cx, cy      the crop's centre in half pixels, zigzag (may lie outside)
2      angle       signed 16-bit, 1/64 degree, in [-11520, 11520)
var    length      L, 1..65535
L      face file   a whole ``.ivc`` file (version 1, 2 or layered)
---    background  when the flags say so:
1      codec       placeholder: 0 ThumbHash; classic: 0 WebP, 1 AVIF, 2 JPEG,
                   3 JPEG XL
var    length      L, 1..:data:`MAX_BACKGROUND`
L      data        that codec's file of the whole frame (classic codecs: at the
                   frame's size, or smaller to fit the codec's limits)
---    detail      when flags bit 4 is set (issue 32's whole-frame detail layer):
2      network     the detail network's key: the first 2 bytes of the sha256 of
                   its weights (:mod:`invcomp.nets.residual`)
1      rate        the rate in quarter steps of the network's trained rates
var    side        the detail picture's long side, 1..max(width, height): the
                   frame as decoded so far, resized to that side, is the
                   residual network's base (:mod:`invcomp.faces.detail`)
var    length      L, 1..:data:`MAX_DETAIL`
L      data        the residual network's rANS stream
2      crc16       CRC-16/CCITT (initial 0xFFFF) of every byte before it
=====  ==========  ==============================================================

Files without the detail flag are the files of earlier releases, byte for byte.

The placement's precision (half a frame pixel, 1/64 degree) is far below what the paste-back can show: at a
side of S pixels, the rotation step moves the crop's corner by S * 1.9e-4 px. Files are canonical: a file that
parses re-packs to the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from invcomp.errors import BitstreamError
from invcomp.formats.framing import MAGIC_PHOTO, _Reader, _varint, crc16
from invcomp.landmarks.align import Placement

MAGIC = MAGIC_PHOTO
MAX_FACES = 64
MAX_FACE_BYTES = 65535
MAX_BACKGROUND = 1 << 24
MAX_SIDE, SMALL_SIDE = 65535, 4096
ANGLE_UNIT = 1 / 64  # degrees
BACKGROUNDS = {0: "none", 1: "placeholder", 2: "codec"}
PLACEHOLDERS = {0: "thumb"}
CLASSIC = {0: "webp", 1: "avif", 2: "jpeg", 3: "jpegxl"}
MAX_DETAIL = 1 << 20
DETAIL_KEY_BYTES = 2
MAX_RATE_CODE = 255
MAX_FILE_BYTES = 16 + MAX_FACES * (MAX_FACE_BYTES + 16) + MAX_BACKGROUND + 8 + MAX_DETAIL + 16


@dataclass(frozen=True)
class FaceRecord:
    """One face: its ``placement`` (``None``: the face file covers the whole frame by its fit) and its ``.ivc`` bytes."""

    placement: Optional[Placement]
    data: bytes


@dataclass(frozen=True)
class Detail:
    """The whole-frame detail layer: the residual network's ``key`` (2 bytes), the ``rate`` in quarter steps, the
    detail picture's long ``side`` and the network's stream ``data``."""

    key: bytes
    rate: int
    side: int
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class Photo:
    """A photo file's contents: frame ``width`` x ``height``, ``grayscale``, the faces, the background layer
    (``background`` is ``none``, ``thumb`` or a classic codec's name; ``background_data`` its bytes) and the
    ``detail`` layer over the whole frame (or ``None``)."""

    width: int
    height: int
    faces: list[FaceRecord]
    grayscale: bool = False
    background: str = "none"
    background_data: bytes = field(default=b"", repr=False)
    detail: Optional[Detail] = None


def is_photo(data: bytes) -> bool:
    """True for bytes that start like a photo file."""
    return len(data) >= 1 and data[0] == MAGIC


def quantise(p: Placement) -> Placement:
    """The placement as the file stores it (what the decoder will use)."""
    return Placement(round(2 * p.cx) / 2, round(2 * p.cy) / 2, max(4, round(2 * p.side)) / 2,
                     _angle_code(p.angle) * ANGLE_UNIT)


def _angle_code(angle: float) -> int:
    a = (angle + 180.0) % 360.0 - 180.0
    return max(-11520, min(11519, round(a / ANGLE_UNIT)))


def _zigzag(n: int) -> int:
    return 2 * n if n >= 0 else -2 * n - 1


def _unzigzag(z: int) -> int:
    return z // 2 if z % 2 == 0 else -(z + 1) // 2


def _codec_ids(kind: str) -> dict[int, str]:
    return PLACEHOLDERS if kind == "placeholder" else CLASSIC


def background_kind(name: str) -> str:
    """``none``, ``placeholder`` or ``codec`` for a background name."""
    return "none" if name == "none" else "placeholder" if name in PLACEHOLDERS.values() else "codec"


def pack(photo: Photo) -> bytes:
    """A :class:`Photo` as bytes; raises :class:`BitstreamError` for anything out of range."""
    w, h = photo.width, photo.height
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise BitstreamError(f"photo size {w}x{h} out of range 1..{MAX_SIDE}")
    if not 1 <= len(photo.faces) <= MAX_FACES:
        raise BitstreamError(f"a photo file holds 1..{MAX_FACES} faces, not {len(photo.faces)}")
    kind = background_kind(photo.background)
    escape = w > SMALL_SIDE or h > SMALL_SIDE
    kinds = {v: k for k, v in BACKGROUNDS.items()}
    d = photo.detail
    out = bytearray([MAGIC, photo.grayscale | kinds[kind] << 1 | escape << 3 | (d is not None) << 4])
    out += _varint(w) + _varint(h) if escape else ((w - 1) << 12 | (h - 1)).to_bytes(3, "big")
    out.append(len(photo.faces))
    for face in photo.faces:
        if not 1 <= len(face.data) <= MAX_FACE_BYTES:
            raise BitstreamError(f"a face file of {len(face.data)} bytes (1..{MAX_FACE_BYTES})")
        out += _varint(0) if face.placement is None else pack_placement(face.placement)
        out += _varint(len(face.data)) + face.data
    if kind != "none":
        ids = {v: k for k, v in _codec_ids(kind).items()}
        if photo.background not in ids or not 1 <= len(photo.background_data) <= MAX_BACKGROUND:
            raise BitstreamError(f"background {photo.background!r} of {len(photo.background_data)} bytes")
        out += bytes([ids[photo.background]]) + _varint(len(photo.background_data)) + photo.background_data
    elif photo.background_data:
        raise BitstreamError("background data without a background")
    if d is not None:
        out += pack_detail(d, max(w, h))
    return bytes(out + crc16(bytes(out)))


def detail_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The detail picture's size for a ``width`` x ``height`` frame and a detail record's long ``side``: the frame's
    own size when ``side`` covers it, else the frame scaled to that long side (each side at least 1)."""
    long = max(width, height)
    if side >= long:
        return width, height
    s = side / long
    return max(1, round(width * s)), max(1, round(height * s))


def pack_detail(d: Detail, long_side: int) -> bytes:
    """A detail record's bytes (``long_side``: the frame's longer side, the most the detail's side may be)."""
    if len(d.key) != DETAIL_KEY_BYTES or not 0 <= d.rate <= MAX_RATE_CODE or not 1 <= d.side <= long_side \
            or not 1 <= len(d.data) <= MAX_DETAIL:
        raise BitstreamError(f"detail layer out of range (key {d.key.hex()}, rate {d.rate}, side {d.side} of "
                             f"{long_side}, {len(d.data)} bytes)")
    return d.key + bytes([d.rate]) + _varint(d.side) + _varint(len(d.data)) + d.data


def unpack(data: bytes) -> Photo:
    """Parse a photo file; raises :class:`BitstreamError` on any defect (the face files are parsed by their decoder)."""
    data = bytes(data)
    if not is_photo(data):
        raise BitstreamError("not an .ivc photo file")
    if len(data) < 8:
        raise BitstreamError(f"truncated .ivc photo file: only {len(data)} bytes")
    if crc16(data[:-2]) != data[-2:]:
        raise BitstreamError("corrupt .ivc photo file: CRC-16 mismatch")
    r = _Reader(data[:-2])
    r.pos = 1
    flags = r.take(1, "flags")[0]
    if flags & 0xE0 or (flags >> 1) & 3 == 3:
        raise BitstreamError(f"invalid .ivc field: photo flags {flags:#04x}")
    if flags & 8:
        w, h = r.varint("width", MAX_SIDE), r.varint("height", MAX_SIDE)
        if w <= SMALL_SIDE and h <= SMALL_SIDE or not (w and h):
            raise BitstreamError("invalid .ivc field: a size escape for a size that fits 12 bits (not canonical)")
    else:
        packed = int.from_bytes(r.take(3, "size"), "big")
        w, h = (packed >> 12) + 1, (packed & 0xFFF) + 1
    n = r.take(1, "face count")[0]
    if not 1 <= n <= MAX_FACES:
        raise BitstreamError(f"invalid .ivc field: {n} faces (1..{MAX_FACES})")
    faces = []
    for i in range(1, n + 1):
        side = r.varint(f"face {i}'s side", 2 * 4 * MAX_SIDE)
        placement = None
        if side:
            if side < 4:
                raise BitstreamError(f"invalid .ivc field: face {i}'s side {side / 2} px (at least 2)")
            cx = _unzigzag(r.varint(f"face {i}'s centre", 2 * 2 * 8 * MAX_SIDE)) / 2
            cy = _unzigzag(r.varint(f"face {i}'s centre", 2 * 2 * 8 * MAX_SIDE)) / 2
            code = int.from_bytes(r.take(2, f"face {i}'s angle"), "big", signed=True)
            if not -11520 <= code < 11520:
                raise BitstreamError(f"invalid .ivc field: face {i}'s angle code {code}")
            placement = Placement(cx, cy, side / 2, code * ANGLE_UNIT)
        size = r.varint(f"face {i}'s length", MAX_FACE_BYTES)
        if size == 0:
            raise BitstreamError(f"invalid .ivc field: face {i} is empty")
        faces.append(FaceRecord(placement, r.take(size, f"face {i}'s file")))
    kind = BACKGROUNDS[(flags >> 1) & 3]
    name, bg = "none", b""
    if kind != "none":
        cid = r.take(1, "background codec")[0]
        if cid not in _codec_ids(kind):
            raise BitstreamError(f"invalid .ivc field: background codec {cid} of a {kind} background")
        name = _codec_ids(kind)[cid]
        size = r.varint("background length", MAX_BACKGROUND)
        if size == 0:
            raise BitstreamError("invalid .ivc field: an empty background")
        bg = r.take(size, "background")
    detail = None
    if flags & 0x10:
        key, rate = r.take(DETAIL_KEY_BYTES, "detail network"), r.take(1, "detail rate")[0]
        side = r.varint("detail side", max(w, h))
        if side == 0:
            raise BitstreamError("invalid .ivc field: a detail side of 0")
        size = r.varint("detail length", MAX_DETAIL)
        if size == 0:
            raise BitstreamError("invalid .ivc field: an empty detail layer")
        detail = Detail(key, rate, side, r.take(size, "detail layer"))
    if r.pos != len(data) - 2:
        raise BitstreamError(f"invalid .ivc photo file: {len(data) - 2 - r.pos} unexpected bytes before the CRC")
    return Photo(w, h, faces, bool(flags & 1), name, bg, detail)


def overhead(photo: Photo) -> dict[str, int]:
    """Where a photo file's bytes go: ``container`` (magic, flags, size, count, CRC), ``placements``, ``lengths``
    (the face records' length fields), ``faces`` (the face files), ``background`` (its codec id, length, data) and
    ``detail`` (the detail record, all of it)."""
    total = len(pack(photo))
    faces = sum(len(f.data) for f in photo.faces)
    place = sum(len(_varint(0)) if f.placement is None else len(pack_placement(f.placement)) for f in photo.faces)
    lengths = sum(len(_varint(len(f.data))) for f in photo.faces)
    bg = 0 if photo.background == "none" else 1 + len(_varint(len(photo.background_data))) + len(photo.background_data)
    detail = 0 if photo.detail is None else len(pack_detail(photo.detail, max(photo.width, photo.height)))
    return {"container": total - faces - place - lengths - bg - detail, "placements": place, "lengths": lengths,
            "faces": faces, "background": bg, "detail": detail, "total": total}


def pack_placement(p: Placement) -> bytes:
    """A placement's bytes in a face record."""
    q = quantise(p)
    return (_varint(round(2 * q.side)) + _varint(_zigzag(round(2 * q.cx))) + _varint(_zigzag(round(2 * q.cy)))
            + _angle_code(q.angle).to_bytes(2, "big", signed=True))
