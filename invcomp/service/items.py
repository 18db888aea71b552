"""What every front end does with the items of a request: expanding inputs (files, folders, ``-``), mapping them to
outputs, refusing before any work what cannot be done, reading and writing bytes (``-`` is stdin/stdout), and the
one-line error of one item (which never fails the others)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from invcomp.errors import InvcompError
from invcomp.files import DEFAULT_MAX_PIXELS, atomic_write, image_cap, read_capped, unwritable_folder

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
        return distinct_outputs(inputs, [STDIO if str(p) == "-" else p.with_name(p.stem + suffix) for p in inputs])
    if out == "-":
        if len(inputs) > 1:
            raise InvcompError(f"-o - (stdout) takes one input, not {len(inputs)}")
        return [STDIO]
    o = Path(out)
    as_dir = o.is_dir() or out.endswith(("/", os.sep)) or len(inputs) > 1
    if not as_dir:
        return distinct_outputs(inputs, [o])
    if o.exists() and not o.is_dir():
        raise InvcompError(f"-o {out} must be a folder when there are {len(inputs)} inputs")
    if not o.exists() and not out.endswith(("/", os.sep)) and o.suffix.lower() == suffix[suffix.rfind('.'):].lower():
        raise InvcompError(f"-o {out} names one {o.suffix} file, but there are {len(inputs)} inputs; "
                           f"give a folder (e.g. -o {o.with_suffix('')}/)")
    return distinct_outputs(inputs, [o / ("stdin" + suffix if str(p) == "-" else p.stem + suffix) for p in inputs])


def distinct_outputs(inputs: Sequence[Path], outs: list[Path]) -> list[Path]:
    """Refuse, before any work and whatever the flags, two inputs with one output, or an output that is an input."""
    seen: dict[Path, Path] = {}
    ins = {p.resolve() for p in inputs if str(p) != "-"}
    for src, dst in zip(inputs, outs):
        if str(dst) == "-":
            continue
        key = dst.resolve()
        if key in seen:
            raise InvcompError(f"{seen[key]} and {src} would both write {dst}; use -o DIR/ with distinct names, or "
                               "code them in separate calls")
        if key in ins:
            raise InvcompError(f"the output {dst} is an input; choose another -o")
        seen[key] = src
    return outs


def read_bytes(path: Path, limit: Optional[int] = None, what: str = "file") -> bytes:
    """The bytes of ``path``, or of stdin for ``-``; one-line errors. With ``limit`` (default: the most bytes read
    for an image, :func:`invcomp.files.image_cap`), a larger input is refused: from its size, and after ``limit + 1``
    bytes whatever its size says (stdin too); devices, FIFOs and sockets are refused unread
    (:func:`invcomp.files.read_capped`)."""
    if str(path) == "-":
        data = sys.stdin.buffer.read(-1 if limit is None else limit + 1)
        if limit is not None and len(data) > limit:
            raise InvcompError(f"stdin is larger than the largest legal {what} ({limit:,} bytes)")
        return data
    return read_capped(path, image_cap(DEFAULT_MAX_PIXELS) if limit is None else limit, what)  # regular files only


def check_readable(src: Path) -> None:
    """Refuse, before any work (and before torch is imported), an input that is missing or a folder."""
    if str(src) == "-":
        return
    if not src.exists():
        raise InvcompError(f"cannot read {src}: no such file")
    if src.is_dir():
        raise InvcompError(f"cannot read {src}: it is a folder")


def check_writable(dst: Path, force: bool) -> None:
    """Refuse, before any work, an output that exists (without ``force``), is a folder, or whose folder cannot be
    written (:func:`~invcomp.files.unwritable_folder`)."""
    if str(dst) == "-":
        return
    if dst.is_dir():
        raise InvcompError(f"output {dst} is a folder")
    if dst.exists() and not force:
        raise InvcompError(f"{dst} exists (use --force to overwrite)")
    reason = unwritable_folder(dst.parent)
    if reason is not None:
        raise InvcompError(f"cannot write {dst}: {reason}")


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


@dataclass(frozen=True)
class ItemError:
    """Why one item of a batch failed: its one-line ``reason``, and whether it is ``permanent`` (bad input, an
    :class:`InvcompError`: the same on every try) or not (a bug, ``MemoryError``: worth another try)."""

    reason: str
    permanent: bool


def item_error(e: Exception, debug: bool = False) -> ItemError:
    """The :class:`ItemError` of an exception raised by one item; with ``debug`` a non-InvcompError is re-raised."""
    if isinstance(e, InvcompError):
        return ItemError(str(e), True)
    if debug:
        raise e
    return ItemError(f"internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)", False)


def check_jobs(pairs: Sequence[tuple[Path, Path]], force: bool) -> list[Optional[ItemError]]:
    """Per (input, output) pair, the :class:`ItemError` that refuses it before any work (a missing input, an output
    that cannot be written), or ``None``; cheap, and torch-free."""
    out: list[Optional[ItemError]] = []
    for src, dst in pairs:
        try:
            check_readable(src)
            check_writable(dst, force)
        except InvcompError as e:
            out.append(ItemError(str(e), True))
            continue
        out.append(None)
    return out
