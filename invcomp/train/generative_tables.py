"""Fitting a GC model's entropy tables after training: the context statistics of its symbols on training images.

The tables (:mod:`invcomp.coding.gridcode`) are fitted once, after the networks are trained, on the symbols that the
encoder gives for training images (never the held-out ones), with Krichevsky-Trofimov smoothing; they ship as the
model's ``-prior.json``. SC's tables (:func:`fit_sc_prior`) are fitted on the same symbols under random preserved
masks (code tables whose contexts see the mask's gaps), on the masks themselves and on the semantic maps.
"""
from __future__ import annotations

import logging
from typing import Iterable, Optional

import numpy as np
import torch

from invcomp.coding.gridcode import fit_tables
from invcomp.nets.generative.model import GCNet
from invcomp.zoo.generative import GCPrior
from invcomp.nets.generative.tiles import pad16

log = logging.getLogger(__name__)


@torch.no_grad()
def symbol_grids(net: GCNet, images: Iterable[torch.Tensor], batch: int = 16) -> list[np.ndarray]:
    """Symbols ``(C, h, w)`` of each image of uint8 ``(N, 3, H, W)`` batches (any H, W; padded to /16)."""
    out = []
    for x in images:
        for i in range(0, len(x), batch):
            xb = pad16(x[i:i + batch].float() / 127.5 - 1.0)
            out += list(net.Q.symbols(net.E(xb)).numpy())
    return out


def fit_gc_prior(net: GCNet, images: torch.Tensor, *, smoothing: float = 0.5, info: Optional[dict] = None) -> GCPrior:
    """The code tables of ``net`` from training images, uint8 ``(N, 3, H, W)``."""
    grids = symbol_grids(net, [images])
    cfg = net.cfg
    tables = fit_tables(grids, [np.ones(g.shape, dtype=bool) for g in grids], cfg.centres, cfg.channels, smoothing)
    log.info("fitted GC tables on %d images (%d symbols each)", len(grids), grids[0].size)
    return GCPrior(tables, fit={"images": len(grids), "smoothing": smoothing, **(info or {})})


def fit_sc_prior(symbols: list[np.ndarray], masks: list[np.ndarray], semantic: list[np.ndarray], *, values: int,
                 classes: int, smoothing: float = 0.5, info: Optional[dict] = None) -> GCPrior:
    """SC's tables: the code under the cell masks ``masks`` (``(h, w)`` bool each, one per symbol grid ``(C, h, w)``),
    the masks themselves, and the semantic grids ``(2h, 2w)``."""
    planes = symbols[0].shape[0]
    pres = [np.broadcast_to(m[None], s.shape) for s, m in zip(symbols, masks)]
    code = fit_tables(symbols, pres, values, planes, smoothing)
    mask = fit_tables([m[None].astype(np.int64) for m in masks], [np.ones((1,) + m.shape, bool) for m in masks], 2, 1,
                      smoothing)
    sem = fit_tables([g[None].astype(np.int64) for g in semantic], [np.ones((1,) + g.shape, bool) for g in semantic],
                     classes, 1, smoothing)
    return GCPrior(code, mask, sem, fit={"grids": len(symbols), "masks": len(masks), "maps": len(semantic),
                                         "smoothing": smoothing, **(info or {})})
