"""Tiny GC and SC models on disk (random weights, fitted tables), for the GC and SC tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from invcomp.files import sha256_file
from invcomp.train.generative_tables import fit_gc_prior, fit_sc_prior, symbol_grids
from invcomp.nets.generative.masks import random_cell_masks
from invcomp.nets.generative.model import GCConfig, GCNet, save_gc
from invcomp.coding.tables import save_prior
from invcomp.nets.generative.synth import SCConfig, Synthesiser, save_synth

TINY = dict(enc_widths=(4, 8, 8, 8), gen_width=8, res_blocks=2, up_widths=(8, 8, 4, 4))


def smooth_images(n: int, side: int, seed: int = 0) -> torch.Tensor:
    """uint8 ``(n, 3, side, side)``: smooth random colour fields (what a tiny codec can learn in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(low, size=(side, side), mode="bicubic", align_corners=False).clamp(0, 1)
    return (x * 255).round().to(torch.uint8)


def image(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (max(1, height // 8 + 1), max(1, width // 8 + 1), 3), dtype=np.uint8)
    return Image.fromarray(base).resize((width, height), Image.Resampling.BILINEAR)


def make_gc(folder: Path, channels: int = 2, seed: int = 0) -> Path:
    """A tiny GC model ``folder/tiny-gc.pt`` with its config and tables."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = GCConfig(channels=channels, **TINY)  # type: ignore[arg-type]
    net = GCNet(cfg).eval()
    path = folder / "tiny-gc.pt"
    save_gc(net, cfg, path)
    save_prior(fit_gc_prior(net, smooth_images(8, 64)), folder / "tiny-gc-prior.json")
    return path


def make_sc(folder: Path, gc_path: Path, seed: int = 0) -> Path:
    """A tiny SC model ``folder/tiny-sc.pt`` over the GC model at ``gc_path``."""
    from invcomp.nets.generative.model import load_gc

    net = load_gc(gc_path)
    cfg = SCConfig(base=str(gc_path), base_sha256=sha256_file(gc_path), channels=net.cfg.channels,
                   centres=net.cfg.centres, width=8, dilations=(1, 2), halo=1)
    torch.manual_seed(seed)
    path = folder / "tiny-sc.pt"
    save_synth(Synthesiser(cfg).eval(), cfg, path)
    grids = symbol_grids(net, [smooth_images(8, 64)])
    masks = list(random_cell_masks(len(grids), 4, 4, torch.Generator().manual_seed(0)).numpy())
    maps = [np.random.default_rng(i).integers(0, cfg.classes, (8, 8)) for i in range(len(grids))]
    save_prior(fit_sc_prior(grids, masks, maps, values=cfg.centres, classes=cfg.classes), folder / "tiny-sc-prior.json")
    return path
