"""What an ``.ivc`` file holds, field by field, for ``invcomp info`` (pure but for the model-name lookup).

Every container: version 1 (every header field), version 2 (its fields; the norm byte and the levels are one
run whose split the model implies), layered (the base and each layer record), and photo files (the frame, each
face's placement and its own file, described the same way, and the background layer).
"""
from __future__ import annotations

from typing import Any

from invcomp.formats import ivc as bitstream
from invcomp.formats.framing import MAGIC_PHOTO, MAGIC_V2
from invcomp.formats.sniff import sniff
from invcomp.formats import layered as layers
from invcomp.errors import InvcompError
from invcomp.formats import photo as container


def _model(model_id: bytes) -> Any:
    try:
        from invcomp.zoo.index import name_for_id  # torch-free

        return name_for_id(model_id)
    except InvcompError as e:  # e.g. two models share a version-2 id
        return f"ambiguous: {e}"


def _mode(mode: int) -> str:
    from invcomp.codecs.registry import mode_name

    return mode_name(mode)


def describe(data: bytes) -> dict[str, Any]:
    """A JSON-ready dict of every field of ``data``; raises :class:`~invcomp.errors.BitstreamError` for a file
    that does not parse."""
    data = bytes(data)
    kind = sniff(data)
    if kind == "photo":
        return _photo(data)
    header, payload, nbits = bitstream.unpack(data)
    row: dict[str, Any] = {"bytes": len(data), "format": f"version {header.version}", "mode": _mode(header.mode),
                           "model_id": header.model_id.hex(), "model": _model(header.model_id),
                           "width": header.width, "height": header.height, "fit": header.fit, "bits": header.bits}
    if header.version == 1:
        row.update(magic="IVC", coder=header.coder, latent_dim=header.latent_dim, resolution=header.resolution,
                   norm=header.norm, norm_free=header.norm is None, prior=header.prior, scaling=header.scaling,
                   rounding=header.rounding, payload_bits=nbits, payload_bytes=len(payload), crc="CRC-32")
    else:
        row.update(magic=f"0x{MAGIC_V2:02X}", coder="range coding under the model's prior", crc="CRC-16")
        if kind == "layered":
            row["norm_and_levels_bytes"] = len(bitstream.unpack(layers.base_file(data))[1])
            row["layers"] = layers.describe(data)  # what `invcomp encode --json` reports of the same file
        elif header.mode in (4, 5):  # GC, SC: whole frames; the bit-depth field is the escape flag
            row.update(fit="whole frame", bits=None, tables="uniform escape" if header.bits == 3 else "context",
                       cells=[-(-header.height // 16), -(-header.width // 16)])  # the 16-px code grid, [h, w]
            row.update(_sc_records(payload) if header.mode == 5 else {"symbols_bytes": len(payload)})
        else:
            row["norm_and_levels_bytes"] = len(payload)
    return row


def _sc_records(payload: bytes) -> dict[str, Any]:
    """An SC payload's records in bytes: the mask, the semantic map (``None`` when absent) and the kept symbols."""
    from invcomp.codecs.modes.sc import split_records  # (torch: only for SC files)

    mask, sem, code = split_records(payload)
    return {"mask_bytes": len(mask), "semantic_bytes": None if sem is None else len(sem), "code_bytes": len(code)}


def _photo(data: bytes) -> dict[str, Any]:
    photo = container.unpack(data)
    faces = []
    for i, rec in enumerate(photo.faces, start=1):
        p = rec.placement
        face: dict[str, Any] = {"face": i, "bytes": len(rec.data)}
        if p is None:
            face["placement"] = "the whole frame (the face file's own fit)"
        else:
            face["placement"] = {"cx": p.cx, "cy": p.cy, "side": p.side, "angle": p.angle,
                                 "bytes": len(container.pack_placement(p))}
        try:
            face["file"] = describe(rec.data)
        except InvcompError as e:
            face["file"] = {"error": str(e)}
        faces.append(face)
    return {"bytes": len(data), "format": "photo", "magic": f"0x{MAGIC_PHOTO:02X}", "width": photo.width, "height": photo.height,
            "grayscale": photo.grayscale, "background": photo.background, "background_bytes": len(photo.background_data),
            "faces": faces, **({} if photo.detail is None else {"detail": _detail(photo)}),
            "breakdown": container.overhead(photo), "crc": "CRC-16"}


def _detail(photo: container.Photo) -> dict[str, Any]:
    """A photo file's detail record: its network (by key, and by name where this install ships it), rate, size."""
    import json

    from invcomp.files import pretrained_dir

    d = photo.detail
    assert d is not None
    name = None
    for cfg in sorted((pretrained_dir() / "layered").glob("*.json")):  # torch-free: the JSON's sha256, not the weights
        row = json.loads(cfg.read_text())
        if row.get("frame") and bytes.fromhex(row.get("sha256", "00"))[:2] == d.key:
            name = cfg.stem
    w, h = container.detail_size(photo.width, photo.height, d.side)
    return {"network_key": d.key.hex(), "network": name or "not shipped with this invcomp", "rate": d.rate / 4,
            "side": d.side, "picture": f"{w}x{h}", "bytes": len(d.data)}


def lines(row: dict[str, Any], indent: str = "") -> list[str]:
    """The human form of :func:`describe`'s dict: one ``field: value`` per line, nested parts indented."""
    out = []
    for k, v in row.items():
        if isinstance(v, dict):
            out.append(f"{indent}{k}:")
            out += lines(v, indent + "  ")
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                out.append(f"{indent}{k[:-1] if k.endswith('s') else k}:")
                out += lines(item, indent + "  ")
        else:
            out.append(f"{indent}{k}: {v}")
    return out
