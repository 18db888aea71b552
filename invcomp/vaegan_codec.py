"""Image <-> ``.ivc`` bytes for the VAE-GAN mode (mode 1): one encoder pass, QSGD, Elias, the container.

The file layout is the inversion mode's (:mod:`invcomp.bitstream`) with the
mode bits set to 1; ``latent_dim`` holds the number of coded symbols C*h*w
(the mean code map flattened in C, h, w order), the model id is that of the
VAE-GAN weights file, the norm is the per-image float16 QSGD norm, rounding
is nearest and the prior field says ``normal`` (the VAE prior). No file I/O here.
"""
from __future__ import annotations

import torch
from PIL import Image

from . import bitstream, elias
from .bitstream import MODE_INVERSION, MODE_VAEGAN
from .codec import Encoded, prepare
from .errors import BitstreamError, InvcompError, UnknownModelError
from .quantize import QuantizedLatent, dequantize, levels_for_bits
from .vaegan import LoadedVAEGAN, quantize_code

_MODE_NAMES = {MODE_INVERSION: "GAN-inversion", MODE_VAEGAN: "VAE-GAN"}


def mode_name(mode: int) -> str:
    """Human name of a bitstream mode: ``GAN-inversion (mode 0)``, ``VAE-GAN (mode 1)``, ``unknown (mode 5)``."""
    return f"{_MODE_NAMES.get(mode, 'unknown')} (mode {mode})"


def read_mode(data: bytes) -> int:
    """The mode of ``.ivc`` bytes (after full validation by :func:`invcomp.bitstream.unpack`), for CLI dispatch."""
    return bitstream.unpack(data)[0].mode


def encode_vaegan(model: LoadedVAEGAN, images: list[Image.Image], *, bits: int | None = None, coder: str = "auto",
                  fit: str = "crop") -> list[Encoded]:
    """Encode RGB images with one batched analysis pass; per image an :class:`~invcomp.codec.Encoded` with the
    ``.ivc`` bytes, header, target and reconstruction ``(3, R, R)`` in [-1, 1], the mean code ``(C*h*w,)`` and
    its levels ``(C*h*w,)``. ``bits`` defaults to the model's; ``coder="auto"`` picks the shortest Elias code."""
    cfg = model.config
    bits = cfg.bits if bits is None else bits
    levels_for_bits(bits)
    if coder not in ("auto", *elias.CODERS):
        raise InvcompError(f"unknown coder {coder!r}; use auto, gamma, delta or omega")
    if fit not in ("crop", "squash"):
        raise InvcompError(f"unknown fit {fit!r}; use crop or squash")
    if not images:
        return []
    device = model.device
    target = torch.stack([prepare(im, cfg.resolution, fit) for im in images])
    with torch.no_grad():
        mean, _ = model.analysis(target.to(device))
        q, zhat = quantize_code(mean, bits, cfg.scaling)
        recon = model.synthesis(zhat).clamp(-1, 1).cpu()
    flat = mean.flatten(1).cpu()
    out = []
    for i, im in enumerate(images):
        levels = [int(v) for v in q.levels[i]]
        chosen = elias.best_coder(levels) if coder == "auto" else coder
        payload, nbits = elias.encode_levels(levels, chosen)
        header = bitstream.Header(
            model_id=model.model_id, latent_dim=cfg.symbols, resolution=cfg.resolution, width=im.width,
            height=im.height, bits=bits, coder=chosen, norm=float(q.norm[i]), scaling=cfg.scaling,
            rounding="nearest", prior="normal", fit=fit, mode=MODE_VAEGAN,
        )
        out.append(Encoded(bitstream.pack(header, payload, nbits), header, target[i], recon[i], flat[i], q.levels[i],
                           {"mode": MODE_VAEGAN, "symbols": cfg.symbols}))
    return out


def check_vaegan_model(header: bitstream.Header, model: LoadedVAEGAN) -> None:
    """Refuse a header that is not a mode-1 file of this VAE-GAN (mode, model id, symbol count, resolution, norm)."""
    if header.mode != MODE_VAEGAN:
        raise BitstreamError(f"this is a {mode_name(header.mode)} file, not VAE-GAN; decode it with its generator")
    if header.model_id != model.model_id:
        raise UnknownModelError(
            f"VAE-GAN bitstream needs model id {header.model_id.hex()}, but {model.name!r} has id {model.model_id.hex()}"
        )
    cfg = model.config
    if header.latent_dim != cfg.symbols:
        raise BitstreamError(f"VAE-GAN bitstream holds {header.latent_dim} symbols, but {model.name!r} codes "
                             f"{cfg.channels}x{cfg.code_side}x{cfg.code_side} = {cfg.symbols}")
    if header.resolution != cfg.resolution:
        raise BitstreamError(f"VAE-GAN bitstream resolution {header.resolution} does not match {model.name!r} "
                             f"({cfg.resolution})")
    if header.norm is None:
        raise BitstreamError("VAE-GAN bitstream stores no norm; VAE-GAN files always carry one")


def parse_vaegan(data: bytes, model: LoadedVAEGAN) -> tuple[bitstream.Header, QuantizedLatent]:
    """``.ivc`` bytes -> header and quantised code ``(1, C*h*w)``, checked against ``model``."""
    header, payload, nbits = bitstream.unpack(data)
    check_vaegan_model(header, model)
    levels = elias.decode_levels(payload, nbits, header.latent_dim, header.coder, levels_for_bits(header.bits))
    q = QuantizedLatent(levels=torch.tensor([levels], dtype=torch.int64), norm=torch.tensor([header.norm]),
                        bits=header.bits, scaling=header.scaling, rounding=header.rounding)
    return header, q


def decode_vaegan(data: bytes, model: LoadedVAEGAN) -> tuple[bitstream.Header, torch.Tensor]:
    """``.ivc`` bytes (mode 1) -> header and the model-resolution reconstruction ``(3, R, R)`` in [-1, 1]."""
    header, q = parse_vaegan(data, model)
    cfg = model.config
    z = dequantize(q).view(1, cfg.channels, cfg.code_side, cfg.code_side).to(model.device)
    with torch.no_grad():
        x = model.synthesis(z).clamp(-1, 1).cpu()[0]
    return header, x
