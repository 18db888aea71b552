"""What the codec commands share: expanding inputs (files, folders, ``-``), mapping them to outputs,
reading and writing bytes (``-`` is stdin/stdout), and the options every codec command takes."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import click

from ..errors import InvcompError
from ..outputs import atomic_write

STDIO = Path("-")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".avif",
                  ".heic", ".jxl", ".jp2")


def expand_inputs(paths: Sequence[Path], suffixes: tuple[str, ...]) -> list[Path]:
    """Files as given; a folder becomes its files with ``suffixes`` (recursive, sorted); ``-`` is stdin (once)."""
    out: list[Path] = []
    for p in paths:
        if str(p) != "-" and p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes)
            if not found:
                raise InvcompError(f"folder {p} holds no {'/'.join(suffixes[:3])}... files")
            out += found
        else:
            out.append(p)
    if sum(str(p) == "-" for p in out) > 1:
        raise InvcompError("stdin (-) can be read only once")
    return out


def output_paths(inputs: Sequence[Path], out: Optional[str], suffix: str) -> list[Path]:
    """Map inputs to outputs.

    ``out`` is a file (one input), ``-`` (stdout, one input), or a folder: an existing one, one given with a
    trailing slash, or a new name without ``suffix`` when there are several inputs (``NAME + suffix`` inside
    it). Without ``out``, each output sits beside its input (stdin's goes to stdout).
    """
    if out is None:
        return [STDIO if str(p) == "-" else p.with_name(p.stem + suffix) for p in inputs]
    if out == "-":
        if len(inputs) > 1:
            raise InvcompError(f"-o - (stdout) takes one input, not {len(inputs)}")
        return [STDIO]
    o = Path(out)
    as_dir = o.is_dir() or out.endswith(("/", os.sep)) or len(inputs) > 1
    if not as_dir:
        return [o]
    if o.exists() and not o.is_dir():
        raise InvcompError(f"-o {out} must be a folder when there are {len(inputs)} inputs")
    if not o.exists() and not out.endswith(("/", os.sep)) and o.suffix.lower() == suffix[suffix.rfind('.'):].lower():
        raise InvcompError(f"-o {out} names one {o.suffix} file, but there are {len(inputs)} inputs; "
                           f"give a folder (e.g. -o {o.with_suffix('')}/)")
    paths = [o / ("stdin" + suffix if str(p) == "-" else p.stem + suffix) for p in inputs]
    dupes = {x for x in paths if paths.count(x) > 1}
    if dupes:
        raise InvcompError(f"two inputs would write the same output {sorted(dupes)[0]}")
    return paths


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``, or of stdin for ``-``; one-line errors."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise InvcompError(f"cannot read {path}: it is a folder") from None
    except OSError as e:
        raise InvcompError(f"cannot read {path}: {e.strerror or e}") from None


def check_writable(dst: Path, force: bool) -> None:
    """Refuse, before any work, an output that exists (without ``force``) or is a folder."""
    if str(dst) == "-":
        return
    if dst.is_dir():
        raise InvcompError(f"output {dst} is a folder")
    if dst.exists() and not force:
        raise InvcompError(f"{dst} exists (use --force to overwrite)")


def write_bytes(dst: Path, data: bytes, force: bool) -> None:
    """Write ``data`` atomically to ``dst``, or to stdout for ``-``."""
    if str(dst) == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        atomic_write(dst, data, force=force)
    except IsADirectoryError:
        raise InvcompError(f"output {dst} is a folder") from None
    except OSError as e:
        raise InvcompError(f"cannot write {dst}: {e.strerror or e}") from None


def device_option(default: str = "auto") -> Callable:
    return click.option("--device", default=default, show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
