"""Train the layered mode's residual layer (:class:`invcomp.nets.residual.ResidualCoder`) on the CPU.

Data: a file of training faces and their decoded lower layers, written by ``experiments/layered_bases.py``
(uint8 ``x64`` ``(N, 3, 64, 64)``, ``x128`` ``(N, 3, 128, 128)`` and the 64-px inversion pictures ``base``).
Each face's colour and tone record (layer 1, :mod:`invcomp.search.tone`) is fitted and quantised here exactly as the
codec does, and the conditioning picture is that, upsampled bicubically to the output size
(:func:`invcomp.codecs.modes.layered.upsample`).

One step: a batch half of 64-px faces and half of random 64x64 crops of the 128-px faces (so one network
serves both sizes), each row at a random rate index with its own distortion weight; the loss is
``bits / pixels + lambda_r * D`` with ``D = 255^2 MSE + 1000 (1 - SSIM)``. With probability ``chain`` the
conditioning picture is first refined by a lower-rate pass of the same network (rounded, no gradient), so
that a second residual layer on top of a first one also lowers the distortion. The last ``eval_faces`` faces
of the file are not trained on; snapshots are scored on them (mean RD loss over all rates, both sizes).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from invcomp.errors import InvcompError
from invcomp.files import atomic_save, write_json
from invcomp.nets.residual import ResidualCoder, bits, rate_lambdas
from invcomp.train.loop import Score, Trainer, run_training

log = logging.getLogger(__name__)
SSIM_WEIGHT = 1000.0


@dataclass(frozen=True)
class ResidualTrainConfig:
    data: str
    out: str
    steps: int = 12000
    minutes: Optional[float] = None
    batch_size: int = 16
    crop: int = 64
    N: int = 32
    M: int = 48
    rates: int = 8
    lambda_low: float = 2.5e-4
    lambda_high: float = 1.6e-2
    chain: float = 0.25
    rate_warmup: int = 500
    lr: float = 1e-4
    aux_lr: float = 1e-3
    clip: float = 1.0
    eval_faces: int = 64
    snapshot_every: int = 1000
    seed: int = 0
    threads: Optional[int] = None
    init: Optional[str] = None
    peer: Optional[str] = "compressai-mbt-mean"  # start g_a/g_s from this shipped peer's top-rate model (N, M must match)
    device: str = "cpu"


def conditioning(x64: torch.Tensor, base64: torch.Tensor, size: int) -> torch.Tensor:
    """The picture layers 0-1 decode to, at ``size``: uint8 targets and bases ``(N, 3, 64, 64)`` -> ``(N, 3, size,
    size)`` in [0, 1] (tone record fitted to the 64-px target, quantised, applied, then upsampled)."""
    from invcomp.codecs.modes.layered import tone_layer, upsample

    out = []
    for i in range(0, x64.shape[0], 256):
        t, b = x64[i:i + 256].float() / 127.5 - 1, base64[i:i + 256].float() / 127.5 - 1
        toned = torch.cat([tone_layer(b[j], t[j])[1] for j in range(b.shape[0])])
        out.append(upsample(toned, size))
    return torch.cat(out)


def rd_terms(model: ResidualCoder, x: torch.Tensor, base: torch.Tensor, rate: torch.Tensor,
             lambdas: torch.Tensor, stage: Optional[torch.Tensor] = None, rate_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """Per-batch means of the loss terms for images ``x`` over ``base`` ``(N, 3, H, W)`` in [0, 1]; ``rate_weight``
    scales the rate term (the trainer ramps it up over the first steps, so that the encoder does not learn to send
    nothing before the decoder has learnt to use what it is sent)."""
    from pytorch_msssim import ssim

    out = model(x, base, rate, stage)
    x_hat = out["x_hat"].clamp(0, 1)
    bpp = bits(out["likelihoods"]) / (x.shape[-1] * x.shape[-2])
    mse = (x_hat - x).pow(2).flatten(1).mean(1)
    s = ssim(x_hat, x, data_range=1.0, size_average=False)
    dist = 255.0 ** 2 * mse + SSIM_WEIGHT * (1 - s)
    loss = rate_weight * bpp + lambdas[rate] * dist
    return {"loss": loss.mean(), "bpp": bpp.mean(), "psnr": (-10 * torch.log10(mse.clamp(min=1e-10))).mean(),
            "ssim": s.mean()}


def chained(model: ResidualCoder, x: torch.Tensor, base: torch.Tensor, rate: torch.Tensor,
            u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The conditioning picture after a first residual layer (rounded, no gradient) at a random lower rate
    ``floor(u * rate)`` (``u`` ``(N,)`` uniform in [0, 1)), and the stages ``(N,)``; rows at rate 0 keep ``base``
    (stage 0)."""
    low = (u * rate).floor().long()
    model.eval()
    with torch.no_grad():
        first = model(x, base, low)["x_hat"].clamp(0, 1)
    model.train()
    stage = (rate > 0).long()
    return torch.where(stage.bool()[:, None, None, None], first, base), stage


class ResidualTrainer(Trainer):
    product = "model.pt"
    desc = "residual"
    score_name = "-(val RD loss)"

    def __init__(self, cfg: ResidualTrainConfig, out: Path) -> None:
        if cfg.device != "cpu":
            raise InvcompError("the residual layer trains on the CPU (its data and steps are sized for it)")
        self.cfg, self.out, self.device = cfg, out, torch.device("cpu")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.model = ResidualCoder(cfg.N, cfg.M, cfg.rates)
        if cfg.init:
            self.model.load_state_dict(torch.load(cfg.init, map_location="cpu", weights_only=True), strict=False)
        elif cfg.peer:
            from invcomp.nets.peers import load_model, read_manifest
            from invcomp.nets.residual import init_from_peer

            family = read_manifest().get(cfg.peer)
            if family is None or (family.N, family.M) != (cfg.N, cfg.M):
                raise InvcompError(f"peer {cfg.peer!r} is not shipped with N={cfg.N}, M={cfg.M}; pass --peer none or its N, M")
            init_from_peer(self.model, load_model(family, len(family.models) - 1))
            log.info("g_a and g_s start from %s at λ=%g", cfg.peer, family.models[-1]["lmbda"])
        data = torch.load(cfg.data, map_location="cpu", weights_only=True)
        n = data["x64"].shape[0]
        if n <= cfg.eval_faces:
            raise InvcompError(f"{cfg.data} holds {n} faces; need more than --eval-faces {cfg.eval_faces}")
        self.x64, self.x128 = data["x64"].float() / 255, data["x128"].float() / 255
        self.b64 = conditioning(data["x64"], data["base"], 64)
        self.b128 = conditioning(data["x64"], data["base"], 128)
        self.n_train = n - cfg.eval_faces
        log.info("%d training faces, %d for scoring", self.n_train, cfg.eval_faces)
        self.lambdas = torch.tensor(rate_lambdas(cfg.rates, cfg.lambda_low, cfg.lambda_high))
        aux = {n for n, p in self.model.named_parameters() if n.endswith(".quantiles")}
        params = [p for n, p in self.model.named_parameters() if n not in aux]
        self.opt = torch.optim.Adam(params, lr=cfg.lr)
        self.gen = torch.Generator().manual_seed(cfg.seed)

    def state_dict(self, step: int) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "config": asdict(self.cfg)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        theirs = dict(state.get("config", {}))
        differ = sorted(k for k in ("N", "M", "rates") if theirs.get(k) != getattr(self.cfg, k))
        if differ:
            raise InvcompError(f"checkpoint in {self.out} was trained with other {', '.join(differ)}; use another --out")
        # the entropy coder's tables (built by update() at each snapshot) are rebuilt, not resumed: their shapes
        # depend on the scale table, and a fresh model has none yet
        self.model.load_state_dict({k: v for k, v in state["model"].items() if not k.startswith("gaussian.")}, strict=False)
        self.opt.load_state_dict(state["opt"])
        for group in self.opt.param_groups:  # a resumed run takes this run's --lr (e.g. a lower one to finish)
            group["lr"] = self.cfg.lr
        self.gen.manual_seed(self.cfg.seed + int(state["step"]))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Half 64-px faces, half random crops of 128-px faces; random horizontal flips. ``(B, 3, c, c)``."""
        cfg, g = self.cfg, self.gen
        half = cfg.batch_size // 2
        i64 = torch.randint(0, self.n_train, (half,), generator=g)
        i128 = torch.randint(0, self.n_train, (cfg.batch_size - half,), generator=g)
        c = cfg.crop
        xs, bs = [self.x64[i64]], [self.b64[i64]]
        for i in i128.tolist():
            top, left = (int(v) for v in torch.randint(0, 128 - c + 1, (2,), generator=g))
            xs.append(self.x128[i:i + 1, :, top:top + c, left:left + c])
            bs.append(self.b128[i:i + 1, :, top:top + c, left:left + c])
        x, b = torch.cat(xs), torch.cat(bs)
        flip = torch.rand(x.shape[0], generator=g) < 0.5
        f = flip[:, None, None, None]
        return torch.where(f, x.flip(3), x), torch.where(f, b.flip(3), b)

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg, model = self.cfg, self.model
        x, base = self.batch()
        rate = torch.randint(0, cfg.rates, (x.shape[0],), generator=self.gen)
        if torch.rand(1, generator=self.gen).item() < cfg.chain:  # a first, lower-rate layer underneath
            base, stage = chained(model, x, base, rate, torch.rand(x.shape[0], generator=self.gen))
        else:
            stage = torch.zeros_like(rate)
        model.train()
        terms = rd_terms(model, x, base, rate, self.lambdas, stage, rate_weight=min(1.0, 0.1 + step / cfg.rate_warmup))
        self.opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        self.opt.step()
        return {k: v.detach() for k, v in terms.items()}

    def evaluate(self, step: int) -> Score:
        model, cfg = self.model, self.cfg
        model.eval()
        lo, totals = self.n_train, []
        with torch.no_grad():
            for r in range(cfg.rates):
                rate = torch.full((cfg.eval_faces,), r)
                for x, b in ((self.x64[lo:], self.b64[lo:]), (self.x128[lo:], self.b128[lo:])):
                    totals.append({k: float(v) for k, v in rd_terms(model, x, b, rate, self.lambdas).items()})
        mean = {k: sum(t[k] for t in totals) / len(totals) for k in totals[0]}
        per_rate = " ".join(f"r{r}:{totals[2 * r]['bpp']:.3f}/{totals[2 * r]['ssim']:.3f}" for r in range(cfg.rates))
        return Score(-mean["loss"], what="-(val RD loss)", note=f" (64 px bpp/SSIM {per_rate})")

    def save_best(self, step: int, seconds: float, value: Optional[float]) -> None:
        self.model.update()
        atomic_save({k: v.detach().cpu() for k, v in self.model.state_dict().items()}, self.out / "model.pt")
        cfg = self.cfg
        write_json({**self.model.config(), "lambdas": rate_lambdas(cfg.rates, cfg.lambda_low, cfg.lambda_high),
                    "ssim_weight": SSIM_WEIGHT,
                    "training": {"step": step, "seconds": round(seconds), "val_rd_loss": None if value is None else -value,
                                 "config": asdict(cfg)}}, self.out / "model.json")


def train_residual(cfg: ResidualTrainConfig, *, resume: bool = True, progress: bool = True) -> Path:
    """Train the residual layer to ``cfg.out``; returns the kept ``model.pt``."""
    return run_training(cfg.out, lambda out: ResidualTrainer(cfg, out), steps=cfg.steps, minutes=cfg.minutes,
                        snapshot_every=cfg.snapshot_every, resume=resume, progress=progress)


CONFIG = ResidualTrainConfig  # what `invcomp train` builds from its options (invcomp.train.common.config_from_kwargs)
