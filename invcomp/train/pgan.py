"""Train a progressive GAN (pytorch_GAN_zoo's PGAN) on a folder, ``.zip`` or ``.tar`` of images.

Progressive growing: scale ``s`` renders ``4 * 2**s`` pixels. Scale 0 trains for ``steps_per_phase`` steps;
each further scale first fades in over ``fade_steps`` steps (alpha from 1 down to 0 in equal steps: the new
layers' output is blended with the upsampled output of the scale before, the critic's input likewise with
its pooled branch, and the real images with their pooled-and-upsampled copy), then trains for
``steps_per_phase`` steps at alpha 0 (:func:`phase_at`). Steps past the schedule stay at the last scale.

Both networks are built at the final resolution; :func:`grow_forward` runs the generator's own submodules
up to the current scale with a run-time alpha (at the last scale it equals ``PGANGenerator(PGANArch(...,
alpha))``), so :class:`~invcomp.generators.pgan.PGANGenerator` needs no training hooks. Loss: WGAN-GP
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
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data import load_faces
from ..errors import InvcompError
from ..generators.config import GeneratorConfig
from ..generators.pgan import Equalized, PGANArch, PGANGenerator, pixel_norm
from ..inversion import invert
from ..metrics import ssim
from .common import atomic_save, ema_update, save_grid, file_log, write_json
from .pgan_d import PGANDiscriminator, gradient_penalty

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


@dataclass(frozen=True)
class Phase:
    """Where a step is in the schedule: its ``scale``, fade factor ``alpha`` and whether it is ``fading``."""

    scale: int
    alpha: float
    fading: bool

    @property
    def resolution(self) -> int:
        return 4 * 2 ** self.scale


def scale_count(resolution: int) -> int:
    """Number of scales from 4x4 up to ``resolution`` (a power of two >= 4)."""
    if resolution < 4 or resolution & (resolution - 1):
        raise InvcompError(f"PGAN resolution must be a power of two >= 4, got {resolution}")
    return resolution.bit_length() - 2


def schedule_length(n_scales: int, steps_per_phase: int, fade_steps: int) -> int:
    """Steps from the first 4x4 step to the end of the last stable phase."""
    return n_scales * steps_per_phase + (n_scales - 1) * fade_steps


def phase_at(step: int, n_scales: int, steps_per_phase: int, fade_steps: int) -> Phase:
    """The phase of 0-based ``step``: scale 0 stable, then per new scale a fade (alpha ``1 - i / fade_steps``
    at its i-th step) and a stable phase (alpha 0); past the end, the last scale at alpha 0."""
    if steps_per_phase < 1 or fade_steps < 0 or step < 0:
        raise ValueError("need steps_per_phase >= 1, fade_steps >= 0 and step >= 0")
    rest = step - steps_per_phase
    if rest < 0:
        return Phase(0, 0.0, False)
    for scale in range(1, n_scales):
        if rest < fade_steps:
            return Phase(scale, 1.0 - rest / fade_steps, True)
        rest -= fade_steps
        if rest < steps_per_phase:
            return Phase(scale, 0.0, False)
        rest -= steps_per_phase
    return Phase(n_scales - 1, 0.0, False)


def _act(G: PGANGenerator, x: torch.Tensor) -> torch.Tensor:
    x = F.leaky_relu(x, G.arch.leaky)
    return pixel_norm(x) if G.arch.normalization else x


def grow_forward(G: PGANGenerator, z: torch.Tensor, scale: int, alpha: float, *, clamp: bool = False) -> torch.Tensor:
    """G's image ``(N, 3, 4 * 2**scale, ...)`` for z ``(N, latent_dim)`` at ``scale`` with fade factor ``alpha``.

    The same operations as ``PGANGenerator.forward`` on the layers up to ``scale``, with ``alpha`` given at run
    time instead of frozen in the arch. Unclamped by default (as their ``GNet``; a clamp would zero the
    gradient of out-of-range pixels); ``clamp=True`` reproduces ``PGANGenerator.forward`` exactly.
    """
    arch = G.arch
    if not 0 <= scale < len(arch.depths) or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"scale must be in [0, {len(arch.depths) - 1}] and alpha in [0, 1], got {scale}, {alpha}")
    z = z.reshape(z.shape[0], -1)
    if arch.normalization:
        z = pixel_norm(z)
    x = F.leaky_relu(G.formatLayer(z), arch.leaky).view(z.shape[0], -1, 4, 4)
    if arch.normalization:
        x = pixel_norm(x)
    for conv in G.groupScale0:
        x = _act(G, conv(x))
    low = None
    for k in range(scale):
        if alpha > 0 and k == scale - 1:
            low = F.interpolate(G.toRGBLayers[k](x), scale_factor=2, mode="nearest")
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        for conv in G.scaleLayers[k]:
            x = _act(G, conv(x))
    x = G.toRGBLayers[scale](x)
    if low is not None:
        x = alpha * low + (1.0 - alpha) * x
    if arch.output_activation == "tanh":
        x = torch.tanh(x)
    return x.clamp(-1.0, 1.0) if clamp else x


def generator_state_at(G: PGANGenerator, scale: int) -> dict[str, torch.Tensor]:
    """The CPU state_dict of the ``scale + 1``-scale generator inside ``G`` (their key layout)."""
    keep = ("formatLayer.", "groupScale0.", *(f"scaleLayers.{k}." for k in range(scale)),
            *(f"toRGBLayers.{k}." for k in range(scale + 1)))
    return {k: v.detach().cpu().clone() for k, v in G.state_dict().items() if k.startswith(keep)}


def init_equalized(module: torch.nn.Module) -> None:
    """Their ``ConstrainedLayer`` initialisation: N(0, 1) weights and zero biases in every equalised layer."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, Equalized):
                m.module.weight.normal_(0.0, 1.0)
                if m.module.bias is not None:
                    m.module.bias.zero_()


def real_at(real: torch.Tensor, idx: torch.Tensor, flip: torch.Tensor, scale: int, alpha: float) -> torch.Tensor:
    """Training images ``(B, 3, 4 * 2**scale, ...)`` in [-1, 1] from uint8 faces ``real`` ``(N, 3, R, R)``:
    rows ``idx``, mirrored where ``flip``, average-pooled to the scale and, during a fade, blended with their
    pooled-and-upsampled copy (their ``inScaleUpdate``)."""
    x = real[idx].float() / 127.5 - 1.0
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    factor = x.shape[-1] // (4 * 2 ** scale)
    if factor > 1:
        x = F.avg_pool2d(x, factor)
    if alpha > 0:
        x = alpha * F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest") + (1.0 - alpha) * x
    return x


def _score(G: PGANGenerator, val: torch.Tensor, iters: int) -> float:
    res = invert(G, val, iters=iters, lr=0.1, seed=0)
    with torch.no_grad():
        return float(ssim(G(res.z.to(val.device)), val).mean())


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
    depths = resolved_depths(cfg)
    cfg = replace(cfg, depths=depths)
    if cfg.steps_per_phase < 1 or cfg.fade_steps < 0 or cfg.batch_size < 1 or cfg.snapshot_every < 1:
        raise InvcompError("need steps-per-phase >= 1, fade-steps >= 0, batch-size >= 1 and snapshot-every >= 1")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with file_log(out / "train.log"):
        return _train(cfg, out, resume, progress)


def _train(cfg: PGANTrainConfig, out: Path, resume: bool, progress: bool) -> Path:
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    torch.backends.cudnn.benchmark = True
    n = len(cfg.depths)
    total = cfg.steps if cfg.steps is not None else schedule_length(n, cfg.steps_per_phase, cfg.fade_steps)
    real = load_faces(cfg.data, cfg.resolution, split="train")[0].to(device)
    val = None
    if cfg.eval_faces:
        try:
            val = load_faces(cfg.data, cfg.resolution, split="val", limit=cfg.eval_faces)[0]
            val = val.float().div(127.5).sub(1).to(device)
        except FileNotFoundError:
            log.warning("no validation images in %s: final-phase snapshots are not scored, the latest is kept", cfg.data)
    log.info("training PGAN-%d on %d faces (%s), %d steps, config %s", cfg.resolution, len(real), cfg.data, total, cfg)
    write_json(cfg, out / "train_config.json")

    G = PGANGenerator(PGANArch(latent_dim=cfg.latent_dim, depths=cfg.depths)).to(device)
    D = PGANDiscriminator(cfg.depths, mbstd_group=cfg.mbstd_group).to(device)
    init_equalized(G)
    init_equalized(D)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)

    betas = (float(cfg.betas[0]), float(cfg.betas[1]))  # recent torch refuses the int 0 in betas

    def optimisers() -> tuple[torch.optim.Adam, torch.optim.Adam]:
        return (torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=betas),
                torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=betas))

    def phase(i: int) -> Phase:
        return phase_at(i, n, cfg.steps_per_phase, cfg.fade_steps)

    optG, optD = optimisers()
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    schedule = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items() if k in SCHEDULE_KEYS}
    step, best, elapsed = 0, float("-inf"), 0.0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=device, weights_only=True)
        if state["schedule"] != schedule:
            raise InvcompError(f"{ckpt} was made with {state['schedule']}, not {schedule}: pass the same options, "
                               "or --no-resume to start afresh")
        G.load_state_dict(state["G"]), D.load_state_dict(state["D"]), G_ema.load_state_dict(state["G_ema"])
        optG.load_state_dict(state["optG"]), optD.load_state_dict(state["optD"])
        gen.set_state(state["rng"].cpu())
        step, best, elapsed = int(state["step"]), float(state["best"]), float(state["seconds"])
        ph = phase(max(step - 1, 0))
        log.info("resumed from %s at step %d (scale %d, %dx%d, alpha %.3f; best val SSIM %.4f)", ckpt, step, ph.scale,
                 ph.resolution, ph.resolution, ph.alpha, best)

    fixed_z = torch.randn(64, cfg.latent_dim, generator=torch.Generator().manual_seed(7)).to(device)
    t0 = time.time()
    deadline = t0 + cfg.minutes * 60 if cfg.minutes else None
    bar = tqdm(total=total, initial=step, disable=not progress, desc="train pgan", unit="step")

    def snapshot() -> None:
        nonlocal best
        ph = phase(max(step - 1, 0))  # the phase the weights were last trained in
        final = ph.scale == n - 1 and not ph.fading
        seconds = elapsed + time.time() - t0
        with torch.no_grad():
            grid = grow_forward(G_ema, fixed_z, ph.scale, ph.alpha, clamp=True)
        save_grid(grid, out / f"samples_{step:06d}.png")
        score = _score(G_ema, val, cfg.eval_iters) if final and val is not None else None
        if score is None:
            why = "no validation faces to score it" if final else "not scored before the final phase"
            log.info("step %d (%dx%d, alpha %.3f): saved the latest generator (%s), %.0f s", step, ph.resolution,
                     ph.resolution, ph.alpha, why, seconds)
        else:
            log.info("step %d: val inversion SSIM %.4f (best %.4f), %.0f s", step, score, best, seconds)
        if score is None or score > best:
            best = best if score is None else score
            atomic_save(generator_state_at(G_ema, ph.scale), out / "generator.pt")
            gc = GeneratorConfig(
                architecture="pgan", latent_dim=cfg.latent_dim, resolution=ph.resolution, prior="normal",
                widths=list(cfg.depths[: ph.scale + 1]), norm_free=True,
                options={"alpha": ph.alpha, "leaky": 0.2, "normalization": True, "output_activation": "none"},
                training={"step": step, "seconds": round(seconds), "scale": ph.scale,
                          "val_ssim": None if score is None or val is None else round(score, 4),
                          "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                          "config": asdict(cfg)},
            )
            write_json(gc.to_json_dict(), out / "generator.json")
            save_grid(grid, out / "samples.png")
        atomic_save({"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(), "optG": optG.state_dict(),
                     "optD": optD.state_dict(), "step": step, "scale": ph.scale, "alpha": ph.alpha, "best": best,
                     "seconds": seconds, "rng": gen.get_state(), "schedule": schedule}, ckpt)

    while step < total and (deadline is None or time.time() < deadline):
        ph = phase(step)
        if step == 0 or ph.scale != phase(step - 1).scale:
            optG, optD = optimisers()  # their trainer starts fresh solvers at every new scale
            log.info("step %d: scale %d (%dx%d), fading in over %d steps", step, ph.scale, ph.resolution,
                     ph.resolution, cfg.fade_steps if ph.fading else 0)
        elif ph.fading != phase(step - 1).fading:
            log.info("step %d: fade-in done, %dx%d at alpha 0", step, ph.resolution, ph.resolution)
        b = cfg.batch_size
        idx = torch.randint(0, len(real), (b,), device=device, generator=gen)
        flip = torch.rand(b, device=device, generator=gen) < 0.5
        x = real_at(real, idx, flip, ph.scale, ph.alpha)
        with torch.no_grad():
            fake = grow_forward(G, torch.randn(b, cfg.latent_dim, device=device, generator=gen), ph.scale, ph.alpha)
        d_real, d_fake = D(x, ph.scale, ph.alpha), D(fake, ph.scale, ph.alpha)
        gp = gradient_penalty(partial(D, scale=ph.scale, alpha=ph.alpha), x, fake, generator=gen).mean()
        loss_d = d_fake.mean() - d_real.mean() + cfg.lambda_gp * gp + cfg.epsilon_drift * d_real.pow(2).mean()
        optD.zero_grad(set_to_none=True)
        loss_d.backward()
        optD.step()
        D.requires_grad_(False)
        z = torch.randn(b, cfg.latent_dim, device=device, generator=gen)
        loss_g = -D(grow_forward(G, z, ph.scale, ph.alpha), ph.scale, ph.alpha).mean()
        optG.zero_grad(set_to_none=True)
        loss_g.backward()
        optG.step()
        D.requires_grad_(True)
        ema_update(G_ema, G, cfg.ema_decay)
        step += 1
        bar.update(1)
        if step % 100 == 0:
            bar.set_postfix(res=ph.resolution, alpha=f"{ph.alpha:.2f}", d=f"{loss_d.item():.3f}", g=f"{loss_g.item():.3f}")
        if step % 500 == 0:
            log.info("step %d (%dx%d, alpha %.3f) loss_d %.4f loss_g %.4f gp %.4f", step, ph.resolution,
                     ph.resolution, ph.alpha, loss_d.item(), loss_g.item(), gp.item())
        if step % cfg.snapshot_every == 0:
            snapshot()
    bar.close()
    if step % cfg.snapshot_every or not ckpt.exists():
        snapshot()
    if step < total:
        log.warning("stopped by --minutes at step %d of %d; run again to resume", step, total)
    if best > float("-inf"):
        log.info("done at step %d; best val SSIM %.4f", step, best)
    else:
        log.info("done at step %d; no snapshot was scored, generator.pt is the latest", step)
    return out / "generator.pt"


def config_from_kwargs(**kw: object) -> PGANTrainConfig:
    """Build a config, ignoring ``None`` values (so CLI defaults come from the dataclass)."""
    base = PGANTrainConfig(data=str(kw.pop("data")), out=str(kw.pop("out")))
    return replace(base, **{k: v for k, v in kw.items() if v is not None})
