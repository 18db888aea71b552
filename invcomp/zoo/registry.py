"""Model registry: names -> weights, config, sha256 and model card; and loading generators.

Shipped models are listed in ``models.json`` inside the pretrained folder,
which is found, in order, at ``$INVCOMP_PRETRAINED``, as the installed
package data ``invcomp.pretrained`` (``pip install .``), or as the
``pretrained/`` folder of a source checkout (``pip install -e .``).

A model can also be named by the path of a ``.pt`` state_dict; its config
is read from the ``.json`` beside it, or inferred from the DCGAN or PGAN
shapes (normal prior) when there is none. User models come through
:mod:`invcomp.nets.generators.custom`.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from invcomp.errors import InvcompError, UnknownModelError
from invcomp.zoo import DEFAULT_MODEL
from invcomp.files import REGISTRY_FILE, pretrained_dir, load_state_dict, sha256_file
from invcomp.nets.generators.config import GeneratorConfig
from invcomp.nets.generators.custom import is_custom_spec, load_custom
from invcomp.nets.generators.families import FAMILIES, infer_config
from invcomp.zoo.user_models import registered_code, user_models

log = logging.getLogger(__name__)

# The most an alias's decode may differ from its release's, in 8-bit levels per pixel and channel: at the model's
# resolution (measured 1 for every model: experiments/results/fp16_models.json), and at the file's own size, where the
# Lanczos resize can stretch a 1-level step (measured 3). tests/test_compat.py checks the first releases' files.
ALIAS_TOLERANCE, ALIAS_TOLERANCE_RESIZED = 2, 4
_told: set[str] = set()


@dataclass(frozen=True)
class ModelEntry:
    """One registry row; paths are absolute."""

    name: str
    weights: Path
    config: Path
    sha256: str
    card: Optional[Path]
    description: str = ""
    warm_start: Optional[Path] = None  # a warm-start network trained for this generator (invcomp.nets.warmstart)
    warm_start_sha256: Optional[str] = None
    kind: str = "generator"  # or "vaegan": a VAE-GAN codec (invcomp.nets.vaegan), loaded with load_vaegan_model
    config_sha256: Optional[str] = None  # the config changes the decode too, so it is checked like the weights
    warm_start_config_sha256: Optional[str] = None
    prior: Optional[Path] = None  # the entropy-coding prior (invcomp.coding.tables), for version-2 files
    prior_sha256: Optional[str] = None
    # An alias keeps the files of an earlier release of a model decodable: ``sha256`` is that release's (it makes
    # the id its files carry), while the file on disk is the current model's (``file_sha256``), e.g. the float16
    # copy of a float32 release. Its decode differs from that release's by at most ALIAS_TOLERANCE per pixel.
    alias_of: Optional[str] = None
    file_sha256: Optional[str] = None

    @property
    def stored_sha256(self) -> str:  # what the weights file on disk must hash to
        return self.file_sha256 or self.sha256

    @property
    def model_id_v2(self) -> Optional[bytes]:
        """The 2-byte id of version-2 files (None without a prior): see :func:`decode_id`."""
        if self.prior_sha256 is None or self.config_sha256 is None:
            return None
        return decode_id(self.sha256, self.config_sha256, self.prior_sha256)


@dataclass
class LoadedGenerator:
    """A frozen generator in eval mode plus what the codec needs to know about it."""

    name: str
    module: nn.Module
    config: GeneratorConfig
    sha256: str
    config_sha256: Optional[str] = None  # of the .json config the generator was built from, when there is one

    @property
    def model_id(self) -> bytes:
        """The 4-byte id written into bitstreams: the first bytes of the weights' sha256."""
        return bytes.fromhex(self.sha256[:8])


def decode_id(weights_sha256: str, config_sha256: str, prior_sha256: str) -> bytes:
    """The version-2 model id: the first 2 bytes of sha256 over everything that changes the decode (the
    weights', config's and prior's sha256), so a changed config or prior gives another id."""
    text = f"invcomp-decode-id-v2\n{weights_sha256}\n{config_sha256}\n{prior_sha256}\n"
    return hashlib.sha256(text.encode()).digest()[:2]


def list_models(root: Optional[Path] = None) -> list[ModelEntry]:
    """All registered models, sorted by name (empty when no registry file is found)."""
    root = Path(root) if root else pretrained_dir()
    reg = root / REGISTRY_FILE
    if not reg.exists():
        return []
    try:
        rows = json.loads(reg.read_text())
    except json.JSONDecodeError as e:
        raise InvcompError(f"bad model registry {reg}: {e}") from None
    return [
        ModelEntry(name=name, weights=root / r["weights"], config=root / r["config"], sha256=r["sha256"],
                   card=root / r["card"] if r.get("card") else None, description=r.get("description", ""),
                   warm_start=root / r["encoder"]["weights"] if r.get("encoder") else None,
                   warm_start_sha256=r["encoder"]["sha256"] if r.get("encoder") else None, kind=r.get("kind", "generator"),
                   config_sha256=r.get("config_sha256"),
                   warm_start_config_sha256=r["encoder"].get("config_sha256") if r.get("encoder") else None,
                   prior=root / r["prior"]["file"] if r.get("prior") else None,
                   prior_sha256=r["prior"]["sha256"] if r.get("prior") else None, alias_of=r.get("alias_of"),
                   file_sha256=r.get("file_sha256"))
        for name, r in sorted(rows.items())
    ]


def build(config: GeneratorConfig, state: dict[str, torch.Tensor]) -> nn.Module:
    """Instantiate the architecture named by ``config`` from a state_dict, in eval mode, frozen."""
    family = FAMILIES.get(config.architecture)
    if family is None:
        raise InvcompError(f"unknown architecture {config.architecture!r}; known: {', '.join(FAMILIES)}")
    g = family.build(state, config)
    if g.latent_dim != config.latent_dim or g.resolution != config.resolution:
        raise InvcompError(
            f"weights are a {g.latent_dim}-d, {g.resolution}px {config.architecture.upper()} but the config says "
            f"{config.latent_dim}-d, {config.resolution}px"
        )
    for p in g.parameters():
        p.requires_grad_(False)
    return g


def load_generator(spec: str = DEFAULT_MODEL, device: str | torch.device = "cpu",
                   weights_path: Optional[str] = None, *, code_sha256: Optional[str] = None) -> LoadedGenerator:
    """Load a generator: a registered name, a ``.pt`` state_dict path (DCGAN or PGAN, config from the ``.json``
    beside it or inferred), or a user model (``file.py:factory``, ``package.module:factory`` or a TorchScript
    file, see :mod:`invcomp.nets.generators.custom`; ``weights_path`` loads a state_dict into it).

    ``file.py:factory`` runs that file's code, by design; ``code_sha256`` (as a registered name has) is checked
    against the file before it is imported.
    """
    entries = {e.name: e for e in list_models()}
    users = user_models()
    if spec not in entries and spec in users:
        u = users[spec]
        gen = load_generator(u["model"], device, u.get("weights"), code_sha256=registered_code(spec, u))
        if gen.sha256 != u["sha256"]:
            raise InvcompError(f"user model {spec!r} no longer matches its registered sha256 "
                               f"({u['sha256'][:8]} registered, {gen.sha256[:8]} now); re-register it with --force")
        if "config_sha256" in u and gen.config_sha256 != u["config_sha256"]:
            raise InvcompError(f"config for user model {spec!r} does not match the one registered (edited, added or "
                               f"removed {Path(u['model']).with_suffix('.json')}); re-register it with --force")
        gen.name = spec
        return gen
    if spec not in entries and is_custom_spec(spec):
        module, info, digest = load_custom(spec, weights_path, str(device), code_sha256=code_sha256)
        config = GeneratorConfig("custom", info["latent_dim"], info["resolution"], info["prior"],
                                 norm_free=info["norm_free"], training={"spec": spec, "kind": info["kind"]})
        return LoadedGenerator(name=info["name"], module=module, config=config, sha256=digest)
    if weights_path is not None:
        raise InvcompError("--weights applies only to a user model (--model file.py:factory or package.module:factory)")
    if spec in entries:
        e = entries[spec]
        if e.kind != "generator":
            raise InvcompError(f"model {spec!r} is a VAE-GAN codec, not a generator")
        digest = _checked_weights(e)
        config = GeneratorConfig.from_json(e.config)
        name, weights = spec, e.weights
    else:
        weights = Path(spec)
        if not weights.is_file():
            known = ", ".join([*entries, *users]) or "none installed"
            raise UnknownModelError(f"unknown model {spec!r}: not a registered name ({known}) nor a file; see `invcomp models`")
        digest = sha256_file(weights)
        cfg_path = weights.with_suffix(".json")
        state = load_state_dict(weights)
        if is_vaegan_config(cfg_path):
            raise InvcompError(f"{weights} is a VAE-GAN codec, not a generator")
        config = GeneratorConfig.from_json(cfg_path) if cfg_path.exists() else infer_config(state)
        module = build(config, state).to(device)
        return LoadedGenerator(name=weights.stem, module=module, config=config, sha256=digest,
                               config_sha256=sha256_file(cfg_path) if cfg_path.exists() else None)
    module = build(config, load_state_dict(weights)).to(device)
    return LoadedGenerator(name=name, module=module, config=config, sha256=digest, config_sha256=sha256_file(e.config))


def _checked_weights(e: ModelEntry) -> str:
    """The sha256 of a registered model's weights file, refusing a missing file, or weights or a config (which holds
    the prior and the architecture switches) that differ from the registry."""
    if not e.weights.exists():
        raise InvcompError(f"weights for model {e.name!r} are missing: {e.weights}")
    digest = sha256_file(e.weights)
    if digest != e.stored_sha256:
        raise InvcompError(f"weights for model {e.name!r} do not match the registry sha256 (corrupt or replaced file {e.weights})")
    if e.config_sha256 is not None and sha256_file(e.config) != e.config_sha256:
        raise InvcompError(f"config for model {e.name!r} does not match the registry sha256 (edited or replaced file "
                           f"{e.config}): it changes the decoded pixels under the same model id")
    return e.sha256  # an alias answers with its release's sha256: the id its files carry


def tell_alias(e: ModelEntry) -> None:
    """Say once per process that a file of an earlier release is decoded with the current weights."""
    if e.alias_of and e.name not in _told:
        _told.add(e.name)
        log.warning("this file was written with %s, an earlier release of %s; it is decoded with %s's current "
                    "weights, within %d/255 of that release's pixels at the model's resolution (%d/255 once resized)",
                    e.name, e.alias_of, e.alias_of, ALIAS_TOLERANCE, ALIAS_TOLERANCE_RESIZED)


def is_vaegan_config(cfg_path: Path) -> bool:
    """True when the config beside a weights file says it is a VAE-GAN codec (invcomp.nets.vaegan)."""
    try:
        return json.loads(cfg_path.read_text()).get("architecture") == "vaegan"
    except (OSError, ValueError, AttributeError):
        return False


def entropy_tables(name: str, weights_sha256: str, config_sha256: Optional[str]) -> tuple[Any, Optional[bytes]]:
    """The entropy-coding prior (:class:`invcomp.coding.tables.Prior`) and version-2 id of the shipped model loaded by
    this name, with these weights and this config, sha256-checked; ``(None, None)`` for a model without one (user
    models, and ``.pt`` paths whose weights or config differ, write version-1 files)."""
    from invcomp.coding.tables import load_prior

    for e in list_models():
        if (e.name == name and e.sha256 == weights_sha256 and e.prior is not None and config_sha256 is not None
                and e.config_sha256 == config_sha256):
            if not e.prior.is_file() or sha256_file(e.prior) != e.prior_sha256:
                raise InvcompError(f"prior for model {e.name!r} does not match the registry sha256 (missing, edited or "
                                   f"replaced file {e.prior}): it changes the decoded pixels")
            return load_prior(e.prior), e.model_id_v2
    return None, None


def name_for_id(model_id: bytes) -> Optional[str]:
    """The shipped or user-registered model name whose id is ``model_id``: 4 bytes (version 1) are the first
    bytes of the weights' sha256, 2 bytes (version 2) the model's :func:`decode_id`."""
    entry = find_by_id(model_id)
    if entry is not None:
        tell_alias(entry)
        return entry.name
    for name, u in sorted(user_models().items()) if len(model_id) == 4 else ():
        if bytes.fromhex(str(u.get("sha256", ""))[: 2 * len(model_id)] or "00") == model_id:
            return name
    return None


def find_by_id(model_id: bytes) -> Optional[ModelEntry]:
    """The registered model with this id (see :func:`name_for_id`), if any; two models with one 2-byte id are
    refused by name (the registry must keep version-2 ids distinct)."""
    if len(model_id) == 2:
        hits = [e for e in list_models() if e.model_id_v2 == model_id]
        if len(hits) > 1:
            raise InvcompError(f"models {', '.join(repr(e.name) for e in hits)} share the version-2 id {model_id.hex()}; "
                               "decode with --model")
        return hits[0] if hits else None
    for e in list_models():
        if bytes.fromhex(e.sha256[: 2 * len(model_id)]) == model_id:
            return e
    return None


def load_vaegan_model(spec: str, device: str | torch.device = "cpu") -> Any:
    """A VAE-GAN codec (:class:`invcomp.nets.vaegan.LoadedVAEGAN`): a registered ``kind: vaegan`` name (sha256-checked)
    or a ``vaegan.pt`` path with its ``.json`` beside it."""
    from invcomp.nets.vaegan import load_vaegan

    entries = {e.name: e for e in list_models()}
    if spec in entries:
        e = entries[spec]
        if e.kind != "vaegan":
            raise InvcompError(f"model {spec!r} is a generator, not a VAE-GAN codec")
        sha = _checked_weights(e)
        model = load_vaegan(e.weights, device)
        model.name, model.config_sha256, model.sha256 = spec, e.config_sha256, sha
        return model
    if not Path(spec).is_file():
        known = ", ".join(n for n, e in entries.items() if e.kind == "vaegan") or "none installed"
        raise UnknownModelError(f"unknown VAE-GAN model {spec!r}: not a registered name ({known}) nor a file")
    if not is_vaegan_config(Path(spec).with_suffix(".json")):
        raise InvcompError(f"{spec} is not a VAE-GAN codec (no vaegan config beside it); VAE-GAN (mode 1) files need one")
    return load_vaegan(spec, device)
