"""Which warm-start encoder fits which generator: the registry's encoder for a shipped generator, and the check
that refuses an encoder trained for another one (its releases, float32 aliases included, still fit)."""
from __future__ import annotations

from typing import Optional

import torch

from invcomp.errors import InvcompError
from invcomp.files import sha256_file
from invcomp.nets.warmstart import LoadedWarmStart, config_path, load_warm_start
from invcomp.zoo.registry import LoadedGenerator, list_models


def check_warm_start(enc: LoadedWarmStart, gen: LoadedGenerator) -> None:
    """Refuse an encoder made for another generator than ``gen``: raises :class:`InvcompError`.

    Checks the generator sha256, then latent size, resolution and prior.
    """
    c, g = enc.config, gen.config
    # An encoder trained for an earlier release of this model (an alias, e.g. its float32 weights) still fits: it
    # only gives the search its first guess.
    releases = {gen.sha256} | {e.sha256 for e in list_models() if e.alias_of is not None and e.alias_of == gen.name}
    if c.generator_sha256 not in releases:
        raise InvcompError(
            f"encoder {enc.path.name} was trained for generator {c.generator_name or '?'!r} "
            f"(sha256 {c.generator_sha256[:8] or 'unknown'}), not {gen.name!r} (sha256 {gen.sha256[:8]}); "
            "train one for this generator or drop the encoder")
    for what, mine, theirs in (("latent_dim", c.latent_dim, g.latent_dim), ("resolution", c.resolution, g.resolution),
                               ("prior", c.prior, g.prior)):
        if mine != theirs:
            raise InvcompError(f"encoder {enc.path.name} has {what} {mine} but generator {gen.name!r} has {theirs}")


def shipped_warm_start(gen: LoadedGenerator, device: str | torch.device = "cpu") -> Optional[LoadedWarmStart]:
    """The registry's encoder for ``gen`` (matched by the generator's sha256), sha256-checked; ``None`` if none."""
    for entry in list_models():
        if entry.sha256 == gen.sha256 and entry.warm_start is not None:
            cfg = config_path(entry.warm_start)
            if entry.warm_start_config_sha256 and cfg.is_file() and sha256_file(cfg) != entry.warm_start_config_sha256:
                raise InvcompError(f"warm-start config for model {entry.name!r} does not match the sha256 in the registry "
                                   f"(edited or replaced file {cfg}); reinstall it")
            if entry.warm_start_sha256 and sha256_file(entry.warm_start) != entry.warm_start_sha256:  # before unpickling
                raise InvcompError(f"warm-start encoder for model {entry.name!r} does not match the sha256 in the registry "
                                   f"(corrupt or replaced file {entry.warm_start}); reinstall it")
            enc = load_warm_start(entry.warm_start, device)
            check_warm_start(enc, gen)
            return enc
    return None
