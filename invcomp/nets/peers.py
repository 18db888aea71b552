"""Learned-codec peers for the bench: CompressAI models trained on the same faces (``invcomp[peers]``).

A *family* is one architecture and distortion trained at several λ (:mod:`invcomp.train.peer`); the bench's
knob is the index of the model in the family, ordered by λ (index 0: fewest bytes). Families are listed in
``pretrained/peers/peers.json`` (each model's file and sha256); the weights are state_dicts with parameters in
float16 and CompressAI's entropy tables (built by ``update()`` from those parameters) stored beside them, loaded
with ``weights_only=True`` and checked against the sha256.

A peer's file is a real bitstream from ``compress()``, with everything a decoder needs, all counted:

====================  ==========================================================================
byte 0                model index in the family (which λ)
LEB128 varints        image height, then width
hyperprior models     LEB128 length of the hyper-latent string ``z``, then ``z``, then ``y``
factorized model      the latent string ``y``
====================  ==========================================================================

Images are padded to a multiple of 64 px (zeros, centred, as CompressAI's evaluation does) and cropped back.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from invcomp.formats.ivc import _varint  # LEB128, as the .ivc header writes its sizes
from invcomp.errors import InvcompError
from invcomp.files import sha256_file

log = logging.getLogger(__name__)

EXTRA = "pip install invcomp[peers]  (compressai)"
PAD = 64
MANIFEST = "peers.json"


# CompressAI architectures that a peer may have (trained by invcomp.train.peer)
ARCHITECTURES = ("bmshj2018-factorized", "bmshj2018-hyperprior", "mbt2018-mean")


def build_model(architecture: str, N: int, M: int) -> torch.nn.Module:
    """CompressAI's class for ``architecture`` with ``N`` and ``M`` channels (untrained)."""
    from compressai.zoo.image import model_architectures

    if architecture not in ARCHITECTURES:
        raise InvcompError(f"unknown architecture {architecture!r}; choose from {', '.join(ARCHITECTURES)}")
    return model_architectures[architecture](N, M)


def peers_dir() -> Path:
    """Where the shipped peers live: ``peers/`` beside the shipped generators (``$INVCOMP_PRETRAINED`` too)."""
    from invcomp.files import pretrained_dir

    return pretrained_dir() / "peers"


@dataclass(frozen=True)
class Family:
    """One architecture and distortion at several λ: ``models`` are ``{"lmbda", "file", "sha256"}``, by λ."""

    name: str
    architecture: str
    metric: str
    N: int
    M: int
    resolution: int
    models: tuple[dict, ...]
    root: Path

    @property
    def hyper(self) -> bool:
        return self.architecture != "bmshj2018-factorized"

    def label(self, q: Optional[float]) -> str:
        if q is None:
            return "default"
        return f"lambda={self.models[int(q)]['lmbda']:g}"

    def describe(self) -> str:
        lams = ", ".join(f"{m['lmbda']:g}" for m in self.models)
        return (f"CompressAI {self.architecture} (N={self.N}, M={self.M}, {self.metric}-trained on UTKFace train at "
                f"{self.resolution} px, λ {lams}), whole file: 1-byte model index, size, compress() strings")


def read_manifest(root: Optional[Path] = None) -> dict[str, Family]:
    """Families by bench name from ``root/peers.json`` (``{}`` when there is none)."""
    root = peers_dir() if root is None else Path(root)
    path = root / MANIFEST
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
        return {name: Family(name, f["architecture"], f["metric"], int(f["N"]), int(f["M"]), int(f["resolution"]),
                             tuple(sorted(f["models"], key=lambda m: m["lmbda"])), root)
                for name, f in doc["families"].items()}
    except (ValueError, KeyError, TypeError) as e:
        raise InvcompError(f"{path} is not a peers manifest ({type(e).__name__}: {e})") from None


def compressai_unavailable() -> Optional[str]:
    try:
        import compressai  # noqa: F401
    except ImportError:
        return f"CompressAI is not installed ({EXTRA})"
    return None


_MODELS: dict[tuple[str, str, str, int, int], torch.nn.Module] = {}


def clear_cache() -> None:
    """Forget the loaded models (they are kept per file, sha256 and architecture)."""
    _MODELS.clear()


def load_model(family: Family, index: int) -> torch.nn.Module:
    """Model ``index`` of ``family``, sha256-checked, float32, in eval mode, ready to code."""
    if not 0 <= index < len(family.models):
        raise InvcompError(f"{family.name} has models 0..{len(family.models) - 1}, not {index}")
    entry = family.models[index]
    path = family.root / entry["file"]
    key = (str(path), entry["sha256"], family.architecture, family.N, family.M)
    if key not in _MODELS:
        if len(_MODELS) >= 64:
            _MODELS.clear()
        _MODELS[key] = _load(family, path, entry["sha256"])
    return _MODELS[key]


def _load(family: Family, path: Path, sha256: str) -> torch.nn.Module:
    from invcomp.files import load_state_dict

    if not path.is_file():
        raise InvcompError(f"{family.name}: weights {path} are missing")
    if sha256_file(path) != sha256:
        raise InvcompError(f"{family.name}: {path} does not match its sha256 in {MANIFEST}")
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_state_dict(path).items()}
    model = build_model(family.architecture, family.N, family.M)
    model.load_state_dict(with_tables(model, state))
    return model.eval()


def with_tables(model: torch.nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """A shipped peer's state_dict with the Gaussian conditional's tables that :func:`pack_state` left out, rebuilt
    from its scale table as CompressAI's ``update()`` does (unchanged for a model without them, or a full state)."""
    gc = getattr(model, "gaussian_conditional", None)
    if gc is None or GC_TABLES[0] in state or "gaussian_conditional.scale_table" not in state:
        return state
    gc.update_scale_table(state["gaussian_conditional.scale_table"], force=True)
    return {**state, **{k: getattr(gc, k.split(".")[1]).clone() for k in GC_TABLES}}


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise InvcompError("truncated or malformed peer file (size field)")
        b = data[pos]
        n |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not b & 0x80:
            return n, pos


def _padding(h: int, w: int) -> tuple[int, int, int, int]:
    ph, pw = -h % PAD, -w % PAD
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


def encode(family: Family, img: Image.Image, q: Optional[float]) -> bytes:
    """The whole file of ``img`` (RGB) coded by model ``q`` (index; default the middle one) of ``family``."""
    index = len(family.models) // 2 if q is None else int(q)
    model = load_model(family, index)
    x = torch.from_numpy(np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    x = F.pad(x, _padding(h, w), mode="constant", value=0)
    with torch.no_grad():
        out = model.compress(x)
    strings = [s[0] for s in out["strings"]]
    head = bytes([index]) + _varint(h) + _varint(w)
    if family.hyper:
        y, z = strings
        return head + _varint(len(z)) + z + y
    return head + strings[0]


def decode(family: Family, data: bytes) -> Image.Image:
    """A peer file of ``family`` back to an RGB image."""
    if not data:
        raise InvcompError("empty peer file")
    index = data[0]
    h, pos = _read_varint(data, 1)
    w, pos = _read_varint(data, pos)
    if not (1 <= h <= 8192 and 1 <= w <= 8192):
        raise InvcompError(f"peer file says {w}x{h}, outside 1..8192")
    model = load_model(family, index)
    l, r, t, b = _padding(h, w)
    ph, pw = h + t + b, w + l + r
    if family.hyper:
        nz, pos = _read_varint(data, pos)
        if pos + nz > len(data):
            raise InvcompError("truncated peer file (hyper-latent)")
        strings: list[list[bytes]] = [[data[pos + nz:]], [data[pos:pos + nz]]]
        shape = (ph // PAD, pw // PAD)
    else:
        strings, shape = [[data[pos:]]], (ph // 16, pw // 16)
    try:
        with torch.no_grad():
            x = model.decompress(strings, shape)["x_hat"]
    except Exception as e:  # noqa: BLE001  (a corrupt string makes CompressAI raise anything)
        raise InvcompError(f"peer file does not decode ({type(e).__name__})") from None
    x = x[0, :, t:t + h, l:l + w].clamp(0, 1)
    return Image.fromarray((x.permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8))


def weights_bytes(family: Family) -> int:
    """Bytes of the family's weight files on disk."""
    return sum((family.root / m["file"]).stat().st_size for m in family.models)


GC_TABLES = ("gaussian_conditional._quantized_cdf", "gaussian_conditional._offset", "gaussian_conditional._cdf_length")


def pack_state(model: torch.nn.Module) -> dict[str, Any]:
    """A trained model's state_dict for shipping: parameters rounded to float16, then ``update(force=True)`` so
    the entropy tables are those of the rounded parameters (kept as they are: integer tables, scale table). The
    entropy bottleneck's quantiles are recomputed from its learned CDF (``update_quantiles``), so the coded
    range does not depend on how far the auxiliary loss got. The Gaussian conditional's tables (1 MB, a function of
    its 64-entry scale table alone, no learned parameter) are left out and rebuilt at load."""
    params = {n for n, _ in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    model.update(force=True, update_quantiles=True)
    return {k: v.half() if k in params else v for k, v in model.state_dict().items() if k not in GC_TABLES}
