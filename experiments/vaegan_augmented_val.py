"""Validation SSIM of VAE-GAN codecs on plain faces and on the same faces augmented (the model card's table).

    python experiments/vaegan_augmented_val.py --model vaegan-utkface64-c4 --model vaegan-utkface64aug-c4 \
        --model vaegan-utkface64-c8 --model vaegan-utkface64aug-c8

The first ``--limit`` validation faces (the trainer's), coded at each model's bits (nearest, per-image max norm,
as the codec does), and the same faces through :func:`invcomp.train.augment.augment` with every face augmented
(seed 1234: the augmented faces the trainer scores snapshots on).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.train.augment import augment  # noqa: E402
from invcomp.zoo.registry import load_vaegan_model  # noqa: E402
from invcomp.train.loop import load_val  # noqa: E402
from invcomp.train.vaegan import score  # noqa: E402

log = logging.getLogger("vaegan_augmented_val")


@click.command()
@click.option("--model", "models", multiple=True, required=True)
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--limit", default=128, show_default=True)
def main(models: tuple[str, ...], data: str, limit: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    val = load_val(data, 64, limit)
    if val is None:
        raise click.ClickException(f"no validation faces in {data}")
    val = val.float().div(127.5).sub(1)
    aug = augment(val, torch.Generator().manual_seed(1234), 1.0)
    log.info("| model | SSIM, %d plain validation faces | SSIM, the same augmented |\n|---|---|---|", len(val))
    for name in models:
        m = load_vaegan_model(name)
        parts = torch.nn.ModuleDict({"analysis": m.analysis, "synthesis": m.synthesis})
        log.info("| %s | %.4f | %.4f |", name, score(parts, val, m.config.bits)[0], score(parts, aug, m.config.bits)[0])


if __name__ == "__main__":
    main()
