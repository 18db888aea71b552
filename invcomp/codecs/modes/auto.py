"""``--mode auto``: code each image with several candidate modes and keep, per image, the file that is worth its bytes.

The candidates are codecs of the registered modes (by default: GAN inversion, GAN inversion with its tone
record, and the shipped VAE-GAN codecs). **The decision is by rate and distortion:** among the files of at most
``max_bytes`` bytes, the chosen one maximises ``SSIM - slope * bytes`` (SSIM on the pixels the decoder writes;
``slope`` is the price of a byte in SSIM, set by ``--quality``). An expert's ``--auto-tolerance`` brings back the
earlier rule instead: the smallest file whose SSIM is within the tolerance of the best one's.

**Candidates that search are previewed first.** A searching candidate (GAN inversion) first codes its warm start
as it is (0 iterations: one encoder pass, one generator pass); that preview is a real file and a candidate of
its own. The search runs only on the images where it *can* win: where the preview's score plus the most the search
was seen to add (``search_gain``, an SSIM bound measured on validation faces) still reaches the best score among
the files in hand (the one-pass candidates' and the previews'). A candidate refined from another's latents (the
tone record, :data:`TONE_REFINE`) runs only where its parent searched. With ``search_gain=None`` every search runs
(the full decision); ``experiments/auto_predict.py`` measures how often the two agree and what the misses cost.

**Bit depths:** a searched latent, and a preview's, is also coded one bit coarser and one finer (:data:`BIT_STEPS`;
no new search), and those files are candidates too (labelled ``NAME/5bit``, ``NAME@0/7bit``, ...). The prediction
compares a search with its preview bit depth by bit depth.

The chosen file is an ordinary file of that mode (its header names the mode and the model), so ``invcomp decode``
needs nothing new.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import replace
from typing import Any, Callable, Optional, Sequence

import torch
from PIL import Image

from invcomp.codecs.settings import DEFAULT_AUTO_SLOPE
from invcomp.errors import InvcompError

log = logging.getLogger(__name__)

AUTO_MODEL = "dcgan-utkface64"
# The C = 4 and C = 8 codecs fine-tuned with augmentation (zoom-out, shift, colour, light, grayscale) replace the
# plain ones here: better on the reframed and recoloured validation faces, and no worse on plain ones (model card).
AUTO_VAEGANS = ("vaegan-utkface64-c2", "vaegan-utkface64aug-c4", "vaegan-utkface64aug-c8")
# How much lower an SSIM than the best candidate's still counts as drawing the face. Chosen on validation faces
# (not the held-out ones) and their reframed, relit, recoloured and grayscale copies: experiments/auto_tolerance.py
# (README, "Range").
DEFAULT_TOLERANCE = 0.03  # what an expert's --auto-tolerance replaced as the default (issue 33)
DEFAULT_SLOPE = DEFAULT_AUTO_SLOPE  # the price of a byte of the default decision (invcomp.codecs.settings)
DEFAULT_MAX_BYTES: Optional[int] = None
# The most SSIM a search adds to its warm start's preview, at the same bit depth: the 99th percentile on 48 validation
# faces with the default search (50 steps at 0.2 from the amortised encoder: 0.156 over 5, 6 and 7 bits, the largest
# 0.164; experiments/auto_predict.py, see docs/speed.md). A search is skipped where even this gain cannot make its file
# the best.
SEARCH_GAIN = 0.16
# The bit depths tried beside a searched latent's own (relative to it): the same float latent quantised one bit
# coarser and one finer, a file each, for one generator pass and the entropy coder (no search). The decision keeps
# whichever is worth its bytes.
BIT_STEPS = (-1, 1)
# A candidate refined by ``(k, iters, lr)`` (AutoCodec's ``refine``) starts its search from candidate k's latents, for
# ``iters`` steps at peak rate ``lr``, instead of searching from scratch: the tone mode refines the plain inversion's latent.
# 100 steps at 0.2 kept most of a full tone search's gain (SSIM 0.817 against 0.823 on 12 recoloured faces; 0.811
# after 50 steps at 0.1: experiments/tone_refine.py) at half its cost: auto encodes in about 1.5x one inversion's time.
TONE_REFINE = (0, 100, 0.2)


def choose_rd(scores: list[float], sizes: list[int], slope: float, max_bytes: Optional[int]) -> Optional[int]:
    """Index of the file that maximises ``score - slope * bytes`` among the files of at most ``max_bytes`` (ties:
    the smaller file, then the earlier candidate); ``None`` when none fits."""
    fits = [i for i, n in enumerate(sizes) if max_bytes is None or n <= max_bytes]
    if not fits:
        return None
    return max(fits, key=lambda i: (scores[i] - slope * sizes[i], -sizes[i], -i))


def choose(scores: list[float], sizes: list[int], tolerance: float, max_bytes: Optional[int]) -> Optional[int]:
    """Index of the smallest file whose score is within ``tolerance`` of the best score, among the files of at
    most ``max_bytes`` (ties in size: the higher score, then the earlier candidate); ``None`` when none fits."""
    fits = [i for i, n in enumerate(sizes) if max_bytes is None or n <= max_bytes]
    if not fits:
        return None
    best = max(scores[i] for i in fits)
    good = [i for i in fits if scores[i] >= best - tolerance]
    return min(good, key=lambda i: (sizes[i], -scores[i], i))


def _with(codec: Any, **settings: Any) -> Any:
    """A shallow copy of ``codec`` (the loaded model shared) whose settings have ``settings`` changed."""
    run = copy.copy(codec)
    run.settings = replace(codec.settings, **settings)
    return run


class AutoCodec:
    """Several codecs of the same resolution; :meth:`encode` keeps the best file per image (see the module doc)."""

    mode_key = "auto"
    title = "auto"
    searches = True

    def __init__(self, candidates: list[Any], *, decoder_for: Callable[[Any], Any], tolerance: Optional[float] = None,
                 slope: Optional[float] = None, search_gain: Optional[float] = SEARCH_GAIN,
                 bit_steps: Sequence[int] = BIT_STEPS,
                 max_bytes: Optional[int] = DEFAULT_MAX_BYTES, refine: Optional[dict[int, tuple[int, int, float]]] = None,
                 goal_only: Sequence[int] = ()) -> None:
        """``candidates``: codecs of one resolution (:func:`invcomp.codecs.loader.load_codec` builds the default
        set); ``decoder_for``: header -> the codec that decodes it (:func:`~invcomp.codecs.loader.codec_for_header`);
        ``slope``: the price of a byte in SSIM of the rate-distortion decision, or ``tolerance``: the earlier rule
        (one of the two; neither: ``slope`` :data:`DEFAULT_SLOPE`); ``search_gain``: the SSIM bound of the
        previews (module doc; ``None`` or infinity: every search runs; only with ``slope``); ``refine``: candidate index ->
        ``(k, iters, lr)``, a candidate that starts from candidate k's latents (:data:`TONE_REFINE`) when there is no
        goal; ``bit_steps``: the other bit depths a searched latent is also coded at (:data:`BIT_STEPS`; only with
        ``slope``); ``goal_only``: the candidates that run only with a goal (the layered mode: with no budget its layers
        only add bytes)."""
        if not candidates:
            raise InvcompError("--mode auto needs at least one candidate codec")
        sides = {c.resolution for c in candidates}
        if len(sides) != 1:
            raise InvcompError(f"--mode auto candidates code different resolutions: {sorted(sides)}")
        if tolerance is not None and slope is not None:
            raise InvcompError("--mode auto decides by --quality or by --auto-tolerance, not both")
        if tolerance is None and slope is None:
            slope = DEFAULT_SLOPE
        if tolerance is not None and not 0 <= tolerance <= 1:
            raise InvcompError(f"the mode decision's SSIM tolerance must be in [0, 1], got {tolerance}")
        if slope is not None and not slope >= 0:
            raise InvcompError(f"the price of a byte must be >= 0, got {slope}")
        self.candidates, self.tolerance, self.slope, self.max_bytes = candidates, tolerance, slope, max_bytes
        self.search_gain = search_gain if slope is not None else None
        self.bit_steps = tuple(bit_steps) if slope is not None else ()
        self.refine, self.goal_only = dict(refine or {}), frozenset(goal_only)
        self._decoder_for = decoder_for
        self.keep_candidates = False  # True: each chosen file's extra["auto"] holds every candidate's bytes
        self.resolution = candidates[0].resolution
        self.settings = candidates[0].settings
        self.name = "auto"
        self._decoders: dict = {}

    def work(self, n_images: int) -> int:
        return sum(n_images * self.refine[j][1] if j in self.refine else c.work(n_images)
                   for j, c in enumerate(self.candidates))

    def describe(self) -> dict[str, Any]:
        inv = self.candidates[0].describe()
        rule = {"slope": self.slope, "search_gain": self.search_gain} if self.slope is not None else {
            "tolerance": self.tolerance}
        return {**inv, "mode": "auto", "model": self.name, **rule, "max_bytes": self.max_bytes,
                "candidates": [f"{c.mode_key}:{c.name}" for c in self.candidates]}

    def start(self, target: torch.Tensor) -> None:
        return None  # each candidate starts its own search

    def check_goal(self, goal: Any) -> None:
        for c in self.candidates:
            c.check_goal(goal)

    def _searches(self, j: int) -> bool:
        c = self.candidates[j]
        return bool(getattr(c, "searches", False)) and (c.settings.iters or 0) > 0

    def _run(self, j: int, images: list[Image.Image], per: list[list[Any]], rows: Sequence[int],
             progress: Optional[Callable[[int], None]]) -> list[Any]:
        """Candidate ``j`` on the images ``rows`` (no goal), refined from its parent's files in ``per`` when it has
        one. Returns one Encoded or error per row."""
        c, ref = self.candidates[j], self.refine.get(j)
        if not rows:
            return []
        chosen = [images[i] for i in rows]
        if ref is None:
            return c.encode(chosen, progress=progress)
        parents = [per[ref[0]][i] for i in rows]
        if any(isinstance(e, Exception) or e is None for e in parents):
            return [InvcompError(f"{c.mode_key} refines a candidate that failed")] * len(rows)
        return _with(c, iters=ref[1], lr=ref[2]).encode(chosen, progress=progress, init=torch.stack([e.z for e in parents]))

    def encode(self, images: list[Image.Image], *, goal: Any = None,
               progress: Optional[Callable[[int], None]] = None) -> list[Any]:
        """Encode ``images`` with the candidates (each to ``goal``, when given) and keep, per image, the best file
        within the budget (``goal``'s bytes, else ``max_bytes``). Returns an :class:`Encoded` per image, or an
        :class:`InvcompError` in its place when no candidate's file fits."""
        if not images:
            return []
        n = len(images)
        max_bytes = goal.max_bytes if goal is not None and goal.max_bytes is not None else self.max_bytes
        per: list[list[Any]] = []  # per candidate, per image: Encoded, an error, or None (not run)
        previews: dict[int, list[Any]] = {}
        for j, c in enumerate(self.candidates):
            if goal is None and j in self.goal_only:  # e.g. layered: with no budget it only grows
                per.append([InvcompError(f"{c.mode_key} runs with a target only")] * n)
            elif goal is not None:
                per.append(c.encode(images, goal=goal, progress=progress))
            elif self.slope is not None and self._searches(j):
                per.append([None] * n)
                parent = self.refine.get(j, (None,))[0]
                if parent is None:  # the warm start coded as it is; a refined candidate's preview is its parent's
                    previews[j] = _with(c, iters=0).encode(images, progress=None)
            else:
                per.append(self._run(j, images, per, range(n), progress))
        depths: list[tuple[int, int, list[Any]]] = []  # (candidate, bits, per image: Encoded or None): searched
        if goal is None and self.slope is not None:
            shallow = self._other_bit_depths(images, previews)  # the previews' (cheap)
            self._searches_where_they_can_win(images, per, previews, shallow, progress)
            depths = self._other_bit_depths(images, {j: per[j] for j in range(len(per)) if self._searches(j)})
            depths += shallow
        out: list[Any] = []
        for i in range(n):
            files = [(j, p[i]) for j, p in enumerate(per)] + [(j, p[i]) for j, p in previews.items()] + [
                (j, p[i]) for j, _, p in depths]
            ok = [(j, e) for j, e in files if e is not None and not isinstance(e, Exception)]
            scores = [e.ssim() for _, e in ok]
            sizes = [len(e.data) for _, e in ok]
            pick = (choose_rd(scores, sizes, self.slope, max_bytes) if self.slope is not None
                    else choose(scores, sizes, self.tolerance, max_bytes))  # type: ignore[arg-type]
            if pick is None:
                smallest = min(sizes) if sizes else None
                out.append(InvcompError(f"no mode fits {max_bytes} B (the smallest file is {smallest} B)"))
                continue
            j, chosen = ok[pick]
            def label(k: int, e: Any, i: int = i) -> str:
                base = f"{self.candidates[k].mode_key}:{self.candidates[k].name}"
                if previews.get(k) is not None and previews[k][i] is e:
                    return base + "@0"
                for j, b, p in depths:
                    if j == k and p[i] is e:
                        return base + ("@0" if any(p is q for _, _, q in shallow) else "") + f"/{b}bit"
                return base
            chosen.extra = {**chosen.extra, "reached": chosen.extra.get("reached", True),
                            "trims": chosen.extra.get("trims", 0),
                            "auto": {"chosen": f"{self.candidates[j].mode_key}:{self.candidates[j].name}",
                                     "kept": label(j, chosen),
                                     "searched": [label(k, e) for k, e in ok if per[k][i] is e and self._searches(k)],
                                     "candidates": [{"codec": label(k, e), "bytes": len(e.data), "ssim": round(e.ssim(), 4)}
                                                    for k, e in ok]}}
            if self.keep_candidates:  # one per candidate (None: not run, or failed); previews and bit depths by label
                chosen.extra["auto"]["files"] = [None if e is None or isinstance(e, Exception) else e.data
                                                 for e in (p[i] for p in per)]
                chosen.extra["auto"]["more_files"] = {label(k, e): e.data for k, e in ok if per[k][i] is not e}
            out.append(chosen)
        return out

    def _other_bit_depths(self, images: list[Image.Image], coded: dict[int, list[Any]]) -> list[tuple[int, int, list[Any]]]:
        """The float latents of ``coded`` (candidate -> its files, one per image, None where not run) coded again at
        the other bit depths of ``bit_steps`` (2 to 16 bits): ``(candidate, bits, files)``, one Encoded or None per
        image."""
        out = []
        for j, found in coded.items():
            c = self.candidates[j]
            if c.settings.bits is None:
                continue
            rows = [i for i in range(len(images)) if found[i] is not None and not isinstance(found[i], Exception)]
            if not rows:
                continue
            z = torch.stack([found[i].z for i in rows])
            for step in self.bit_steps:
                bits = c.settings.bits + step
                if not 2 <= bits <= 16:
                    continue
                files: list[Any] = [None] * len(images)
                for i, e in zip(rows, _with(c, bits=bits).encode_symbols(z, [images[i] for i in rows])):
                    files[i] = e
                out.append((j, bits, files))
        return out

    def _searches_where_they_can_win(self, images: list[Image.Image], per: list[list[Any]],
                                     previews: dict[int, list[Any]], shallow: list[tuple[int, int, list[Any]]],
                                     progress: Optional[Callable[[int], None]]) -> None:
        """Run each searching candidate on the images where its preview (at its own or another bit depth of
        ``shallow``), raised by ``search_gain``, can still win (all of them with ``search_gain=None``); fill ``per``
        in place. Parents run before the candidates refined from them, which run where their parent ran."""
        n, slope = len(images), float(self.slope)  # type: ignore[arg-type]

        def score(e: Any) -> float:
            return e.ssim() - slope * len(e.data) if e is not None and not isinstance(e, Exception) else -float("inf")

        order = sorted(previews) + [j for j in range(len(self.candidates)) if j in self.refine and self._searches(j)
                                    and j not in previews]
        best = [max([score(p[i]) for p in per] + [score(p[i]) for p in previews.values()]
                    + [score(p[i]) for _, _, p in shallow]) for i in range(n)]
        for j in order:
            parent = self.refine.get(j, (None,))[0]
            if parent is not None and parent in previews:
                rows = [i for i in range(n) if per[parent][i] is not None]
            else:
                gain = float("inf") if self.search_gain is None else self.search_gain
                rows = [i for i in range(n) if max([score(previews[j][i])] + [score(p[i]) for k, _, p in shallow
                                                                              if k == j]) + gain >= best[i]]
            skipped = n - len(rows)
            if progress is not None and skipped:
                progress(skipped * (self.refine[j][1] if j in self.refine else self.candidates[j].settings.iters))
            for i, e in zip(rows, self._run(j, images, per, rows, progress)):
                per[j][i] = e
                best[i] = max(best[i], score(e))

    def decode(self, data: bytes) -> tuple[Any, torch.Tensor]:
        """Decode a file of any candidate's mode and model (its header says which)."""
        return self._decoder(data).decode(data)

    def decode_picture(self, data: bytes, **kw: Any) -> tuple[Any, Any]:
        """As :meth:`invcomp.codecs.base.Codec.decode_picture`, by the codec of the file's mode and model."""
        return self._decoder(data).decode_picture(data, **kw)

    def _decoder(self, data: bytes) -> Any:
        from invcomp.formats import ivc as bitstream

        header = bitstream.unpack(data)[0]
        key = (header.mode, header.model_id)
        if key not in self._decoders:
            self._decoders[key] = self._decoder_for(header)
        return self._decoders[key]

