"""CLI plumbing: where output files go, atomic writing, the batch report, and one-line errors."""
from __future__ import annotations

import functools
import json
import math
import logging
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import click

from .errors import InvcompError, UsageError

log = logging.getLogger(__name__)


def atomic_write(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write ``data`` to a temporary file in ``path``'s folder, then move it into place.

    Without ``force`` the move is an atomic create-if-absent (a hard link of the temporary file, which fails
    when ``path`` exists), so of two concurrent writers exactly one wins and the other gets the usual
    "exists" error; with ``force`` it is a rename over the old file. A crash leaves either no file or the old
    one. The temporary file is named ``.NAME.PID.*.tmp``; one left by a killed writer (its process is gone) is
    swept by the next write to the same folder, so a kill inside the write window leaves nothing for long.
    """
    path = Path(path)
    if path.exists() and not force:
        raise InvcompError(f"{path} exists (use --force to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual umask-based mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise InvcompError(f"{path} exists (use --force to overwrite)") from None
            except OSError:  # a file system without hard links: fall back to a checked rename
                if path.exists():
                    raise InvcompError(f"{path} exists (use --force to overwrite)") from None
                os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def unwritable_folder(folder: Path) -> Optional[str]:
    """Why no file can be created in ``folder`` (made with its parents when missing, as :func:`atomic_write` does),
    or ``None``: its nearest existing ancestor must be a folder that this process may write in. Found without
    writing anything."""
    p = Path(folder)
    while not p.exists() and p.parent != p:
        p = p.parent
    if not p.is_dir():
        return f"{p} is a file, not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable"
    return None


_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp$")


def sweep_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the hidden ``.NAME.PID.*.tmp`` files in ``folder`` whose writer process no longer exists.

    Only files with that exact pattern are touched, and only when their PID is not a live process on this
    machine (a live or reused PID keeps its file: never a concurrent writer's). Returns what was removed.
    """
    removed = []
    try:
        names = [e.name for e in os.scandir(folder) if e.name.startswith(".") and e.name.endswith(".tmp")]
    except OSError:
        return removed
    for name in names:
        m = _TEMPORARY.match(name)
        if m is None or _alive(int(m.group(1))):
            continue
        try:
            (folder / name).unlink()
            removed.append(folder / name)
        except OSError:
            pass
    if removed:
        log.info("removed %d temporary file(s) left by killed writers in %s", len(removed), folder)
    return removed


def _alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not a PID we wrote: leave it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class Report:
    """Collects per-item results; prints JSON lines or human lines to stdout and a summary to stderr."""

    as_json: bool
    ok: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    to_stderr: bool = False  # when stdout carries the data (-o -), the report lines go to stderr

    def success(self, row: dict, human: str) -> None:
        self.ok += 1
        print(dumps(row) if self.as_json else human, flush=True, file=sys.stderr if self.to_stderr else sys.stdout)

    def failure(self, item: str, reason: str) -> None:
        if reason.startswith(f"{item}: "):  # the message already names the file
            reason = reason[len(item) + 2:]
        self.failed.append((item, reason))
        if self.as_json:
            print(dumps({"input": item, "error": reason}), flush=True, file=sys.stderr if self.to_stderr else sys.stdout)
        else:
            print(f"invcomp: error: {item}: {reason}", file=sys.stderr, flush=True)

    def finish(self) -> int:
        """Print the summary (for batches of more than one) and return the exit code.

        A single failed item gets exactly one stderr line (in ``--json`` mode too).
        """
        total = self.ok + len(self.failed)
        if total > 1:
            reasons = "".join(f"\n  {i}: {r}" for i, r in self.failed)
            print(f"{self.ok} ok, {len(self.failed)} failed{reasons}", file=sys.stderr)
        elif self.failed and self.as_json:
            item, reason = self.failed[0]
            print(f"invcomp: error: {item}: {reason}", file=sys.stderr)
        return 1 if self.failed else 0


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else "-inf" if v < 0 else "nan"
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


def dumps(row: dict) -> str:
    """Strict JSON for one output line: non-finite floats (PSNR of identical images) become "inf" strings."""
    return json.dumps(_finite(row), allow_nan=False)


def resolve_device(name: str) -> str:
    """``--device``: ``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a clear error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InvcompError("--device cuda asked for, but no CUDA device is available")
    return name


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn InvcompError (and, without --debug, any exception) into one stderr line and exit 1 (2 for a
    :class:`~invcomp.errors.UsageError`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except InvcompError as e:
            if debug:
                raise
            click.echo(f"invcomp: error: {e}", err=True)
            sys.exit(2 if isinstance(e, UsageError) else 1)
        except Exception as e:  # a bug, not bad input: still one line unless --debug
            if debug:
                raise
            click.echo(f"invcomp: internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)", err=True)
            sys.exit(1)

    return wrapper
