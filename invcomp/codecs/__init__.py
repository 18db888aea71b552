"""Codecs: one contract (:class:`Codec`: ``encode(images) -> [Encoded]``, ``decode(bytes) -> (Header, image)``)
for every mode, the shared entropy stage, the table of modes and the one loader.

    from invcomp.codecs import load_codec
    codec = load_codec("dcgan-utkface64")      # the defaults of `invcomp encode`
    files = [e.data for e in codec.encode(images)]

Names are imported lazily, so that ``invcomp.codecs.settings`` stays free of torch.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Codec": "base", "Encoded": "base", "prepare": "base", "stored_pixels": "base",
    "EncodeSettings": "settings",
    "MODES": "table", "register_mode": "table", "unregister_mode": "table", "load_codec": "table",
    "codec_for_header": "table", "mode_by_key": "table", "modes": "table",
    "mode_name": "table",
    "InversionCodec": "gan_inversion", "VAEGANCodec": "vaegan", "LayeredCodec": "layered",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
