"""Train a CompressAI learned codec (the bench's learned peers) on the same faces as the generators.

The architectures are CompressAI's own (``bmshj2018-factorized``, ``bmshj2018-hyperprior``,
``mbt2018-mean``: :data:`ARCHITECTURES`), built from the installed library, not rewritten. The recipe is
CompressAI's ``examples/train.py``: loss = rate (bits per pixel from the likelihoods) + λ·distortion, with
distortion 255²·MSE (``RateDistortionLoss``) or 1 − MS-SSIM; Adam on the network (lr 1e-4) and a second Adam
on the entropy bottleneck's quantiles (the auxiliary loss, lr 1e-3, ``net_aux_optimizer``); gradient clipping
at 1.0; ``update()`` before anything is coded.

Where it differs from the published recipe, and why (2 CPU cores): the networks are narrower (``N``, ``M``
default 32 and 48, against 128/192 or 192/320), the images are 64×64 (or 128×128) centre crops of UTKFace's
train split with horizontal flips, not 256×256 Vimeo-90k crops, batch 16, and a few thousand steps, not
millions. A run may start from another run's weights (``init``): the lower-λ models are fine-tuned from one
trained at a middle λ, which is how rate sweeps are commonly shortened. MS-SSIM at 64 px uses invcomp's
3-scale MS-SSIM (:func:`invcomp.metrics.ms_ssim`), as the 5-scale one needs over 160 px.

Snapshots are scored by the RD loss on the validation faces (lower is better; the loop keeps the highest
score, so the score is its negative). ``model.pt`` (state_dict after ``update()``) and ``model.json`` are
the kept model; ``checkpoint.pt`` holds both optimisers and resumes the run.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from invcomp.data import load_faces
from invcomp.errors import InvcompError
from invcomp.files import atomic_save, load_state_dict, write_json
from invcomp.nets.peers import ARCHITECTURES, build_model  # noqa: F401  (ARCHITECTURES: the choices of a run)
from invcomp.train.loop import Score, Trainer, run_training

log = logging.getLogger(__name__)

METRICS = ("mse", "ms-ssim")


@dataclass(frozen=True)
class PeerTrainConfig:
    data: str
    out: str
    architecture: str = "bmshj2018-hyperprior"
    lmbda: float = 0.002
    metric: str = "mse"
    N: int = 32
    M: int = 48
    resolution: int = 64
    batch_size: int = 16
    lr: float = 1e-4
    aux_lr: float = 1e-3
    clip: float = 1.0
    steps: int = 6000
    minutes: Optional[float] = None
    snapshot_every: int = 1000
    eval_faces: int = 256
    init: Optional[str] = None
    cache: Optional[str] = None
    seed: int = 0
    device: str = "cpu"


def rd_loss(out: Mapping[str, Any], x: torch.Tensor, lmbda: float, metric: str) -> dict[str, torch.Tensor]:
    """CompressAI's rate-distortion loss for a batch ``x`` ``(B, 3, H, W)`` in [0, 1] and the model's ``out``:
    ``bpp`` (from the likelihoods), the distortion term and ``loss = bpp + lmbda * distortion``."""
    from invcomp import metrics

    n, _, h, w = x.shape
    bpp = sum(torch.log(lk).sum() for lk in out["likelihoods"].values()) / (-math.log(2) * n * h * w)
    x_hat = out["x_hat"]
    if metric == "mse":
        dist = 255.0**2 * torch.mean((x_hat - x) ** 2)
        terms = {"mse": torch.mean((x_hat - x) ** 2)}
    else:  # invcomp's MS-SSIM takes [-1, 1]; its scale count fits the size (3 at 64 px)
        ms = metrics.ms_ssim(x_hat.clamp(0, 1) * 2 - 1, x * 2 - 1).mean()
        dist, terms = 1.0 - ms, {"ms_ssim": ms}
    return {"loss": bpp + lmbda * dist, "bpp": bpp, **terms}


def _cached_faces(cfg: PeerTrainConfig, split: str, limit: Optional[int]) -> torch.Tensor:
    """uint8 ``(N, 3, R, R)`` faces of ``split``, kept in ``cfg.cache`` (a folder) when given."""
    path = Path(cfg.cache) / f"{split}{cfg.resolution}_{limit}.pt" if cfg.cache else None
    if path is not None and path.exists():
        return torch.load(path, weights_only=True)
    faces = load_faces(cfg.data, cfg.resolution, split=split, limit=limit)[0]  # type: ignore[arg-type]
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(faces, path)
    return faces


class PeerTrainer(Trainer):
    product = "model.pt"
    desc = "peer"
    log_every = 500
    score_name = "-(val RD loss)"

    def __init__(self, cfg: PeerTrainConfig, out: Path) -> None:
        from compressai.optimizers import net_aux_optimizer

        if cfg.metric not in METRICS:
            raise InvcompError(f"metric must be one of {', '.join(METRICS)}, got {cfg.metric!r}")
        self.cfg, self.out = cfg, out
        self.device = torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.architecture, cfg.N, cfg.M).to(self.device)
        if cfg.init:
            from invcomp.nets.peers import with_tables

            self.model.load_state_dict(with_tables(self.model, load_state_dict(cfg.init)))  # a shipped peer lacks its tables
            log.info("started from %s", cfg.init)
        self.real = _cached_faces(cfg, "train", None).to(self.device)
        self.val = None
        if cfg.eval_faces:
            try:
                self.val = _cached_faces(cfg, "val", cfg.eval_faces).to(self.device)
            except FileNotFoundError:
                log.warning("no validation images in %s: snapshots are not scored, the latest is kept", cfg.data)
        opts = net_aux_optimizer(self.model, {"net": {"type": "Adam", "lr": cfg.lr},
                                              "aux": {"type": "Adam", "lr": cfg.aux_lr}})
        self.opt, self.aux_opt = opts["net"], opts["aux"]
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.desc = f"{cfg.architecture} λ={cfg.lmbda:g}"

    def state_dict(self, step: int) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "aux_opt": self.aux_opt.state_dict(),
                "config": {k: v for k, v in asdict(self.cfg).items() if k not in ("minutes", "steps", "device")}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        mine = {k: v for k, v in asdict(self.cfg).items() if k not in ("minutes", "steps", "device")}
        theirs = dict(state.get("config", {}))
        differ = sorted(k for k in ("architecture", "lmbda", "metric", "N", "M", "resolution") if theirs.get(k) != mine[k])
        if differ:
            raise InvcompError(f"checkpoint in {self.out} was trained with other {', '.join(differ)}; use another --out")
        own = dict(self.model.named_buffers())
        for k, v in state["model"].items():  # entropy tables differ in length between snapshots; CompressAI only
            if k in own and own[k].shape != v.shape:  # resizes empty ones (a model started from --init is not empty)
                own[k].resize_(v.shape)
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"]), self.aux_opt.load_state_dict(state["aux_opt"])
        self.gen.manual_seed(self.cfg.seed + int(state["step"]))

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg, model = self.cfg, self.model
        model.train()
        idx = torch.randint(0, len(self.real), (cfg.batch_size,), device=self.device, generator=self.gen)
        x = self.real[idx].float() / 255.0
        flip = torch.rand(x.shape[0], device=self.device, generator=self.gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        terms = rd_loss(model(x), x, cfg.lmbda, cfg.metric)
        self.opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        self.opt.step()
        aux = model.aux_loss()
        self.aux_opt.zero_grad(set_to_none=True)
        aux.backward()
        self.aux_opt.step()
        return {**{k: v.detach() for k, v in terms.items()}, "aux": aux.detach()}

    def evaluate(self, step: int) -> Score:
        if self.val is None:
            return Score(None)
        self.model.eval()
        totals: dict[str, float] = {}
        with torch.no_grad():
            for s in range(0, len(self.val), 64):
                x = self.val[s:s + 64].float() / 255.0
                for k, v in rd_loss(self.model(x), x, self.cfg.lmbda, self.cfg.metric).items():
                    totals[k] = totals.get(k, 0.0) + float(v) * len(x)
        means = {k: v / len(self.val) for k, v in totals.items()}
        note = " (" + ", ".join(f"{k} {v:.4f}" for k, v in means.items()) + ")"
        return Score(-means["loss"], what="-(val RD loss)", note=note)

    def save_best(self, step: int, seconds: float, value: float | None) -> None:
        self.model.update(force=True, update_quantiles=True)
        atomic_save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, self.out / "model.pt")
        cfg = self.cfg
        write_json({"architecture": cfg.architecture, "N": cfg.N, "M": cfg.M, "lmbda": cfg.lmbda, "metric": cfg.metric,
                    "resolution": cfg.resolution,
                    "training": {"step": step, "seconds": round(seconds), "val_rd_loss": None if value is None else -value,
                                 "config": {k: v for k, v in asdict(cfg).items()}}}, self.out / "model.json")


def train_peer(cfg: PeerTrainConfig, *, resume: bool = True, progress: bool = True) -> Path:
    """Train one learned peer to ``cfg.out`` (see module doc); returns the kept ``model.pt``."""
    return run_training(cfg.out, lambda out: PeerTrainer(cfg, out), steps=cfg.steps, minutes=cfg.minutes,
                        snapshot_every=cfg.snapshot_every, resume=resume, progress=progress)


CONFIG = PeerTrainConfig  # what `invcomp train` builds from its options (invcomp.train.common.config_from_kwargs)
