"""Train the generative decoder stage (:mod:`invcomp.nets.upsampler`): decoded 64-px face -> sharp 256-px face.

Data: the cache of ``experiments/upsample_data.py`` (``--data``), drawn as :mod:`invcomp.train.upsample_data`
describes: random 32-px crops of the clean 64-px training faces (degraded by blur, resizing, noise and JPEG) or of
the shipped VAE-GANs' reconstructions of them, each with the aligned 128-px crop of the 256-px target.

Loss (GFPGAN / HiFiC / Agustsson et al. without VGG or LPIPS, whose weights cannot be downloaded here):
``l1_weight * L1 + ssim_weight * (1 - SSIM)``, and after ``adv_warmup`` steps ``adv_weight * LSGAN +
fm_weight * feature matching`` with the conditional multi-scale PatchGAN of :mod:`invcomp.nets.generative.discriminator`
(``c_in`` 6: the picture and the bicubic upscaling of the input, as in pix2pixHD). G and D are updated from the
same D forward passes (pix2pixHD's order). Adam (betas 0.5, 0.999; ``lr`` for G, ``lr_d`` for D), gradients
clipped to ``clip``; an EMA of G (``ema``) is what is scored and saved.

Every ``checkpoint_minutes`` (and at the end, or on SIGTERM/SIGINT) the EMA generator is scored on whole
validation faces (64 -> 256, both the clean 64-px input and the VAE-GAN base): PSNR, SSIM, MS-SSIM and the
high-frequency energy ratio (:func:`invcomp.metrics.hf_ratio`, 1.0 = as sharp as the original), beside the same
figures for bicubic upscaling of the same inputs. The score that picks the kept model is, averaged over the
two inputs, ``SSIM - hf_weight * |log2(HF ratio)|``: a GAN's snapshots are not ranked by SSIM alone, which
favours the blurriest. ``OUT/upsampler.pt`` + ``.json`` is the best, ``OUT/latest.pt`` + ``.json`` the
latest; ``OUT/checkpoint.pt`` holds G, D, the EMA, both optimisers, the RNG, the step, the best score and the
seconds, and a new run with the same ``--out`` resumes from it. ``OUT/train.log`` has steps/s and the loss terms.

    python -m invcomp.train.upsample --data /work/cache/upsample/data --out /work/cache/upsample/run1 --minutes 180
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import math
import signal
import sys
import time
import types
import typing
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from invcomp.errors import InvcompError
from invcomp.files import atomic_save, load_state_dict, write_json
from invcomp.nets.generative.discriminator import MultiScaleD, d_loss, feature_matching, g_loss
from invcomp.metrics import ssim
from invcomp.nets.upsampler import Upsampler, UpsamplerConfig, param_count, save_upsampler, upscale
from invcomp.train.common import ema_update, file_log, save_grid
from invcomp.train.upsample_data import (FaceCache, UpsampleTrainConfig, bicubic, figures, fmt_figures, sample_pairs, score_of,
                            val_grid)

log = logging.getLogger("invcomp.train.upsample")  # the same name when run with -m


class UpsampleTrainer:
    """G (:class:`Upsampler`), its EMA, the conditional multi-scale D, their optimisers and the batch RNG."""

    def __init__(self, cfg: UpsampleTrainConfig, out: Path) -> None:
        self.cfg, self.out = cfg, out
        self.mcfg = cfg.model_config()
        self.train_cache = FaceCache(cfg.data, "train", cfg.limit)
        self.val = self._load_val()
        torch.manual_seed(cfg.seed)
        self.G = Upsampler(self.mcfg)
        self.ema = copy.deepcopy(self.G).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.D = MultiScaleD(6, cfg.ndf)
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=betas)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        log.info("upsampler %s: %d parameters; D %d parameters; %d training faces (%s), %d validation faces",
                 self.mcfg.to_json_dict() | {"training": None}, param_count(self.G), param_count(self.D),
                 self.train_cache.n, cfg.data, 0 if self.val is None else len(self.val["x256"]))

    def _load_val(self) -> dict[str, torch.Tensor] | None:
        if not self.cfg.eval_faces:
            return None
        try:
            cache = FaceCache(self.cfg.data, "val")
        except InvcompError as e:
            log.warning("%s; snapshots are not scored, the latest is kept", e)
            return None
        n = min(self.cfg.eval_faces, cache.n)  # spread over the set: names sort by age first
        idx = sorted({round(i * (cache.n - 1) / max(n - 1, 1)) for i in range(n)})
        val = {"x256": cache.take("x256", idx), "clean": cache.take("x64", idx), "base": cache.take("base", idx)}
        self.baseline = {k: figures(bicubic(val[k]), val["x256"]) for k in ("clean", "base")}
        for k, f in self.baseline.items():
            log.info("val bicubic x4 of the %s 64-px input (%d faces at 256 px): %s", k, len(idx), fmt_figures(f))
        return val

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "ema": self.ema.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(), "rng": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        try:
            self.G.load_state_dict(state["G"]), self.D.load_state_dict(state["D"])
            self.ema.load_state_dict(state["ema"])
            self.opt_g.load_state_dict(state["opt_g"]), self.opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, ValueError, KeyError):
            raise InvcompError(f"{self.out / 'checkpoint.pt'} was made with other model options; use them again "
                               "or --no-resume") from None
        self.gen.set_state(state["rng"].cpu())
        for opt, lr in ((self.opt_g, self.cfg.lr), (self.opt_d, self.cfg.lr_d)):  # a resumed run takes this run's
            for group in opt.param_groups:                                     # --lr and --lr-d
                group["lr"] = lr

    def train_step(self, step: int) -> dict[str, float]:
        """One step of G (and D after the warm-up) on a fresh batch; the loss terms."""
        cfg = self.cfg
        lo, hi = sample_pairs(self.train_cache, cfg, self.gen)  # (B, 3, c, c), (B, 3, 4c, 4c)
        fake = self.G(lo)
        l1 = (fake - hi).abs().mean()
        ss = 1.0 - ssim(fake, hi).mean()
        loss_g = cfg.l1_weight * l1 + cfg.ssim_weight * ss
        with torch.no_grad():  # the same batch's bicubic L1: the reference that shows progress in the log
            l1_bic = (bicubic(lo) - hi).abs().mean()
        losses = {"l1": float(l1.detach()), "l1_bicubic": float(l1_bic), "1-ssim": float(ss.detach())}
        ld = None
        if step >= cfg.adv_warmup and cfg.adv_weight + cfg.fm_weight > 0:
            cond = bicubic(lo)
            real = self.D(torch.cat([hi, cond], 1))
            ld = d_loss(real, self.D(torch.cat([fake.detach(), cond], 1)))
            fake_feats = self.D(torch.cat([fake, cond], 1))
            adv, fm = g_loss(fake_feats), feature_matching(real, fake_feats)
            loss_g = loss_g + cfg.adv_weight * adv + cfg.fm_weight * fm
            losses.update(d=float(ld.detach()), g=float(adv.detach()), fm=float(fm.detach()))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        torch.nn.utils.clip_grad_norm_(self.G.parameters(), cfg.clip)
        self.opt_g.step()
        if ld is not None:
            self.opt_d.zero_grad(set_to_none=True)  # drops what loss_g left in D
            ld.backward()
            torch.nn.utils.clip_grad_norm_(self.D.parameters(), cfg.clip)
            self.opt_d.step()
        ema_update(self.ema, self.G, cfg.ema if step >= 100 else 0.0)
        return losses

    @torch.no_grad()
    def evaluate(self, step: int) -> tuple[float | None, str]:
        """Score the EMA generator on whole validation faces; writes ``val_<step>.png``; (score, log text)."""
        if self.val is None:
            return None, "no validation faces"
        target = self.val["x256"]
        figs, outs = {}, {}
        for kind in ("clean", "base"):
            outs[kind] = torch.cat([upscale(self.ema, self.val[kind][i:i + 8]) for i in range(0, len(target), 8)])
            figs[kind] = figures(outs[kind], target)
        score = score_of(figs, self.cfg.hf_weight)
        text = "; ".join(f"{k} input: {fmt_figures(f, self.baseline[k])}" for k, f in figs.items())
        save_grid(val_grid(self.val, outs), self.out / f"val_{step:07d}.png", nrow=5)
        return score, text

    def save(self, name: str, step: int, seconds: float, score: float | None) -> None:
        training = {"step": step, "seconds": round(seconds), "score": score, "device": "cpu",
                    "config": _jsonable(self.cfg)}
        cfg = UpsamplerConfig.from_json_dict(self.mcfg.to_json_dict() | {"training": training})
        save_upsampler(self.ema, cfg, self.out / name)


_STOP = {"requested": False}  # set by SIGTERM / SIGINT: the loop ends after the current step, with a checkpoint


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Catch SIGTERM and SIGINT for the block (main thread only), restoring the previous handlers after."""
    def handler(signum: int, frame: types.FrameType | None) -> None:
        log.warning("signal %d: checkpointing and stopping after this step", signum)
        _STOP["requested"] = True

    _STOP["requested"], previous = False, {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


def train_upsampler(cfg: UpsampleTrainConfig, *, resume: bool = True, init: Path | None = None) -> Path:
    """Run (or resume) training until ``steps`` or ``minutes`` (or a signal); returns the kept ``upsampler.pt``.
    ``init``: a generator state_dict (e.g. a committed float16 snapshot) that a fresh run starts G and its EMA from."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    with file_log(out / "train.log"), _stop_on_signals():
        log.info("start: config %s (torch %s, %d thread(s))", asdict(cfg), torch.__version__, torch.get_num_threads())
        write_json(_jsonable(cfg), out / "config.json")
        return run(UpsampleTrainer(cfg, out), out, resume=resume, init=init)


def run(trainer: UpsampleTrainer, out: Path, *, resume: bool = True, init: Path | None = None) -> Path:
    """The loop: resume from ``out/checkpoint.pt``, steps with a log line (steps/s, mean loss terms) every
    ``log_every`` steps, a scored checkpoint every ``checkpoint_minutes`` and at the end."""
    cfg, ckpt = trainer.cfg, out / "checkpoint.pt"
    step, best, elapsed = 0, -math.inf, 0.0
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        trainer.load_state_dict(state)
        step, best, elapsed = int(state["step"]), float(state["best"]), float(state["seconds"])
        log.info("resumed from %s at step %d, %.0f s trained; best score %s", ckpt, step, elapsed,
                 f"{best:.4f}" if best > -math.inf else "none yet")
    elif init is not None:  # float16 weights load into the float32 networks
        weights = load_state_dict(init)
        trainer.G.load_state_dict(weights)
        trainer.ema.load_state_dict(weights)
        log.info("started G and its EMA from %s", init)
    t0 = time.time()
    deadline = t0 + cfg.minutes * 60 if cfg.minutes else None

    def snapshot() -> None:
        nonlocal best
        seconds = elapsed + time.time() - t0
        score, text = trainer.evaluate(step)
        log.info("step %d: val %s; score %s (%s), %.0f s", step, text, "none" if score is None else f"{score:.4f}",
                 f"best {best:.4f}" if best > -math.inf else "no best yet", seconds)
        trainer.save("latest.pt", step, seconds, score)
        if score is None or score > best:
            best = best if score is None else score
            trainer.save("upsampler.pt", step, seconds, score)
            log.info("step %d: kept as %s", step, out / "upsampler.pt")
        atomic_save({**trainer.state_dict(), "step": step, "best": best, "seconds": seconds}, ckpt)

    last_ckpt = window_t = time.time()
    window_steps, snapped_at, sums = 0, -1, {}  # type: ignore[var-annotated]
    while (cfg.steps is None or step < cfg.steps) and (deadline is None or time.time() < deadline) \
            and not _STOP["requested"]:
        losses = trainer.train_step(step)
        step, window_steps = step + 1, window_steps + 1
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
        if step % cfg.log_every == 0:
            terms = " ".join(f"{k} {v / window_steps:.4f}" for k, v in sums.items())
            log.info("step %d: %.2f steps/s; %s", step, window_steps / max(time.time() - window_t, 1e-9), terms)
            window_t, window_steps, sums = time.time(), 0, {}
        if time.time() - last_ckpt >= cfg.checkpoint_minutes * 60:
            snapshot()
            snapped_at = step
            last_ckpt = window_t = time.time()  # evaluation time is not training speed
            window_steps, sums = 0, {}
    if snapped_at != step or not ckpt.exists():
        snapshot()
    log.info("stopped at step %d (%s); best score %s; run again with the same --out to resume", step,
             "signal" if _STOP["requested"] else "deadline" if deadline and time.time() >= deadline else "steps done",
             f"{best:.4f}" if best > -math.inf else "none")
    return out / "upsampler.pt"


def _jsonable(cfg: UpsampleTrainConfig) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}


# --------------------------------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m invcomp.train.upsample", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(UpsampleTrainConfig)
    for f in fields(UpsampleTrainConfig):
        flag, hint = "--" + f.name.replace("_", "-"), hints[f.name]
        kind = next(a for a in typing.get_args(hint) if a is not type(None)) if typing.get_origin(hint) is typing.Union \
            else hint
        if typing.get_origin(kind) is tuple:
            p.add_argument(flag, type=lambda v: tuple(int(w) for w in v.split(",")), default=f.default, help="a,b")
        else:
            p.add_argument(flag, type=kind, **({"required": True} if f.name in ("data", "out") else {"default": f.default}))
    p.add_argument("--no-resume", action="store_true", help="Start afresh even if --out has a checkpoint.")
    p.add_argument("--init", type=Path, default=None, help="Start a fresh run's G and EMA from this state_dict.")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: every :class:`UpsampleTrainConfig` field is an option (``--batch-size 16``)."""
    args = vars(_parser().parse_args(argv))
    no_resume, init = args.pop("no_resume"), args.pop("init")
    cfg = UpsampleTrainConfig(**args)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    for h in logging.getLogger().handlers:  # the INFO lines go to OUT/train.log only
        h.setLevel(logging.WARNING)
    try:
        path = train_upsampler(cfg, resume=not no_resume, init=init)
    except InvcompError as e:
        log.error("%s", e)
        return 2
    log.warning("kept upsampler: %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
