"""Train SC's synthesiser (:mod:`invcomp.nets.generative.synth`) over a trained GC model, and fit SC's tables.

Data: training images and their landmark label maps at the semantic grid (``maps``: the ``.npz`` of
``experiments/sc_semantic_maps.py``, whose names must be the first images of the train split). The GC model's
encoder gives every image's symbols once, before training. Per step, on a batch of symbol grids:

- a random cell mask per grid (:func:`invcomp.nets.generative.masks.random_cell_masks`: one to three boxes, some empty, some full),
  as the paper trains SC with random preserved regions;
- the semantic map, dropped (no map in the file) for a batch with probability ``drop_semantic``;
- cross-entropy of S's logits against the encoder's symbols in the dropped cells.

The last ``eval_faces`` grids are held out and score snapshots (mean cross-entropy in bits per dropped symbol,
lower is better; a picture of GC against SC with a random mask); the best is kept as ``sc.pt`` + ``sc.json``. At
the end, :func:`invcomp.train.generative_tables.fit_sc_prior` fits the file's tables (``sc-prior.json``) on the training grids under
fresh random masks. Resumable (:mod:`invcomp.train.loop`).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from invcomp.data import load_faces
from invcomp.errors import InvcompError
from invcomp.train.generative_tables import fit_sc_prior, symbol_grids
from invcomp.nets.generative.masks import random_cell_masks
from invcomp.nets.generative.semantic import CLASSES
from invcomp.coding.tables import save_prior
from invcomp.zoo.generative import load_gc_model
from invcomp.nets.generative.synth import SCConfig, Synthesiser, complete, save_synth
from invcomp.train.common import save_grid
from invcomp.train.loop import Score, Trainer, run_training

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SCTrainConfig:
    gc: str
    data: str
    maps: str
    out: str
    resolution: int = 200
    width: int = 64
    halo: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    drop_semantic: float = 0.3
    steps: int = 3000
    minutes: Optional[float] = None
    snapshot_every: int = 500
    eval_faces: int = 256
    threads: Optional[int] = None
    seed: int = 0
    device: str = "cpu"


class SCTrainer(Trainer):
    product, desc, postfix_every, log_every, score_name = "sc.pt", "train sc", 20, 200, "val cross-entropy (negated)"

    def __init__(self, cfg: SCTrainConfig, out: Path) -> None:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.out, self.device = cfg, out, torch.device("cpu")
        self.base = load_gc_model(cfg.gc)
        maps = np.load(cfg.maps)
        names, grids = [str(n) for n in maps["names"]], torch.from_numpy(maps["grids"].astype(np.int64))
        images, loaded = load_faces(cfg.data, cfg.resolution, split="train", limit=len(names))
        if loaded != names:
            raise InvcompError(f"{cfg.maps} is not of the first {len(names)} train images of {cfg.data}")
        self.images = images
        self.sym = torch.from_numpy(np.stack(symbol_grids(self.base.net, [images])))
        self.sem = grids
        if self.sem.shape[-2:] != (2 * self.sym.shape[-2], 2 * self.sym.shape[-1]):
            raise InvcompError(f"maps of {tuple(self.sem.shape[-2:])} do not fit code grids of {tuple(self.sym.shape[-2:])}")
        self.n_train = len(names) - cfg.eval_faces
        if self.n_train < 1:
            raise InvcompError(f"{len(names)} maps leave nothing to train on after {cfg.eval_faces} held out")
        gc_cfg = self.base.config
        self.scfg = SCConfig(base=self.base.name, base_sha256=self.base.sha256, channels=gc_cfg.channels,
                             centres=gc_cfg.centres, classes=len(CLASSES), width=cfg.width, halo=cfg.halo)
        torch.manual_seed(cfg.seed)
        self.S = Synthesiser(self.scfg)
        self.opt = torch.optim.Adam(self.S.parameters(), lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        g = torch.Generator().manual_seed(cfg.seed + 1)
        val = slice(self.n_train, None)
        self.val_masks = random_cell_masks(len(names) - self.n_train, *self.sym.shape[-2:], g)
        self.val = (self.sym[val], self.sem[val], self.val_masks)
        log.info("training SC over %s on %d grids (%d held out), config %s", self.base.name, self.n_train,
                 cfg.eval_faces, cfg)

    def loss(self, sym: torch.Tensor, sem: Optional[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (nats) over the dropped cells' symbols."""
        logits = self.S(sym, mask, sem)  # (N, C, L, h, w)
        ce = F.cross_entropy(logits.transpose(1, 2), sym, reduction="none")  # (N, C, h, w)
        drop = (~mask)[:, None].expand_as(ce).float()
        return (ce * drop).sum() / drop.sum().clamp(min=1)

    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        idx = torch.randint(0, self.n_train, (cfg.batch_size,), generator=self.gen)
        mask = random_cell_masks(cfg.batch_size, *self.sym.shape[-2:], self.gen)
        drop_map = bool(torch.rand(1, generator=self.gen) < cfg.drop_semantic)
        loss = self.loss(self.sym[idx], None if drop_map else self.sem[idx], mask)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"ce_bits": float(loss.detach()) / math.log(2)}

    @torch.no_grad()
    def evaluate(self, step: int) -> Score:
        sym, sem, mask = self.val
        ce = float(self.loss(sym, sem, mask)) / math.log(2)
        ce_none = float(self.loss(sym, None, mask)) / math.log(2)
        pics = []
        for i in range(4):
            full = complete(self.S, sym[i], mask[i], sem[i])
            for s in (sym[i], full):
                pics.append(self.base.net.G(self.base.net.Q.values(s)[None])[0, :, :self.cfg.resolution, :self.cfg.resolution])
        save_grid(torch.stack(pics), self.out / f"sc_{step:06d}.png", nrow=8)
        return Score(-ce, what="val cross-entropy (negated, bits per dropped symbol)",
                     note=f"; without maps {ce_none:.3f} bits (uniform: {math.log2(self.scfg.centres):.3f})")

    def save_best(self, step: int, seconds: float, value: float | None) -> None:
        training = {"step": step, "seconds": round(seconds), "val_bits_per_dropped_symbol": None if value is None else round(-value, 4),
                    "config": asdict(self.cfg)}
        save_synth(self.S, replace(self.scfg, training=training), self.out / "sc.pt")

    def state_dict(self, step: int) -> dict[str, Any]:
        return {"S": self.S.state_dict(), "opt": self.opt.state_dict(), "rng": self.gen.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            self.S.load_state_dict(state["S"]), self.opt.load_state_dict(state["opt"])
        except (RuntimeError, ValueError, KeyError):
            raise InvcompError(f"{self.out / 'checkpoint.pt'} was made with other options; use them again or --no-resume") from None
        self.gen.set_state(state["rng"].cpu())

    def fit_prior(self) -> Path:
        """Fit and write ``sc-prior.json`` on the training grids under fresh random masks."""
        g = torch.Generator().manual_seed(self.cfg.seed + 2)
        n = self.n_train
        masks = random_cell_masks(n, *self.sym.shape[-2:], g).numpy()
        prior = fit_sc_prior(list(self.sym[:n].numpy()), list(masks), list(self.sem[:n].numpy()),
                             values=self.scfg.centres, classes=self.scfg.classes, info={"base": self.base.name})
        path = self.out / "sc-prior.json"
        save_prior(prior, path)
        return path


def train_sc(cfg: SCTrainConfig, *, resume: bool = True, progress: bool = True) -> Path:
    """Run (or resume) training, then fit the tables; returns the path of the kept ``sc.pt``."""
    holder: list[SCTrainer] = []

    def make(out: Path) -> SCTrainer:
        holder.append(SCTrainer(cfg, out))
        return holder[0]

    path = run_training(cfg.out, make, steps=cfg.steps, minutes=cfg.minutes, snapshot_every=cfg.snapshot_every,
                        resume=resume, progress=progress)
    log.info("SC tables: %s", holder[0].fit_prior())
    return path


CONFIG = SCTrainConfig  # what `invcomp train` builds from its options (invcomp.train.common.config_from_kwargs)
