"""Train a progressive GAN (pytorch_GAN_zoo's PGAN) on a folder, ``.zip`` or ``.tar`` of images.

Progressive growing: scale ``s`` renders ``4 * 2**s`` pixels. Scale 0 trains for ``steps_per_phase`` steps;
each further scale first fades in over ``fade_steps`` steps (alpha from 1 down to 0 in equal steps: the new
layers' output is blended with the upsampled output of the scale before, the critic's input likewise with
its pooled branch, and the real images with their pooled-and-upsampled copy), then trains for
``steps_per_phase`` steps at alpha 0 (:func:`phase_at`). Steps past the schedule stay at the last scale.

Both networks are built at the final resolution; :func:`grow_forward` runs the generator's own submodules
up to the current scale with a run-time alpha (at the last scale it equals ``PGANGenerator(PGANArch(...,
alpha))``), so :class:`~invcomp.nets.generators.pgan.PGANGenerator` needs no training hooks. Loss: WGAN-GP
(lambda 10) plus the drift term ``0.001 * D(real)**2``, averaged over the batch; Adam(1e-3, betas (0, 0.99)),
reset at each new scale as in their trainer; equalised layers start at N(0, 1) weights and zero biases; an
exponential moving average of G (their ``avgG``, decay 0.999) makes samples, scores and ``generator.pt``.

Outputs in ``out``: ``checkpoint.pt`` (G, D, G_ema, both optimisers, step, phase, the RNG state: a resumed
run repeats the uninterrupted one), ``generator.pt`` + ``generator.json`` (before the final phase the
latest snapshot at its own resolution and alpha; in the final phase the snapshot scoring the best mean
SSIM after a short inversion of the validation faces), ``train_config.json``, ``train.log`` and
``samples_<step>.png`` grids.

Speed, on one H100 (fp32, batch 64, the default depths 256,256,256,128,64): about 16 ms a step at 4x4,
27 ms at 16x16 and 64 ms at 64x64 (the gradient penalty's double backward is half of it), so the default
schedule (8000 + 8000 steps per scale, 72,000 steps) takes about 42 minutes.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from invcomp.data import load_faces
from invcomp.errors import InvcompError
from invcomp.nets.generators.config import GeneratorConfig
from invcomp.nets.generators.pgan import PGANArch, PGANGenerator
from invcomp.files import atomic_save, write_json
from invcomp.train.common import ema_update, inversion_ssim, save_grid
from invcomp.train.loop import Loss, Score, Trainer, load_val, run_training
from invcomp.train.pgan_d import PGANDiscriminator, gradient_penalty
from invcomp.train.pgan_grow import (  # noqa: F401  (re-exported: the trainer's public pieces)
    Phase,
    generator_state_at,
    grow_forward,
    init_equalized,
    phase_at,
    real_at,
    scale_count,
    schedule_length,
)

log = logging.getLogger(__name__)

DEFAULT_DEPTHS = (256, 256, 256, 128, 64, 32, 16, 8)
SCHEDULE_KEYS = ("resolution", "depths", "latent_dim", "steps_per_phase", "fade_steps", "mbstd_group")


@dataclass(frozen=True)
class PGANTrainConfig:
    """Everything a run depends on; ``depths`` empty means :data:`DEFAULT_DEPTHS` cut to the scale count,
    ``steps`` ``None`` means the end of the schedule."""

    data: str
    out: str
    resolution: int = 64
    depths: tuple[int, ...] = ()
    latent_dim: int = 512
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.0, 0.99)
    lambda_gp: float = 10.0
    epsilon_drift: float = 0.001
    ema_decay: float = 0.999
    mbstd_group: int = 4
    steps_per_phase: int = 8000
    fade_steps: int = 8000
    steps: int | None = None
    minutes: float | None = None
    snapshot_every: int = 2000
    eval_faces: int = 128
    eval_iters: int = 200
    seed: int = 0
    device: str = "cpu"


def resolved_depths(cfg: PGANTrainConfig) -> tuple[int, ...]:
    """The per-scale channel counts of ``cfg`` (checked against its resolution)."""
    n = scale_count(cfg.resolution)
    depths = tuple(cfg.depths) or DEFAULT_DEPTHS[:n]
    if len(depths) != n or min(depths) < 1:
        raise InvcompError(f"resolution {cfg.resolution} needs {n} positive depths (4x4 .. {cfg.resolution}x"
                           f"{cfg.resolution}), got {list(depths)}")
    return depths


def train_pgan(cfg: PGANTrainConfig, *, resume: bool = True, progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the saved generator state_dict."""
    cfg = replace(cfg, depths=resolved_depths(cfg))
    if cfg.steps_per_phase < 1 or cfg.fade_steps < 0 or cfg.batch_size < 1 or cfg.snapshot_every < 1:
        raise InvcompError("need steps-per-phase >= 1, fade-steps >= 0, batch-size >= 1 and snapshot-every >= 1")
    n = len(cfg.depths)
    total = cfg.steps if cfg.steps is not None else schedule_length(n, cfg.steps_per_phase, cfg.fade_steps)
    return run_training(cfg.out, lambda out: PGANTrainer(cfg, out, total), steps=total, minutes=cfg.minutes,
                        snapshot_every=cfg.snapshot_every, resume=resume, progress=progress)


class PGANTrainer(Trainer):
    """G, D, the EMA of G, their Adam optimisers (fresh at each new scale) and the RNG of the batches."""

    product, desc = "generator.pt", "train pgan"

    def __init__(self, cfg: PGANTrainConfig, out: Path, total: int) -> None:
        self.cfg, self.out, self.device = cfg, out, torch.device(cfg.device)
        torch.manual_seed(cfg.seed)
        torch.backends.cudnn.benchmark = True
        self.real = load_faces(cfg.data, cfg.resolution, split="train")[0].to(self.device)
        val = load_val(cfg.data, cfg.resolution, cfg.eval_faces)
        self.val = val.float().div(127.5).sub(1).to(self.device) if val is not None else None
        log.info("training PGAN-%d on %d faces (%s), %d steps, config %s", cfg.resolution, len(self.real), cfg.data,
                 total, cfg)
        write_json(cfg, out / "train_config.json")

        self.G = PGANGenerator(PGANArch(latent_dim=cfg.latent_dim, depths=cfg.depths)).to(self.device)
        self.D = PGANDiscriminator(cfg.depths, mbstd_group=cfg.mbstd_group).to(self.device)
        init_equalized(self.G)
        init_equalized(self.D)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.optG, self.optD = self._optimisers()
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.schedule = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()
                         if k in SCHEDULE_KEYS}
        self.fixed_z = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(7)).to(self.device)
        self._grid = torch.empty(0)  # the last snapshot's samples

    def _optimisers(self) -> tuple[torch.optim.Adam, torch.optim.Adam]:
        betas = (float(self.cfg.betas[0]), float(self.cfg.betas[1]))  # recent torch refuses the int 0 in betas
        return (torch.optim.Adam(self.G.parameters(), lr=self.cfg.lr, betas=betas),
                torch.optim.Adam(self.D.parameters(), lr=self.cfg.lr, betas=betas))

    def phase(self, step: int) -> Phase:
        """The phase of 0-based ``step``."""
        return phase_at(step, len(self.cfg.depths), self.cfg.steps_per_phase, self.cfg.fade_steps)

    def describe(self, step: int) -> str:
        ph = self.phase(max(step - 1, 0))  # the phase the weights were last trained in
        return f" ({ph.resolution}x{ph.resolution}, alpha {ph.alpha:.3f})"

    def postfix(self, step: int, losses: Mapping[str, Loss]) -> dict[str, object]:
        ph = self.phase(step - 1)
        return {"res": ph.resolution, "alpha": f"{ph.alpha:.2f}", **super().postfix(step, losses)}

    def state_dict(self, step: int) -> dict[str, Any]:
        ph = self.phase(max(step - 1, 0))
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "optG": self.optG.state_dict(), "optD": self.optD.state_dict(), "scale": ph.scale,
                "alpha": ph.alpha, "rng": self.gen.get_state(), "schedule": self.schedule}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["schedule"] != self.schedule:
            raise InvcompError(f"{self.out / 'checkpoint.pt'} was made with {state['schedule']}, not {self.schedule}: "
                               "pass the same options, or --no-resume to start afresh")
        self.G.load_state_dict(state["G"]), self.D.load_state_dict(state["D"])
        self.G_ema.load_state_dict(state["G_ema"])
        self.optG.load_state_dict(state["optG"]), self.optD.load_state_dict(state["optD"])
        self.gen.set_state(state["rng"].cpu())

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg, G, D, gen, device = self.cfg, self.G, self.D, self.gen, self.device
        ph = self.phase(step)
        if step == 0 or ph.scale != self.phase(step - 1).scale:
            self.optG, self.optD = self._optimisers()  # their trainer starts fresh solvers at every new scale
            log.info("step %d: scale %d (%dx%d), fading in over %d steps", step, ph.scale, ph.resolution,
                     ph.resolution, cfg.fade_steps if ph.fading else 0)
        elif ph.fading != self.phase(step - 1).fading:
            log.info("step %d: fade-in done, %dx%d at alpha 0", step, ph.resolution, ph.resolution)
        b = cfg.batch_size
        idx = torch.randint(0, len(self.real), (b,), device=device, generator=gen)
        flip = torch.rand(b, device=device, generator=gen) < 0.5
        x = real_at(self.real, idx, flip, ph.scale, ph.alpha)
        with torch.no_grad():
            fake = grow_forward(G, torch.randn(b, cfg.latent_dim, device=device, generator=gen), ph.scale, ph.alpha)
        d_real, d_fake = D(x, ph.scale, ph.alpha), D(fake, ph.scale, ph.alpha)
        gp = gradient_penalty(partial(D, scale=ph.scale, alpha=ph.alpha), x, fake, generator=gen).mean()
        loss_d = d_fake.mean() - d_real.mean() + cfg.lambda_gp * gp + cfg.epsilon_drift * d_real.pow(2).mean()
        self.optD.zero_grad(set_to_none=True)
        loss_d.backward()
        self.optD.step()
        D.requires_grad_(False)
        z = torch.randn(b, cfg.latent_dim, device=device, generator=gen)
        loss_g = -D(grow_forward(G, z, ph.scale, ph.alpha), ph.scale, ph.alpha).mean()
        self.optG.zero_grad(set_to_none=True)
        loss_g.backward()
        self.optG.step()
        D.requires_grad_(True)
        ema_update(self.G_ema, G, cfg.ema_decay)
        return {"loss_d": loss_d.detach(), "loss_g": loss_g.detach(), "gp": gp.detach()}

    def evaluate(self, step: int) -> Score:
        ph = self.phase(max(step - 1, 0))
        with torch.no_grad():
            self._grid = grow_forward(self.G_ema, self.fixed_z, ph.scale, ph.alpha, clamp=True)
        save_grid(self._grid, self.out / f"samples_{step:06d}.png")
        if ph.scale != len(self.cfg.depths) - 1 or ph.fading:
            return Score(None, why="before the final phase")
        if self.val is None:
            return Score(None)
        return Score(inversion_ssim(self.G_ema, self.val, self.cfg.eval_iters), what="val inversion SSIM")

    def save_best(self, step: int, seconds: float, value: float | None) -> None:
        cfg, ph = self.cfg, self.phase(max(step - 1, 0))
        atomic_save(generator_state_at(self.G_ema, ph.scale), self.out / "generator.pt")
        gc = GeneratorConfig(
            architecture="pgan", latent_dim=cfg.latent_dim, resolution=ph.resolution, prior="normal",
            widths=list(cfg.depths[: ph.scale + 1]), norm_free=True,
            options={"alpha": ph.alpha, "leaky": 0.2, "normalization": True, "output_activation": "none"},
            training={"step": step, "seconds": round(seconds), "scale": ph.scale,
                      "val_ssim": None if value is None else round(value, 4),
                      "device": torch.cuda.get_device_name() if self.device.type == "cuda" else "cpu",
                      "config": asdict(cfg)},
        )
        write_json(gc.to_json_dict(), self.out / "generator.json")
        save_grid(self._grid, self.out / "samples.png")


CONFIG = PGANTrainConfig  # what `invcomp train` builds from its options (invcomp.train.common.config_from_kwargs)
