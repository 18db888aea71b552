"""The decode use case: one ``.ivc`` file to a PNG, with the codec its header names (any mode, photo files face by face),
written atomically; its report row and human line. :class:`DecodeOptions` holds the defaults of every front end."""
from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from invcomp.errors import InvcompError
from invcomp.files import DEFAULT_MAX_PIXELS
from invcomp.service.items import check_writable, read_bytes, write_bytes


@dataclass(frozen=True)
class DecodeOptions:
    """How files are decoded: the one home of the defaults of ``invcomp decode``, ``invcomp batch decode`` and the web
    app. ``model``/``weights_path``: decode with this model (checked against the file's id and mode) instead of the
    installed one the file names; ``native``: the model resolution instead of the original size; ``keep_layers``:
    a layered file's first K layers; ``max_pixels``: refuse a larger declared size, from the header; ``device``:
    ``auto``, ``cpu`` or ``cuda``."""

    model: Optional[str] = None
    weights_path: Optional[str] = None
    native: bool = False
    keep_layers: Optional[int] = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    device: str = "auto"

    def check(self) -> None:
        """Refuse, before any work, option combinations that cannot work."""
        check_decode_options(self.model, self.weights_path)


def decode_defaults(**changes: Any) -> dict[str, Any]:
    """The :class:`DecodeOptions` as a dict, with ``changes`` (the ``options`` of a batch decode)."""
    return asdict(DecodeOptions(**changes))


def check_decode_options(model: Optional[str], weights_path: Optional[str]) -> None:
    """Refuse, before any work, option combinations that cannot work."""
    if weights_path is not None and model is None:
        raise InvcompError("--weights goes with --model (a user model that takes a state_dict)")


def decode_item(src: Path, dst: Path, options: DecodeOptions, *, force: bool, cache: dict,
                device: Optional[str] = None) -> tuple[dict, str]:
    """Decode ``src`` to the PNG ``dst`` (written atomically) as ``options`` say, with a codec from ``cache`` (shared
    by the items of one request): its report ``(row, human line)``. ``device``: the resolved device (default: the
    options', resolved here)."""
    from invcomp.faces.decode import decode_any
    from invcomp.formats import layered as layers
    from invcomp.formats import photo as container
    from invcomp.formats.sniff import MAX_FILE_BYTES
    from invcomp.imageio import crop_box

    if device is None:
        from invcomp.nets import resolve_device

        device = resolve_device(options.device)
    o = options
    check_writable(dst, force)
    data = read_bytes(src, MAX_FILE_BYTES, ".ivc file")
    total = layers.count(data) if layers.is_layered(data) else 1
    if o.keep_layers is not None:
        if container.is_photo(data):
            raise InvcompError("--layers is for layered files; this is a photo file (see `invcomp info`)")
        data = layers.truncate(data, o.keep_layers)
    t0 = time.perf_counter()
    header, codec, img, photo = decode_any(data, cache=cache, model=o.model, weights=o.weights_path, native=o.native,
                                           max_pixels=o.max_pixels, device=device, name=str(src))
    seconds = time.perf_counter() - t0
    buf = io.BytesIO()
    img.save(buf, "PNG")
    write_bytes(dst, buf.getvalue(), force)
    row: dict[str, Any] = {"input": str(src), "output": str(dst), "width": img.width, "height": img.height,
                           "model": codec.name, "mode": codec.mode_key, "seconds": round(seconds, 4), "coded_box": None,
                           "layers": o.keep_layers or total, "layers_in_file": total}
    human = f"{src} -> {dst}: {img.width}x{img.height}, {seconds * 1000:.0f} ms"
    if photo is not None:
        row["photo"] = photo
        human += (f" ({photo['faces']} face{'s' * (photo['faces'] != 1)}, background {photo['background']}"
                  + (f", detail layer {photo['detail']['bytes']} B" if photo.get("detail") else "")
                  + (", grayscale" if photo["grayscale"] else "") + ")")
    elif not o.native and header.fit == "crop" and header.width != header.height:
        left, top, side = crop_box(header.width, header.height)
        row["coded_box"] = [left, top, side, side]
        human += f" (only the centre {side}x{side} was coded; the rest of the frame is grey)"
    return row, human
