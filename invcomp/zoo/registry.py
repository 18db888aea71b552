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

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from invcomp.errors import InvcompError, UnknownModelError
from invcomp.zoo import DEFAULT_MODEL
from invcomp.files import REGISTRY_FILE, load_state_dict, pretrained_dir, sha256_file  # noqa: F401  (re-exported)
from invcomp.nets.generators.config import GeneratorConfig
from invcomp.nets.generators.custom import is_custom_spec, load_custom
from invcomp.nets.generators.families import FAMILIES, infer_config
from invcomp.zoo.index import (ALIAS_TOLERANCE, ALIAS_TOLERANCE_RESIZED, ModelEntry,  # noqa: F401  (re-exported)
                               _checked_weights, decode_id, find_by_id, is_vaegan_config, list_models,
                               name_for_id, tell_alias)
from invcomp.zoo.user_models import registered_code, user_models

log = logging.getLogger(__name__)

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
