"""The layered container (mode 3): a base record and refinement-layer records, any prefix of which is a file.

A layered file is a version-2 file (:mod:`invcomp.formats.ivc`) whose base record carries its own length, so
that records can follow it, and then zero or more layer records, each with its own CRC:

=====  ============  ============================================================
bytes  field         meaning
=====  ============  ============================================================
1      magic         ``0xB2``
2      model id      the base generator's version-2 id
1      flags         mode 3 in bits 7-5; fit, bits and size escape as version 2
3      size          as version 2 (or the escape's two varints)
var    base length   varint L (1..65535): the length of the next field
L      base          the norm byte (if the model stores one) and the range-coded
                     latent levels, exactly as in a mode-0 file of that model
2      crc16         CRC-16/CCITT of every byte of the base record before it
=====  ============  ============================================================

then per layer (layer 1, 2, ...), one record:

=====  ============  ============================================================
1      kind, rate    bits 7-5 kind (1 tone, 2 residual); bits 4-0 the rate index
                     (residual) or 0 (tone)
8      tone          kind 1: the colour and tone record (:mod:`invcomp.search.tone`)
1      resolution    kind 2: output side / 16 (1..255), never below an earlier
                     residual layer's
var    length        kind 2: varint n (1..MAX_LAYER_BYTES)
n      payload       kind 2: the residual network's rANS stream
2      crc16         CRC-16/CCITT of the decoder key (2 bytes: the residual
                     network's id) followed by the record's bytes before it
=====  ============  ============================================================

A tone record may only come first. Cutting a file at a record boundary leaves a valid file with fewer layers
(:func:`truncate`); the base record holds the mode-0 file of the same latent, whose bytes :func:`base_file` gives
back (the same fields with mode 0, without the length, under its own CRC), so it decodes to the same picture. Pure.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from invcomp.errors import BitstreamError
from invcomp.formats.framing import MAGIC_V2, _Reader, _varint, crc16

MODE_LAYERED = 3
BASE_RESOLUTION = 64  # the base's picture side (the 64-px generator's)
RATE_STEPS = 4  # a residual layer's rate index counts quarter steps of its network's trained rates
KIND_TONE, KIND_RESIDUAL = 1, 2
KINDS = {KIND_TONE: "tone", KIND_RESIDUAL: "residual"}
TONE_BYTES = 8
MAX_RATE = 31
MAX_LAYERS = 16  # records after the base
MAX_LAYER_BYTES = 1 << 20
MAX_BASE_BYTES = 65535
MAX_FILE_BYTES = MAX_BASE_BYTES + 16 + MAX_LAYERS * (MAX_LAYER_BYTES + 8)  # what a reader accepts unread
KEY_BYTES = 2


@dataclass(frozen=True)
class Layer:
    """One refinement-layer record: ``kind`` (:data:`KIND_TONE` or :data:`KIND_RESIDUAL`), the residual's ``rate``
    index and output ``resolution`` (0 for tone), and its ``payload`` (the tone record, or the rANS stream)."""

    kind: int
    payload: bytes
    rate: int = 0
    resolution: int = 0

    @property
    def name(self) -> str:
        return KINDS.get(self.kind, "unknown")

    def record(self, key: bytes) -> bytes:
        """This layer's bytes in the file, CRC included (``key``: the decoder key the CRC covers)."""
        if self.kind == KIND_TONE:
            if len(self.payload) != TONE_BYTES or self.rate:
                raise BitstreamError(f"a tone layer holds {TONE_BYTES} bytes and no rate")
            body = bytes([KIND_TONE << 5]) + self.payload
        elif self.kind == KIND_RESIDUAL:
            if not (0 <= self.rate <= MAX_RATE and self.resolution % 16 == 0 and 16 <= self.resolution <= 255 * 16
                    and 1 <= len(self.payload) <= MAX_LAYER_BYTES):
                raise BitstreamError(f"residual layer out of range: rate {self.rate}, resolution {self.resolution}, "
                                     f"{len(self.payload)} bytes")
            body = bytes([KIND_RESIDUAL << 5 | self.rate, self.resolution // 16]) + _varint(len(self.payload)) + self.payload
        else:
            raise BitstreamError(f"unknown layer kind {self.kind}")
        return body + crc16(_key(key) + body)


def _key(key: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        raise ValueError(f"a decoder key is {KEY_BYTES} bytes")
    return key


def is_layered(data: bytes) -> bool:
    """True for bytes that start like a layered (mode-3, version-2) file."""
    return len(data) >= 4 and data[0] == MAGIC_V2 and data[3] >> 5 == MODE_LAYERED


def _head(r: _Reader) -> None:
    """Skip magic, id, flags and size (as version 2 lays them out)."""
    r.pos = 3
    flags = r.take(1, "flags")[0]
    if flags & 1:
        r.varint("width", 65535), r.varint("height", 65535)
    else:
        r.take(3, "size")


def join(base: bytes, layers: list[Layer], key: bytes) -> bytes:
    """A mode-3 version-2 file ``base`` (as :func:`invcomp.formats.ivc.pack_v2` writes it) and layer records ->
    the layered file."""
    if not is_layered(base):
        raise BitstreamError("the base of a layered file must be a mode-3 version-2 file")
    r = _Reader(base[:-2])
    _head(r)
    head, rest = base[:r.pos], base[r.pos:-2]
    if not 1 <= len(rest) <= MAX_BASE_BYTES:
        raise BitstreamError(f"base record of {len(rest)} bytes (1..{MAX_BASE_BYTES})")
    check_order(layers)
    body = head + _varint(len(rest)) + rest
    return body + crc16(body) + b"".join(layer.record(key) for layer in layers)


def split(data: bytes) -> tuple[bytes, list[tuple[Layer, bytes]]]:
    """A layered file -> the base as the mode-0 file of the same latent, and each layer with its CRC (unchecked:
    :func:`check` needs the decoder's key). Raises :class:`BitstreamError` on any structural defect."""
    data = bytes(data)
    if not is_layered(data):
        raise BitstreamError("not a layered .ivc file")
    r = _Reader(data)
    _head(r)
    head_end = r.pos
    n = r.varint("base length", MAX_BASE_BYTES)
    if n == 0:
        raise BitstreamError("invalid .ivc field: base length 0")
    rest = r.take(n, "base record")
    body_end = r.pos
    if crc16(data[:body_end]) != r.take(2, "base record's crc16"):
        raise BitstreamError("corrupt .ivc file: CRC-16 mismatch in the base record")
    plain = bytes([*data[:3], data[3] & 0x1F]) + data[4:head_end] + rest  # the same fields as a mode-0 file
    out: list[tuple[Layer, bytes]] = []
    while r.pos < len(data):
        if len(out) == MAX_LAYERS:
            raise BitstreamError(f"invalid .ivc file: more than {MAX_LAYERS} layers")
        where = f"layer {len(out) + 1}"
        start = r.pos
        first = r.take(1, f"{where}'s kind")[0]
        kind, rate = first >> 5, first & 0x1F
        if kind == KIND_TONE:
            if rate:
                raise BitstreamError(f"invalid .ivc field: {where} is a tone layer with rate bits {rate}")
            layer = Layer(KIND_TONE, r.take(TONE_BYTES, f"{where}'s tone record"))
        elif kind == KIND_RESIDUAL:
            res16 = r.take(1, f"{where}'s resolution")[0]
            if res16 == 0:
                raise BitstreamError(f"invalid .ivc field: {where}'s resolution is 0")
            size = r.varint(f"{where}'s length", MAX_LAYER_BYTES)
            if size == 0:
                raise BitstreamError(f"invalid .ivc field: {where} is empty")
            layer = Layer(KIND_RESIDUAL, r.take(size, f"{where}'s payload"), rate, 16 * res16)
        else:
            raise BitstreamError(f"invalid .ivc field: {where} is of unknown kind {kind}")
        body = data[start:r.pos]
        out.append((layer, body + r.take(2, f"{where}'s crc16")))
    check_order([layer for layer, _ in out])
    return plain + crc16(plain), out


def check(layer: Layer, record: bytes, key: bytes, index: int) -> None:
    """Refuse a layer record (layer ``index``) whose CRC does not match under the decoder's ``key``."""
    if crc16(_key(key) + record[:-2]) != record[-2:]:
        raise BitstreamError(f"corrupt .ivc file: CRC-16 mismatch in layer {index} ({layer.name}); or it was coded by "
                             "another residual network than the installed one")


def check_order(layers: list[Layer]) -> None:
    """A tone layer only first; residual resolutions never decrease."""
    res = 0
    for i, layer in enumerate(layers, start=1):
        if layer.kind == KIND_TONE and i != 1:
            raise BitstreamError(f"invalid .ivc file: a tone layer may only be layer 1, not layer {i}")
        if layer.kind == KIND_RESIDUAL:
            if layer.resolution < res:
                raise BitstreamError(f"invalid .ivc file: layer {i} is at {layer.resolution} px, below an earlier "
                                     f"layer's {res} px")
            res = layer.resolution


def count(data: bytes) -> int:
    """How many layers a file holds, the base included (1 for any file that is not layered)."""
    return 1 + len(split(data)[1]) if is_layered(data) else 1


def truncate(data: bytes, keep: int) -> bytes:
    """The first ``keep`` layers of a file (1: the base alone), as a valid file; refuses a count the file lacks."""
    total = count(data)
    if keep < 1:
        raise BitstreamError(f"--layers must be at least 1 (the base), got {keep}")
    if keep > total:
        raise BitstreamError(f"--layers {keep}: this file has {total} layer{'s' if total > 1 else ''}")
    if keep == total:
        return bytes(data)
    plain, records = split(data)
    cut = len(data) - sum(len(rec) for _, rec in records[keep - 1:])
    return bytes(data[:cut])


def describe(data: bytes) -> list[dict[str, Any]]:
    """Each layer of a layered file, the base first: what ``invcomp encode --json`` and ``invcomp info`` both report.

    ``layer`` 0 is the base and 1, 2, ... the records after it (``invcomp decode --layers K`` keeps layers 0 to
    K - 1); ``kind``; a residual layer's ``rate`` (in its network's trained rates, quarter steps) and ``rate_index``
    (as stored); ``resolution``, the side of the picture up to that layer; ``record_bytes``, the layer's own bytes;
    ``bytes``, the file up to and including it."""
    plain, records = split(data)
    total = len(data) - sum(len(rec) for _, rec in records)
    side = BASE_RESOLUTION
    out: list[dict[str, Any]] = [{"layer": 0, "kind": "base", "resolution": side, "record_bytes": total,
                                  "bytes": total}]
    for i, (layer, rec) in enumerate(records, start=1):
        total += len(rec)
        row: dict[str, Any] = {"layer": i, "kind": layer.name}
        if layer.kind == KIND_RESIDUAL:
            side = layer.resolution
            row.update(rate=layer.rate / RATE_STEPS, rate_index=layer.rate)
        row.update(resolution=side, record_bytes=len(rec), bytes=total)
        out.append(row)
    return out


def resolution(data: bytes) -> int:
    """The side of a layered file's picture: its last residual layer's (the base's when it has none)."""
    return int(describe(data)[-1]["resolution"])


def base_file(data: bytes) -> bytes:
    """The base record of a layered file as the mode-0 version-2 file of the same latent."""
    return split(data)[0]
