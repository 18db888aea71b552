"""Encoder settings and their defaults: the only place where a default lives.

:class:`EncodeSettings` is what a user may set. ``None`` means "the codec's default", which
:func:`resolve_search` (modes that search, e.g. GAN inversion) or :func:`resolve_one_pass` (modes that
code one forward pass, e.g. VAE-GAN) fill in. The CLI, the Python API and ``invcomp bench`` all pass
their settings through these two functions, so ``invcomp encode IMG`` and
``load_codec(name).encode([img])`` write the same bytes. This module imports neither torch nor PIL, so
that ``invcomp --help`` stays light.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from typing import Optional

from invcomp.errors import InvcompError
from invcomp.files import DEFAULT_MAX_PIXELS  # noqa: F401  (re-exported: the encode settings name it)
from invcomp.zoo import DEFAULT_MODEL  # noqa: F401  (re-exported: the encode settings name it)

log = logging.getLogger(__name__)


# Inversion: bits per coordinate, quantiser norm, search loss, restarts, peak Adam lr.
DEFAULT_BITS = 6
DEFAULT_SCALING = "l2"
DEFAULT_LOSS = "ssim"
DEFAULT_RESTARTS = 1
DEFAULT_LR = 0.5  # from a random or mean start
# Search length from a warm start (issue 33): 50 steps at a peak rate of 0.2, against 200 at 0.5 before. Chosen on
# validation faces (never the held-out ones): at 64 px, 50 steps at 0.2 reach SSIM 0.787 against 0.805 for 200 at
# 0.5 (32 faces, experiments/amortised_curve.py); over the whole picture the default writes, where the detail
# layer makes up the rest, SSIM - 0.0007 x bytes is the same (0.6975 against 0.6977, 8 faces at 200 px and 8 at 128
# px, experiments/whole_faces.py --split val); 30 steps lost 0.002 of it. See docs/speed.md.
# From a random or mean start, 300 steps at 0.5.
ITERS_FROM_WARM_START = 50
LR_FROM_WARM_START = 0.2
ITERS_FROM_PRIOR = 300

FITS = ("crop", "squash")
SCALINGS = ("max", "l2")
ROUNDINGS = ("nearest", "stochastic")
CODERS = ("auto", "prior", "elias", "gamma", "delta", "omega")
# The rate weight (lambda, per bit of the code length under the prior) of the search's last phase; chosen on
# 48 validation faces (experiments/rate_weight.py; README, "Entropy coding and rate control"): with the
# smooth rate proxy, 0.003 and 0.01 changed no file (56.6 B, SSIM 0.8107 each), so the default is none.
# (Interpolating the tables themselves had saved 0.4 B at 0.003, but their sparse 9-bit rows then pulled the
# search off course: SSIM 0.811 against 0.825 for a 100-byte budget.)
DEFAULT_RATE_WEIGHT = 0.0
# ``--mode auto``'s price of a byte in SSIM at the model's 64 px (medium quality): each face keeps the candidate file
# that maximises SSIM - this x bytes (invcomp.codecs.modes.auto). Chosen on validation faces:
# experiments/auto_predict.py (docs/speed.md).
DEFAULT_AUTO_SLOPE = 0.0007
INITS = ("auto", "encoder", "mean", "random")
# Early stopping of a search from a warm start (issue 33): 0 is off. See ITERS_FROM_WARM_START.
DEFAULT_PATIENCE = 0
SEARCH_FIELDS = ("iters", "init", "loss", "restarts", "lr", "quant_aware", "rate_weight", "patience")


@dataclass(frozen=True)
class EncodeSettings:
    """Encoder knobs. ``None`` fields take the codec's default (see the module doc); a loaded codec's
    ``settings`` has every field resolved.

    Shared by every mode: ``bits`` (quantiser bits per symbol, sign included), ``coder`` (``auto``: the
    range coder under the model's prior, in a version-2 file, where the model ships a prior that covers
    ``bits`` and ``scaling``, else the shortest Elias code in a version-1 file; ``prior``: insist on the
    former; ``elias``: the shortest Elias code, version 1, as before version 2; ``gamma``/``delta``/``omega``:
    that Elias code, version 1), ``fit`` (``crop`` the centre square or ``squash`` the frame), ``scaling``
    (quantiser norm), ``rounding`` and ``seed`` (of stochastic rounding and random starts).

    Only for modes that search (GAN inversion): ``iters``, ``init`` (``auto``: the model's warm-start
    network when it has one, else ``random``; ``encoder``; ``mean``; ``random``), ``loss``, ``restarts``,
    ``lr``, ``quant_aware`` (optimise through the quantiser over the last ``quant_fraction`` of the
    iterations), ``norm_weight``, ``rate_weight`` (lambda: the last phase minimises distortion + lambda
    times the code length in bits under the prior; ``None``: the default, 0 without a prior) and ``patience``
    (early stopping: a search whose loss has not improved for this many steps skips to its last phase, and stops
    when it stalls there; 0: off; ``None``: :data:`DEFAULT_PATIENCE` from a warm start, off otherwise).
    """

    bits: Optional[int] = None
    coder: str = "auto"
    fit: str = "crop"
    scaling: Optional[str] = None
    rounding: str = "nearest"
    seed: int = 0
    iters: Optional[int] = None
    init: Optional[str] = None
    loss: Optional[str] = None
    restarts: Optional[int] = None
    lr: Optional[float] = None
    quant_aware: Optional[bool] = None
    quant_fraction: float = 0.2
    norm_weight: float = 1e-2
    rate_weight: Optional[float] = None
    patience: Optional[int] = None

    def given(self) -> dict[str, object]:
        """The fields set to something other than ``None``."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


def _check_common(s: EncodeSettings) -> None:
    checks = [
        (s.bits is None or (isinstance(s.bits, int) and 2 <= s.bits <= 16), f"bits must be 2..16, got {s.bits!r}"),
        (s.coder in CODERS, f"unknown coder {s.coder!r}; use {', '.join(CODERS)}"),
        (s.fit in FITS, f"unknown fit {s.fit!r}; use crop or squash"),
        (s.scaling is None or s.scaling in SCALINGS, f"unknown scaling {s.scaling!r}; use max or l2"),
        (s.rounding in ROUNDINGS, f"unknown rounding {s.rounding!r}; use nearest or stochastic"),
        (s.rate_weight is None or s.rate_weight >= 0, f"the rate weight must be >= 0, got {s.rate_weight!r}"),
        (s.patience is None or s.patience >= 0, f"patience must be >= 0 (0: no early stopping), got {s.patience!r}"),
    ]
    for ok, msg in checks:
        if not ok:
            raise InvcompError(msg)


def resolve_search(s: EncodeSettings, *, has_warm_start: bool, has_prior: bool = False) -> EncodeSettings:
    """Fill in the defaults of a mode that searches a latent (GAN inversion).

    ``init=auto`` becomes ``encoder`` when the model has a warm-start network (``has_warm_start``), else
    ``random``; ``iters`` and ``lr`` then default to :data:`ITERS_FROM_WARM_START` and :data:`LR_FROM_WARM_START`, or
    :data:`ITERS_FROM_PRIOR` and :data:`DEFAULT_LR`.
    More than one restart from a warm start is allowed but warned about: the extra starts are random
    draws, which rarely beat it, so the file is usually the same for several times the time.
    """
    _check_common(s)
    init = s.init or "auto"
    if init not in INITS:
        raise InvcompError(f"unknown init {init!r}; use {', '.join(INITS)}")
    if init == "auto":
        init = "encoder" if has_warm_start else "random"
    iters = s.iters if s.iters is not None else ITERS_FROM_WARM_START if init == "encoder" else ITERS_FROM_PRIOR
    restarts = DEFAULT_RESTARTS if s.restarts is None else s.restarts
    if iters < 0 or restarts < 1:
        raise InvcompError(f"iters must be >= 0 and restarts >= 1, got {iters} and {restarts}")
    if restarts > 1 and init == "encoder":
        log.warning("%d restarts from a warm start: the %d extra starts are random draws, which rarely beat the "
                    "warm start, so this usually writes the same file in more time", restarts, restarts - 1)
    lr = s.lr if s.lr is not None else LR_FROM_WARM_START if init == "encoder" else DEFAULT_LR
    if not lr > 0:
        raise InvcompError(f"lr must be positive, got {lr}")
    return replace(s, bits=DEFAULT_BITS if s.bits is None else s.bits,
                   scaling=DEFAULT_SCALING if s.scaling is None else s.scaling, iters=iters, init=init,
                   loss=DEFAULT_LOSS if s.loss is None else s.loss, restarts=restarts, lr=lr,
                   quant_aware=True if s.quant_aware is None else s.quant_aware,
                   patience=s.patience if s.patience is not None else DEFAULT_PATIENCE if init == "encoder" else 0,
                   rate_weight=s.rate_weight if s.rate_weight is not None else DEFAULT_RATE_WEIGHT if has_prior else 0.0)


def resolve_one_pass(s: EncodeSettings, *, bits: int, scaling: str, mode: str) -> EncodeSettings:
    """Fill in the defaults of a mode with no search (one forward pass, e.g. VAE-GAN): ``bits`` and
    ``scaling`` default to the model's. Search settings and stochastic rounding are refused, in one line,
    rather than silently ignored."""
    _check_common(s)
    given = [f for f in SEARCH_FIELDS if getattr(s, f) is not None]
    if given:
        raise InvcompError(f"the {mode} mode does no search, so {', '.join(given)} do not apply "
                           f"(CLI: drop {' '.join('--' + f.replace('_', '-') for f in given)})")
    if s.rounding != "nearest":
        raise InvcompError(f"the {mode} mode codes with nearest rounding only")
    return replace(s, bits=bits if s.bits is None else s.bits, scaling=scaling if s.scaling is None else s.scaling)
