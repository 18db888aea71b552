"""Train a GC model (:mod:`invcomp.nets.generative.model`) on a folder, ``.zip`` or ``.tar`` of images (the train split).

Per step, on a batch of random ``crop`` x ``crop`` crops of the training images at their full size (UTKFace: 200 px),
horizontally flipped at random:

- ``x_hat = G(Q(E(x)))`` with the soft-to-hard quantiser in the loop;
- distortion ``mse_weight * MSE + ssim_weight * (1 - SSIM)`` in [-1, 1] pixel units. The SSIM term stands in for the
  paper's VGG perceptual loss, whose ImageNet weights cannot be downloaded here;
- after ``adv_warmup`` steps of pure autoencoding, the multi-scale discriminator D (:mod:`invcomp.nets.generative.discriminator`)
  is trained (LSGAN), and G also gets ``adv_weight * LSGAN + fm_weight * feature matching``.

Adam for both (betas 0.5, 0.999), gradients clipped to norm ``clip`` (a norm-free run at lr 4e-4 without it
saturated to white at step 800). Every ``snapshot_every`` steps the model is scored on validation faces (PSNR,
SSIM and the high-frequency energy ratio, :func:`invcomp.metrics.hf_ratio`, in the log; a grid of originals and
reconstructions) and the latest is kept as ``gc.pt`` + ``gc.json``: a GAN's snapshots are not ranked by PSNR, which
would pick the blurriest. ``checkpoint.pt`` holds E, Q, G, D, both optimisers, the step and the RNG state
(:mod:`invcomp.train.loop`); a resumed run takes its own ``lr`` and ``adv_warmup``. Deterministic on the CPU for a seed.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

import torch

from invcomp.data import load_faces
from invcomp.errors import InvcompError
from invcomp.nets.generative.discriminator import MultiScaleD, d_loss, feature_matching, g_loss
from invcomp.metrics import hf_ratio
from invcomp.nets.generative.model import GCConfig, GCNet, save_gc
from invcomp.nets.generative.tiles import pad16
from invcomp.metrics import psnr, ssim
from invcomp.train.common import save_grid
from invcomp.train.loop import Score, Trainer, run_training

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GCTrainConfig:
    data: str
    out: str
    channels: int = 8
    centres: int = 5
    enc_widths: tuple[int, ...] = (24, 48, 96, 128)
    gen_width: int = 128
    res_blocks: int = 5
    up_widths: tuple[int, ...] = (96, 64, 32, 16)
    ndf: int = 16
    resolution: int = 200
    crop: int = 96
    batch_size: int = 8
    lr: float = 2e-4
    mse_weight: float = 20.0
    ssim_weight: float = 2.0
    adv_weight: float = 1.0
    fm_weight: float = 10.0
    adv_warmup: int = 1500
    clip: float = 1.0
    steps: int = 8000
    minutes: Optional[float] = None
    snapshot_every: int = 500
    eval_faces: int = 16
    limit: Optional[int] = None
    threads: Optional[int] = None
    seed: int = 0
    device: str = "cpu"

    def model_config(self) -> GCConfig:
        return GCConfig(channels=self.channels, centres=self.centres, enc_widths=tuple(self.enc_widths),
                        gen_width=self.gen_width, res_blocks=self.res_blocks, up_widths=tuple(self.up_widths))


def random_crops(real: torch.Tensor, n: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` random ``crop`` x ``crop`` crops (random images, positions, horizontal flips) of uint8 ``(N, 3, R, R)``,
    as float ``(n, 3, crop, crop)`` in [-1, 1]."""
    r = real.shape[-1]
    if crop > min(real.shape[-2:]):
        raise InvcompError(f"crop {crop} is larger than the training images ({r} px)")
    idx = torch.randint(0, len(real), (n,), generator=gen)
    ys = torch.randint(0, real.shape[-2] - crop + 1, (n,), generator=gen)
    xs = torch.randint(0, r - crop + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.stack([real[i, :, y:y + crop, x:x + crop] for i, y, x in zip(idx.tolist(), ys.tolist(), xs.tolist())])
    out = out.float() / 127.5 - 1.0
    return torch.where(flip[:, None, None, None], out.flip(3), out)


class GCTrainer(Trainer):
    """E, Q, G and D of a run, their optimisers and the RNG of its batches."""

    product, desc, postfix_every, log_every = "gc.pt", "train gc", 20, 100

    def __init__(self, cfg: GCTrainConfig, out: Path) -> None:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.out, self.device = cfg, out, torch.device(cfg.device)
        self.mcfg = cfg.model_config()
        self.real, _ = load_faces(cfg.data, cfg.resolution, split="train", limit=cfg.limit)
        try:
            val = load_faces(cfg.data, cfg.resolution, split="val", limit=cfg.eval_faces)[0] if cfg.eval_faces else None
        except FileNotFoundError:
            val = self.real[:cfg.eval_faces]
        self.val = None if val is None else val.float() / 127.5 - 1.0
        torch.manual_seed(cfg.seed)
        self.net, self.D = GCNet(self.mcfg).to(self.device), MultiScaleD(3, cfg.ndf).to(self.device)
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=betas)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        log.info("training GC (C=%d, L=%d) on %d images (%s) in %d-px crops, config %s", cfg.channels, cfg.centres,
                 len(self.real), cfg.data, cfg.crop, cfg)

    def state_dict(self, step: int) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "D": self.D.state_dict(), "opt_g": self.opt_g.state_dict(),
                "opt_d": self.opt_d.state_dict(), "rng": self.gen.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        try:
            self.net.load_state_dict(state["net"]), self.D.load_state_dict(state["D"])
            self.opt_g.load_state_dict(state["opt_g"]), self.opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, ValueError, KeyError):
            raise InvcompError(f"{self.out / 'checkpoint.pt'} was made with other model options; use them again "
                               "or --no-resume") from None
        self.gen.set_state(state["rng"].cpu())
        for opt in (self.opt_g, self.opt_d):  # a resumed run takes this run's --lr (the log records each start's config)
            for group in opt.param_groups:
                group["lr"] = self.cfg.lr

    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        x = random_crops(self.real, cfg.batch_size, cfg.crop, self.gen).to(self.device)
        x_hat, _ = self.net(x)
        dist = cfg.mse_weight * (x_hat - x).pow(2).mean() + cfg.ssim_weight * (1 - ssim(x_hat, x)).mean()
        losses = {"mse": float((x_hat - x).detach().pow(2).mean()), "dist": float(dist.detach())}
        loss = dist
        if step >= cfg.adv_warmup and cfg.adv_weight > 0:
            ld = d_loss(self.D(x), self.D(x_hat.detach()))
            self.opt_d.zero_grad(set_to_none=True)
            ld.backward()
            torch.nn.utils.clip_grad_norm_(self.D.parameters(), cfg.clip)
            self.opt_d.step()
            real, fake = self.D(x), self.D(x_hat)
            adv, fm = g_loss(fake), feature_matching(real, fake)
            loss = loss + cfg.adv_weight * adv + cfg.fm_weight * fm
            losses.update(d=float(ld.detach()), g=float(adv.detach()), fm=float(fm.detach()))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.clip)
        self.opt_g.step()
        return losses

    @torch.no_grad()
    def evaluate(self, step: int) -> Score:
        if self.val is None:
            return Score(None)
        self.net.eval()
        x = self.val.to(self.device)
        xp = pad16(x)
        recon = self.net(xp)[0][..., :x.shape[-2], :x.shape[-1]].clamp(-1, 1)
        self.net.train()
        p, s, hf = float(psnr(recon, x).mean()), float(ssim(recon, x).mean()), float(hf_ratio(recon, x).mean())
        save_grid(torch.cat([x[:8], recon[:8]]).cpu(), self.out / f"recon_{step:06d}.png")
        return Score(None, why="a GAN keeps its latest snapshot",
                     note=f"; val PSNR {p:.2f} dB, SSIM {s:.4f}, high-frequency energy ratio {hf:.3f}")

    def save_best(self, step: int, seconds: float, value: float | None) -> None:
        training = {"step": step, "seconds": round(seconds), "device": "cpu" if self.device.type == "cpu" else "cuda",
                    "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.cfg).items()}}
        save_gc(self.net, replace(self.mcfg, training=training), self.out / "gc.pt")


def train_gc(cfg: GCTrainConfig, *, resume: bool = True, progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the kept ``gc.pt``."""
    return run_training(cfg.out, lambda out: GCTrainer(cfg, out), steps=cfg.steps, minutes=cfg.minutes,
                        snapshot_every=cfg.snapshot_every, resume=resume, progress=progress)


CONFIG = GCTrainConfig  # what `invcomp train` builds from its options (invcomp.train.common.config_from_kwargs)
