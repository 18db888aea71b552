"""Train a DCGAN (pytorch/examples architecture) on a folder or ``.tar`` of images.

The loop: non-saturating GAN loss, Adam(2e-4, beta=(0.5, 0.999)), horizontal
flips, an exponential moving average of G. Every ``snapshot_every`` steps the
EMA generator gets exact BatchNorm statistics and is scored by inverting the
validation faces (mean SSIM after a short search); the best snapshot is kept
as ``generator.pt`` + ``generator.json``. ``checkpoint.pt`` (G, D, EMA, both
optimisers, the step) is written at every snapshot and at the end, and a run
resumes from it.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data import load_faces
from ..generators.config import GeneratorConfig
from ..generators.dcgan import DCGANDiscriminator, DCGANGenerator, standard_arch
from ..inversion import invert
from ..metrics import ssim
from .common import atomic_save, ema_update, recalibrate_bn, save_grid, file_log, write_json

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


def _score(G: torch.nn.Module, val: torch.Tensor, iters: int) -> float:
    res = invert(G, val, iters=iters, lr=0.1, seed=0)
    with torch.no_grad():
        return float(ssim(G(res.z.to(val.device)), val).mean())


def train_dcgan(cfg: DCGANTrainConfig, *, resume: bool = True, progress: bool = True) -> Path:
    """Run (or resume) training; returns the path of the best generator state_dict."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with file_log(out / "train.log"):
        return _train(cfg, out, resume, progress)


def _train(cfg: DCGANTrainConfig, out: Path, resume: bool, progress: bool) -> Path:
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.benchmark = True
    real, _ = load_faces(cfg.data, cfg.resolution, split="train")
    val = None
    if cfg.eval_faces:
        try:
            val = load_faces(cfg.data, cfg.resolution, split="val", limit=cfg.eval_faces)[0]
        except FileNotFoundError:
            log.warning("no validation images in %s: snapshots are not scored, the latest is kept", cfg.data)
    real = real.to(device)
    val = val.float().div(127.5).sub(1).to(device) if val is not None else None
    log.info("training DCGAN-%d on %d faces (%s), config %s", cfg.resolution, len(real), cfg.data, cfg)

    arch = standard_arch(cfg.latent_dim, cfg.ngf, cfg.resolution)
    G, D = DCGANGenerator(arch).to(device), DCGANDiscriminator(cfg.resolution, cfg.ndf).to(device)
    for m in list(G.modules()) + list(D.modules()):  # the pytorch/examples initialisation
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            torch.nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.02)
            torch.nn.init.zeros_(m.bias)
    G_ema = copy.deepcopy(G).eval()
    optG = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    optD = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    step, best, elapsed = 0, -1.0, 0.0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        G.load_state_dict(state["G"]), D.load_state_dict(state["D"]), G_ema.load_state_dict(state["G_ema"])
        optG.load_state_dict(state["optG"]), optD.load_state_dict(state["optD"])
        step, best, elapsed = int(state["step"]), float(state["best"]), float(state["seconds"])
        log.info("resumed from %s at step %d (best val SSIM %.4f)", ckpt, step, best)

    fixed_z = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(7)).to(device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + step)
    t0 = time.time()
    deadline = t0 + cfg.minutes * 60 if cfg.minutes else None
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="train dcgan", unit="step")

    def snapshot() -> None:
        nonlocal best
        g = recalibrate_bn(G_ema, cfg.latent_dim, device)
        score = _score(g, val, cfg.eval_iters) if val is not None else float(step)  # no val: latest wins
        with torch.no_grad():
            save_grid(g(fixed_z), out / f"samples_{step:06d}.png")
        seconds = elapsed + time.time() - t0
        log.info("step %d: val inversion SSIM %.4f (best %.4f), %.0f s", step, score, best, seconds)
        if score > best:
            best = score
            atomic_save({k: v.cpu() for k, v in g.state_dict().items()}, out / "generator.pt")
            gc = GeneratorConfig(
                architecture="dcgan", latent_dim=cfg.latent_dim, resolution=cfg.resolution, prior="normal",
                widths=list(arch.widths), training={"step": step, "seconds": round(seconds), "val_ssim": round(score, 4),
                                                   "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                                                   "config": {k: v for k, v in vars(cfg).items()}},
            )
            write_json(gc.to_json_dict(), out / "generator.json")
            save_grid(g(fixed_z).detach(), out / "samples.png")
        atomic_save({"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(), "optG": optG.state_dict(),
                     "optD": optD.state_dict(), "step": step, "best": best, "seconds": seconds}, ckpt)

    while step < cfg.steps and (deadline is None or time.time() < deadline):
        idx = torch.randint(0, len(real), (cfg.batch_size,), device=device, generator=gen)
        x = _batch(real, idx)
        z = torch.randn(cfg.batch_size, cfg.latent_dim, device=device, generator=gen)
        fake = G(z)
        d_real, d_fake = D(x), D(fake.detach())
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        optD.zero_grad(set_to_none=True)
        loss_d.backward()
        optD.step()
        loss_g = F.softplus(-D(fake)).mean()
        optG.zero_grad(set_to_none=True)
        loss_g.backward()
        optG.step()
        ema_update(G_ema, G, cfg.ema_decay if step > 1000 else 0.0)
        step += 1
        bar.update(1)
        if step % 100 == 0:
            bar.set_postfix(d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}")
        if step % 500 == 0:
            log.info("step %d loss_d %.4f loss_g %.4f", step, loss_d.item(), loss_g.item())
        if step % cfg.snapshot_every == 0:
            snapshot()
    bar.close()
    if step % cfg.snapshot_every:
        snapshot()
    log.info("done at step %d; best val SSIM %.4f", step, best)
    return out / "generator.pt"


def config_from_kwargs(**kw: object) -> DCGANTrainConfig:
    """Build a config, ignoring ``None`` values (so CLI defaults come from the dataclass)."""
    base = DCGANTrainConfig(data=str(kw.pop("data")), out=str(kw.pop("out")))
    return replace(base, **{k: v for k, v in kw.items() if v is not None})
