"""Mode 3, layered: a GAN-inversion base and refinement layers; any prefix of the layers decodes.

- **Layer 0 (base):** the inversion latent of the 64-px face, found and range-coded exactly as mode 0 does
  (same search, same levels), so the base alone decodes to the plain inversion file's picture.
- **Layer 1 (tone):** the 8-byte colour and tone correction of :mod:`invcomp.search.tone`, fitted to the base.
- **Layers 2+ (residual):** the learned residual coder of :mod:`invcomp.nets.residual` at the output resolution R
  (64, 128, any multiple of 16), conditioned on the lower layers' picture upsampled to R; each has its own rate
  index (the layer's rate parameter). A second residual layer refines the first one's picture.

The file layout is :mod:`invcomp.formats.layered`. The plan of layers is ``layer_rates``: ``tone,3`` (default: the tone
record, then one residual layer at rate 3 at R), ``tone,1,4``, ``2@64,5@128`` (a residual at 64 px, then one at
128 px), or ``none`` (the base alone). With a goal (:class:`invcomp.codecs.rate.RateTarget`) the plan is chosen per
image: the best-SSIM file within the bytes, or the smallest reaching the SSIM, among the base, base+tone, and
base+tone+one residual layer at each rate.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

import torch
from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.codecs import budget
from invcomp.formats import layered as layers
from invcomp.errors import BitstreamError, InvcompError
from invcomp.nets.residual import DEFAULT_RESIDUAL, Residual, load_residual, residual_dir  # noqa: F401  (re-exported)
from invcomp.imageio import quantize_pixels
from invcomp.metrics import ssim
from invcomp.coding.quantize import dequantize
from invcomp.codecs import entropy
from invcomp.codecs.base import Encoded, Progress, prepare
from invcomp.codecs.modes.layer_pictures import apply_tone, one_thread, prepare_like, tone_layer, upsample  # noqa: F401  (re-exported)
from invcomp.codecs.modes.inversion import InversionCodec
from invcomp.codecs.settings import DEFAULT_MAX_PIXELS, EncodeSettings
from invcomp.codecs.registry import register_mode

DEFAULT_PLAN = "tone,3"
BASE_RESOLUTION = layers.BASE_RESOLUTION
RATE_STEPS = layers.RATE_STEPS  # a layer's rate index counts quarter steps between the network's trained rates


def parse_plan(plan: str, resolution: int, rates: int) -> list[tuple[int, int, int]]:
    """``"tone,3@128"`` -> ``[(KIND_TONE, 0, 0), (KIND_RESIDUAL, 12, 128)]``: a rate is 0..rates-1 in quarter steps
    (``2.75``), stored as its index in quarter steps; a bare rate is at ``resolution``."""
    out: list[tuple[int, int, int]] = []
    tokens = [t.strip() for t in plan.split(",") if t.strip()]
    if tokens == ["none"]:
        return out
    for t in tokens:
        if t == "tone":
            out.append((layers.KIND_TONE, 0, 0))
            continue
        rate, _, res = t.partition("@")
        try:
            value, size = float(rate), int(res) if res else resolution
        except ValueError:
            raise InvcompError(f"bad layer {t!r} in --layer-rates {plan!r}: use tone, RATE or RATE@SIZE") from None
        r = round(value * RATE_STEPS)
        if not 0 <= value <= rates - 1 or abs(r - value * RATE_STEPS) > 1e-9:
            raise InvcompError(f"layer rate {value:g} out of range: 0..{rates - 1} in steps of {1 / RATE_STEPS:g}")
        check_resolution(size)
        out.append((layers.KIND_RESIDUAL, r, size))
    try:
        layers.check_order([layers.Layer(k, b"\0" * 8 if k == layers.KIND_TONE else b"\0", r, s) for k, r, s in out])
    except BitstreamError as e:
        raise InvcompError(f"--layer-rates {plan!r}: {str(e).split(': ', 1)[-1]}") from None
    return out


def check_resolution(size: int) -> None:
    if not (size % 16 == 0 and 16 <= size <= 4080):
        raise InvcompError(f"layered resolution {size} must be a multiple of 16 in 16..4080")


def check_plan(plan: list[tuple[int, int, int]], resolution: int, max_pixels: int, text: str) -> None:
    """Refuse, before any work, a plan whose residual layers exceed the decode budget of ``max_pixels``
    (:func:`invcomp.codecs.budget.check_budget`, the check every decoded file goes through): the encoder draws each layer
    at its resolution, as the decoder will, and the picture at ``resolution``."""
    steps = [budget.Step("the generator's picture", BASE_RESOLUTION, BASE_RESOLUTION)]
    steps += [budget.Step(f"layer {i} (residual, {size} px)", size, size)
              for i, (kind, _, size) in enumerate(plan, start=1) if kind == layers.KIND_RESIDUAL]
    out = budget.Step("layered picture", resolution, resolution, budget.OUTPUT_BYTES_PER_PIXEL, network=False)
    budget.check_budget(steps, out, max_pixels, f"--layer-rates {text!r} at --resolution {resolution}")


@register_mode
class LayeredCodec(InversionCodec):
    """Mode 3 (see the module doc): an inversion codec of generator ``gen`` plus ``residual`` layers at ``resolution``."""

    mode = layers.MODE_LAYERED
    mode_key = "layered"
    title = "layered"

    def __init__(self, gen: Any, settings: Optional[EncodeSettings] = None, warm_start: Any = None, *,
                 residual: Optional[Residual] = None, resolution: int = BASE_RESOLUTION, plan: str = DEFAULT_PLAN,
                 max_pixels: Optional[int] = None) -> None:
        super().__init__(gen, settings, warm_start)
        self._layered(residual, resolution, plan, max_pixels)

    @classmethod
    def sharing(cls, codec: InversionCodec, *,  # type: ignore[override]
                residual: Optional[Residual] = None, resolution: int = BASE_RESOLUTION, plan: str = DEFAULT_PLAN,
                max_pixels: Optional[int] = None) -> "LayeredCodec":
        """The layered mode over the generator, warm-start network and resolved settings of a loaded mode-0 codec
        (nothing loaded or resolved again, so no setting is warned about twice)."""
        out = cls.__new__(cls)
        out.__dict__.update(codec.__dict__)
        out._layered(residual, resolution, plan, max_pixels)
        return out

    def _layered(self, residual: Optional[Residual], resolution: int, plan: str, max_pixels: Optional[int] = None) -> None:
        gen = self.gen
        if self.resolution != BASE_RESOLUTION:
            raise InvcompError(f"the layered mode's base is a {BASE_RESOLUTION}-px generator; {gen.name!r} draws "
                               f"{self.resolution} px")
        if entropy.container(self) != 2:
            raise InvcompError(f"the layered mode needs a model that ships a prior (a version-2 file); {gen.name!r} "
                               "does not, or --coder asks for Elias codes")
        check_resolution(resolution)
        self.residual = residual or load_residual()
        if self.residual.base != gen.name:
            raise InvcompError(f"residual network {self.residual.name!r} was trained over {self.residual.base!r}, "
                               f"not {gen.name!r}")
        self.resolution, self.plan_text = resolution, plan
        self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS  # the decode budget's limit, for encoding and decoding
        self.plan = parse_plan(plan, resolution, self.residual.rates)
        check_plan(self.plan, resolution, self.max_pixels, plan)  # the plan the user gave
        check_plan([(layers.KIND_RESIDUAL, 0, resolution)], resolution, self.max_pixels, plan)  # rate control's plans

    @classmethod
    def load(cls, spec: str, settings: Optional[EncodeSettings] = None, *, device: str = "cpu", for_decode: bool = False,
             resolution: Optional[int] = None, layer_rates: Optional[str] = None, residual: Optional[str] = None,
             max_pixels: Optional[int] = None, **options: Any) -> "LayeredCodec":
        """``spec``: the base generator (default ``dcgan-utkface64``); ``resolution``: the output side R;
        ``layer_rates``: the plan (module doc); ``residual``: a residual network name or ``.pt``; ``max_pixels``:
        the decode budget's pixel limit (default 64 Mpx), which every residual layer of the plan must fit
        (:func:`check_plan`) and every decoded file too."""
        if resolution is not None:
            check_resolution(resolution)  # before anything loads
        base = InversionCodec.load(spec, settings, device=device, for_decode=for_decode, **options)
        res = load_residual(residual or DEFAULT_RESIDUAL)
        return cls(base.gen, base.settings, base.warm_start, residual=res, resolution=resolution or BASE_RESOLUTION,
                   plan=layer_rates or DEFAULT_PLAN, max_pixels=max_pixels)

    @classmethod
    def claims(cls, spec: str) -> bool:
        return False  # asked for by --mode only

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "layers": self.plan_text, "residual": self.residual.name}

    # --- encoding ---------------------------------------------------------------------------------------
    def encode(self, images: list[Image.Image], *, goal: Any = None, progress: Optional[Progress] = None,
               init: Optional[torch.Tensor] = None) -> list[Any]:
        """Encode RGB images to layered files (see the module doc); with ``goal``, an :class:`InvcompError` takes
        the place of an image that no plan fits."""
        if not images:
            return []
        t64 = torch.stack([prepare(im, BASE_RESOLUTION, self.settings.fit) for im in images])
        z, extras = self.find_symbols(t64, progress, init=init)
        return self.encode_symbols(z, images, target=t64, extras=extras, goal=goal)

    def encode_symbols(self, z: torch.Tensor, images: list[Image.Image], *, target: Optional[torch.Tensor] = None,
                       extras: Optional[list[dict]] = None, goal: Any = None) -> list[Any]:
        """Code given float latents ``z`` ``(N, D)`` of ``images`` (no search) as layered files; ``target``: the
        64-px targets ``(N, 3, 64, 64)`` if already made."""
        fit = self.settings.fit
        t64 = target if target is not None else torch.stack([prepare(im, BASE_RESOLUTION, fit) for im in images])
        tR = t64 if self.resolution == BASE_RESOLUTION else torch.stack([prepare(im, self.resolution, fit) for im in images])
        extras = extras or [{} for _ in images]
        q = entropy.quantise_rows(z, self.settings, norm_free=self.norm_free, prior=self.tables)
        zq = dequantize(q)
        out: list[Any] = []
        for i, im in enumerate(images):
            plain, header = entropy.pack_rows(self, _row(q, i), [im.size])[0]
            plans = [self.plan] if goal is None else self.goal_plans()
            with one_thread():
                base_pic = self.synthesise(zq[i:i + 1])
                files = [self.code_layers(plain, base_pic, t64[i], tR[i], p) for p in plans]
            pick, reached = (0, True) if goal is None else choose_file(files, tR[i], goal)
            if isinstance(pick, InvcompError):
                out.append(pick)
                continue
            data, recon, steps = files[pick]
            extra = {**extras[i], "layers": steps, "reached": reached, "trims": 0}
            if goal is not None:  # as rate control records it for the other modes
                extra.update({"target_bytes": goal.max_bytes} if goal.max_bytes is not None else {"target_ssim": goal.min_ssim})
            out.append(Encoded(data, header, tR[i], recon[0], z[i].detach().float().cpu(), q.levels[i], extra))
        return out

    def goal_plans(self) -> list[list[tuple[int, int, int]]]:
        """What rate control chooses from: the base, base+tone, and base+tone+one residual at each rate."""
        tone_ = (layers.KIND_TONE, 0, 0)
        top = RATE_STEPS * (self.residual.rates - 1)
        return [[], [tone_]] + [[tone_, (layers.KIND_RESIDUAL, r, self.resolution)] for r in range(top + 1)]

    def code_layers(self, plain: bytes, base_pic: torch.Tensor, t64: torch.Tensor, tR: torch.Tensor,
                    plan: list[tuple[int, int, int]]) -> tuple[bytes, torch.Tensor, list[dict]]:
        """The file, its reconstruction ``(1, 3, S, S)`` in [-1, 1] and per-layer sizes for one image."""
        pic, recs = base_pic, []
        for kind, rate, size in plan:
            if kind == layers.KIND_TONE:
                record, pic = tone_layer(pic[0], t64, keep_ssim=len(plan) == 1)  # the last layer: never lower SSIM
                recs.append(layers.Layer(kind, record))
            else:
                target = tR if size == self.resolution else t64 if size == BASE_RESOLUTION else prepare_like(tR, size)
                with torch.no_grad():
                    stage = int(any(r.kind == layers.KIND_RESIDUAL for r in recs))  # 1: over a residual's picture
                    data, rec01 = self.residual.module.compress(((target + 1) / 2)[None], upsample(pic, size),
                                                                rate / RATE_STEPS, stage)
                recs.append(layers.Layer(kind, data, rate, size))
                pic = rec01 * 2 - 1
        data = layers.join(plain, recs, self.residual.key)
        out = pic if pic.shape[-1] == self.resolution else upsample(pic, self.resolution) * 2 - 1
        return data, out, layers.describe(data)  # what `invcomp info` says of the same file

    # --- decoding ---------------------------------------------------------------------------------------
    def decode(self, data: bytes, *, max_pixels: Optional[int] = None) -> tuple[bitstream.Header, torch.Tensor]:
        """Layered bytes (any prefix of layers) -> header and the picture ``(3, S, S)`` in [-1, 1]: S is the last
        residual layer's side (64 when there is none), upsampled to this codec's resolution when below it (as
        :meth:`encode` reports it). Every layer's resolution is checked against the decode budget of ``max_pixels``
        (default: the codec's) before any work (:func:`invcomp.codecs.budget.check_file`)."""
        budget.check_file(data, max_pixels or self.max_pixels, native=True)
        plain, recs = layers.split(data)
        header, z, _ = entropy.read_with_side(plain, _Mode0(self))
        header = replace(header, mode=self.mode)
        with one_thread():
            return header, self._layers(z, recs)

    def decode_picture(self, data: bytes, *, native: bool = False,
                       max_pixels: Optional[int] = None) -> tuple[bitstream.Header, Image.Image]:
        """As every mode's (the original size, or ``native``), with the layers checked against ``max_pixels``."""
        from invcomp.imageio import restore_size, to_pil

        header, recon = self.decode(data, max_pixels=max_pixels)
        img = to_pil(recon)
        return header, img if native else restore_size(img, header.width, header.height, header.fit)

    def _layers(self, z: torch.Tensor, recs: list) -> torch.Tensor:
        """The base latent ``(1, D)`` and the layer records after it -> the picture ``(3, S, S)`` in [-1, 1]."""
        pic, stage = self.synthesise(z), 0
        for k, (layer, record) in enumerate(recs, start=1):
            layers.check(layer, record, self.residual.key, k)
            if layer.kind == layers.KIND_TONE:
                pic = apply_tone(pic, layer.payload)
            else:
                if layer.rate > RATE_STEPS * (self.residual.rates - 1):
                    raise BitstreamError(f"invalid .ivc field: layer {k}'s rate index {layer.rate} "
                                         f"(0..{RATE_STEPS * (self.residual.rates - 1)})")
                with torch.no_grad():
                    pic = self.residual.module.decompress(layer.payload, upsample(pic, layer.resolution),
                                                          layer.rate / RATE_STEPS, stage) * 2 - 1
                stage = 1
        if pic.shape[-1] < self.resolution:
            pic = upsample(pic, self.resolution) * 2 - 1
        return pic[0]


class _Mode0:
    """A view of a layered codec as the mode-0 codec whose file its base record holds (for the entropy stage)."""

    mode = bitstream.MODE_INVERSION

    def __init__(self, codec: Any) -> None:
        self._codec = codec

    def __getattr__(self, name: str) -> Any:
        return getattr(self._codec, name)


def _row(q: Any, i: int) -> Any:
    return replace(q, levels=q.levels[i:i + 1], norm=q.norm[i:i + 1])


def choose_file(files: list[tuple[bytes, torch.Tensor, list[dict]]], target: torch.Tensor,
                goal: Any) -> tuple[Any, bool]:
    """The index of the file that meets ``goal`` and whether it reached it: the best SSIM within ``goal.max_bytes``
    (an :class:`InvcompError` in place of the index when none fits), or the smallest reaching ``goal.min_ssim``
    (when none does, the best-SSIM file, not reached: as every mode's ``--target-ssim``)."""
    scores = [float(ssim(quantize_pixels(rec), target[None])) for _, rec, _ in files]
    sizes = [len(d) for d, _, _ in files]
    if goal.max_bytes is not None:
        fits = [i for i, n in enumerate(sizes) if n <= goal.max_bytes]
        if not fits:
            return InvcompError(f"no layered file fits {goal.max_bytes} B (the base alone is {min(sizes)} B; use "
                                "--mode inversion for smaller files)"), False
        return max(fits, key=lambda i: (scores[i], -sizes[i])), True
    reach = [i for i, s in enumerate(scores) if s >= goal.min_ssim]
    if not reach:
        return max(range(len(files)), key=lambda i: (scores[i], -sizes[i])), False
    return min(reach, key=lambda i: sizes[i]), True
