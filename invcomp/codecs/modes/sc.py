"""Mode 5, SC: selective compression; the preserved regions keep GC's code, the rest is synthesised (Agustsson et al.).

**Encode:** as GC (mode 4), the image's symbols ``(C, h, w)``; the user's preserved pixels (``preserve``: a mask PNG
of the image's size or ``faces``; ``preserve_box``: boxes ``x,y,w,h``) become the cell mask, grown by the model's
``halo`` cells (:mod:`invcomp.nets.generative.masks`); only the symbols of those cells are coded. An optional semantic map
(``semantic``: a class-index PNG, :mod:`invcomp.nets.generative.semantic`) is coded losslessly at its grid.

**Decode:** the synthesiser (:mod:`invcomp.nets.generative.synth`) completes the dropped symbols from the kept ones, the mask and
the map; GC's generator draws the picture from the completed code.

**The file** is a version-2 file of mode 5 with the SC model's 2-byte id (its config names and pins the GC base), then
three records: ``varint n`` + the cell mask (``n`` bytes), ``varint m`` + the semantic grid (``m`` bytes; 0: no map),
and the kept symbols to the end; each record is range-coded under the model's context tables
(:mod:`invcomp.coding.gridcode`), then the CRC-16. ``Encoded.extra`` counts each record's bytes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.errors import BitstreamError, InvcompError
from invcomp.formats.framing import _Reader, _varint
from invcomp.coding import gridcode
from invcomp.nets.generative import masks
from invcomp.nets.generative import semantic as sem
from invcomp.coding.tables import load_prior
from invcomp.zoo.generative import GCPrior, LoadedGC, checked_files, is_kind, load_gc_model
from invcomp.nets.generative.synth import Synthesiser, complete, load_synth
from invcomp.nets.generative.tiles import grid_shape
from invcomp.imageio import from_image
from invcomp.codecs.base import Encoded, Progress
from invcomp.codecs.modes.gc import GCCodec, gc_header, image_array, pixels_of, read_header, symbols_of, to_tensor
from invcomp.codecs.settings import EncodeSettings
from invcomp.codecs.registry import register_mode

MODE_SC = 5
DEFAULT_SC = "sc-utkface-c8"


@dataclass
class LoadedSC:
    """An SC model: its GC base, the synthesiser, its tables and id."""

    name: str
    base: LoadedGC
    S: Synthesiser
    prior: GCPrior
    model_id: bytes
    sha256: str


def load_sc_model(spec: str, device: str = "cpu") -> LoadedSC:
    """A registered ``kind: sc`` name, or an ``sc.pt`` with its ``.json`` and ``-prior.json`` beside it; its GC base is
    loaded by name and must have the weights the SC config pins."""
    from invcomp.zoo.registry import decode_id

    name, weights, _, pri, w_sha, c_sha, p_sha = checked_files(spec, "sc")
    S = load_synth(weights)
    cfg, prior = S.cfg, load_prior(pri, GCPrior, "GC prior")
    base = load_gc_model(cfg.base, device)
    if base.sha256 != cfg.base_sha256:
        raise InvcompError(f"SC model {name!r} was trained over GC weights {cfg.base_sha256[:8]}, but {cfg.base!r} has "
                           f"{base.sha256[:8]}")
    if prior.mask is None or prior.semantic is None or prior.code.planes != base.config.channels:
        raise InvcompError(f"the tables of SC model {name!r} lack mask or semantic tables, or do not fit its base")
    return LoadedSC(name, base, S, prior, decode_id(w_sha, c_sha, p_sha), w_sha)


def split_records(payload: bytes) -> tuple[bytes, Optional[bytes], bytes]:
    """An SC payload's records: the cell mask, the semantic map (``None``: no map; it may be 0 bytes) and the kept
    symbols. Layout: ``varint n``, n mask bytes, ``varint`` 0 or m + 1, m map bytes, then the symbols."""
    r = _Reader(payload)
    rec_mask = r.take(r.varint("mask length", len(payload)), "mask record")
    m = r.varint("semantic map length", len(payload) + 1)
    rec_sem = r.take(m - 1, "semantic map record") if m else None
    return rec_mask, rec_sem, payload[r.pos:]


@register_mode
class SCCodec(GCCodec):
    """An SC codec over a :class:`LoadedSC`; the preserved region and the map are set per codec (every image of a
    call gets the same ``preserve``, boxes and map)."""

    mode = MODE_SC
    mode_key = "sc"
    title = "SC"

    def __init__(self, model: LoadedSC, settings: Optional[EncodeSettings] = None, *, preserve: Optional[str] = None,
                 preserve_box: Sequence[str] = (), semantic: Optional[str] = None, halo: Optional[int] = None) -> None:
        super().__init__(model.base, settings)
        self.sc, self.name, self.model_id_v2 = model, model.name, model.model_id
        self.model_id = bytes.fromhex(model.sha256[:8])
        self.preserve, self.boxes, self.semantic_png = preserve, tuple(preserve_box), semantic
        self.halo = model.S.cfg.halo if halo is None else halo
        if self.halo < 0:
            raise InvcompError("the preserved halo must be >= 0 cells")

    @classmethod
    def load(cls, spec: Optional[str], settings: Optional[EncodeSettings] = None, *, device: str = "cpu",
             for_decode: bool = False, preserve: Optional[str] = None, preserve_box: Sequence[str] = (),
             semantic: Optional[str] = None, halo: Optional[int] = None, **options: Any) -> "SCCodec":
        """``spec``: an SC model (default :data:`DEFAULT_SC`); ``preserve``, ``preserve_box``, ``semantic``: what to keep and the
        map (encoding only; one of ``preserve`` and ``preserve_box`` is required)."""
        given = sorted(k for k, v in options.items() if v is not None)
        if given:
            raise InvcompError(f"{', '.join(given)} do not apply to the {cls.title} mode")
        if not for_decode and preserve is None and not preserve_box:
            raise InvcompError("the SC mode needs what to preserve: --preserve MASK.png, --preserve faces or "
                               "--preserve-box x,y,w,h (repeatable); an all-black mask preserves nothing")
        return cls(load_sc_model(spec or DEFAULT_SC, device), None if for_decode else settings, preserve=preserve,
                   preserve_box=preserve_box or (), semantic=semantic, halo=halo)

    @classmethod
    def claims(cls, spec: str) -> bool:
        return is_kind(spec, "sc")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "base": self.sc.base.name, "halo": self.halo}

    # --- encoding ----------------------------------------------------------------------------------------
    def encode(self, images: list[Image.Image], *, goal: Any = None, progress: Optional[Progress] = None,
               init: Any = None) -> list[Encoded]:
        if goal is not None:  # its rate is the model's and the preserved area's (check_goal: GC's)
            self.check_goal(goal)
        if init is not None:
            raise InvcompError(f"the {self.title} mode's rate is set by its model and the preserved area: drop the --target-*")
        out: list[Any] = []
        for im in images:
            try:  # a refusal (a mask of another size, no face found, ...) is this image's alone
                cells = masks.cell_mask(masks.pixel_mask(im, self.preserve, self.boxes), self.halo)
                labels = None if self.semantic_png is None else sem.from_png(self.semantic_png, *im.size, self.sc.S.cfg.classes)
                data, header, feats, sym, recon, sizes = self.encode_one_sc(image_array(im), cells, labels)
            except InvcompError as e:
                out.append(e)
                continue
            extra = {"symbols": int(cells.sum()) * sym.shape[0], "grid": list(sym.shape),
                     "preserved_cells": int(cells.sum()), "cells": int(cells.size), **sizes}
            out.append(Encoded(data, header, from_image(im), to_tensor(recon), feats.flatten(), sym.flatten(), extra))
            if progress is not None:
                progress(1)
        return out

    def encode_one_sc(self, img: np.ndarray, cells: np.ndarray, labels: Optional[np.ndarray]) -> tuple:
        """A uint8 image ``(H, W, 3)``, its cell mask ``(h, w)`` and semantic grid ``(2h, 2w)`` (or ``None``) ->
        file bytes, header, features, symbols, the decoded uint8 image and the records' sizes in bytes."""
        h, w = img.shape[:2]
        mid = self.model_id_v2
        assert mid is not None  # GC and SC models always have a version-2 id
        gc_header(mid, w, h, self.mode).validate()
        if cells.shape != grid_shape(h, w):
            raise InvcompError(f"a {w}x{h} image has a {grid_shape(h, w)} cell mask, not {cells.shape}")
        feats, sym = symbols_of(self.sc.base, img)
        p = self.sc.prior
        rec_mask = gridcode.encode_grid(cells[None].astype(np.int64), np.ones((1,) + cells.shape, bool), p.mask)  # type: ignore[arg-type]
        rec_sem = b"" if labels is None else gridcode.encode_grid(labels[None], np.ones((1,) + labels.shape, bool), p.semantic)  # type: ignore[arg-type]
        present = np.broadcast_to(cells[None], sym.shape)
        rec_code, escaped = gridcode.encode_bounded(np.where(present, sym.numpy(), 0), present, p.code)
        header = gc_header(mid, w, h, self.mode, escaped)
        sem_field = _varint(0) if labels is None else _varint(len(rec_sem) + 1)  # 0: no map; m + 1: a map of m bytes
        payload = _varint(len(rec_mask)) + rec_mask + sem_field + rec_sem + rec_code
        data = bitstream.pack_v2(header, None, payload)
        recon = self.draw(torch.where(torch.from_numpy(present.copy()), sym, -1), cells, labels, h, w)
        sizes = {"mask_bytes": len(rec_mask), "semantic_bytes": len(rec_sem), "code_bytes": len(rec_code)}
        return data, header, feats, sym, recon, sizes

    def draw(self, sym: torch.Tensor, cells: np.ndarray, labels: Optional[np.ndarray], h: int, w: int) -> np.ndarray:
        """The decoded uint8 picture from kept symbols ``(C, gh, gw)`` (-1 where dropped), the cell mask and the map."""
        full = complete(self.sc.S, sym, torch.from_numpy(np.ascontiguousarray(cells)),
                        None if labels is None else torch.from_numpy(np.ascontiguousarray(labels)).long())
        return pixels_of(self.sc.base, self.sc.base.net.Q.values(full), h, w, tile=self.tile)

    # --- decoding ----------------------------------------------------------------------------------------
    def decode_pixels(self, data: bytes, *, max_pixels: Optional[int] = None) -> tuple[bitstream.Header, np.ndarray]:
        header, payload = read_header(data, self, max_pixels)
        gh, gw = grid_shape(header.height, header.width)
        rec_mask, rec_sem, rec_code = split_records(payload)
        p = self.sc.prior
        cells = gridcode.decode_grid(rec_mask, np.ones((1, gh, gw), bool), p.mask)[0].astype(bool)  # type: ignore[arg-type]
        labels = None
        if rec_sem is not None:
            labels = gridcode.decode_grid(rec_sem, np.ones((1, 2 * gh, 2 * gw), bool), p.semantic)[0]  # type: ignore[arg-type]
        present = np.broadcast_to(cells[None], (p.code.planes, gh, gw))
        sym = gridcode.decode_bounded(rec_code, present, p.code, header.bits == 3)
        if not cells.any() and rec_code:
            raise BitstreamError("invalid .ivc file: symbols after an empty mask")
        return header, self.draw(torch.from_numpy(sym), cells, labels, header.height, header.width)
