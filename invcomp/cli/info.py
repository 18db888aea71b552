"""``invcomp info``: every header field of ``.ivc`` files, and the faces and layers they hold."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import click

from invcomp.cli.outputs import Report, guard
from invcomp.service.items import check_readable, expand_inputs, read_bytes


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file per line on stdout, in input order.")
@guard
def info(files: Sequence[Path], as_json: bool) -> None:
    """Show what .ivc FILES hold: the container and every header field; for a layered file each layer; for a
    photo file the frame, the background, and each face's placement and own file.

    \b
    Example:
        invcomp info photo.ivc
        invcomp info --json *.ivc | jq .faces
    """
    from invcomp.formats.sniff import MAX_FILE_BYTES
    from invcomp.service import describe as fileinfo

    report = Report(as_json)
    limit = MAX_FILE_BYTES
    for src in expand_inputs(files, (".ivc",)):
        try:
            check_readable(src)
            row = fileinfo.describe(read_bytes(src, limit, ".ivc file"))
        except Exception as e:  # noqa: BLE001  (one bad file never stops the others)
            from invcomp.service.items import item_error

            report.failure(str(src), item_error(e).reason)
            continue
        report.success({"input": str(src), **row}, "\n".join([f"{src}:"] + fileinfo.lines(row, "  ")))
    sys.exit(report.finish())
