"""Mode 4, GC: generative compression of the whole image at its own size (Agustsson et al. 2019).

**Encode:** the image (any size, 1x1 up) is padded to multiples of 16; the encoder E runs over tiles of the code
grid (:mod:`invcomp.nets.generative.tiles`) to C feature planes at /16; each value becomes the index of its nearest of the L
learned centres; the C x h x w symbols are range-coded under the model's context tables (:mod:`invcomp.coding.gridcode`,
:mod:`invcomp.coding.rangecoder`: the same coder as every mode). No search: one pass.

**Decode:** the symbols' centre values go through the generator G, tile by tile, and the picture is cropped back.

**The file** is a version-2 file (:mod:`invcomp.formats.ivc`): magic, the model's 2-byte id, flags (mode 4, the
whole-frame bit set, bit-depth field 0: the rate is the model's C and L), the size, the range-coded symbols and the
CRC-16; the grid size follows from the image size, so nothing else is stored. A file of another mode, or of
another GC model, is refused.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.codecs import budget
from invcomp.errors import BitstreamError, InvcompError, UnknownModelError
from invcomp.coding import gridcode
from invcomp.nets.generative import tiles
from invcomp.zoo.generative import LoadedGC, is_kind, load_gc_model
from invcomp.imageio import from_image
from invcomp.codecs.base import Codec, Encoded, Progress
from invcomp.codecs.entropy import check_mode
from invcomp.codecs.settings import DEFAULT_MAX_PIXELS, EncodeSettings, resolve_one_pass
from invcomp.codecs.registry import register_mode

MODE_GC = 4
DEFAULT_GC = "gc-utkface-c8"


def gc_header(model_id: bytes, width: int, height: int, mode: int, escaped: bool = False) -> bitstream.Header:
    """The version-2 header of a GC or SC file (whole frame; bit-depth field 0, or 1 where the symbols are coded
    under the uniform escape tables: :func:`invcomp.coding.gridcode.encode_bounded`)."""
    return bitstream.Header(model_id=model_id, latent_dim=0, resolution=0, width=width, height=height, bits=2 + escaped,
                            coder="prior", norm=None, scaling="max", fit="squash", mode=mode, version=2)


def read_header(data: bytes, codec: Any, max_pixels: Optional[int] = None) -> tuple[bitstream.Header, bytes]:
    """Parse a GC/SC file for ``codec`` and return its header and payload; refuses another mode or model, and a
    declared size over ``max_pixels`` (default: the codec's ``max_pixels``)."""
    header, payload, _ = bitstream.unpack(data)
    check_mode(header, codec)
    limit: int = max_pixels or getattr(codec, "max_pixels", None) or DEFAULT_MAX_PIXELS
    budget.check_file(data, limit, native=True)  # the picture, its tiles (and SC's grid) against the decode budget
    if header.version != 2 or header.bits not in (2, 3) or header.fit != "squash":
        raise BitstreamError("invalid .ivc field: a GC or SC file is version 2 with bit-depth field 0 or 1 and the "
                             "whole-frame flag")
    if header.model_id != codec.model_id_v2:
        raise UnknownModelError(f"bitstream needs model id {header.model_id.hex()}, but {codec.name!r} has id "
                                f"{codec.model_id_v2.hex()}; see `invcomp models`")
    return header, payload


def image_array(img: Image.Image) -> np.ndarray:
    """RGB PIL image -> uint8 ``(H, W, 3)``."""
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def symbols_of(model: LoadedGC, img: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(C, h, w)`` and symbols ``(C, h, w)`` int64 of a uint8 image ``(H, W, 3)`` (tiled E, then Q)."""
    net = model.net
    dev = next(net.parameters()).device
    with torch.no_grad():
        feats = tiles.encode_tiled(lambda x: net.E(x.to(dev)).cpu(), img)
        return feats, net.Q.symbols(feats.to(dev)).cpu()


def pixels_of(model: LoadedGC, code: torch.Tensor, height: int, width: int, *, tile: int = tiles.TILE) -> np.ndarray:
    """uint8 ``(height, width, 3)`` that G draws from a map of centre values ``(C, h, w)`` (tiled)."""
    net = model.net
    dev = next(net.parameters()).device
    return tiles.decode_tiled(lambda c: net.G(c.to(dev)).cpu(), code, height, width, tile=tile)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> ``(3, H, W)`` in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float() / 127.5 - 1.0


def check_settings(settings: Optional[EncodeSettings], title: str) -> EncodeSettings:
    """One-pass settings with nothing that a GC-family mode would ignore: no bits, scaling or Elias coder."""
    s = settings or EncodeSettings()
    if s.bits is not None or s.scaling is not None:
        raise InvcompError(f"the {title} mode's rate is set by its model (C channels, L centres): drop --bits and "
                           "--scaling; pick a model of another rate (`invcomp models`)")
    if s.coder not in ("auto", "prior"):
        raise InvcompError(f"the {title} mode range-codes under its model's tables: --coder {s.coder} does not apply")
    return resolve_one_pass(s, bits=2, scaling="max", mode=title)


@register_mode
class GCCodec(Codec):
    """A GC codec (:class:`~invcomp.zoo.generative.LoadedGC`): whole images at their own size; see the module doc."""

    mode = MODE_GC
    mode_key = "gc"
    title = "GC"

    def __init__(self, model: LoadedGC, settings: Optional[EncodeSettings] = None) -> None:
        s = check_settings(settings, self.title)
        super().__init__(name=model.name, model_id=bytes.fromhex(model.sha256[:8]), resolution=0, latent_dim=0,
                         settings=s, prior="normal", norm_free=True, model_id_v2=model.model_id)
        self.model = model
        self.tile = tiles.TILE
        self.max_pixels = DEFAULT_MAX_PIXELS  # decode refuses larger declared sizes before any work

    @classmethod
    def load(cls, spec: Optional[str], settings: Optional[EncodeSettings] = None, *, device: str = "cpu",
             for_decode: bool = False, **options: Any) -> "GCCodec":
        """``spec``: a registered GC model (default :data:`DEFAULT_GC`) or a ``gc.pt`` with its files beside it."""
        given = sorted(k for k, v in options.items() if v is not None)
        if given:
            raise InvcompError(f"{', '.join(given)} do not apply to the {cls.title} mode")
        return cls(load_gc_model(spec or DEFAULT_GC, device), None if for_decode else settings)

    @classmethod
    def claims(cls, spec: str) -> bool:
        return is_kind(spec, "gc")

    def describe(self) -> dict[str, Any]:
        cfg = self.model.config
        return {**super().describe(), "bits": None, "channels": cfg.channels, "centres": cfg.centres}

    def find_symbols(self, target: torch.Tensor, progress: Optional[Progress]) -> tuple[torch.Tensor, list[dict]]:
        raise NotImplementedError("GC codes whole images at their own size: use encode()")

    def synthesise(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("GC decodes whole images at their own size: use decode()")

    # --- encoding ----------------------------------------------------------------------------------------
    def check_goal(self, goal: Any) -> None:
        raise InvcompError(f"the {self.title} mode's rate is set by its model (and, for SC, the preserved area): drop "
                           "the --target-*, or pick a model of another rate (`invcomp models`)")

    def encode(self, images: list[Image.Image], *, goal: Any = None, progress: Optional[Progress] = None,
               init: Any = None) -> list[Encoded]:
        """Encode RGB images of any size; ``Encoded.target`` and ``recon`` are ``(3, H, W)`` in [-1, 1], ``z`` the
        features and ``levels`` the symbols, flattened in (C, h, w) order. An image that is refused (too large a
        side) gets its :class:`InvcompError` in its place in the list, as :class:`~invcomp.faces.photo.PhotoCodec`
        expects."""
        if goal is not None:  # its rate is the model's
            self.check_goal(goal)
        if init is not None:
            raise InvcompError(f"the {self.title} mode does no search: it has no start")
        out: list[Any] = []
        for im in images:
            try:
                data, header, feats, sym, recon = self.encode_one(image_array(im))
            except InvcompError as e:  # this image's refusal; the others are still coded
                out.append(e)
                continue
            assert recon is not None
            out.append(Encoded(data, header, from_image(im), to_tensor(recon), feats.flatten(), sym.flatten(),
                               {"symbols": int(sym.numel()), "grid": list(sym.shape)}))
            if progress is not None:
                progress(1)
        return out

    def encode_one(self, img: np.ndarray, *, recon: bool = True) -> tuple[bytes, bitstream.Header, torch.Tensor, torch.Tensor,
                                                                         Optional[np.ndarray]]:
        """A uint8 image ``(H, W, 3)`` -> file bytes, header, features, symbols ``(C, h, w)`` and the decoded uint8
        (``None`` without ``recon``: the bytes alone, as a file writer needs)."""
        h, w = img.shape[:2]
        gc_header(self.model.model_id, w, h, self.mode).validate()
        feats, sym = symbols_of(self.model, img)
        payload, escaped = gridcode.encode_bounded(sym.numpy(), np.ones(sym.shape, dtype=bool), self.model.prior.code)
        header = gc_header(self.model.model_id, w, h, self.mode, escaped)
        data = bitstream.pack_v2(header, None, payload)
        pixels = pixels_of(self.model, self.model.net.Q.values(sym), h, w, tile=self.tile) if recon else None
        return data, header, feats, sym, pixels

    # --- decoding ----------------------------------------------------------------------------------------
    def decode(self, data: bytes) -> tuple[bitstream.Header, torch.Tensor]:
        """GC bytes -> header and the picture ``(3, H, W)`` in [-1, 1] at the original size."""
        header, pixels = self.decode_pixels(data)
        return header, to_tensor(pixels)

    def decode_picture(self, data: bytes, *, native: bool = False,
                       max_pixels: Optional[int] = None) -> tuple[bitstream.Header, Image.Image]:
        """The picture at its own size (``native`` changes nothing: GC has no model resolution), through the uint8
        path: no float copy of a large image."""
        header, pixels = self.decode_pixels(data, max_pixels=max_pixels)
        return header, Image.fromarray(pixels)

    def decode_pixels(self, data: bytes, *, max_pixels: Optional[int] = None) -> tuple[bitstream.Header, np.ndarray]:
        """GC bytes -> header and the uint8 picture ``(H, W, 3)`` (the lean path: no float copy of the image)."""
        header, payload = read_header(data, self, max_pixels)
        cfg = self.model.config
        gh, gw = tiles.grid_shape(header.height, header.width)
        sym = gridcode.decode_bounded(payload, np.ones((cfg.channels, gh, gw), dtype=bool), self.model.prior.code,
                                      header.bits == 3)
        code = self.model.net.Q.values(torch.from_numpy(sym))
        return header, pixels_of(self.model, code, header.height, header.width, tile=self.tile)
