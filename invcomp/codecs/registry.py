"""The table of modes: mode number -> codec class, filled by :func:`register_mode` as each mode's module is imported.

A mode is one module with one :class:`~invcomp.codecs.base.Codec` subclass decorated with
:func:`register_mode`; nothing else needs to change for the CLI (``encode``, ``decode``, ``compare``),
``invcomp bench`` and the fuzzer to handle it. Loading a codec (and importing the built-in modes) is
:mod:`invcomp.codecs.loader`'s.
"""
from __future__ import annotations

from typing import Any, TypeVar


MODES: dict[int, Any] = {}  # the Codec subclasses (not imported here: the base imports this table)
"""Mode number (0..7, the header's bits 5-7) -> codec class."""
MODE_TITLES: dict[int, str] = {}
"""Mode number -> human name, for messages (the registered modes')."""
BUILT_IN_TITLES = {0: "GAN-inversion", 1: "VAE-GAN", 2: "GAN-inversion+tone", 3: "layered", 4: "GC", 5: "SC"}
"""The built-in modes' names, known before their modules are imported (each class's ``title`` must match)."""
C = TypeVar("C", bound=type)


def mode_name(mode: int) -> str:
    """Human name of a bitstream mode: ``GAN-inversion (mode 0)``, ``VAE-GAN (mode 1)``, ``unknown (mode 5)``."""
    return f"{MODE_TITLES.get(mode, BUILT_IN_TITLES.get(mode, 'unknown'))} (mode {mode})"


def register_mode(cls: C) -> C:
    """Class decorator: add a :class:`Codec` subclass to :data:`MODES` under its ``mode`` number."""
    mode, key = cls.mode, cls.mode_key  # type: ignore[attr-defined]
    if not (isinstance(mode, int) and 0 <= mode <= 7):
        raise ValueError(f"mode must be 0..7 (three header bits), got {mode!r}")
    for other in MODES.values():
        if other is not cls and (other.mode == mode or other.mode_key == key) and other.__qualname__ != cls.__qualname__:
            raise ValueError(f"mode {mode} ({key}) is taken by {other.__qualname__}")
    MODES[mode] = cls
    MODE_TITLES[mode] = cls.title  # type: ignore[attr-defined]
    return cls


def unregister_mode(mode: int) -> None:
    """Remove a mode (tests register toy modes and take them away again)."""
    MODES.pop(mode, None)
    MODE_TITLES.pop(mode, None)
