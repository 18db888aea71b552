"""Image <-> ``.ivc`` bytes, composing inversion, quantisation, Elias coding and the container.

No file I/O here: the CLI reads images and writes files around these calls.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, Union

import torch
from PIL import Image

from . import bitstream, elias
from .warmstart import LoadedWarmStart, check_warm_start, predict_latents
from .errors import BitstreamError, InvcompError, UnknownModelError
from .generators.registry import LoadedGenerator
from .imageio import fit_image, from_image, quantize_pixels, restore_size, to_pil
from .inversion import Callback, QuantSpec, invert
from .quantize import QuantizedLatent, dequantize, levels_for_bits, quantize


@dataclass(frozen=True)
class EncodeSettings:
    """Encoder knobs (the CLI's options). ``coder="auto"`` picks the shortest Elias code per image;
    ``quant_aware`` optimises through the quantiser over the last ``quant_fraction`` of iterations."""

    iters: int = 300
    bits: int = 6
    loss: str = "ssim"
    restarts: int = 1
    lr: float = 0.5
    seed: int = 0
    fit: str = "crop"
    scaling: str = "l2"
    rounding: str = "nearest"
    coder: str = "auto"
    init: str = "random"
    quant_aware: bool = True
    quant_fraction: float = 0.2
    norm_weight: float = 1e-2


# Default search length from an encoder's start: the fewest iterations (of 0, 25, 50, 100, 200, 500, 1000) at
# which the shipped encoder's start reached the mean SSIM of 1000 iterations from random starts on held-out
# faces (experiments/warm_start.py; README, "Warm start"). Random and mean starts keep EncodeSettings.iters.
ENCODER_ITERS = 200


def default_iters(init: str) -> int:
    """The CLI's search length for a resolved ``init``: :data:`ENCODER_ITERS` for ``encoder``, else 300."""
    return ENCODER_ITERS if init == "encoder" else EncodeSettings.iters


@dataclass
class Encoded:
    """One coded image: the ``.ivc`` bytes, its header, the model-resolution target and reconstruction
    (``(3, R, R)`` in [-1, 1]), the float latent ``(D,)`` and its signed levels ``(D,)``."""

    data: bytes
    header: bitstream.Header
    target: torch.Tensor
    recon: torch.Tensor
    z: torch.Tensor
    levels: torch.Tensor
    extra: dict = field(default_factory=dict)


def prepare(img: Image.Image, resolution: int, fit: str) -> torch.Tensor:
    """RGB image -> the model-resolution target ``(3, R, R)`` in [-1, 1] that the codec codes."""
    return from_image(fit_image(img, resolution, fit))  # type: ignore[arg-type]


def encode_batch(
    gen: LoadedGenerator, images: list[Image.Image], settings: EncodeSettings, callback: Optional[Callback] = None,
    encoder: Optional[LoadedWarmStart] = None,
) -> list[Encoded]:
    """Encode RGB images in one batched inversion. Deterministic on CPU for fixed settings.

    ``settings.init`` picks the search's start: ``random`` (a seeded draw from the prior), ``mean`` (the prior's
    mean) or ``encoder``, the latents ``encoder`` (trained for ``gen``) predicts; ``iters=0`` then codes the
    encoder's guess as it is.
    """
    cfg = gen.config
    if not images:
        return []
    levels_for_bits(settings.bits)  # validates bits
    if settings.coder not in ("auto", *elias.CODERS):
        raise InvcompError(f"unknown coder {settings.coder!r}; use auto, gamma, delta or omega")
    target = torch.stack([prepare(im, cfg.resolution, settings.fit) for im in images])
    quant = QuantSpec(settings.bits, settings.scaling) if settings.quant_aware else None
    res = invert(
        gen.module, target, loss=settings.loss, iters=settings.iters, lr=settings.lr, restarts=settings.restarts,
        init=start_latents(gen, target, settings.init, encoder), prior=cfg.prior, norm_weight=settings.norm_weight, quant=quant,
        quant_fraction=settings.quant_fraction, seed=settings.seed, callback=callback,
    )
    return encode_latents(gen, res.z, images, settings, target=target,
                          extra=[{"float_loss": float(res.float_loss[i]), "loss": float(res.loss[i])}
                                 for i in range(len(images))])


def start_latents(gen: LoadedGenerator, target: torch.Tensor, init: str,
                  encoder: Optional[LoadedWarmStart]) -> Union[str, torch.Tensor]:
    """What :func:`invert` starts from: ``init`` itself for ``random``/``mean``, else the encoder's latents ``(N, D)``."""
    if init in ("random", "mean"):
        return init
    if init != "encoder":
        raise InvcompError(f"unknown init {init!r}; use encoder, mean or random")
    return predict_latents(require_warm_start(gen, encoder).module, target)


def require_warm_start(gen: LoadedGenerator, encoder: Optional[LoadedWarmStart]) -> LoadedWarmStart:
    """``encoder``, checked against ``gen``; a clear error when there is none (``--init encoder``)."""
    if encoder is None:
        raise InvcompError(f"model {gen.name!r} has no encoder; train one with `invcomp train encoder`, pass --encoder, "
                           "or use --init random")
    check_warm_start(encoder, gen)
    return encoder


def encode_latents(
    gen: LoadedGenerator, z: torch.Tensor, images: list[Image.Image], settings: EncodeSettings, *,
    target: Optional[torch.Tensor] = None, extra: Optional[list[dict]] = None,
) -> list[Encoded]:
    """Quantise and code given float latents ``z`` ``(N, D)`` of ``images`` (no search): the second half of
    :func:`encode_batch`, also used to quantise a float latent after the fact (the seeds' post-hoc QSGD)."""
    cfg = gen.config
    levels_for_bits(settings.bits)
    if z.shape != (len(images), cfg.latent_dim):
        raise ValueError(f"latents must be ({len(images)}, {cfg.latent_dim}), got {tuple(z.shape)}")
    if target is None:
        target = torch.stack([prepare(im, cfg.resolution, settings.fit) for im in images])
    z = z.detach().cpu()
    rows = [quantize(z[i:i + 1], settings.bits, scaling=settings.scaling, rounding=settings.rounding,
                     seed=settings.seed) for i in range(len(images))]  # per row: stochastic rounding is batch-independent
    q = replace(rows[0], levels=torch.cat([r.levels for r in rows]), norm=torch.cat([r.norm for r in rows]))
    if cfg.norm_free:  # G(c z) = G(z): store no norm; both sides dequantise with the same fixed one
        q = replace(q, norm=torch.full_like(q.norm, norm_free_norm(cfg.latent_dim)))
    device = next(gen.module.parameters()).device
    with torch.no_grad():
        recon = gen.module(dequantize(q).to(device)).cpu().clamp(-1, 1)
    out = []
    for i, im in enumerate(images):
        levels = [int(v) for v in q.levels[i]]
        coder = elias.best_coder(levels) if settings.coder == "auto" else settings.coder
        payload, nbits = elias.encode_levels(levels, coder)
        header = bitstream.Header(
            model_id=gen.model_id, latent_dim=cfg.latent_dim, resolution=cfg.resolution, width=im.width,
            height=im.height, bits=settings.bits, coder=coder, norm=None if cfg.norm_free else float(q.norm[i]),
            scaling=settings.scaling,
            rounding=settings.rounding, prior=cfg.prior, fit=settings.fit,
        )
        out.append(Encoded(bitstream.pack(header, payload, nbits), header, target[i], recon[i], z[i], q.levels[i],
                           dict(extra[i]) if extra else {}))
    return out


def norm_free_norm(latent_dim: int) -> float:
    """The norm used for norm-free latents (not stored): sqrt(D), the typical norm of N(0, I)."""
    return math.sqrt(latent_dim)


def parse(data: bytes) -> tuple[bitstream.Header, QuantizedLatent]:
    """``.ivc`` bytes -> header and quantised latent ``(1, D)``; raises :class:`BitstreamError`.

    A norm-free file (``header.norm is None``) gets :func:`norm_free_norm`.
    """
    header, payload, nbits = bitstream.unpack(data)
    s = levels_for_bits(header.bits)
    levels = elias.decode_levels(payload, nbits, header.latent_dim, header.coder, s)
    norm = norm_free_norm(header.latent_dim) if header.norm is None else header.norm
    q = QuantizedLatent(levels=torch.tensor([levels], dtype=torch.int64), norm=torch.tensor([norm]),
                        bits=header.bits, scaling=header.scaling, rounding=header.rounding)
    return header, q


def check_model(header: bitstream.Header, gen: LoadedGenerator) -> None:
    """Refuse to decode with a generator other than the one that encoded, or a file of another mode."""
    if header.mode != bitstream.MODE_INVERSION:
        raise BitstreamError(f"this is a VAE-GAN (mode {header.mode}) file, not GAN inversion (mode 0); decode it with "
                             "its VAE-GAN model")
    if header.model_id != gen.model_id:
        raise UnknownModelError(
            f"bitstream needs model id {header.model_id.hex()}, but {gen.name!r} has id {gen.model_id.hex()}; "
            "see `invcomp models`"
        )
    if header.latent_dim != gen.config.latent_dim or header.resolution != gen.config.resolution:
        raise BitstreamError("bitstream latent size or resolution does not match its model")
    if header.norm is None and not gen.config.norm_free:
        raise BitstreamError(f"bitstream stores no latent norm, but model {gen.name!r} is not norm-free")


def decode(data: bytes, gen: LoadedGenerator) -> tuple[bitstream.Header, torch.Tensor]:
    """``.ivc`` bytes -> header and the model-resolution reconstruction ``(3, R, R)`` in [-1, 1]."""
    header, q = parse(data)
    check_model(header, gen)
    device = next(gen.module.parameters()).device
    with torch.no_grad():
        x = gen.module(dequantize(q).to(device)).cpu().clamp(-1, 1)[0]
    return header, x


def to_output_image(recon: torch.Tensor, header: bitstream.Header, native: bool = False) -> Image.Image:
    """The decoded picture: the original width x height by default, or the model resolution."""
    img = to_pil(recon)
    return img if native else restore_size(img, header.width, header.height, header.fit)  # type: ignore[arg-type]


def stored_pixels(recon: torch.Tensor) -> torch.Tensor:
    """What a native-resolution PNG of ``recon`` holds (8-bit rounded), for honest metrics."""
    return quantize_pixels(recon)


ProgressFn = Callable[[int], None]
