"""Fit the entropy-coding prior of each shipped model on its training split, and register it.

    python experiments/fit_priors.py --latents /tmp/latents

- **GAN inversion** (``dcgan-utkface64``, ``pgan-utkface64``): the latents that the default search finds for
  training faces (``experiments/collect_latents.py --split train``), one table shared by all coordinates
  (the latent prior is exchangeable: the per-coordinate spread of the normalised latent on 160 training
  faces is within its sampling error).
- **VAE-GAN** (``vaegan-utkface64-c*``): the analysis means of ``--vaegan-faces`` training faces, one table per
  code-map channel.

Writes ``pretrained/MODEL-prior.json`` (integer tables, :mod:`invcomp.coding.tables`) and the file's sha256 into
``pretrained/models.json``. The version-2 model id covers it, so refitting changes the id.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
import torch
from PIL import Image
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.codecs.base import prepare  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.files import sha256_file  # noqa: E402
from invcomp.zoo import registry  # noqa: E402
from invcomp.nets.generators.config import GeneratorConfig  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402
from invcomp.coding.tables import fit_prior, save_prior  # noqa: E402
from invcomp.nets.vaegan import load_vaegan  # noqa: E402

log = logging.getLogger("fit_priors")


def vaegan_latents(entry: registry.ModelEntry, data: str, faces: int,
                   augment: float = 0.0) -> tuple[torch.Tensor, list[int], dict]:
    """Analysis means ``(faces, C*h*w)`` of training faces; with ``augment`` a share of them augmented as the model
    was trained (:func:`invcomp.train.augment.augment`, seeded), so the tables fit what it is sent."""
    from invcomp.train.augment import augment as augment_batch

    model = load_vaegan(entry.weights, "cpu")
    gen = torch.Generator().manual_seed(0)
    files = list_images(data, "train")
    files = files[:: max(1, len(files) // faces)][:faces]
    rows = []
    with torch.no_grad():
        for f in tqdm(files, desc=entry.name, file=sys.stderr):
            x = prepare(Image.open(f).convert("RGB"), model.config.resolution, "crop")[None]
            x = augment_batch(x, gen, augment) if augment > 0 else x
            rows.append(model.analysis(x)[0].flatten(1))
    cfg = model.config
    groups = [i // (cfg.code_side * cfg.code_side) for i in range(cfg.symbols)]
    share = f", {augment:.0%} of them augmented as in training" if augment > 0 else ""
    return torch.cat(rows), groups, {"source": f"analysis means of {len(files)} training faces (every "
                                               f"{max(1, len(list_images(data, 'train')) // faces)}th by name{share})",
                                     "groups": "one table per code-map channel"}


@click.command()
@click.option("--latents", default="/tmp/latents", show_default=True, help="Folder of MODEL-train.pt from collect_latents.py.")
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--vaegan-faces", default=2000, show_default=True)
@click.option("--models", default="", help="Comma-separated names [default: every shipped model].")
@click.option("--augment", default=0.0, show_default=True, help="VAE-GAN: share of faces augmented (the aug models: 0.5).")
def main(latents: str, data: str, vaegan_faces: int, models: str, augment: float) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = registry.pretrained_dir()
    reg_path = root / "models.json"
    reg = json.loads(reg_path.read_text())
    wanted = [m for m in models.split(",") if m] or list(reg)
    for e in registry.list_models():
        if e.name not in wanted:
            continue
        if e.kind == "vaegan":
            z, groups, info = vaegan_latents(e, data, vaegan_faces, augment)
            cfg = json.loads(e.config.read_text())
            prior = fit_prior(z, scaling=cfg["scaling"], norm_free=False, groups=groups, info=info)
        else:
            src = Path(latents) / f"{e.name}-train.pt"
            doc = torch.load(src, weights_only=True)
            norm_free = GeneratorConfig.from_json(e.config).norm_free
            info = {"source": f"latents of {len(doc['names'])} training faces from the default search "
                              f"(experiments/collect_latents.py)", "groups": "one table for every coordinate"}
            prior = fit_prior(doc["z"], scaling="l2", norm_free=norm_free, info=info)
        path = root / f"{e.name}-prior.json"
        save_prior(prior, path)
        reg[e.name]["prior"] = {"file": path.name, "sha256": sha256_file(path)}
        log.info("%s: %s (%d bytes), %d tables", e.name, path.name, path.stat().st_size, len(prior.tables))
    atomic_write(reg_path, (json.dumps(reg, indent=2) + "\n").encode(), force=True)


if __name__ == "__main__":
    main()
