"""``invcomp decode``: ``.ivc`` files to PNG, each with the codec its header names."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import click

from invcomp.cli.common import device_option, exit_refused
from invcomp.cli.outputs import Report, guard
from invcomp.service.decode import DecodeOptions, decode_item
from invcomp.service.items import check_jobs, expand_inputs, item_error, output_paths

_D = DecodeOptions()  # the defaults


DECODE_OPTIONS = [  # how a file is decoded: shared by `invcomp decode` and `invcomp batch decode`
    click.option("--model", default=None, help="Model to decode with (as for encode; a user model runs its file's code); "
                 "checked against the file's model id and mode.  [default: the installed model the file names]"),
    click.option("--weights", "weights_path", default=None, help="State_dict for a user model."),
    click.option("--native", is_flag=True, help="Write the model resolution instead of the original size."),
    click.option("--layers", "keep_layers", default=None, type=click.IntRange(1),
                 help="Layered files (--mode layered): decode only the first K layers (1: the base).  [default: all]"),
    click.option("--max-pixels", default=_D.max_pixels, show_default=True, type=click.IntRange(1),
                 help="Refuse a file whose declared original size is larger (checked from the header, before any work)."),
    device_option(_D.device),
]


def decode_options(fn: Any) -> Any:
    """Apply :data:`DECODE_OPTIONS` to a click command (in their order, first on top)."""
    for option in reversed(DECODE_OPTIONS):
        fn = option(fn)
    return fn


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

    options = DecodeOptions(model=model, weights_path=weights_path, native=native, keep_layers=keep_layers,
                            max_pixels=max_pixels, device=device)
    options.check()
    inputs = expand_inputs(files, (".ivc",))
    outs = output_paths(inputs, output, ".decoded.png")
    report, cache = Report(as_json, to_stderr=any(str(o) == "-" for o in outs)), {}
    jobs = list(zip(inputs, outs))
    refused = check_jobs(jobs, force)  # missing inputs, unwritable outputs: found before torch is imported
    if all(refused):
        exit_refused(report, jobs, refused)
    from invcomp.nets import resolve_device

    dev = resolve_device(device)
    debug = click.get_current_context().find_root().params.get("debug", False)
    for (src, dst), err in tqdm(list(zip(jobs, refused)), desc="decode", disable=None, file=sys.stderr, leave=False):
        if err is not None:
            report.failure(str(src), err.reason)
            continue
        try:
            row, human = decode_item(src, dst, options, force=force, cache=cache, device=dev)
        except Exception as e:  # noqa: BLE001  (a bug or MemoryError must not abort the rest of the batch)
            report.failure(str(src), item_error(e, debug).reason)
            continue
        report.success(row, human)
    sys.exit(report.finish())
