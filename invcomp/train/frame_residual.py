"""Train the frame codec's whole-picture residual network (:class:`invcomp.nets.residual.ResidualCoder`) on the CPU.

The frame codec (``invcomp.codecs.modes.frame``) codes a face crop or photo as its aligned face's GAN code pasted over
a ThumbHash of the frame, then one residual layer over that picture at the input's own size. This trainer fits the
residual network to exactly that conditioning: pairs of frames and the pictures their face codes decode to, written
by ``experiments/frame_bases.py`` (uint8 ``x128``, ``b128`` ``(N, 3, 128, 128)`` and ``x256``, ``b256``
``(N/2, 3, 256, 256)``).

It starts from the layered mode's network (``init``: its weights fit, the stage plane is left at 0) and moves its
rates down: the frame's residual must carry a whole 128-256-px picture in about 100 bytes, where the layered mode's
lowest rate spends about 300 at 256 px. One step: half the batch whole 128-px frames, half random ``crop``-px crops of
256-px frames, random flips, each row at a random rate with its own distortion weight; the loss is the layered
trainer's (:func:`invcomp.train.residual.rd_terms`: ``bits / pixels + lambda_r * (255^2 MSE + 1000 (1 - SSIM))``).
The last ``eval_faces`` faces are not trained on; snapshots are scored on their whole 128- and 256-px frames.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from invcomp.errors import InvcompError
from invcomp.files import load_state_dict
from invcomp.nets.residual import ResidualCoder, rate_lambdas
from invcomp.train.loop import Score, run_training
from invcomp.train.residual import ResidualTrainer, rd_terms

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameResidualConfig:
    data: str
    out: str
    steps: int = 20000
    minutes: Optional[float] = None
    batch_size: int = 8
    crop: int = 128
    N: int = 32
    M: int = 48
    rates: int = 8
    lambda_low: float = 4e-5
    lambda_high: float = 2e-3
    lr: float = 5e-5
    clip: float = 1.0
    eval_faces: int = 48
    snapshot_every: int = 500
    seed: int = 0
    threads: Optional[int] = None
    init: Optional[str] = "residual-utkface"  # a shipped residual network's name, a .pt, or None (from scratch)
    device: str = "cpu"


class FrameResidualTrainer(ResidualTrainer):
    """The layered trainer's checkpoints and kept model (:class:`~invcomp.train.residual.ResidualTrainer`), with this
    module's data, batches, step and score."""

    product = "model.pt"
    desc = "frame residual"
    score_name = "-(val RD loss)"

    def __init__(self, cfg: FrameResidualConfig, out: Path) -> None:
        if cfg.device != "cpu":
            raise InvcompError("the frame residual trains on the CPU (its data and steps are sized for it)")
        self.cfg, self.out, self.device = cfg, out, torch.device("cpu")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model = ResidualCoder(cfg.N, cfg.M, cfg.rates)
        if cfg.init:
            if cfg.init.endswith(".pt"):
                state = load_state_dict(cfg.init)
            else:
                from invcomp.nets.residual import residual_dir

                cfg_json = residual_dir() / f"{cfg.init}.json"
                import json

                state = load_state_dict(str(residual_dir() / json.loads(cfg_json.read_text())["weights"]))
            own = self.model.state_dict()
            fit = {k: v.float() for k, v in state.items() if k in own and own[k].shape == v.shape
                   and not k.startswith("gaussian.")}
            self.model.load_state_dict(fit, strict=False)
            log.info("started from %s (%d of %d tensors)", cfg.init, len(fit), len(own))
        data = torch.load(cfg.data, map_location="cpu", weights_only=True)
        n = data["x256"].shape[0]
        if n <= cfg.eval_faces:
            raise InvcompError(f"{cfg.data} holds {n} faces; need more than --eval-faces {cfg.eval_faces}")
        self.x128, self.b128 = data["x128"], data["b128"]  # uint8, 2 frames a face
        self.x256, self.b256 = data["x256"], data["b256"]
        self.n_train = n - cfg.eval_faces
        log.info("%d training faces, %d for scoring", self.n_train, cfg.eval_faces)
        self.lambdas = torch.tensor(rate_lambdas(cfg.rates, cfg.lambda_low, cfg.lambda_high))
        aux = {n for n, p in self.model.named_parameters() if n.endswith(".quantiles")}
        self.opt = torch.optim.Adam([p for n, p in self.model.named_parameters() if n not in aux], lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Half whole 128-px frames, half random ``crop``-px crops of 256-px frames, in [0, 1], randomly flipped:
        ``(B, 3, c, c)``, ``c`` = ``crop`` (128 frames are cropped too when ``crop`` < 128)."""
        cfg, g = self.cfg, self.gen
        half, c = cfg.batch_size // 2, cfg.crop
        xs, bs = [], []
        for src_x, src_b, count, faces in ((self.x128, self.b128, half, 2 * self.n_train),
                                           (self.x256, self.b256, cfg.batch_size - half, self.n_train)):
            side = src_x.shape[-1]
            for i in torch.randint(0, faces, (count,), generator=g).tolist():
                if side > c:
                    top, left = (int(v) for v in torch.randint(0, side - c + 1, (2,), generator=g))
                else:
                    top = left = 0
                xs.append(src_x[i:i + 1, :, top:top + c, left:left + c])
                bs.append(src_b[i:i + 1, :, top:top + c, left:left + c])
        x, b = torch.cat(xs).float() / 255, torch.cat(bs).float() / 255
        f = (torch.rand(x.shape[0], generator=g) < 0.5)[:, None, None, None]
        return torch.where(f, x.flip(3), x), torch.where(f, b.flip(3), b)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        x, base = self.batch()
        rate = torch.randint(0, self.cfg.rates, (x.shape[0],), generator=self.gen)
        self.model.train()
        terms = rd_terms(self.model, x, base, rate, self.lambdas)
        self.opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        self.opt.step()
        return {k: v.detach() for k, v in terms.items()}

    def evaluate(self, step: int) -> Score:
        cfg, model = self.cfg, self.model
        model.eval()
        lo, totals = self.n_train, []
        sets = ((self.x128[2 * lo:], self.b128[2 * lo:]), (self.x256[lo:], self.b256[lo:]))
        with torch.no_grad():
            for r in range(cfg.rates):
                for x, b in sets:
                    rate = torch.full((x.shape[0],), r)
                    totals.append({k: float(v) for k, v in
                                   rd_terms(model, x.float() / 255, b.float() / 255, rate, self.lambdas).items()})
        mean = {k: sum(t[k] for t in totals) / len(totals) for k in totals[0]}
        per_rate = " ".join(f"r{r}:{totals[2 * r]['bpp']:.3f}/{totals[2 * r]['ssim']:.3f}|"
                            f"{totals[2 * r + 1]['bpp']:.3f}/{totals[2 * r + 1]['ssim']:.3f}" for r in range(cfg.rates))
        return Score(-mean["loss"], what="-(val RD loss)", note=f" (128|256 px bpp/SSIM {per_rate})")


def train_frame_residual(cfg: FrameResidualConfig, *, resume: bool = True, progress: bool = True) -> Path:
    """Train the frame residual network to ``cfg.out``; returns the kept ``model.pt``."""
    return run_training(cfg.out, lambda out: FrameResidualTrainer(cfg, out), steps=cfg.steps, minutes=cfg.minutes,
                        snapshot_every=cfg.snapshot_every, resume=resume, progress=progress)


CONFIG = FrameResidualConfig
