"""Train a :class:`~invcomp.warmstart.WarmStartNet` for a frozen generator G (a warm start for inversion).

Each step trains E with Adam on two batches:

* **G's own pairs**: z from G's prior, x = G(z). Latent loss ``MSE(mu(x), z)``
  plus the image loss between ``G(mu(x))`` and x.
* **real faces** x (train split, random flips): the image loss between
  ``G(z_s)`` and x for the reparameterised ``z_s = mu + sigma * eps``; a KL
  term to the prior; and an in-domain term ``MSE(mu(G(mu(x))), sg(mu(x)))``
  that keeps E consistent on the latents it actually produces (``sg``: no
  gradient to the target).

The image loss is a :mod:`invcomp.losses` spec, ``ssim+mse`` by default
((1 - SSIM) + MSE, per image). The KL term is ``KL(N(mu, sigma^2) || N(0, v))``
averaged over the dimensions, with v = 1 for the normal prior; the uniform
prior U(-1, 1) has no closed form, so it is replaced by the Gaussian of the
same variance, v = 1/3 (tanh keeps mu inside (-1, 1), and z_s is clamped
there). For a norm-free generator (``G(c z) = G(z)``) latents are compared
after scaling each to norm sqrt(D): the encoder's mu is put on that sphere
and so are the targets z.

Every ``snapshot_every`` steps E is scored by the mean SSIM of ``G(mu(x))``
on the validation faces (no search); the best is kept as ``encoder.pt`` +
``encoder.json``. ``checkpoint.pt`` (E, Adam, step, RNG state, best score,
generator sha256) is written at each snapshot and at the end, and a run
resumes from it (only for the same generator). Deterministic for a seed on CPU.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from ..data import load_faces
from ..warmstart import (
    WarmStartConfig,
    WarmStartNet,
    predict_latents,
    save_warm_start,
    to_sphere,
)
from ..errors import InvcompError
from ..generators.registry import LoadedGenerator, load_generator
from ..losses import make_loss
from ..metrics import ssim
from .common import atomic_save, file_log, save_grid

log = logging.getLogger(__name__)

Callback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class WarmStartTrainConfig:
    """Options of an encoder run. ``widths`` empty: :func:`invcomp.warmstart.default_widths`."""

    generator: str
    data: str
    out: str
    batch_size: int = 32
    lr: float = 3e-4
    beta1: float = 0.9
    steps: int = 20000
    minutes: float | None = None
    widths: tuple[int, ...] = ()
    image_loss: str = "ssim+mse"
    w_latent: float = 1.0
    w_fake_image: float = 1.0
    w_real_image: float = 1.0
    w_kl: float = 1e-3
    w_domain: float = 0.1
    snapshot_every: int = 1000
    eval_faces: int = 128
    log_every: int = 100
    seed: int = 0
    device: str = "cpu"


def sample_prior(n: int, d: int, prior: str, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """``(n, d)`` latents from N(0, I) or U(-1, 1)."""
    if prior == "uniform":
        return torch.rand(n, d, generator=gen, device=device) * 2 - 1
    return torch.randn(n, d, generator=gen, device=device)


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor, prior: str) -> torch.Tensor:
    """Per-row ``KL(N(mu, e^logvar) || N(0, v))`` averaged over dims ``(N,)``; v = 1 (normal) or 1/3 (uniform)."""
    v = 1.0 / 3.0 if prior == "uniform" else 1.0
    return 0.5 * ((logvar.exp() + mu.pow(2)) / v - 1.0 - logvar + math.log(v)).mean(1)


def _faces(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(127.5).sub(1)


@torch.no_grad()
def score(E: WarmStartNet, G: torch.nn.Module, faces: torch.Tensor, batch: int = 64) -> float:
    """Mean SSIM of ``G(mu(x))`` over ``faces`` uint8 ``(N, 3, R, R)`` (no search)."""
    vals = []
    for i in range(0, len(faces), batch):
        x = _faces(faces[i:i + batch])
        vals.append(ssim(G(predict_latents(E, x).to(x.device)), x))
    return float(torch.cat(vals).mean())


def train_warm_start(cfg: WarmStartTrainConfig, *, resume: bool = True, progress: bool = True,
                  callback: Callback | None = None) -> Path:
    """Run (or resume) training; returns the path of the best encoder state_dict (``OUT/encoder.pt``).

    ``callback(step, losses)`` gets the float loss terms after every step.
    """
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with file_log(out / "train.log"):
        return _train(cfg, out, resume, progress, callback)


def _load_data(cfg: WarmStartTrainConfig, res: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    real, _ = load_faces(cfg.data, res, split="train")
    val = None
    if cfg.eval_faces:
        try:
            val = load_faces(cfg.data, res, split="val", limit=cfg.eval_faces)[0]
        except FileNotFoundError:
            val = real[: cfg.eval_faces]
            log.warning("no validation images in %s: snapshots are scored on %d training faces instead", cfg.data, len(val))
    return real.to(device), val.to(device) if val is not None else None


def _train(cfg: WarmStartTrainConfig, out: Path, resume: bool, progress: bool, callback: Callback | None) -> Path:
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    g: LoadedGenerator = load_generator(cfg.generator, device)
    G, gc = g.module.eval(), g.config
    for p in G.parameters():
        p.requires_grad_(False)
    real, val = _load_data(cfg, gc.resolution, device)
    ecfg = WarmStartConfig(resolution=gc.resolution, latent_dim=gc.latent_dim, prior=gc.prior, widths=cfg.widths,
                         generator_sha256=g.sha256, generator_name=g.name, norm_free=gc.norm_free)
    arch = {k: v for k, v in ecfg.to_json_dict().items() if k != "training"}
    log.info("training an encoder for %s (%s, %d-d, %dpx) on %d faces (%s), config %s", g.name, g.sha256[:8],
             gc.latent_dim, gc.resolution, len(real), cfg.data, cfg)

    E = WarmStartNet(ecfg).to(device)
    opt = torch.optim.Adam(E.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    step, best, elapsed = 0, float("-inf"), 0.0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state["generator_sha256"] != g.sha256:
            raise InvcompError(f"{ckpt} trains an encoder for another generator (sha256 {state['generator_sha256'][:8]}, "
                               f"not {g.name} {g.sha256[:8]}); use another --out or --no-resume")
        if state["arch"] != arch:
            raise InvcompError(f"{ckpt} holds an encoder of another shape ({state['arch']}); use --no-resume")
        E.load_state_dict(state["E"]), opt.load_state_dict(state["opt"])
        gen.set_state(state["rng"].cpu())
        step, best, elapsed = int(state["step"]), float(state["best"]), float(state["seconds"])
        log.info("resumed from %s at step %d (best val SSIM %.4f)", ckpt, step, best)

    image_loss = make_loss(cfg.image_loss)
    d, prior = gc.latent_dim, gc.prior
    target = to_sphere if gc.norm_free else (lambda z: z)
    fixed_z = sample_prior(256, d, prior, torch.Generator().manual_seed(7), torch.device("cpu")).to(device)
    t0 = time.time()
    deadline = t0 + cfg.minutes * 60 if cfg.minutes else None
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="train encoder", unit="step")

    def snapshot() -> None:
        nonlocal best
        seconds = elapsed + time.time() - t0
        with torch.no_grad():
            lat = float((predict_latents(E, G(fixed_z)) - target(fixed_z).cpu()).pow(2).mean())
        s = score(E, G, val) if val is not None else float("nan")
        log.info("step %d: val SSIM of G(E(x)) %.4f (best %.4f), latent MSE on G samples %.4f, %.0f s",
                 step, s, best, lat, seconds)
        if val is None or s > best:  # without validation faces the latest wins
            best = s if val is not None else best
            info = {"step": step, "seconds": round(seconds), "val_ssim": None if val is None else round(s, 4),
                    "gen_latent_mse": round(lat, 5), "data": cfg.data,
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "config": asdict(cfg)}
            save_warm_start(E, replace(ecfg, training=info), out / "encoder.pt")
            if val is not None:
                x = _faces(val[:8])
                with torch.no_grad():
                    save_grid(torch.cat([x, G(predict_latents(E, x).to(device))]), out / "reconstructions.png")
        atomic_save({"E": E.state_dict(), "opt": opt.state_dict(), "step": step, "best": best, "seconds": seconds,
                     "rng": gen.get_state(), "generator_sha256": g.sha256, "arch": arch}, ckpt)

    while step < cfg.steps and (deadline is None or time.time() < deadline):
        losses = _step(E, G, opt, real, gen, cfg, image_loss, prior, target)
        step += 1
        bar.update(1)
        if callback is not None:
            callback(step, losses)
        if step % cfg.log_every == 0:
            bar.set_postfix(loss=f"{losses['total']:.3f}")
            log.info("step %d %s", step, " ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        if step % cfg.snapshot_every == 0:
            snapshot()
    bar.close()
    if step % cfg.snapshot_every or not ckpt.exists():
        snapshot()
    if step < cfg.steps:
        log.warning("stopped by --minutes at step %d of %d; run again to resume", step, cfg.steps)
    log.info("done at step %d; best val SSIM %.4f", step, best)
    return out / "encoder.pt"


def _step(E: WarmStartNet, G: torch.nn.Module, opt: torch.optim.Optimizer, real: torch.Tensor,
          gen: torch.Generator, cfg: WarmStartTrainConfig, image_loss: Callable, prior: str,
          target: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, float]:
    """One Adam step on a batch of G's pairs and a batch of real faces; returns the loss terms."""
    device, b, d = real.device, cfg.batch_size, E.latent_dim
    z = sample_prior(b, d, prior, gen, device)
    with torch.no_grad():
        xf = G(z)
    mu_f, _ = E(xf)
    latent = (mu_f - target(z)).pow(2).mean()
    fake_image = image_loss(G(mu_f), xf).mean()

    idx = torch.randint(0, len(real), (b,), device=device, generator=gen)
    xr = _faces(real[idx])
    flip = torch.rand(b, device=device, generator=gen) < 0.5
    xr = torch.where(flip[:, None, None, None], xr.flip(3), xr)
    mu_r, logvar_r = E(xr)
    eps = torch.randn(b, d, device=device, generator=gen)
    zs = mu_r + (0.5 * logvar_r).exp() * eps
    if prior == "uniform":
        zs = zs.clamp(-1.0, 1.0)
    real_image = image_loss(G(zs), xr).mean()
    kl = kl_to_prior(mu_r, logvar_r, prior).mean()
    mu_rr, _ = E(G(mu_r))
    domain = (mu_rr - mu_r.detach()).pow(2).mean()

    total = (cfg.w_latent * latent + cfg.w_fake_image * fake_image + cfg.w_real_image * real_image
             + cfg.w_kl * kl + cfg.w_domain * domain)
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    terms = {"total": total, "latent": latent, "fake_image": fake_image, "real_image": real_image, "kl": kl,
             "domain": domain}
    return {k: float(v.detach()) for k, v in terms.items()}


def config_from_kwargs(**kw: object) -> WarmStartTrainConfig:
    """Build a config, ignoring ``None`` values (so CLI defaults come from the dataclass)."""
    base = WarmStartTrainConfig(generator=str(kw.pop("generator")), data=str(kw.pop("data")), out=str(kw.pop("out")))
    return replace(base, **{k: v for k, v in kw.items() if v is not None})
