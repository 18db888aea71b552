"""Pieces the trainers share: EMA, BatchNorm recalibration, the inversion score, sample grids, the run log.

The loop itself (resume, deadline, snapshots) is :mod:`invcomp.train.loop`.
"""
from __future__ import annotations

import contextlib
import copy
import logging
from pathlib import Path
from dataclasses import MISSING, fields, replace
from typing import Any, Iterator, TypeVar

import torch
from torch import nn

from invcomp.imageio import to_pil
from invcomp.search.inversion import invert
from invcomp.metrics import ssim

log = logging.getLogger(__name__)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` for parameters; buffers are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


@torch.no_grad()
def recalibrate_bn(G: nn.Module, latent_dim: int, device: torch.device, *, batches: int = 40, batch: int = 256,
                   seed: int = 1234) -> nn.Module:
    """A copy of G whose BatchNorm running statistics are the exact averages over ``batches`` prior batches.

    EMA weights and the running statistics tracked during training do not match; eval-mode inversion
    needs statistics that belong to the weights it uses. Returns the copy in eval mode.
    """
    g = copy.deepcopy(G)
    bns = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return g.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    g.train()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for _ in range(batches):
        g(torch.randn(batch, latent_dim, generator=gen).to(device))
    for m in bns:
        m.momentum = 0.1
    return g.eval()


def inversion_ssim(G: nn.Module, val: torch.Tensor, iters: int) -> float:
    """Mean SSIM of G's reconstructions of ``val`` ``(N, 3, R, R)`` in [-1, 1] after an ``iters``-step latent search."""
    res = invert(G, val, iters=iters, lr=0.1, seed=0)
    with torch.no_grad():
        return float(ssim(G(res.z.to(val.device)), val).mean())


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """Save images ``(N, 3, R, R)`` in [-1, 1] as a PNG grid with 2-px gaps."""
    n, _, r, _ = images.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    grid = torch.ones(3, nrows * (r + 2) + 2, ncol * (r + 2) + 2)
    for i in range(n):
        y, x = divmod(i, ncol)
        grid[:, 2 + y * (r + 2): 2 + y * (r + 2) + r, 2 + x * (r + 2): 2 + x * (r + 2) + r] = images[i].cpu()
    to_pil(grid).save(path)


@contextlib.contextmanager
def file_log(path: Path) -> Iterator[None]:
    """Log invcomp INFO messages to ``path`` for the duration of the block."""
    handler = setup_file_log(path)
    try:
        yield
    finally:
        logging.getLogger("invcomp").removeHandler(handler)
        handler.close()


def setup_file_log(path: Path) -> logging.Handler:
    """Also log INFO and above from invcomp to ``path``; returns the handler (remove it when done)."""
    h = logging.FileHandler(path)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    h.setLevel(logging.INFO)
    root = logging.getLogger("invcomp")
    root.addHandler(h)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    return h


T = TypeVar("T")


def config_from_kwargs(cls: type[T], **kw: Any) -> T:
    """A trainer's frozen config ``cls`` from command-line options: the fields without a default (the paths) as
    strings, then every other option that was given (``None`` means not given, so the defaults stay the
    dataclass's)."""
    paths = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]  # type: ignore[arg-type]
    base = cls(**{name: str(kw.pop(name)) for name in paths})
    return replace(base, **{k: v for k, v in kw.items() if v is not None})  # type: ignore[type-var]
