"""The ground floor: file helpers every layer may use (hashing, safe weight loading, atomic saving).

Nothing here imports another invcomp module except :mod:`invcomp.errors`, so any module can import it
without creating a cycle.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from .errors import InvcompError


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
    """``torch.save`` to a temporary file in the same folder, then rename (no half-written checkpoints)."""
    import torch

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_json(obj: Any, path: Path) -> None:
    """Write a dataclass or dict as indented JSON, atomically."""
    path = Path(path)
    data = asdict(obj) if is_dataclass(obj) else obj
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


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
