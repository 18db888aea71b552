"""GAN inversion: find the latent z whose G(z) looks like a target (a pure loop, no I/O).

``invert`` runs Adam over a batch of latents, one row per (restart, image),
with a linear warm-up then cosine decay of the learning rate, a latent-norm
regulariser for the normal prior (or clamping for the uniform prior), and,
over the final iterations, a straight-through quantiser, so that the latent
chosen is the one that scores best *after* quantisation.

With ``patience`` the search stops early, per row: a row whose loss has not improved by ``min_delta`` for
``patience`` steps jumps to the last ``quant_fraction`` of its schedule (the low learning rates, and the quantised
phase when there is a quantiser), and a row that stalls there, or reaches the end, is done. The loop ends when
every row is done. Each row then has its own learning-rate schedule and its own Adam state, so its path does not
depend on when the other rows stop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
from torch import nn

from invcomp.search.adam import Adam
from invcomp.search.losses import LossFn, make_loss
from invcomp.coding.quantize import dequantize, fake_quantize, quantize

Callback = Callable[[int, int, float, torch.Tensor], None]


@dataclass(frozen=True)
class QuantSpec:
    """The quantiser the stored latent will go through (see :mod:`invcomp.coding.quantize`). ``quantise`` replaces
    the version-1 quantise-dequantise (``(N, D) -> (N, D)``, no gradient needed); ``rate`` is a differentiable
    code length in bits ``(N, D) -> (N,)``, weighted by ``rate_weight`` in the last phase of the search."""

    bits: int = 6
    scaling: str = "max"
    quantise: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    rate: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    rate_weight: float = 0.0

    def fake(self, z: torch.Tensor) -> torch.Tensor:
        """Quantise-dequantise ``z`` ``(N, D)`` with a straight-through gradient."""
        if self.quantise is None:
            return fake_quantize(z, self.bits, scaling=self.scaling)
        return z + (self.quantise(z.detach()).to(z.device, z.dtype) - z).detach()

    def hard(self, z: torch.Tensor) -> torch.Tensor:
        if self.quantise is None:
            return dequantize(quantize(z, self.bits, scaling=self.scaling)).to(z.device)
        return self.quantise(z.detach()).to(z.device, z.dtype)


@dataclass(frozen=True)
class InversionResult:
    """Per image: the chosen latent ``z`` ``(N, D)``, its loss after quantisation ``loss`` ``(N,)``
    (equal to ``float_loss`` without a quantiser), the loss of the float latent ``float_loss`` ``(N,)``,
    and which restart won ``restart`` ``(N,)``."""

    z: torch.Tensor
    loss: torch.Tensor
    float_loss: torch.Tensor
    restart: torch.Tensor
    steps: Optional[torch.Tensor] = None  # per image, the steps its winning row took (early stopping only)


def lr_at(step: int, iters: int, lr: float, warmup: float = 0.05) -> float:
    """Learning rate at ``step`` (0-based): linear ramp over the first ``warmup`` fraction, then cosine to 0."""
    n_warm = max(1, int(round(warmup * iters)))
    if step < n_warm:
        return lr * (step + 1) / n_warm
    t = (step - n_warm) / max(1, iters - n_warm)
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def initial_latents(
    n: int, latent_dim: int, *, prior: str = "normal", init: Union[str, torch.Tensor] = "random", seed: int = 0
) -> torch.Tensor:
    """Starting latents ``(n, latent_dim)``: ``random`` draws from the prior, ``mean`` is the prior's mean
    (zeros), or a given tensor ``(n, latent_dim)``.

    Every row of a ``random`` start is drawn from its own generator seeded with ``seed``, so an image's
    start (and hence its bitstream) does not depend on the other images in its batch or on its position.
    """
    if isinstance(init, torch.Tensor):
        if init.shape != (n, latent_dim):
            raise ValueError(f"init latents must be ({n}, {latent_dim}), got {tuple(init.shape)}")
        return init.detach().float().cpu().clone()
    if init == "mean":
        return torch.zeros(n, latent_dim)
    if init != "random":
        raise ValueError(f"unknown init {init!r}; use random, mean or a tensor")

    def row() -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.rand(latent_dim, generator=g) * 2 - 1 if prior == "uniform" else torch.randn(latent_dim, generator=g)

    return torch.stack([row() for _ in range(n)]) if n else torch.zeros(0, latent_dim)


def invert(
    G: nn.Module,
    target: torch.Tensor,
    *,
    loss: Union[str, LossFn] = "ssim",
    iters: int = 300,
    lr: float = 0.5,
    warmup: float = 0.05,
    restarts: int = 1,
    init: Union[str, torch.Tensor] = "random",
    prior: str = "normal",
    norm_weight: float = 1e-2,
    quant: Optional[QuantSpec] = None,
    quant_fraction: float = 0.2,
    seed: int = 0,
    callback: Optional[Callback] = None,
    patience: Optional[int] = None,
    min_delta: float = 1e-4,
) -> InversionResult:
    """Invert ``G`` on ``target`` ``(N, 3, R, R)`` in [-1, 1]; returns an :class:`InversionResult`.

    ``G`` maps ``(M, latent_dim)`` to ``(M, 3, R, R)`` and must be in eval mode (so that rows do not
    interact); it is not modified. The ``restarts`` run as one batch of ``restarts * N`` latents; the
    first restart starts from ``init`` and the others from the prior. ``callback(step, iters, lr, loss)``
    gets the per-row loss ``(restarts * N,)`` after each step (with ``patience``, of the rows still running;
    it is called at most ``iters`` times). Deterministic on CPU for a given seed.
    """
    if target.dim() != 4:
        raise ValueError(f"target must be (N, 3, R, R), got {tuple(target.shape)}")
    if iters < 0 or restarts < 1:
        raise ValueError("iters must be >= 0 and restarts >= 1")
    if patience is not None and patience < 1:
        raise ValueError("patience must be >= 1 (None: no early stopping)")
    loss_fn = make_loss(loss) if isinstance(loss, str) else loss
    device = next(G.parameters()).device if any(True for _ in G.parameters()) else target.device
    n, d = target.shape[0], int(G.latent_dim)
    first = initial_latents(n, d, prior=prior, init=init, seed=seed)
    others = [initial_latents(n, d, prior=prior, init="random", seed=seed + r) for r in range(1, restarts)]
    z = torch.cat([first, *others]).to(device).requires_grad_(True)
    tgt = target.to(device).repeat(restarts, 1, 1, 1)
    opt = Adam([z], lr=lr, betas=(0.9, 0.999))
    q_start = iters - int(round(quant_fraction * iters)) if quant is not None else iters

    def regulariser(zz: torch.Tensor) -> torch.Tensor:
        if prior != "normal" or norm_weight == 0:
            return zz.new_zeros(zz.shape[0])
        return norm_weight * (zz.pow(2).mean(1) - 1.0) ** 2

    steps: Optional[torch.Tensor] = None
    if patience is not None:
        tail = iters - int(round(quant_fraction * iters))
        z, steps = _early_stopping_loop(G, z.detach(), tgt, loss_fn, regulariser, iters=iters, lr=lr, warmup=warmup,
                                        q_start=tail, quant=quant, prior=prior, patience=patience,
                                        min_delta=min_delta, callback=callback)
    for step in range(iters if patience is None else 0):
        cur = lr_at(step, iters, lr, warmup)
        opt.set_lr(cur)
        late = quant is not None and step >= q_start
        zin = quant.fake(z) if late else z  # type: ignore[union-attr]
        per_row = loss_fn(G(zin), tgt)
        extra = regulariser(z)
        if late and quant.rate is not None and quant.rate_weight > 0:  # type: ignore[union-attr]
            extra = extra + quant.rate_weight * quant.rate(z)  # type: ignore[union-attr]
        (per_row + extra).sum().backward(inputs=[z])
        opt.step()
        opt.zero_grad()
        if prior == "uniform":
            with torch.no_grad():
                z.clamp_(-1.0, 1.0)
        if callback is not None:
            callback(step, iters, cur, per_row.detach())

    with torch.no_grad():
        zf = z.detach()
        float_loss = loss_fn(G(zf), tgt)
        if quant is not None:
            zq = quant.hard(zf)
            q_loss = loss_fn(G(zq), tgt)
        else:
            q_loss = float_loss
    q_loss, float_loss = q_loss.view(restarts, n).cpu(), float_loss.view(restarts, n).cpu()
    best = q_loss.argmin(0)
    idx = torch.arange(n)
    return InversionResult(
        z=zf.view(restarts, n, d).cpu()[best, idx],
        loss=q_loss[best, idx],
        float_loss=float_loss[best, idx],
        restart=best,
        steps=None if steps is None else steps.view(restarts, n)[best, idx],
    )


def _early_stopping_loop(G: nn.Module, z0: torch.Tensor, tgt: torch.Tensor, loss_fn: LossFn,
                         regulariser: Callable[[torch.Tensor], torch.Tensor], *, iters: int, lr: float, warmup: float,
                         q_start: int, quant: Optional[QuantSpec], prior: str, patience: int, min_delta: float,
                         callback: Optional[Callback]) -> tuple[torch.Tensor, torch.Tensor]:
    """The search of :func:`invert` with per-row early stopping (module doc); ``q_start`` is where the tail of
    the schedule starts. ``z0`` ``(M, D)``, ``tgt`` ``(M, 3, R, R)``; returns the final latents ``(M, D)`` and the
    steps each row took ``(M,)``."""
    m = z0.shape[0]
    rows = [z0[i:i + 1].clone().requires_grad_(True) for i in range(m)]
    opt = Adam(rows, lr=lr, betas=(0.9, 0.999))
    pos = [0] * m  # each row's place in the schedule
    taken = [0] * m
    best = [math.inf] * m
    since = [0] * m
    done = [iters == 0] * m
    for _ in range(iters):
        active = [i for i in range(m) if not done[i]]
        if not active:
            break
        zs = torch.cat([rows[i] for i in active])
        late = [quant is not None and pos[i] >= q_start for i in active]
        if quant is not None and any(late):
            mask = torch.tensor(late, device=zs.device)[:, None]
            zin = torch.where(mask, quant.fake(zs), zs)
        else:
            zin = zs
        per_row = loss_fn(G(zin), tgt[active])
        extra = regulariser(zs)
        if quant is not None and quant.rate is not None and quant.rate_weight > 0 and any(late):
            extra = extra + quant.rate_weight * quant.rate(zs) * torch.tensor(late, dtype=zs.dtype, device=zs.device)
        (per_row + extra).sum().backward(inputs=[rows[i] for i in active])
        for i in active:
            opt.lrs[i] = lr_at(pos[i], iters, lr, warmup)
        opt.step()  # rows not in ``active`` have no gradient, so Adam leaves them (and their state) alone
        opt.zero_grad()
        if prior == "uniform":
            with torch.no_grad():
                for i in active:
                    rows[i].clamp_(-1.0, 1.0)
        if callback is not None:
            callback(max(pos[i] for i in active), iters, lr_at(pos[active[0]], iters, lr, warmup), per_row.detach())
        for k, i in enumerate(active):
            taken[i] += 1
            pos[i] += 1
            value = float(per_row[k].detach())
            if value < best[i] - min_delta:
                best[i], since[i] = value, 0
            else:
                since[i] += 1
            stalled = since[i] >= patience
            if pos[i] >= iters or (stalled and pos[i] > q_start):
                done[i] = True
            elif stalled:  # a stall before the tail: go there now
                pos[i], best[i], since[i] = max(pos[i], q_start), math.inf, 0
    return torch.cat(rows).detach(), torch.tensor(taken)
