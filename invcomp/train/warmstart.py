"""Train a :class:`~invcomp.nets.warmstart.WarmStartNet` for a frozen generator G (a warm start for inversion).

Each step trains E with Adam on two batches:

* **G's own pairs**: z from G's prior, x = G(z). Latent loss ``MSE(mu(x), z)``
  plus the image loss between ``G(mu(x))`` and x.
* **real faces** x (train split, random flips): the image loss between
  ``G(z_s)`` and x for the reparameterised ``z_s = mu + sigma * eps``; a KL
  term to the prior; and an in-domain term ``MSE(mu(G(mu(x))), sg(mu(x)))``
  that keeps E consistent on the latents it actually produces (``sg``: no
  gradient to the target).

The image loss is a :mod:`invcomp.search.losses` spec, ``ssim+mse`` by default
((1 - SSIM) + MSE, per image). The KL term is ``KL(N(mu, sigma^2) || N(0, v))``
averaged over the dimensions, with v = 1 for the normal prior; the uniform
prior U(-1, 1) has no closed form, so it is replaced by the Gaussian of the
same variance, v = 1/3 (tanh keeps mu inside (-1, 1), and z_s is clamped
there). For a norm-free generator (``G(c z) = G(z)``) latents are compared
after scaling each to norm sqrt(D): the encoder's mu is put on that sphere
and so are the targets z.

**Amortised** (``latents``, a file of ``experiments/collect_latents.py``): a third batch of faces x with the
latents z* that the codec's own search ended at. E learns to land there: ``w_search * MSE(mu(x), z*)`` plus the
image loss between ``G(Q(mu(x)))`` and x, where Q is the codec's quantiser (its bit depth, norm and entropy
prior) with a straight-through gradient. With ``quant_in_loop`` the real faces' image loss goes through Q too,
and snapshots are scored after Q (what a 0-iteration encode would write). ``init`` starts E from a saved
encoder (``shipped``: the registry's for this generator) instead of from scratch.

Every ``snapshot_every`` steps E is scored by the mean SSIM of ``G(mu(x))``
on the validation faces (no search); the best is kept as ``encoder.pt`` +
``encoder.json``. ``checkpoint.pt`` (E, Adam, step, RNG state, best score,
generator sha256) is written at each snapshot and at the end, and a run
resumes from it (only for the same generator). Deterministic for a seed on CPU.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from invcomp.data import load_faces
from invcomp.nets.warmstart import WarmStartConfig, WarmStartNet, predict_latents, save_warm_start, to_sphere
from invcomp.errors import InvcompError
from invcomp.zoo.registry import LoadedGenerator, load_generator
from invcomp.search.inversion import QuantSpec
from invcomp.search.losses import make_loss
from invcomp.metrics import ssim
from invcomp.train.common import save_grid
from invcomp.train.loop import Loss, Score, Trainer, load_val, run_training

log = logging.getLogger(__name__)

Callback = Callable[[int, dict[str, float]], None]


@dataclass(frozen=True)
class WarmStartTrainConfig:
    """Options of an encoder run. ``widths`` empty: :func:`invcomp.nets.warmstart.default_widths`."""

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
    latents: str | None = None
    init: str | None = None
    w_search: float = 1.0
    quant_in_loop: bool = False


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
def score(E: WarmStartNet, G: torch.nn.Module, faces: torch.Tensor, batch: int = 64,
          quant: QuantSpec | None = None) -> float:
    """Mean SSIM of ``G(mu(x))`` (``G(Q(mu(x)))`` with ``quant``) over ``faces`` uint8 ``(N, 3, R, R)`` (no search)."""
    vals = []
    for i in range(0, len(faces), batch):
        x = _faces(faces[i:i + batch])
        z = predict_latents(E, x).to(x.device)
        vals.append(ssim(G(quant.hard(z) if quant is not None else z), x))
    return float(torch.cat(vals).mean())


def searched_faces(path: str | Path, faces: torch.Tensor, found: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The faces of a latents file (``experiments/collect_latents.py``: ``names`` and ``z`` ``(N, D)``), picked by
    name from the training faces ``faces`` uint8 ``(M, 3, R, R)`` named ``found``: uint8 ``(N, 3, R, R)`` and the
    latents ``(N, D)``. A name that is not a training face is an error (held-out faces must stay unseen)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        names, z = list(blob["names"]), blob["z"].float()
    except (OSError, RuntimeError, KeyError, TypeError) as e:
        raise InvcompError(f"cannot read latents file {path}: {e}") from None
    if len(names) != len(z):
        raise InvcompError(f"latents file {path} has {len(names)} names for {len(z)} latents")
    where = {n: i for i, n in enumerate(found)}
    missing = [n for n in names if n not in where]
    if missing:
        raise InvcompError(f"{len(missing)} faces of {path} are not training faces of the data (first: {missing[0]})")
    return faces[[where[n] for n in names]], z


def train_warm_start(cfg: WarmStartTrainConfig, *, resume: bool = True, progress: bool = True,
                     callback: Callback | None = None) -> Path:
    """Run (or resume) training; returns the path of the best encoder state_dict (``OUT/encoder.pt``).

    ``callback(step, losses)`` gets the float loss terms after every step.
    """
    return run_training(cfg.out, lambda out: WarmStartTrainer(cfg, out), steps=cfg.steps, minutes=cfg.minutes,
                        snapshot_every=cfg.snapshot_every, resume=resume, progress=progress, callback=callback)


class WarmStartTrainer(Trainer):
    """E, its Adam optimiser and the RNG of its batches, for a frozen generator G."""

    product, desc = "encoder.pt", "train encoder"

    def __init__(self, cfg: WarmStartTrainConfig, out: Path) -> None:
        self.cfg, self.out, self.device = cfg, out, torch.device(cfg.device)
        self.log_every = self.postfix_every = cfg.log_every
        torch.manual_seed(cfg.seed)
        g: LoadedGenerator = load_generator(cfg.generator, self.device)
        self.G, gc, self.g = g.module.eval(), g.config, g
        for p in self.G.parameters():
            p.requires_grad_(False)
        real, names = load_faces(cfg.data, gc.resolution, split="train")
        val = load_val(cfg.data, gc.resolution, cfg.eval_faces, fallback=real)
        self.real, self.val = real.to(self.device), val.to(self.device) if val is not None else None
        self.ecfg = WarmStartConfig(resolution=gc.resolution, latent_dim=gc.latent_dim, prior=gc.prior,
                                    widths=cfg.widths, generator_sha256=g.sha256, generator_name=g.name,
                                    norm_free=gc.norm_free)
        self.arch = {k: v for k, v in self.ecfg.to_json_dict().items() if k != "training"}
        log.info("training an encoder for %s (%s, %d-d, %dpx) on %d faces (%s), config %s", g.name, g.sha256[:8],
                 gc.latent_dim, gc.resolution, len(real), cfg.data, cfg)

        self.E = WarmStartNet(self.ecfg).to(self.device)
        if cfg.init:
            self.E.load_state_dict(_initial_state(cfg.init, g, self.device))
            log.info("E starts from %s", cfg.init)
        self.quant: QuantSpec | None = None
        self.searched: tuple[torch.Tensor, torch.Tensor] | None = None
        if cfg.latents or cfg.quant_in_loop:
            from invcomp.codecs.modes.inversion import InversionCodec

            self.quant = InversionCodec(g).quant_spec()
        self._names, self._latents_stamp = names, None
        self._refresh_searched()
        self.opt = torch.optim.Adam(self.E.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.image_loss = make_loss(cfg.image_loss)
        self.prior = gc.prior
        self.target = to_sphere if gc.norm_free else (lambda z: z)
        self.fixed_z = sample_prior(256, gc.latent_dim, gc.prior, torch.Generator().manual_seed(7),
                                    torch.device("cpu")).to(self.device)
        self._latent_mse = math.nan  # the last snapshot's

    def _refresh_searched(self) -> None:
        """(Re)load the latents file when it changed: a collection can go on growing it while E trains."""
        cfg = self.cfg
        if not cfg.latents:
            return
        stamp = Path(cfg.latents).stat().st_mtime_ns
        if stamp == self._latents_stamp:
            return
        faces, z = searched_faces(cfg.latents, self.real.cpu(), self._names)
        self.searched, self._latents_stamp = (faces.to(self.device), z.to(self.device)), stamp
        log.info("amortised: %d faces with the search's latents from %s", len(faces), cfg.latents)

    def state_dict(self, step: int) -> dict[str, Any]:
        return {"E": self.E.state_dict(), "opt": self.opt.state_dict(), "rng": self.gen.get_state(),
                "generator_sha256": self.g.sha256, "arch": self.arch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        ckpt, g = self.out / "checkpoint.pt", self.g
        if state["generator_sha256"] != g.sha256:
            raise InvcompError(f"{ckpt} trains an encoder for another generator (sha256 {state['generator_sha256'][:8]}, "
                               f"not {g.name} {g.sha256[:8]}); use another --out or --no-resume")
        if state["arch"] != self.arch:
            raise InvcompError(f"{ckpt} holds an encoder of another shape ({state['arch']}); use --no-resume")
        self.E.load_state_dict(state["E"]), self.opt.load_state_dict(state["opt"])
        self.gen.set_state(state["rng"].cpu())

    def postfix(self, step: int, losses: Mapping[str, Loss]) -> dict[str, object]:
        return {"loss": f"{float(losses['total']):.3f}"}

    def train_step(self, step: int) -> dict[str, float]:
        return _step(self.E, self.G, self.opt, self.real, self.gen, self.cfg, self.image_loss, self.prior, self.target,
                     self.searched, self.quant if self.cfg.quant_in_loop or self.searched is not None else None)

    def evaluate(self, step: int) -> Score:
        self._refresh_searched()
        with torch.no_grad():
            pred = predict_latents(self.E, self.G(self.fixed_z))
            self._latent_mse = float((pred - self.target(self.fixed_z).cpu()).pow(2).mean())
        q = self.quant if self.cfg.quant_in_loop else None
        value = score(self.E, self.G, self.val, quant=q) if self.val is not None else None
        return Score(value, what="val SSIM of G(Q(E(x)))" if q is not None else "val SSIM of G(E(x))", note=f", latent MSE on G samples {self._latent_mse:.4f}")

    def save_best(self, step: int, seconds: float, value: float | None) -> None:
        cfg, device = self.cfg, self.device
        info = {"step": step, "seconds": round(seconds), "val_ssim": None if value is None else round(value, 4),
                "gen_latent_mse": round(self._latent_mse, 5), "data": cfg.data,
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "config": asdict(cfg)}
        save_warm_start(self.E, replace(self.ecfg, training=info), self.out / "encoder.pt")
        if self.val is not None:
            x = _faces(self.val[:8])
            with torch.no_grad():
                save_grid(torch.cat([x, self.G(predict_latents(self.E, x).to(device))]), self.out / "reconstructions.png")


def _initial_state(init: str, g: LoadedGenerator, device: torch.device) -> Mapping[str, torch.Tensor]:
    """The state_dict E starts from: ``shipped`` (the registry's encoder for ``g``) or an encoder ``.pt``."""
    from invcomp.nets.warmstart import load_warm_start
    from invcomp.zoo.warmstart import check_warm_start, shipped_warm_start

    enc = shipped_warm_start(g, device) if init == "shipped" else load_warm_start(init, device)
    if enc is None:
        raise InvcompError(f"{g.name} ships no warm-start encoder to start from; give a .pt")
    check_warm_start(enc, g)
    return {k: v.float() for k, v in enc.module.state_dict().items()}


def _step(E: WarmStartNet, G: torch.nn.Module, opt: torch.optim.Optimizer, real: torch.Tensor,
          gen: torch.Generator, cfg: WarmStartTrainConfig, image_loss: Callable, prior: str,
          target: Callable[[torch.Tensor], torch.Tensor],
          searched: tuple[torch.Tensor, torch.Tensor] | None = None,
          quant: QuantSpec | None = None) -> dict[str, float]:
    """One Adam step on a batch of G's pairs, a batch of real faces and (``searched``: faces ``(M, 3, R, R)`` uint8
    and the search's latents ``(M, D)``) a batch of searched faces; ``quant`` puts the codec's quantiser in the
    loop. Returns the loss terms."""
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
    if quant is not None and cfg.quant_in_loop:
        zs = quant.fake(zs)
    real_image = image_loss(G(zs), xr).mean()
    kl = kl_to_prior(mu_r, logvar_r, prior).mean()
    mu_rr, _ = E(G(mu_r))
    domain = (mu_rr - mu_r.detach()).pow(2).mean()

    total = (cfg.w_latent * latent + cfg.w_fake_image * fake_image + cfg.w_real_image * real_image
             + cfg.w_kl * kl + cfg.w_domain * domain)
    terms = {"latent": latent, "fake_image": fake_image, "real_image": real_image, "kl": kl, "domain": domain}
    if searched is not None:
        faces, zstar = searched
        j = torch.randint(0, len(faces), (b,), device=device, generator=gen)
        xs = _faces(faces[j])
        mu_s, _ = E(xs)
        terms["search"] = (mu_s - target(zstar[j])).pow(2).mean()
        zq = quant.fake(mu_s) if quant is not None else mu_s
        terms["search_image"] = image_loss(G(zq), xs).mean()
        total = total + cfg.w_search * terms["search"] + cfg.w_real_image * terms["search_image"]
    terms["total"] = total
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    return {k: float(v.detach()) for k, v in terms.items()}


CONFIG = WarmStartTrainConfig  # what `invcomp train` builds from its options (invcomp.train.common.config_from_kwargs)
