"""Structural fuzzing of the record-level formats: mutators for layered residual records, photo files (of plain or
layered faces) and GC/SC files, and the valid seed files they start from (issue 30). :mod:`invcomp.fuzz` drives them."""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Optional

from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.errors import InvcompError
from invcomp.fuzz.structural import PHOTO, _recrc  # noqa: F401

RES16 = [1, 2, 4, 8, 16, 32, 56, 57, 59, 60, 64, 104, 105, 128, 255]
"""Residual resolutions / 16 for the layered mutator: 16..4080 px, with each side of the decode budget's largest
layer at 1, 4 and 64 Mpx (896 | 912, 944 | 960, 1664 | 1680 px: :func:`invcomp.codecs.budget.check_budget`)."""
SIDES = [1, 2, 15, 16, 17, 255, 256, 1000, 1024, 4096, 4097, 8000, 65535]


def _record(kind: int, rate: int, res16: int, payload: bytes, key: bytes) -> bytes:
    """A layer record written without range checks (any kind, rate bits, resolution byte and payload), its CRC-16
    valid under the decoder ``key``."""
    from invcomp.formats import layered as layers

    body = bytes([(kind & 7) << 5 | rate & 31])
    body += payload if kind != layers.KIND_RESIDUAL else bytes([res16 & 0xFF]) + bitstream._varint(len(payload)) + payload
    return body + bitstream.crc16(key + body)


def _payload(p: bytes, rng: random.Random) -> bytes:
    """A residual layer's rANS stream, mutated: too short, not whole words, runs of zero or 0xFF words (the escape),
    random words, cut or grown by a word, one byte changed."""
    words = lambda n: 4 * n  # noqa: E731
    pick = rng.randrange(10)
    if pick == 0:
        return b"\x00"
    if pick == 1:
        return rng.randbytes(rng.randint(1, 7))
    if pick == 2:
        return bytes(words(rng.randint(2, 4096)))
    if pick == 3:
        return b"\xff" * words(rng.randint(2, 4096))
    if pick == 4:
        return p[:max(1, len(p) - 4)]
    if pick == 5:
        return p + rng.randbytes(4)
    if pick == 6 and p:
        i = rng.randrange(len(p))
        return p[:i] + bytes([p[i] ^ (1 << rng.randrange(8))]) + p[i + 1:]
    if pick == 7:
        return rng.randbytes(words(rng.randint(2, 16384)))
    if pick == 8:
        return p[:words(rng.randint(0, max(0, len(p) // 4)))] or b"\x00"
    return rng.randbytes(words(rng.randint(2, 64)))


def layered(data: bytes, rng: random.Random, keys: list[bytes]) -> Optional[bytes]:
    """A layered file with its layer records rewritten, every record's CRC valid under one of the decoder ``keys``:
    a residual layer's resolution (16..4080 px), stream (:func:`_payload`), rate bits or kind changed, records
    repeated (up to 16 and one more), reordered, dropped, or added from scratch. ``None`` when ``data`` is not a
    layered file that parses."""
    from invcomp.formats import layered as layers

    if not layers.is_layered(data) or not keys:
        return None
    try:
        recs = layers.split(data)[1]
    except InvcompError:
        return None
    head = data[:len(data) - sum(len(r) for _, r in recs)]
    items = [[layer.kind, layer.rate, layer.resolution // 16, layer.payload] for layer, _ in recs]
    key = rng.choice(keys)
    res = [i for i, it in enumerate(items) if it[0] == layers.KIND_RESIDUAL]
    op = rng.choice(["resolution", "resolution", "payload", "payload", "both", "rate", "kind", "repeat", "order",
                     "drop", "scratch"])
    if op in ("resolution", "payload", "both", "rate") and not res:
        items.append([layers.KIND_RESIDUAL, rng.randrange(13), 4, rng.randbytes(4 * rng.randint(2, 16))])
        res = [len(items) - 1]
    i = rng.choice(res) if res else 0
    if op in ("resolution", "both"):
        items[i][2] = rng.choice(RES16 + [rng.randrange(1, 256), 0])
    if op in ("payload", "both"):
        items[i][3] = _payload(items[i][3], rng)
    if op == "rate":
        items[i][1] = rng.choice([0, 1, 12, 28, 29, 31, rng.randrange(32)])
    elif op == "kind" and items:
        j = rng.randrange(len(items))
        items[j][0] = rng.choice([0, 1, 2, 3, 7])
        if items[j][0] == layers.KIND_TONE:
            items[j][3] = (items[j][3] + bytes(8))[:8]
    elif op == "repeat" and items:
        items += [list(rng.choice(items)) for _ in range(rng.choice([1, 4, 15, 16]))]
        if rng.random() < 0.5:
            for it in items:
                if it[0] == layers.KIND_RESIDUAL:
                    it[2] = rng.choice(RES16)
    elif op == "order" and len(items) > 1:
        rng.shuffle(items)
    elif op == "drop" and items:
        del items[rng.randrange(len(items))]
    elif op == "scratch":
        items = [[layers.KIND_RESIDUAL, rng.randrange(32), rng.choice(RES16), _payload(b"", rng)]
                 for _ in range(rng.randint(1, 4))]
    return head + b"".join(_record(k, r, s, p, key) for k, r, s, p in items)


def photo(data: bytes, rng: random.Random, keys: list[bytes]) -> Optional[bytes]:
    """A photo file rebuilt around changed faces, with a valid CRC: a layered face's records mutated
    (:func:`layered`), faces repeated up to 64, placements at edge values (huge, far outside, turned), records
    made whole-frame, the frame's size at edge values, the detail record changed or added (:func:`_detail`).
    ``None`` when ``data`` is not a photo file that parses."""
    from invcomp.formats import photo as container
    from invcomp.landmarks.align import Placement

    if data[:1] != PHOTO:
        return None
    try:
        p = container.unpack(data)
    except InvcompError:
        return None
    faces, w, h, detail = list(p.faces), p.width, p.height, p.detail
    op = rng.choice(["face", "face", "count", "placement", "whole", "size", "detail", "detail"])
    if op == "face":
        i = rng.randrange(len(faces))
        new = layered(faces[i].data, rng, keys) or gcsc(faces[i].data, rng, []) or faces[i].data
        faces[i] = container.FaceRecord(faces[i].placement, new[:container.MAX_FACE_BYTES])
    elif op == "count":
        faces = [rng.choice(faces) for _ in range(rng.choice([2, 16, 63, 64]))]
    elif op == "placement":
        i = rng.randrange(len(faces))
        side = rng.choice([2, 4, 64, float(max(w, h)), 3.0 * max(w, h), 65535.0, 262140.0])
        cx = rng.choice([0.0, w / 2, -w, 2.0 * w, -65535.0, 131070.0])
        cy = rng.choice([0.0, h / 2, -h, 2.0 * h, -65535.0, 131070.0])
        faces[i] = container.FaceRecord(Placement(cx, cy, side, rng.uniform(-180, 180)), faces[i].data)
    elif op == "whole":
        faces = [container.FaceRecord(None, f.data) if rng.random() < 0.5 else f for f in faces]
    elif op == "detail":
        detail = _detail(detail, w, h, rng)
    else:
        w, h = rng.choice(SIDES), rng.choice(SIDES)
        if p.background != "none":  # a background larger than the frame is refused; keep the frame large enough
            w, h = max(w, p.width), max(h, p.height)
    if detail is not None and detail.side > max(w, h):
        detail = replace(detail, side=max(w, h))
    try:
        return container.pack(container.Photo(w, h, faces, p.grayscale, p.background, p.background_data, detail))
    except InvcompError:
        return None


def detail_keys() -> list[bytes]:
    """The keys of the shipped detail networks (:mod:`invcomp.faces.detail`)."""
    from invcomp.faces.detail import networks

    return list(networks())


def _detail(d: Any, w: int, h: int, rng: random.Random) -> Any:
    """A photo file's detail record (or a new one) with its key, rate, side or stream changed: the shipped networks'
    keys or another, rates past the network's top, sides from 1 to the frame's, streams cut, grown, zeros, 0xFF."""
    from invcomp.formats import photo as container

    keys = detail_keys() or [b"\x00\x01"]
    if d is None:
        d = container.Detail(rng.choice(keys), rng.randrange(29), min(256, max(w, h)), rng.randbytes(rng.randint(1, 300)))
    pick = rng.randrange(4)
    if pick == 0:
        return replace(d, key=rng.choice(keys + [rng.randbytes(2)]))
    if pick == 1:
        return replace(d, rate=rng.choice([0, 1, 27, 28, 29, 255]))
    if pick == 2:
        return replace(d, side=rng.choice([1, 2, 15, 16, 17, 256, max(w, h)]))
    data = d.data
    new = rng.choice([data[:-1], data[:len(data) // 2], data + rng.randbytes(rng.randint(1, 64)), bytes(len(data)),
                      b"\xff" * len(data), rng.randbytes(len(data))])
    return replace(d, data=new or b"\x00")


def gcsc(data: bytes, rng: random.Random, model_ids: list[bytes]) -> Optional[bytes]:
    """A GC (mode 4) or SC (mode 5) file with a valid CRC and its size (edge values, or scaled), escape flag,
    mode, model id (``model_ids``, cut to 2 bytes), payload (cut, grown, zeros, 0xFF, random) or SC records
    (the mask and map lengths, records swapped) changed. ``None`` when ``data`` is not such a file."""
    if data[:1] != bytes([bitstream.MAGIC_V2]):
        return None
    try:
        header, rest, _ = bitstream.unpack(data)
    except InvcompError:
        return None
    if header.mode not in (4, 5):
        return None
    mid, flags, w, h = header.model_id, data[3], header.width, header.height
    ids = [m for m in model_ids if len(m) == 2] or [mid]
    op = rng.choice(["size", "size", "scale", "escape", "mode", "model", "payload", "payload", "records"])
    if op == "size":
        w, h = (rng.choice(SIDES), h) if rng.random() < 0.5 else (w, rng.choice(SIDES))
    elif op == "scale":
        k = rng.choice([0.5, 2, 4, 16])
        w, h = max(1, min(65535, int(w * k))), max(1, min(65535, int(h * k)))
    elif op == "escape":
        flags ^= 2  # bit-depth field 0 <-> 1: the context tables <-> the uniform escape tables
    elif op == "mode":
        flags = (flags & 0x1F) | (rng.choice([4, 5, 3, 0]) << 5)
    elif op == "model":
        mid = rng.choice(ids + [rng.randbytes(2)])
    elif op == "payload":
        rest = rng.choice([rest[:-1], rest[:len(rest) // 2], rest + rng.randbytes(rng.randint(1, 64)), b"",
                           bytes(len(rest)), b"\xff" * len(rest), rng.randbytes(len(rest) or 1)])
    else:  # SC's records: the cell mask, the semantic map (or none), the kept symbols
        from invcomp.formats.framing import _Reader

        try:
            r = _Reader(rest)
            mask = r.take(r.varint("mask", len(rest)), "mask")
            m = r.varint("map", len(rest) + 1)
            sem: Optional[bytes] = r.take(m - 1, "map") if m else None
            code = rest[r.pos:]
        except InvcompError:
            mask, sem, code = rest, None, b""
        pick, lie = rng.randrange(5), 0
        if pick == 0:
            mask = mask[:rng.randrange(len(mask) + 1)]
        elif pick == 1:
            sem = rng.choice([None, b"", rng.randbytes(rng.randint(1, 40))])
        elif pick == 2:
            mask, code = code, mask
        elif pick == 3:
            code = code[:rng.randrange(len(code) + 1)]
        else:
            lie = rng.choice([-1, 1, 1000])  # a mask length that is not the mask's
        sem_field = bitstream._varint(0) if sem is None else bitstream._varint(len(sem) + 1) + sem
        rest = bitstream._varint(max(0, len(mask) + lie)) + mask + sem_field + code
    escape = w > bitstream.SMALL_SIDE or h > bitstream.SMALL_SIDE
    out = bytearray([bitstream.MAGIC_V2]) + mid + bytes([(flags & ~1) | escape])
    out += bitstream._varint(w) + bitstream._varint(h) if escape else ((w - 1) << 12 | (h - 1)).to_bytes(3, "big")
    return _recrc(bytes(out + rest))


def photo_seeds(faces: list[bytes], rng: random.Random, n: int = 12, layered: bool = False) -> list[bytes]:
    """``n`` valid photo files (:mod:`invcomp.formats.photo`) around the given face files: 1-3 faces at random
    placements (or whole-frame), grayscale or not, with no background, a ThumbHash or a small real WebP, and
    sometimes a detail record (a shipped network's key, a random stream).
    ``layered``: the faces are layered files, and a photo holds up to 8 of them."""
    import io

    from invcomp.formats import photo as container
    from invcomp.landmarks.align import Placement

    webp = io.BytesIO()
    Image.new("RGB", (40, 30), (90, 120, 200)).save(webp, "WEBP", quality=20)
    out = []
    for _ in range(n):
        w, h = rng.randint(1, 1500), rng.randint(1, 1500)
        recs = [container.FaceRecord(None if rng.random() < 0.2 else Placement(
            rng.uniform(-w, 2 * w), rng.uniform(-h, 2 * h), rng.uniform(2, 2 * max(w, h)), rng.uniform(-180, 180)),
            rng.choice(faces)) for _ in range(rng.randint(1, 8 if layered else 3))]
        bg = rng.choice(["none", "thumb", "webp"])
        data = {"none": b"", "thumb": bytes(rng.randrange(256) for _ in range(24)), "webp": webp.getvalue()}[bg]
        if bg == "webp":
            w, h = max(w, 40), max(h, 30)
        detail = _detail(None, w, h, rng) if rng.random() < 0.4 else None
        out.append(container.pack(container.Photo(w, h, recs, rng.random() < 0.3, bg, data, detail)))
    return out


def gc_seeds(rng: random.Random, n: int = 4, models: tuple[str, ...] = ("gc-utkface-c8", "sc-utkface-c8")) -> list[bytes]:
    """``n`` valid files of each shipped GC and SC model (when installed), of random small sizes (1x1 up to
    160x120), SC with a random preserved box and sometimes none preserved."""
    import numpy as np

    from invcomp.codecs import load_codec
    from invcomp.errors import InvcompError as _Err

    out = []
    for name in models:
        for _ in range(n):
            w, h = rng.choice([1, 7, 16, 33, 64, 100, 160]), rng.choice([1, 9, 16, 40, 64, 120])
            arr = np.random.default_rng(rng.randrange(2**31)).integers(0, 256, (max(1, h // 8), max(1, w // 8), 3))
            img = Image.fromarray(arr.astype("uint8")).resize((w, h), Image.Resampling.BILINEAR)
            try:
                if name.startswith("sc"):
                    box = f"{rng.randrange(w)},{rng.randrange(h)},{rng.randint(1, w)},{rng.randint(1, h)}"
                    codec = load_codec(name, mode="sc", preserve_box=(box,))
                else:
                    codec = load_codec(name, mode="gc")
                e = codec.encode([img])[0]
            except _Err:
                break  # not installed
            if not isinstance(e, Exception):
                out.append(e.data)
    return out
