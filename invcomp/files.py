"""The ground floor: file helpers every layer may use (hashing, safe weight loading, atomic saving).

Nothing here imports another invcomp module except :mod:`invcomp.errors`, so any module can import it
without creating a cycle.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
import stat
import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Optional

from invcomp.errors import InvcompError

log = logging.getLogger(__name__)

REGISTRY_FILE = "models.json"  # the registry of shipped models, in pretrained_dir()
DEFAULT_MAX_PIXELS = 64_000_000  # Pillow's own bomb guard warns at ~89 Mpx; invcomp refuses earlier


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file; unreadable files raise :class:`InvcompError`."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise InvcompError(f"cannot read weights {path}: {e.strerror or e}") from None
    return h.hexdigest()


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def image_cap(max_pixels: int) -> int:
    """The most bytes read for an image of at most ``max_pixels`` pixels: 16 per pixel (an uncompressed 16-bit RGBA
    TIFF) plus 16 MiB of metadata. 64 Mpx: about 1 GB."""
    return 16 * max_pixels + (16 << 20)


def read_capped(path: str | os.PathLike, cap: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, at most ``cap`` of them; one-line :class:`InvcompError` otherwise.

    The cap does not trust ``stat``: at most ``cap + 1`` bytes are read, and a file that yields more (one that
    grows, or a /proc file whose size reads 0) is refused. Devices (``/dev/zero``), FIFOs and sockets are refused
    from ``os.stat`` before they are opened; the file is opened with ``O_NONBLOCK`` (so that a FIFO swapped in
    after the check cannot block the open) and checked again with ``fstat`` on the open descriptor."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
        if not stat.S_ISREG(st.st_mode):
            raise InvcompError(f"cannot read {name}: it is {_kind(st.st_mode)}, not a regular file")
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        fd = os.open(name, flags)
    except IsADirectoryError:
        raise InvcompError(f"cannot read {name}: it is a folder") from None
    except OSError as e:
        raise InvcompError(f"cannot read {name}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvcompError(f"cannot read {name}: it is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > cap:
            raise InvcompError(f"{name} is {st.st_size:,} bytes, larger than the largest legal {what} ({cap:,} bytes)")
        chunks, n = [], 0
        while n <= cap:
            try:
                chunk = os.read(fd, min(1 << 20, cap + 1 - n))
            except BlockingIOError:  # not a regular file after all: nothing more is waited for
                break
            if not chunk:
                break
            chunks.append(chunk)
            n += len(chunk)
        if n > cap:
            raise InvcompError(f"{name} is larger than the largest legal {what} ({cap:,} bytes)")
        return b"".join(chunks)
    except OSError as e:
        raise InvcompError(f"cannot read {name}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def load_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors; accepts a bare state_dict or ``{"state_dict": ...}``.

    Returns a dict of tensors on the CPU; anything else (code-carrying pickles, non-checkpoints) is refused.
    """
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InvcompError(f"weights file not found: {path}") from None
    except Exception as e:  # UnpicklingError for code-carrying pickles, RuntimeError/EOFError for non-checkpoints
        detail = (str(e).splitlines() or [""])[0][:160]
        raise InvcompError(
            f"cannot load weights {path} safely (weights_only=True): {type(e).__name__}{': ' + detail if detail else ''}"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InvcompError(f"{path} is not a state_dict of tensors")
    return obj


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` through :func:`atomic_write` (no half-written checkpoints; an existing file is replaced)."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write(Path(path), buf.getvalue(), force=True)


def write_json(obj: Any, path: Path) -> None:
    """Write a dataclass or dict as indented JSON through :func:`atomic_write` (an existing file is replaced)."""
    data = asdict(obj) if is_dataclass(obj) else obj
    atomic_write(Path(path), (json.dumps(data, indent=2, sort_keys=True) + "\n").encode(), force=True)


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; a missing, unreadable or malformed file raises one-line :class:`InvcompError`."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise InvcompError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:  # its message would quote the byte: errors never echo input bytes
        raise InvcompError(f"bad {what} {path}: not UTF-8 text (at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InvcompError(f"bad {what} {path}: {e}") from None
    if not isinstance(data, dict):
        raise InvcompError(f"bad {what} {path}: not a JSON object")
    return data


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


def pretrained_dir() -> Path:
    """Where the shipped weights live: ``$INVCOMP_PRETRAINED``, else the installed ``invcomp.pretrained`` package
    (a wheel), else ``pretrained/`` beside the source tree (a checkout)."""
    env = os.environ.get("INVCOMP_PRETRAINED")
    if env:
        return Path(env)
    try:
        from importlib.resources import files

        p = Path(str(files("invcomp.pretrained")))
        if (p / REGISTRY_FILE).exists():
            return p
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[1] / "pretrained"
