"""Generator families as a table: how to build each from a state_dict, and how to recognise its weights.

Adding a family is one :class:`Family` row in :data:`FAMILIES`; :func:`invcomp.zoo.registry.build`
and the config inference for a bare ``.pt`` read only this table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from invcomp.nets.generators.config import GeneratorConfig
from invcomp.nets.generators.dcgan import infer_arch, load_dcgan
from invcomp.nets.generators.pgan import infer_pgan_arch, load_pgan, normalise_keys

State = Mapping[str, torch.Tensor]
PGAN_OPTIONS = ("alpha", "leaky", "normalization", "output_activation")


@dataclass(frozen=True)
class Family:
    """``build(state, config) -> module``; ``recognises(state)``: whether a bare state_dict is of this family;
    ``infer(state) -> config`` for a ``.pt`` with no ``.json`` beside it."""

    build: Callable[[State, GeneratorConfig], nn.Module]
    recognises: Callable[[State], bool]
    infer: Callable[[State], GeneratorConfig]


def _pgan_config(state: State) -> GeneratorConfig:
    a = infer_pgan_arch(state)
    return GeneratorConfig("pgan", a.latent_dim, a.resolution, "normal", list(a.depths), norm_free=a.normalization)


def _dcgan_config(state: State) -> GeneratorConfig:
    a = infer_arch(state)
    return GeneratorConfig("dcgan", a.latent_dim, a.resolution, "normal", list(a.widths))


FAMILIES: dict[str, Family] = {  # recognisers are tried in this order; the last one is the fallback
    "pgan": Family(
        build=lambda state, cfg: load_pgan(state, **{k: cfg.options[k] for k in PGAN_OPTIONS if k in cfg.options}),
        recognises=lambda state: "formatLayer.module.weight" in normalise_keys(state),
        infer=_pgan_config),
    "dcgan": Family(build=lambda state, cfg: load_dcgan(state), recognises=lambda state: True, infer=_dcgan_config),
}


def infer_config(state: State) -> GeneratorConfig:
    """The config of a bare state_dict: the first family whose recogniser accepts it."""
    family = next(f for f in FAMILIES.values() if f.recognises(state))
    return family.infer(state)
