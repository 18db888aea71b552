"""What a job of each kind runs, on the files in its folder: the library's codec contract, nothing else.

- **encode:** :func:`invcomp.service.encode.build_encoder` and :func:`~invcomp.service.encode.encode_items` (the
  ``.ivc`` file, written atomically), then :func:`invcomp.service.decode.decode_item` (the PNG ``invcomp decode``
  writes for that file) and the upload as a PNG, for the page;
- **decode:** :func:`~invcomp.service.decode.decode_item`, the decoder found from the file's model id;
- **compare:** :func:`invcomp.service.compare.compare`, what ``invcomp compare`` reports.

Each returns the job's result (a JSON-able dict, with no server path in it) or raises :class:`TaskError` with
the one-line reason. Codecs are cached per process, keyed by their options, so a worker loads a model once.
"""
from __future__ import annotations

import io
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Optional

from invcomp.files import atomic_write
from invcomp.web.store import FILES, INPUT, INPUT_B, IVC, ORIGINAL, PNG

Tick = Callable[[int], None]
INPUT_IVC = "input.ivc"  # compare: the optional bitstream
CACHE_SIZE = 4  # codecs a worker keeps loaded (an auto codec holds five models)


class TaskError(Exception):
    """A job that cannot be done (bad input, options that do not apply): its one-line ``reason``."""


class Tasks:
    """One worker's runner: its device, the server's pixel limit, and its codec caches."""

    def __init__(self, device: str, max_pixels: int) -> None:
        self.device, self.max_pixels = device, max_pixels
        self._encoders: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._decoders: dict = {}

    def run(self, kind: str, folder: Path, options: dict, name: str, *, start: Callable[[int], None],
            tick: Tick) -> dict:
        """Run one job; ``start(total)`` is called once with its work units, ``tick(n)`` as they are done."""
        try:
            if kind == "encode":
                return self.encode(folder, options, name, start, tick)
            if kind == "decode":
                start(1)
                return self.decode(folder, options, name)
            if kind == "compare":
                start(1)
                return self.compare(folder, options, name)
        except TaskError as e:
            raise TaskError(_clean(str(e), folder, name)) from None
        except Exception as e:  # noqa: BLE001  (an InvcompError, or a bug: the job's one line, never the worker's)
            from invcomp.service.items import item_error

            raise TaskError(_clean(item_error(e).reason, folder, name)) from None
        raise TaskError(f"unknown job kind {kind!r}")

    def encoder(self, options: dict) -> Any:
        """The encoder of ``options`` (fields of :class:`~invcomp.service.encode.EncodeRequest`), cached."""
        from dataclasses import asdict

        from invcomp.service.encode import EncodeRequest, build_encoder

        request = EncodeRequest(**options, device=self.device, max_pixels=self.max_pixels)
        key = json.dumps(asdict(request), sort_keys=True, default=str)
        if key not in self._encoders:
            self._encoders[key] = build_encoder(request)
            while len(self._encoders) > CACHE_SIZE:
                self._encoders.popitem(last=False)
        self._encoders.move_to_end(key)
        return self._encoders[key]

    def encode(self, folder: Path, options: dict, name: str, start: Callable[[int], None], tick: Tick) -> dict:
        from invcomp.service.items import ItemError
        from invcomp.service.encode import encode_items

        encoder = self.encoder(options)
        start(encoder.codec.work(1))
        res = encode_items(encoder, [(folder / INPUT, folder / IVC)], force=True, with_identity=True, progress=tick)[0]
        if isinstance(res, ItemError):
            raise TaskError(res.reason)
        row = _public(res[0])
        self.original_png(folder / INPUT, folder / ORIGINAL, name)
        row["decoded"] = self.decode_file(folder / IVC, folder / PNG, None)
        return row

    def decode(self, folder: Path, options: dict, name: str) -> dict:
        return self.decode_file(folder / INPUT, folder / PNG, options.get("layers"))

    def decode_file(self, src: Path, dst: Path, keep_layers: Optional[int]) -> dict:
        from invcomp.service.decode import DecodeOptions, decode_item

        options = DecodeOptions(keep_layers=keep_layers, max_pixels=self.max_pixels, device=self.device)
        row, _ = decode_item(src, dst, options, force=True, cache=self._decoders, device=self.device)
        return _public(row)

    def compare(self, folder: Path, options: dict, name: str) -> dict:
        from invcomp.service.compare import compare as measure

        names = options.get("names") or [name, "reconstruction", "bitstream"]
        a = self.original_png(folder / INPUT, folder / ORIGINAL, names[0])
        b = self.original_png(folder / INPUT_B, folder / FILES["reconstruction"], names[1])
        data = (folder / INPUT_IVC).read_bytes() if (folder / INPUT_IVC).exists() else None
        return _public(measure(a, b, data, names=(names[0], names[1], names[2])))

    def original_png(self, src: Path, dst: Path, name: str) -> Any:
        """Decode an upload as ``invcomp encode`` reads it and keep it as a PNG (browsers show any upload)."""
        from invcomp.imageio import decode_image_bytes

        img = decode_image_bytes(src.read_bytes(), name=name, max_pixels=self.max_pixels)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        atomic_write(dst, buf.getvalue(), force=True)
        return img


def _public(row: dict) -> dict:
    """A CLI report row without the server's paths (``input``, ``output``), as JSON-able values."""
    from invcomp.files import dumps

    return json.loads(dumps({k: v for k, v in row.items() if k not in ("input", "output")}))


def _clean(reason: str, folder: Path, name: str) -> str:
    """A one-line reason that names the upload, never the server's folder."""
    for f in (INPUT, INPUT_B, INPUT_IVC):
        reason = reason.replace(str(folder / f), name)
    reason = reason.replace(str(folder) + "/", "").replace(str(folder), "")
    return " ".join(reason.split())[:500]
