"""Train a VAE-GAN codec (:mod:`invcomp.nets.vaegan`) on a folder, ``.zip`` or ``.tar`` of faces.

Per step, on a batch of horizontally flipped training faces ``x`` (a share ``augment`` of them zoomed out,
shifted, recoloured, relit or made grayscale, :func:`invcomp.train.augment.augment`):

- analysis gives ``mu, logvar``; the code ``z = mu + exp(logvar / 2) * eps`` is
  QSGD-quantised at ``bits`` with a straight-through gradient (the quantiser is
  in the loop); synthesis gives ``x_hat = S(z_q)``;
- autoencoder loss: ``(1 - SSIM) + l1_weight * L1 + kl_weight * KL +
  adv_weight * softplus(-D(x_hat, z_q))``; KL is the mean per code element of
  ``KL(N(mu, sigma) || N(0, 1))``; L1 is in [-1, 1] pixel units;
- discriminator loss (non-saturating, as in the DCGAN trainer):
  ``softplus(-D(x, z_q)) + softplus(D(x_hat, z_q))``, the code detached. D sees
  the code, so it judges whether the image is a plausible decoding of it.

The adversarial terms start after ``adv_warmup`` steps (a pure autoencoder before).
Adam for both. Every ``snapshot_every`` steps the codec is scored on validation faces
by mean SSIM after real (nearest, per-image) quantisation of the mean at ``bits``;
the best is kept as ``vaegan.pt`` + ``vaegan.json`` (without validation faces: the
latest). ``checkpoint.pt`` holds every network, both optimisers, the step, the best
score and the RNG state, so a resumed run continues exactly where it stopped
(:mod:`invcomp.train.loop`). ``init``: a ``vaegan.pt`` of the same shape to start from (fine-tuning;
the discriminator starts fresh). Deterministic on CPU for a seed.
"""
from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F

from invcomp.train.augment import augment
from invcomp.data import load_faces
from invcomp.errors import InvcompError
from invcomp.metrics import ssim
from invcomp.nets.vaegan import (PairDiscriminator, VAEGANConfig, build_vaegan, load_vaegan, reconstruct, save_vaegan,
                      straight_through_code)
from invcomp.train.common import save_grid
from invcomp.train.loop import Score, Trainer, load_val, run_training

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VAEGANTrainConfig:
    data: str
    out: str
    resolution: int = 64
    channels: int = 8
    downsample: int = 8
    widths: tuple[int, ...] = ()
    ndf: int = 64
    bits: int = 4
    batch_size: int = 32
    lr: float = 2e-4
    beta1: float = 0.5
    l1_weight: float = 1.0
    kl_weight: float = 1e-3
    adv_weight: float = 0.01
    adv_warmup: int = 1000
    steps: int = 20000
    minutes: Optional[float] = None
    snapshot_every: int = 1000
    eval_faces: int = 128
    seed: int = 0
    device: str = "cpu"
    augment: float = 0.0
    init: Optional[str] = None

    def model_config(self) -> VAEGANConfig:
        return VAEGANConfig(resolution=self.resolution, channels=self.channels, downsample=self.downsample,
                            widths=tuple(self.widths), bits=self.bits)


@dataclass
class Nets:
    """The networks and optimisers being trained (a plain holder; the step logic is :func:`train_step`)."""

    parts: torch.nn.ModuleDict  # analysis, synthesis
    D: PairDiscriminator
    opt_ae: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer


def make_nets(cfg: VAEGANTrainConfig, device: torch.device) -> Nets:
    """Fresh networks and Adam optimisers; seeds torch's global RNG with ``cfg.seed`` for the initialisation."""
    torch.manual_seed(cfg.seed)
    mcfg = cfg.model_config()
    parts, D = build_vaegan(mcfg).to(device), PairDiscriminator(mcfg, cfg.ndf).to(device)
    if cfg.init is not None:
        start = load_vaegan(cfg.init)
        if start.config.to_json_dict() | {"training": None} != mcfg.to_json_dict() | {"training": None}:
            raise InvcompError(f"--init {cfg.init} has another shape than these model options")
        parts["analysis"].load_state_dict(start.analysis.state_dict())
        parts["synthesis"].load_state_dict(start.synthesis.state_dict())
    betas = (cfg.beta1, 0.999)
    return Nets(parts, D, torch.optim.Adam(parts.parameters(), lr=cfg.lr, betas=betas),
                torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=betas))


def train_step(nets: Nets, x: torch.Tensor, cfg: VAEGANTrainConfig, step: int, gen: torch.Generator) -> dict[str, float]:
    """One optimisation step on images ``(N, 3, R, R)`` in [-1, 1]; returns the loss terms as floats."""
    A, S = nets.parts["analysis"], nets.parts["synthesis"]
    mu, logvar = A(x)
    eps = torch.randn(mu.shape, generator=gen, device=mu.device)
    zq = straight_through_code(mu + torch.exp(0.5 * logvar) * eps, cfg.bits)
    x_hat = S(zq)
    rec = (1.0 - ssim(x_hat, x)).mean() + cfg.l1_weight * (x_hat - x).abs().mean()
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    adv = step >= cfg.adv_warmup and cfg.adv_weight > 0
    loss_d = torch.zeros(())
    if adv:
        code = zq.detach()
        loss_d = F.softplus(-nets.D(x, code)).mean() + F.softplus(nets.D(x_hat.detach(), code)).mean()
        nets.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        nets.opt_d.step()
    loss_g = F.softplus(-nets.D(x_hat, zq.detach())).mean() if adv else torch.zeros((), device=x.device)
    loss = rec + cfg.kl_weight * kl + cfg.adv_weight * loss_g
    nets.opt_ae.zero_grad(set_to_none=True)
    loss.backward()
    nets.opt_ae.step()
    return {"rec": rec.item(), "kl": kl.item(), "g": loss_g.item(), "d": loss_d.item()}


@torch.no_grad()
def score(parts: torch.nn.ModuleDict, val: torch.Tensor, bits: int, chunk: int = 32) -> tuple[float, torch.Tensor]:
    """Mean SSIM of the codec's reconstructions of ``val`` ``(N, 3, R, R)`` in [-1, 1] after real quantisation,
    and the reconstructions ``(N, 3, R, R)``."""
    parts.eval()
    recon = torch.cat([reconstruct(parts["analysis"], parts["synthesis"], val[i:i + chunk], bits)
                       for i in range(0, len(val), chunk)])
    parts.train()
    return float(ssim(recon, val).mean()), recon


def _batch(real: torch.Tensor, idx: torch.Tensor, gen: torch.Generator, p_augment: float = 0.0) -> torch.Tensor:
    x = real[idx].float() / 127.5 - 1.0
    flip = torch.rand(x.shape[0], generator=gen, device=x.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return augment(x, gen, p_augment) if p_augment > 0 else x


def train_vaegan(cfg: VAEGANTrainConfig, *, resume: bool = True, progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the best ``vaegan.pt``."""
    return run_training(cfg.out, lambda out: VAEGANTrainer(cfg, out), steps=cfg.steps, minutes=cfg.minutes,
                        snapshot_every=cfg.snapshot_every, resume=resume, progress=progress)


class VAEGANTrainer(Trainer):
    """The :class:`Nets` of a run and the RNG of its batches and codes."""

    product, desc, postfix_every = "vaegan.pt", "train vaegan", 50

    def __init__(self, cfg: VAEGANTrainConfig, out: Path) -> None:
        self.cfg, self.out, self.device = cfg, out, torch.device(cfg.device)
        self.mcfg = cfg.model_config()  # validates the shape options before any data is read
        real, _ = load_faces(cfg.data, cfg.resolution, split="train")
        val = load_val(cfg.data, cfg.resolution, cfg.eval_faces)
        self.real = real.to(self.device)
        self.val = val.float().div(127.5).sub(1).to(self.device) if val is not None else None
        if self.val is not None and cfg.augment > 0:  # score snapshots on plain and augmented faces alike
            self.val_aug = augment(self.val, torch.Generator(device=self.device).manual_seed(1234), 1.0)
        log.info("training VAE-GAN-%d (C=%d, f=%d, %d symbols) on %d faces (%s), config %s", cfg.resolution,
                 cfg.channels, cfg.downsample, self.mcfg.symbols, len(real), cfg.data, cfg)
        self.nets = make_nets(cfg, self.device)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)

    def state_dict(self, step: int) -> dict[str, Any]:
        nets = self.nets
        return {"parts": nets.parts.state_dict(), "D": nets.D.state_dict(), "opt_ae": nets.opt_ae.state_dict(),
                "opt_d": nets.opt_d.state_dict(), "rng": self.gen.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        nets = self.nets
        try:
            nets.parts.load_state_dict(state["parts"]), nets.D.load_state_dict(state["D"])
            nets.opt_ae.load_state_dict(state["opt_ae"]), nets.opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, ValueError, KeyError):
            raise InvcompError(f"{self.out / 'checkpoint.pt'} was made with other model options; use them again "
                               "or --no-resume") from None
        self.gen.set_state(state["rng"].cpu())

    def train_step(self, step: int) -> dict[str, float]:
        idx = torch.randint(0, len(self.real), (self.cfg.batch_size,), device=self.device, generator=self.gen)
        return train_step(self.nets, _batch(self.real, idx, self.gen, self.cfg.augment), self.cfg, step, self.gen)

    def evaluate(self, step: int) -> Score:
        what = f"val SSIM at {self.cfg.bits} bits" + (" (mean of plain and augmented faces)" if self.cfg.augment > 0 else "")
        if self.val is None:
            return Score(None, what=what)
        value, recon = score(self.nets.parts, self.val, self.cfg.bits)
        if self.cfg.augment > 0:
            value = 0.5 * (value + score(self.nets.parts, self.val_aug, self.cfg.bits)[0])
        save_grid(torch.cat([self.val[:8], recon[:8]]).cpu(), self.out / f"recon_{step:06d}.png")
        return Score(value, what=what)

    def save_best(self, step: int, seconds: float, value: float | None) -> None:
        cfg = self.cfg
        training = {"step": step, "seconds": round(seconds), "val_ssim": None if value is None else round(value, 4),
                    "device": torch.cuda.get_device_name() if self.device.type == "cuda" else "cpu",
                    "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}}
        save_vaegan(self.nets.parts, replace(self.mcfg, training=training), self.out / "vaegan.pt")
        if value is not None:
            shutil.copyfile(self.out / f"recon_{step:06d}.png", self.out / "samples.png")


CONFIG = VAEGANTrainConfig  # what `invcomp train` builds from its options (invcomp.train.common.config_from_kwargs)
