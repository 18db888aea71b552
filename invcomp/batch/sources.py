"""What a batch job codes: ``SRC`` (a folder, a glob, or a JSONL/Parquet manifest of inputs) as new manifest
rows, each with its id and output path under ``--out``. Pure, but for listing files."""
from __future__ import annotations

import glob
import os
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from invcomp.errors import InvcompError, UsageError
from invcomp.batch.manifest import PARQUET, new_row, read_rows

MANIFEST_SUFFIXES = (".jsonl", ".ndjson", *PARQUET)


def output_for(item_id: str, out: Path, suffix: str) -> Path:
    """The output of an item: its id (a relative path) under ``out``, with ``suffix`` for its extension."""
    rel = PurePosixPath(item_id)
    if rel.is_absolute() or ".." in rel.parts:
        rel = PurePosixPath(*[p for p in rel.parts if p not in ("/", "..")])
    return out.joinpath(*rel.parts).with_suffix(suffix)


def _given_output(output: str, out: Path) -> Path:
    """A manifest row's own ``output``: relative to ``out``, and refused when it leaves ``out``, as written or once
    resolved (:func:`check_inside`)."""
    full = Path(os.path.normpath(out / output))
    root = Path(os.path.normpath(out))
    if full != root and root not in full.parents:
        raise UsageError(f"output {output} is outside --out {out}")
    check_inside(full, out, output)
    return full


def check_inside(full: Path, out: Path, shown: object) -> None:
    """Refuse an output whose resolved path leaves ``out`` resolved: a symbolic link to a folder elsewhere, inside
    ``--out``, on its way (``--out`` itself may be a link: its target is where outputs go)."""
    root, real = os.path.realpath(out), os.path.realpath(full)
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        raise UsageError(f"output {shown} is outside --out {out}: a symbolic link on its way leads to {real}")


def _files(src: str, suffixes: tuple[str, ...]) -> tuple[list[Path], Path]:
    """The files of a folder (recursive, with ``suffixes``) or a glob (every file it matches), sorted, and
    the folder their ids are relative to."""
    from invcomp.service.items import expand_inputs

    p = Path(src)
    if p.is_dir():
        try:
            return expand_inputs([p], suffixes), p
        except InvcompError as e:
            raise UsageError(str(e)) from None
    if glob.has_magic(src):
        found = sorted(Path(f) for f in glob.glob(src, recursive=True) if Path(f).is_file())
        if not found:
            raise UsageError(f"the pattern {src} matches no file")
        root = Path(src.split("*")[0].split("?")[0].split("[")[0])
        return found, root if root.is_dir() else root.parent
    what = "is a file, not a folder or a .jsonl/.parquet manifest" if p.exists() else "does not exist"
    raise UsageError(f"SRC {src} {what} (give a folder, a glob, or a .jsonl/.parquet manifest of inputs)")


def _manifest_items(src: Path) -> list[tuple[str, Path, Any]]:
    """(id, path, output or None) from a manifest of inputs: rows with ``path`` (relative to the manifest's
    folder), and optionally ``id`` and ``output``; an item listed twice appears once."""
    seen: dict[str, tuple[str, Path, Any]] = {}
    for n, row in enumerate(read_rows(src), 1):
        path = row.get("path")
        if not isinstance(path, str) or not path:
            raise UsageError(f"bad manifest {src}: row {n} has no 'path'")
        full = Path(path) if Path(path).is_absolute() else src.parent / path
        item_id = row.get("id") or (os.path.relpath(full, src.parent) if not Path(path).is_absolute() else path)
        if not isinstance(item_id, str):
            raise UsageError(f"bad manifest {src}: row {n} has a non-string 'id'")
        key = str(PurePosixPath(Path(item_id).as_posix()))
        if key in seen and seen[key][1] != full:
            raise UsageError(f"bad manifest {src}: id {key!r} is given to {seen[key][1]} and {full}")
        seen[key] = (key, full, row.get("output"))
    if not seen:
        raise UsageError(f"manifest {src} lists no input")
    return list(seen.values())


def items_for(src: str, out: Path, suffixes: tuple[str, ...], out_suffix: str) -> list[dict[str, Any]]:
    """The new manifest rows (pending) for ``src``: ids are paths relative to the folder (or the glob's
    fixed prefix, or the manifest's folder); outputs mirror them under ``out`` with ``out_suffix``.

    Two inputs that would write one output, or an output that is an input, are refused before any work.
    """
    from invcomp.service.items import distinct_outputs

    p = Path(src)
    if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
        triples = [(i, f, _given_output(o, out) if o else output_for(i, out, out_suffix)) for i, f, o in _manifest_items(p)]
    else:
        files, root = _files(src, suffixes)
        triples = []
        for f in files:
            item_id = PurePosixPath(Path(os.path.relpath(f, root)).as_posix())
            triples.append((str(item_id), f, output_for(str(item_id), out, out_suffix)))
    for _, _, o in triples:  # an output under a symlinked folder inside --out would be written elsewhere
        check_inside(o, out, o)
    try:
        distinct_outputs([f for _, f, _ in triples], [o for _, _, o in triples])
    except InvcompError as e:
        raise UsageError(str(e)) from None
    return [new_row(i, os.path.abspath(f), os.path.abspath(o)) for i, f, o in triples]


def stray_outputs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that never ran (no attempt) whose output already exists: a file this job did not write."""
    return [r for r in rows if not r.get("attempts") and os.path.lexists(r["output"])]
