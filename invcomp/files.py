"""The ground floor: file helpers every layer may use (hashing, safe weight loading, atomic saving).

Nothing here imports another invcomp module except :mod:`invcomp.errors`, so any module can import it
without creating a cycle.
"""
from __future__ import annotations

import hashlib
import json
import os
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
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvcompError(f"bad {what} {path}: {e}") from None
    if not isinstance(data, dict):
        raise InvcompError(f"bad {what} {path}: not a JSON object")
    return data
