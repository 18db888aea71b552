"""The skeleton every trainer shares: run folder and log, resume, deadline, step loop, snapshots.

A trainer (:class:`Trainer`) holds its networks and knows its own training step, its score and what it
saves; :func:`run_training` does the rest, the same way for all of them:

- creates ``out`` and logs to ``out/train.log`` (also while the trainer is built, so data loading is logged);
- resumes from ``out/checkpoint.pt``: the trainer's own keys plus ``step``, ``best`` and ``seconds``;
- runs steps until ``steps`` are done or ``minutes`` have passed, with a tqdm bar and a log line every
  ``trainer.log_every`` steps;
- every ``snapshot_every`` steps, and once more at the end when it stopped off that schedule (or nothing was
  written yet): scores the weights, keeps the best-scoring model (an unscored snapshot, e.g. without
  validation faces, replaces the kept model: the latest wins) and writes the checkpoint;
- logs when the deadline stopped it, and what it kept.
"""
from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
from tqdm import tqdm

from invcomp.data import load_faces
from invcomp.errors import InvcompError
from invcomp.files import atomic_save
from invcomp.train.common import file_log

log = logging.getLogger(__name__)

Loss = Union[torch.Tensor, float]
StepCallback = Callable[[int, dict[str, float]], None]
LOOP_KEYS = ("step", "best", "seconds")  # what the loop adds to each trainer's checkpoint


@dataclass(frozen=True)
class Score:
    """A snapshot's score. ``value`` ``None``: not scored, for the reason ``why``, so it is kept as the latest.

    ``what`` names the value in the log (``"val inversion SSIM"``); ``note`` is appended to the log line.
    """

    value: float | None
    what: str = "val SSIM"
    why: str = "no validation faces"
    note: str = ""


class Trainer(ABC):
    """One run's networks, optimisers and RNG, its training step, its score and the model it keeps.

    Subclasses set ``device``, ``product`` (the kept model's file name in ``out``, returned by
    :func:`run_training`) and ``desc`` (the progress bar's label).
    """

    device: torch.device
    product: str
    desc: str = "train"
    log_every: int = 500  # a log line of the loss terms every so many steps
    score_name: str = "val SSIM"  # what the kept score is, in the resume and final log lines
    postfix_every: int = 100  # the progress bar's loss terms every so many steps

    @abstractmethod
    def train_step(self, step: int) -> Mapping[str, Loss]:
        """One optimisation step after ``step`` done; the loss terms (tensors are only read when shown)."""

    @abstractmethod
    def evaluate(self, step: int) -> Score:
        """Score the current weights (writing any per-snapshot images); :meth:`save_best` may follow."""

    @abstractmethod
    def save_best(self, step: int, seconds: float, value: float | None) -> None:
        """Write the kept model (``product``) from the weights just evaluated; ``value`` ``None``: unscored."""

    @abstractmethod
    def state_dict(self, step: int) -> dict[str, Any]:
        """The checkpoint's contents but :data:`LOOP_KEYS`: networks, optimisers, RNG state, checks."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from a checkpoint (all its keys); raise :class:`~invcomp.errors.InvcompError` when it does
        not belong to this run's options."""

    def describe(self, step: int) -> str:
        """Where the run is after ``step`` steps, for log lines (e.g. ``" (8x8, alpha 0.500)"``)."""
        return ""

    def postfix(self, step: int, losses: Mapping[str, Loss]) -> dict[str, object]:
        """What the progress bar shows after ``step`` steps."""
        return {k: f"{float(v):.3f}" for k, v in losses.items()}


def load_val(data: str, resolution: int, limit: int, *, fallback: torch.Tensor | None = None) -> torch.Tensor | None:
    """Up to ``limit`` validation faces of ``data`` (uint8 ``(N, 3, R, R)``), or when ``data`` has none the first
    ``limit`` of ``fallback`` if given; ``None`` when ``limit`` is 0 or nothing is left. Logs what it chose."""
    if not limit:
        log.warning("eval_faces is 0: snapshots are not scored, the latest is kept")
        return None
    try:
        return load_faces(data, resolution, split="val", limit=limit)[0]
    except FileNotFoundError:
        if fallback is not None:
            log.warning("no validation images in %s: snapshots are scored on %d training faces instead", data,
                        len(fallback[:limit]))
            return fallback[:limit]
        log.warning("no validation images in %s: snapshots are not scored, the latest is kept", data)
        return None


def run_training(out: str | Path, make: Callable[[Path], Trainer], *, steps: int, minutes: float | None,
                 snapshot_every: int, resume: bool = True, progress: bool = True,
                 callback: StepCallback | None = None) -> Path:
    """Create ``out``, log to ``out/train.log``, build the trainer with ``make(out)`` and :func:`run_loop` it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with file_log(out / "train.log"):
        return run_loop(make(out), out, steps=steps, minutes=minutes, snapshot_every=snapshot_every,
                        resume=resume, progress=progress, callback=callback)


def run_loop(trainer: Trainer, out: Path, *, steps: int, minutes: float | None, snapshot_every: int,
             resume: bool = True, progress: bool = True, callback: StepCallback | None = None) -> Path:
    """Train ``trainer`` up to ``steps`` steps (resuming from ``out/checkpoint.pt`` if ``resume``) or for at most
    ``minutes``; returns ``out / trainer.product``. ``callback(step, losses)`` runs after every step."""
    if snapshot_every < 1:
        raise InvcompError(f"snapshot-every must be >= 1, got {snapshot_every}")
    ckpt = out / "checkpoint.pt"
    step, best, elapsed = 0, -math.inf, 0.0
    if resume and ckpt.exists():
        state = torch.load(ckpt, map_location=trainer.device, weights_only=True)
        trainer.load_state_dict(state)
        step, best, elapsed = int(state["step"]), float(state["best"]), float(state["seconds"])
        if best > 1.0:  # scores are SSIMs; older unscored runs stored the step number here
            best = -math.inf
        log.info("resumed from %s at step %d%s; %s", ckpt, step, trainer.describe(step),
                 f"best {trainer.score_name} {best:.4f}" if best > -math.inf else "no snapshot scored yet")

    t0 = time.time()
    deadline = t0 + minutes * 60 if minutes else None

    def snapshot() -> None:
        nonlocal best
        seconds = elapsed + time.time() - t0
        score = trainer.evaluate(step)
        where = trainer.describe(step)
        if score.value is None:
            log.info("step %d%s: not scored (%s), keeping the latest%s, %.0f s", step, where, score.why, score.note,
                     seconds)
        else:
            log.info("step %d%s: %s %.4f (%s)%s, %.0f s", step, where, score.what, score.value,
                     f"best {best:.4f}" if best > -math.inf else "the first score", score.note, seconds)
        if score.value is None or score.value > best:
            best = best if score.value is None else score.value
            trainer.save_best(step, seconds, score.value)
        atomic_save({**trainer.state_dict(step), "step": step, "best": best, "seconds": seconds}, ckpt)

    bar = tqdm(total=steps, initial=step, disable=not progress, desc=trainer.desc, unit="step")
    while step < steps and (deadline is None or time.time() < deadline):
        losses = trainer.train_step(step)
        step += 1
        bar.update(1)
        if callback is not None:
            callback(step, {k: float(v) for k, v in losses.items()})
        if step % trainer.postfix_every == 0:
            bar.set_postfix(trainer.postfix(step, losses))
        if step % trainer.log_every == 0:
            terms = " ".join(f"{k} {float(v):.4f}" for k, v in losses.items())
            log.info("step %d%s %s", step, trainer.describe(step), terms)
        if step % snapshot_every == 0:
            snapshot()
    bar.close()
    if step % snapshot_every or not ckpt.exists() or not (out / trainer.product).exists():
        snapshot()
    if step < steps:
        log.warning("stopped by --minutes at step %d of %d; run again to resume", step, steps)
    if best > -math.inf:
        log.info("done at step %d; best %s %.4f", step, trainer.score_name, best)
    else:
        log.info("done at step %d; no snapshot was scored, %s is the latest", step, trainer.product)
    return out / trainer.product

