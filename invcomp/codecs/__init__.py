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
    "MODES": "registry", "register_mode": "registry", "unregister_mode": "registry", "load_codec": "loader",
    "codec_for_header": "loader", "mode_by_key": "loader", "modes": "loader",
    "mode_name": "registry",
    "InversionCodec": "modes.inversion", "VAEGANCodec": "modes.vaegan", "LayeredCodec": "modes.layered",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
