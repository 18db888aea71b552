"""What kind of file some bytes are, from their first bytes alone, and the most bytes any reader takes."""
from __future__ import annotations

from typing import Optional

from invcomp.formats import ivc, layered, photo
from invcomp.formats.framing import MAGIC_PHOTO, MAGIC_V1, MAGIC_V2

KINDS = ("ivc-v1", "ivc-v2", "layered", "photo")
"""What :func:`sniff` answers: a version-1 or version-2 ``.ivc`` file of one image, a layered file, a photo file."""

MAX_FILE_BYTES = max(ivc.max_file_bytes(), layered.MAX_FILE_BYTES, photo.MAX_FILE_BYTES)
"""The largest legal file of any kind: readers refuse anything larger unread."""


def sniff(data: bytes) -> Optional[str]:
    """The kind of ``data`` (one of :data:`KINDS`) from its magic, or ``None`` for no kind of invcomp file. Only the
    first bytes are read: a truncated or corrupt file of a kind is still that kind (its reader refuses it)."""
    if data[:1] == bytes([MAGIC_PHOTO]):
        return "photo"
    if layered.is_layered(data):
        return "layered"
    if data[:1] == bytes([MAGIC_V2]):
        return "ivc-v2"
    if data[:len(MAGIC_V1)] == MAGIC_V1:
        return "ivc-v1"
    return None
