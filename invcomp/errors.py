"""The project's one error type.

Everything that a user can cause (a corrupt bitstream, an unknown model, an
unreadable image, a bad option) raises :class:`InvcompError`. The CLI turns it
into one line on stderr and a non-zero exit; anything else is a bug.
"""
from __future__ import annotations


class InvcompError(ValueError):
    """A clear, user-facing error. Subclasses ``ValueError``."""


class BitstreamError(InvcompError):
    """A ``.ivc`` bitstream could not be parsed (magic, version, truncation, CRC)."""


class UnknownModelError(InvcompError):
    """A bitstream or command names a generator that is not available here."""


class LpipsUnavailable(InvcompError):
    """LPIPS cannot run because its backbone weights cannot be loaded; ``short`` says why, without the remedy."""

    def __init__(self, message: str, short: str | None = None) -> None:
        super().__init__(message)
        self.short = short or message


class UsageError(InvcompError):
    """The command was called wrongly (a missing source, a bad manifest): one line and exit status 2."""
