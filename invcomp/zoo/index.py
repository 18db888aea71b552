"""The registry of models as data: the rows of ``models.json`` (:class:`ModelEntry`), the ids files carry, and the
lookups by name and by id. Torch-free, so that ``invcomp info`` and ``invcomp models`` need no torch; loading a model
is :mod:`invcomp.zoo.registry`'s."""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from invcomp.errors import InvcompError
from invcomp.files import REGISTRY_FILE, pretrained_dir, sha256_file
from invcomp.zoo.user_models import user_models

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
