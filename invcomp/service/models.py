"""The models a user can code with: one row per shipped model (generators, VAE-GAN codecs, GC and SC, the layered
mode's residual networks), then the user-registered ones; what ``invcomp models`` and the web app's catalog list."""
from __future__ import annotations

import json


def model_rows() -> list[dict]:
    """What ``invcomp models --json`` lists: one dict per shipped model (generators, VAE-GAN codecs, the layered
    mode's residual networks), then the user-registered ones."""
    from invcomp.zoo import registry
    from invcomp.nets.generators.config import GeneratorConfig
    from invcomp.zoo.user_models import user_models
    from invcomp.nets.vaegan import VAEGANConfig

    rows = []
    for e in registry.list_models():
        common = {"name": e.name, "source": "shipped", "kind": e.kind, "sha256": e.sha256, "id": e.sha256[:8],
                  "weights": str(e.weights), "card": str(e.card) if e.card else None, "description": e.description,
                  "id_v2": e.model_id_v2.hex() if e.model_id_v2 else None,
                  "entropy_prior": str(e.prior) if e.prior else None,
                  "alias_of": e.alias_of}  # an earlier release, kept to decode its files with the current weights
        if e.kind == "vaegan":
            v = VAEGANConfig.from_json(e.config)
            rows.append({**common, "architecture": v.architecture, "channels": v.channels, "code_side": v.code_side,
                         "bits": v.bits, "resolution": v.resolution})
            continue
        if e.kind in ("gc", "sc"):  # GC and SC codecs (invcomp.nets.generative): any image size
            doc = json.loads(e.config.read_text())
            rows.append({**common, "architecture": e.kind, "channels": doc.get("channels"), "centres": doc.get("centres"),
                         "base": doc.get("base")})
            continue
        cfg = GeneratorConfig.from_json(e.config)
        rows.append({**common, "architecture": cfg.architecture, "latent_dim": cfg.latent_dim,
                     "resolution": cfg.resolution, "prior": cfg.prior,
                     "encoder": str(e.warm_start) if e.warm_start else None})
    rows += _residual_rows()
    rows += _mode_rows()
    for name, u in sorted(user_models().items()):
        rows.append({"name": name, "source": "user", "model": u.get("model"), "weights": u.get("weights"),
                     "sha256": u.get("sha256"), "id": str(u.get("sha256", ""))[:8]})
    return rows


def _residual_rows() -> list[dict]:
    """The shipped residual networks (``pretrained/layered/*.json``): the layered mode's, and the default's detail layer
    (``role`` ``detail``: its JSON says ``"frame": true``)."""
    from invcomp.codecs.modes.layered import residual_dir

    rows = []
    for cfg_path in sorted(residual_dir().glob("*.json")):
        cfg = json.loads(cfg_path.read_text())
        card = cfg_path.with_suffix(".md")
        rows.append({"name": cfg_path.stem, "source": "shipped", "kind": "residual", "sha256": cfg.get("sha256"),
                     "key": str(cfg.get("sha256", ""))[:4], "weights": str(cfg_path.parent / cfg["weights"]),
                     "card": str(card) if card.exists() else None, "base": cfg.get("base"), "rates": cfg.get("rates"),
                     "role": "detail" if cfg.get("frame") else "layered", "description": cfg.get("description", "")})
    return rows


def _mode_rows() -> list[dict]:
    """The models that registered modes offer themselves (:meth:`invcomp.codecs.base.Codec.models`)."""
    from invcomp.codecs.loader import modes

    return [{"name": name, "source": "mode", "kind": cls.mode_key, "description": f"a model of the {cls.title} mode"}
            for _, cls in sorted(modes().items()) for name in cls.models()]
