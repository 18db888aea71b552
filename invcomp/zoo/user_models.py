"""The user's own model registry: names for models that are not shipped.

It lives in ``$INVCOMP_HOME/models.json`` (default ``~/.config/invcomp/models.json``). Each entry holds the
model spec (a ``.pt`` path, a TorchScript file, ``file.py:factory`` or ``package.module:factory``), the
optional ``--weights`` path, the sha256 id of the weights as loaded at registration, the sha256 of a ``.pt``
model's ``.json`` config, and the sha256 of a ``file.py:factory`` entry's ``.py`` file (``code_sha256``). Loading a
registered name checks them again, so a changed file is refused rather than silently decoding with other weights,
and a changed ``.py`` file is refused before any of it runs.
A ``file.py:factory`` entry runs that file's code whenever it is loaded, by design: the code registered, no other.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from invcomp.errors import InvcompError

FILE = "models.json"


def user_home() -> Path:
    """``$INVCOMP_HOME`` or ``~/.config/invcomp``."""
    return Path(os.environ.get("INVCOMP_HOME") or Path.home() / ".config" / "invcomp")


def user_models() -> dict[str, dict]:
    """Registered user models by name (empty when there is no registry file)."""
    path = user_home() / FILE
    if not path.exists():
        return {}
    try:
        rows = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise InvcompError(f"bad user model registry {path}: {e}") from None
    if not isinstance(rows, dict):
        raise InvcompError(f"bad user model registry {path}: not a JSON object")
    for name, entry in rows.items():
        _check_entry(path, name, entry)
    return rows


def _check_entry(path: Path, name: str, entry: object) -> None:
    """One-line error naming the file and the entry for anything but ``{"model": str, "weights": str|null,
    "sha256": 64 hex digits}``."""
    def bad(why: str) -> InvcompError:
        return InvcompError(f"bad user model registry {path}: entry {name!r} {why}")

    if not isinstance(entry, dict):
        raise bad(f"is a {type(entry).__name__}, not an object")
    if not isinstance(entry.get("model"), str) or not entry["model"]:
        raise bad("has no model spec")
    if entry.get("weights") is not None and not isinstance(entry["weights"], str):
        raise bad("has a weights path that is not a string")
    if not _is_sha256(entry.get("sha256")):
        raise bad("has no valid sha256 (64 lowercase hex digits)")
    if entry.get("config_sha256") is not None and not _is_sha256(entry["config_sha256"]):
        raise bad("has a config_sha256 that is not 64 lowercase hex digits")
    if entry.get("code_sha256") is not None and not _is_sha256(entry["code_sha256"]):
        raise bad("has a code_sha256 that is not 64 lowercase hex digits")


def registered_code(name: str, entry: dict) -> Optional[str]:
    """The sha256 that the ``.py`` file of user model ``name`` must have before it is imported (``None``: the entry
    is not a ``file.py:factory``). An entry registered before code was hashed is refused: re-register it."""
    from invcomp.nets.generators.custom import _split

    parts = _split(entry["model"])
    if parts is None or not parts[0].endswith(".py"):
        return None
    if entry.get("code_sha256") is None:
        raise InvcompError(f"user model {name!r} ({entry['model']}) was registered without the sha256 of its .py file, "
                           f"so a changed file could run: re-register it with invcomp models --register {name} --force")
    return str(entry["code_sha256"])


def _is_sha256(v: object) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _absolute(spec: str) -> str:
    """Make the file part of a spec absolute, so the entry works from any folder."""
    head, sep, tail = spec.rpartition(":")
    if sep and head.endswith(".py") and Path(head).exists():
        return f"{Path(head).resolve()}:{tail}"
    return str(Path(spec).resolve()) if Path(spec).exists() else spec


def register(name: str, spec: str, weights: Optional[str], sha256: str, *, shipped: set[str], force: bool = False,
             config_sha256: Optional[str] = None, code_sha256: Optional[str] = None) -> dict:
    """Add ``name`` -> (spec, weights, sha256, config_sha256, code_sha256) to the user registry; returns the entry.

    ``config_sha256`` is the sha256 of the ``.json`` config beside a ``.pt`` model (None when there is none): the
    config changes the decode, so loading the name refuses an edited, added or removed config. ``code_sha256`` is
    the sha256 of a ``file.py:factory`` spec's file (required for one): loading the name refuses an edited file
    before it is imported."""
    from invcomp.nets.generators.custom import _split

    parts = _split(spec)
    if parts is not None and parts[0].endswith(".py") and code_sha256 is None:
        raise InvcompError(f"registering {spec} needs the sha256 of its .py file")
    from invcomp.files import atomic_write

    if not name or any(c in name for c in "/\\:") or name.startswith("."):
        raise InvcompError(f"bad model name {name!r}: use letters, digits, '-', '_' or '.'")
    if name in shipped:
        raise InvcompError(f"{name!r} is a shipped model; choose another name")
    rows = user_models()
    if name in rows and not force:
        raise InvcompError(f"user model {name!r} exists (use --force to replace it)")
    entry = {"model": _absolute(spec), "weights": str(Path(weights).resolve()) if weights else None, "sha256": sha256,
             "config_sha256": config_sha256}
    if code_sha256 is not None:
        entry["code_sha256"] = code_sha256
    rows[name] = entry
    home = user_home()
    atomic_write(home / FILE, (json.dumps(rows, indent=2, sort_keys=True) + "\n").encode(), force=True)
    return entry
