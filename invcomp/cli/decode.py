"""``invcomp decode``: ``.ivc`` files to PNG, each with the codec its header names."""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import click

from invcomp.codecs.settings import DEFAULT_MAX_PIXELS
from invcomp.errors import InvcompError
from invcomp.cli.outputs import Report, guard
from invcomp.nets import resolve_device
from invcomp.cli.common import (check_jobs, check_writable, device_option, exit_refused, expand_inputs, item_error,
                     option_defaults, output_paths, read_bytes, write_bytes)


DECODE_OPTIONS = [  # how a file is decoded: shared by `invcomp decode` and `invcomp batch decode`
    click.option("--model", default=None, help="Model to decode with (as for encode; a user model runs its file's code); "
                 "checked against the file's model id and mode.  [default: the installed model the file names]"),
    click.option("--weights", "weights_path", default=None, help="State_dict for a user model."),
    click.option("--native", is_flag=True, help="Write the model resolution instead of the original size."),
    click.option("--layers", "keep_layers", default=None, type=click.IntRange(1),
                 help="Layered files (--mode layered): decode only the first K layers (1: the base).  [default: all]"),
    click.option("--max-pixels", default=DEFAULT_MAX_PIXELS, show_default=True, type=click.IntRange(1),
                 help="Refuse a file whose declared original size is larger (checked from the header, before any work)."),
    device_option(),
]


def decode_options(fn: Any) -> Any:
    """Apply :data:`DECODE_OPTIONS` to a click command (in their order, first on top)."""
    for option in reversed(DECODE_OPTIONS):
        fn = option(fn)
    return fn


def decode_defaults(**changes: Any) -> dict[str, Any]:
    """The values of :data:`DECODE_OPTIONS` when none is given, with ``changes`` (the ``options`` of a batch decode)."""
    return {**option_defaults(decode_options), **changes}


def check_decode_options(model: Optional[str], weights_path: Optional[str]) -> None:
    """Refuse, before any work, option combinations that cannot work."""
    if weights_path is not None and model is None:
        raise InvcompError("--weights goes with --model (a user model that takes a state_dict)")


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", help="Output .png file (one input), a folder, or - for stdout.  "
              "[default: NAME.decoded.png beside each input]")
@decode_options
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file per line on stdout, in input order.")
@guard
def decode(files: Sequence[Path], output: Optional[str], model: Optional[str], weights_path: Optional[str], native: bool,
           keep_layers: Optional[int], max_pixels: int, device: str, force: bool, as_json: bool) -> None:
    """Decode .ivc FILES (files, folders of .ivc files, or - for stdin) to PNG: one generator pass each.

    With --fit crop (the encoder's default) only the centre square of a non-square
    image was coded: it is put back where it came from, and the rest of the frame is grey.
    """
    from tqdm import tqdm

    check_decode_options(model, weights_path)
    inputs = expand_inputs(files, (".ivc",))
    outs = output_paths(inputs, output, ".decoded.png")
    report, cache = Report(as_json, to_stderr=any(str(o) == "-" for o in outs)), {}
    jobs = list(zip(inputs, outs))
    refused = check_jobs(jobs, force)  # missing inputs, unwritable outputs: found before torch is imported
    if all(refused):
        exit_refused(report, jobs, refused)
    dev = resolve_device(device)
    debug = click.get_current_context().find_root().params.get("debug", False)
    for (src, dst), err in tqdm(list(zip(jobs, refused)), desc="decode", disable=None, file=sys.stderr, leave=False):
        if err is not None:
            report.failure(str(src), err.reason)
            continue
        try:
            row, human = decode_one(src, dst, model, weights_path, native, max_pixels, force, cache, dev, keep_layers)
        except Exception as e:  # noqa: BLE001  (a bug or MemoryError must not abort the rest of the batch)
            report.failure(str(src), item_error(e, debug).reason)
            continue
        report.success(row, human)
    sys.exit(report.finish())


def decode_one(src: Path, dst: Path, model: Optional[str], weights: Optional[str], native: bool, max_pixels: int,
               force: bool, cache: dict, device: str, keep_layers: Optional[int] = None) -> tuple[dict, str]:
    """Decode ``src`` to the PNG ``dst`` (written atomically) with a codec from ``cache``: its report (row, line)."""
    from invcomp.formats import ivc as bitstream
    from invcomp.formats import layered as layers
    from invcomp.formats import photo as container
    from invcomp.faces.decode import decode_any
    from invcomp.imageio import crop_box

    check_writable(dst, force)
    data = read_bytes(src, max(bitstream.max_file_bytes(), layers.MAX_FILE_BYTES, container.MAX_FILE_BYTES), ".ivc file")
    total = layers.count(data) if layers.is_layered(data) else 1
    if keep_layers is not None:
        if container.is_photo(data):
            raise InvcompError("--layers is for layered files; this is a photo file (see `invcomp info`)")
        data = layers.truncate(data, keep_layers)
    t0 = time.perf_counter()
    header, codec, img, photo = decode_any(data, cache=cache, model=model, weights=weights, native=native,
                                           max_pixels=max_pixels, device=device, name=str(src))
    seconds = time.perf_counter() - t0
    buf = io.BytesIO()
    img.save(buf, "PNG")
    write_bytes(dst, buf.getvalue(), force)
    row: dict[str, Any] = {"input": str(src), "output": str(dst), "width": img.width, "height": img.height,
                           "model": codec.name, "mode": codec.mode_key, "seconds": round(seconds, 4), "coded_box": None,
                           "layers": keep_layers or total, "layers_in_file": total}
    human = f"{src} -> {dst}: {img.width}x{img.height}, {seconds * 1000:.0f} ms"
    if photo is not None:
        row["photo"] = photo
        human += (f" ({photo['faces']} face{'s' * (photo['faces'] != 1)}, background {photo['background']}"
                  + (", grayscale" if photo["grayscale"] else "") + ")")
    elif not native and header.fit == "crop" and header.width != header.height:
        left, top, side = crop_box(header.width, header.height)
        row["coded_box"] = [left, top, side, side]
        human += f" (only the centre {side}x{side} was coded; the rest of the frame is grey)"
    return row, human
