"""GC and SC models on disk: a registry row (kind ``gc`` or ``sc``), or a ``.pt`` path with its files beside it.

A GC model is ``NAME.pt`` (E, Q and G, fp16 where measured lossless), ``NAME.json`` (:class:`~invcomp.nets.generative.model.GCConfig`)
and its entropy tables ``NAME-prior.json`` (:class:`GCPrior`). An SC model adds the synthesiser's ``.pt`` and ``.json``
(:mod:`invcomp.nets.generative.synth`), names its GC base and ships its own tables (code symbols inside masks, the mask, the
semantic map). Files name a model by the 2-byte version-2 id of :func:`invcomp.zoo.registry.decode_id`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from invcomp.errors import InvcompError, UnknownModelError
from invcomp.files import sha256_file
from invcomp.coding.gridcode import GridTables
from invcomp.coding.tables import load_prior
from invcomp.nets.generative.model import GCNet, load_gc

FORMAT = "invcomp-gc-prior"


@dataclass(frozen=True)
class GCPrior:
    """The tables of a model's files: ``code`` (the C planes of L symbols); SC's ``mask`` (1 plane of 2 values) and
    ``semantic`` (1 plane of the label classes)."""

    code: GridTables
    mask: Optional[GridTables] = None
    semantic: Optional[GridTables] = None
    fit: Optional[dict] = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": FORMAT, "version": 1, "code": self.code.to_json(), "fit": self.fit or {}}
        for key in ("mask", "semantic"):
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key).to_json()
        return doc

    @classmethod
    def from_json(cls, doc: Any, where: str) -> "GCPrior":
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != 1:
            raise InvcompError(f"bad GC prior {where}: not an {FORMAT} version-1 document")
        parts = {k: GridTables.from_json(doc[k], f"{where} ({k})") for k in ("code", "mask", "semantic") if k in doc}
        if "code" not in parts:
            raise InvcompError(f"bad GC prior {where}: no code tables")
        return cls(fit=dict(doc.get("fit", {})), **parts)


def prior_path(weights: Path) -> Path:
    """Where the tables of a ``.pt`` path model are: ``NAME-prior.json`` beside it."""
    return Path(weights).with_name(Path(weights).stem + "-prior.json")


@dataclass
class LoadedGC:
    """A GC model ready to code: the networks, its tables and the 2-byte id its files carry."""

    name: str
    net: GCNet
    prior: GCPrior
    model_id: bytes
    sha256: str

    @property
    def config(self) -> Any:
        return self.net.cfg


def _entry(spec: str, kind: str) -> Any:
    from invcomp.zoo.registry import list_models

    entries = {e.name: e for e in list_models()}
    e = entries.get(spec)
    if e is not None and e.kind != kind:
        raise InvcompError(f"model {spec!r} is a {e.kind} model, not a {kind.upper()} model")
    if e is None and not Path(spec).is_file():
        known = ", ".join(n for n, x in entries.items() if x.kind == kind) or "none installed"
        raise UnknownModelError(f"unknown {kind.upper()} model {spec!r}: not a registered name ({known}) nor a file")
    return e


def checked_files(spec: str, kind: str) -> tuple[str, Path, Path, Path, str, str, str]:
    """``(name, weights, config, prior, weights_sha, config_sha, prior_sha)`` of a model ``spec`` of ``kind``,
    sha256-checked against the registry for a registered name."""
    e = _entry(spec, kind)
    if e is None:
        w = Path(spec)
        cfg, pri = w.with_suffix(".json"), prior_path(w)
        for f in (cfg, pri):
            if not f.is_file():
                raise InvcompError(f"{kind.upper()} model {w} needs {f.name} beside it")
        return w.stem, w, cfg, pri, sha256_file(w), sha256_file(cfg), sha256_file(pri)
    digests = []
    for what, f, want in (("weights", e.weights, e.sha256), ("config", e.config, e.config_sha256),
                          ("prior", e.prior, e.prior_sha256)):
        if f is None or not Path(f).is_file():
            raise InvcompError(f"a file of model {e.name!r} is missing: {f}")
        got = sha256_file(f)
        if got != want:
            raise InvcompError(f"{what} for model {e.name!r} {'do' if what == 'weights' else 'does'} not match the "
                               f"registry sha256 (edited or replaced file {Path(f).name}): it would change the decoded "
                               "pixels under the same model id")
        digests.append(got)
    return e.name, e.weights, e.config, e.prior, digests[0], digests[1], digests[2]


def load_gc_model(spec: str, device: str | torch.device = "cpu") -> LoadedGC:
    """A GC model: a registered ``kind: gc`` name, or a ``.pt`` path with its ``.json`` and ``-prior.json`` beside it."""
    from invcomp.zoo.registry import decode_id

    name, weights, _, pri, w_sha, c_sha, p_sha = checked_files(spec, "gc")
    net = load_gc(weights, device)
    prior = load_prior(pri, GCPrior, "GC prior")
    cfg = net.cfg
    if prior.code.planes != cfg.channels or prior.code.values != cfg.centres:
        raise InvcompError(f"the tables of {name!r} code {prior.code.planes} planes of {prior.code.values} symbols, "
                           f"the model {cfg.channels} of {cfg.centres}")
    return LoadedGC(name, net, prior, decode_id(w_sha, c_sha, p_sha), w_sha)


def is_kind(spec: str, kind: str) -> bool:
    """Whether ``spec`` names a registered model of ``kind``, or a ``.pt`` whose config says that architecture."""
    from invcomp.zoo.registry import list_models

    entry = {e.name: e for e in list_models()}.get(spec)
    if entry is not None:
        return entry.kind == kind
    cfg = Path(spec).with_suffix(".json")
    try:
        return Path(spec).is_file() and json.loads(cfg.read_text()).get("architecture") == kind
    except (OSError, ValueError, AttributeError):
        return False
