"""Train a DCGAN (pytorch/examples architecture) on a folder or ``.tar`` of images.

The loop: non-saturating GAN loss, Adam(2e-4, beta=(0.5, 0.999)), horizontal
flips, an exponential moving average of G. Every ``snapshot_every`` steps the
EMA generator gets exact BatchNorm statistics and is scored by inverting the
validation faces (mean SSIM after a short search); the best snapshot is kept
as ``generator.pt`` + ``generator.json`` (without validation faces snapshots
are not scored and the latest is kept). ``checkpoint.pt`` (G, D, EMA, both
optimisers, the step) is written at every snapshot and at the end, and a run
resumes from it (:mod:`invcomp.train.loop`).
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

from invcomp.data import load_faces
from invcomp.nets.generators.config import GeneratorConfig
from invcomp.nets.generators.dcgan import DCGANDiscriminator, DCGANGenerator, standard_arch
from invcomp.files import atomic_save, write_json
from invcomp.train.common import ema_update, inversion_ssim, recalibrate_bn, save_grid
from invcomp.train.loop import Score, Trainer, load_val, run_training

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DCGANTrainConfig:
    data: str
    out: str
    resolution: int = 64
    latent_dim: int = 100
    ngf: int = 64
    ndf: int = 64
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    ema_decay: float = 0.999
    steps: int = 20000
    minutes: Optional[float] = None
    snapshot_every: int = 2000
    eval_faces: int = 128
    eval_iters: int = 200
    seed: int = 0
    device: str = "cpu"


def _batch(real: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    x = real[idx].float() / 127.5 - 1.0
    flip = torch.rand(x.shape[0], device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def train_dcgan(cfg: DCGANTrainConfig, *, resume: bool = True, progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the best generator state_dict."""
    return run_training(cfg.out, lambda out: DCGANTrainer(cfg, out), steps=cfg.steps, minutes=cfg.minutes,
                        snapshot_every=cfg.snapshot_every, resume=resume, progress=progress)


class DCGANTrainer(Trainer):
    """G, D, the EMA of G and their Adam optimisers; no RNG state is saved: a resumed run reseeds with
    ``seed + step``."""

    product, desc = "generator.pt", "train dcgan"

    def __init__(self, cfg: DCGANTrainConfig, out: Path) -> None:
        self.cfg, self.out, self.device = cfg, out, torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        torch.backends.cudnn.benchmark = True
        real, _ = load_faces(cfg.data, cfg.resolution, split="train")
        val = load_val(cfg.data, cfg.resolution, cfg.eval_faces)
        self.real = real.to(self.device)
        self.val = val.float().div(127.5).sub(1).to(self.device) if val is not None else None
        log.info("training DCGAN-%d on %d faces (%s), config %s", cfg.resolution, len(real), cfg.data, cfg)

        self.arch = standard_arch(cfg.latent_dim, cfg.ngf, cfg.resolution)
        self.G = DCGANGenerator(self.arch).to(self.device)
        self.D = DCGANDiscriminator(cfg.resolution, cfg.ndf).to(self.device)
        for m in list(self.G.modules()) + list(self.D.modules()):  # the pytorch/examples initialisation
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                torch.nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.normal_(m.weight, 1.0, 0.02)
                torch.nn.init.zeros_(m.bias)
        self.G_ema = copy.deepcopy(self.G).eval()
        self.optG = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.optD = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.fixed_z = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(7)).to(self.device)
        self._g: torch.nn.Module | None = None  # the snapshot being scored (EMA weights, exact BN statistics)

    def state_dict(self, step: int) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "optG": self.optG.state_dict(), "optD": self.optD.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.G.load_state_dict(state["G"]), self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.optG.load_state_dict(state["optG"]), self.optD.load_state_dict(state["optD"])
        self.gen.manual_seed(self.cfg.seed + int(state["step"]))

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg, G, D = self.cfg, self.G, self.D
        idx = torch.randint(0, len(self.real), (cfg.batch_size,), device=self.device, generator=self.gen)
        x = _batch(self.real, idx)
        z = torch.randn(cfg.batch_size, cfg.latent_dim, device=self.device, generator=self.gen)
        fake = G(z)
        d_real, d_fake = D(x), D(fake.detach())
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        self.optD.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optD.step()
        loss_g = F.softplus(-D(fake)).mean()
        self.optG.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optG.step()
        ema_update(self.G_ema, G, cfg.ema_decay if step > 1000 else 0.0)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach()}

    def evaluate(self, step: int) -> Score:
        g = self._g = recalibrate_bn(self.G_ema, self.cfg.latent_dim, self.device)
        with torch.no_grad():
            save_grid(g(self.fixed_z), self.out / f"samples_{step:06d}.png")
        value = inversion_ssim(g, self.val, self.cfg.eval_iters) if self.val is not None else None
        return Score(value, what="val inversion SSIM")

    def save_best(self, step: int, seconds: float, value: float | None) -> None:
        cfg, g = self.cfg, self._g
        assert g is not None
        atomic_save({k: v.cpu() for k, v in g.state_dict().items()}, self.out / "generator.pt")
        gc = GeneratorConfig(
            architecture="dcgan", latent_dim=cfg.latent_dim, resolution=cfg.resolution, prior="normal",
            widths=list(self.arch.widths),
            training={"step": step, "seconds": round(seconds), "val_ssim": None if value is None else round(value, 4),
                      "device": torch.cuda.get_device_name() if self.device.type == "cuda" else "cpu",
                      "config": {k: v for k, v in vars(cfg).items()}},
        )
        write_json(gc.to_json_dict(), self.out / "generator.json")
        with torch.no_grad():
            save_grid(g(self.fixed_z), self.out / "samples.png")


CONFIG = DCGANTrainConfig  # what `invcomp train` builds from its options (invcomp.train.common.config_from_kwargs)
