"""Mode 1, VAE-GAN: one analysis pass to a C x h x w code map, no search; decoding is one synthesis pass.

The symbols are the mean code map flattened in (C, h, w) order; ``latent_dim`` in the header holds their
count C*h*w, the model id is that of the VAE-GAN weights file, the norm is always stored, rounding is
nearest and the prior field says ``normal`` (the VAE prior).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from invcomp.formats import ivc as bitstream
from invcomp.errors import InvcompError
from invcomp.zoo import registry
from invcomp.nets.vaegan import LoadedVAEGAN
from invcomp.codecs.base import Codec, Progress
from invcomp.codecs.settings import EncodeSettings, resolve_one_pass
from invcomp.codecs.registry import register_mode


@register_mode
class VAEGANCodec(Codec):
    """A VAE-GAN codec (:class:`~invcomp.nets.vaegan.LoadedVAEGAN`); ``bits`` and ``scaling`` default to the model's."""

    mode = bitstream.MODE_VAEGAN
    mode_key = "vaegan"
    title = "VAE-GAN"

    def __init__(self, model: LoadedVAEGAN, settings: Optional[EncodeSettings] = None) -> None:
        cfg = model.config
        s = resolve_one_pass(settings or EncodeSettings(), bits=cfg.bits, scaling=cfg.scaling, mode=self.title)
        tables, id_v2 = registry.entropy_tables(model.name, model.sha256, model.config_sha256)
        super().__init__(name=model.name, model_id=model.model_id, resolution=cfg.resolution, latent_dim=cfg.symbols,
                         settings=s, prior="normal", norm_free=False, tables=tables, model_id_v2=id_v2)
        self.model = model

    @classmethod
    def load(cls, spec: Optional[str], settings: Optional[EncodeSettings] = None, *, device: str = "cpu",
             for_decode: bool = False, channels: Optional[int] = None, **options: Any) -> "VAEGANCodec":
        """``spec``: a registered VAE-GAN name or a ``vaegan.pt`` with its ``.json`` beside it; with ``spec``
        ``None``, ``channels`` C picks the registered ``vaegan-utkface64-cC``."""
        given = sorted(k for k, v in options.items() if v is not None)
        if given:
            raise InvcompError(f"{', '.join(given)} do not apply to the VAE-GAN mode")
        if spec is None:
            if channels is None:
                raise InvcompError("the VAE-GAN mode needs a model or a channel count C (CLI: --channels C)")
            spec = f"vaegan-utkface64-c{channels}"
        model = registry.load_vaegan_model(spec, device)
        if channels is not None and model.config.channels != channels:
            raise InvcompError(f"model {model.name!r} codes {model.config.channels} channels, not {channels}")
        return cls(model, None if for_decode else settings)

    @classmethod
    def claims(cls, spec: str) -> bool:
        entry = {e.name: e for e in registry.list_models()}.get(spec)
        if entry is not None:
            return entry.kind == "vaegan"
        return Path(spec).is_file() and registry.is_vaegan_config(Path(spec).with_suffix(".json"))

    def describe(self) -> dict[str, Any]:
        cfg = self.model.config
        return {**super().describe(), "channels": cfg.channels, "symbols": cfg.symbols}

    def find_symbols(self, target: torch.Tensor, progress: Optional[Progress]) -> tuple[torch.Tensor, list[dict]]:
        rows = []
        with torch.no_grad():  # one image at a time: a batched conv's rows are not bit-identical for every batch size
            for i in range(target.shape[0]):
                mean, _ = self.model.analysis(target[i:i + 1].to(self.model.device))
                rows.append(mean.flatten(1).cpu())
                if progress is not None:
                    progress(1)
        return torch.cat(rows), [{"symbols": self.latent_dim} for _ in range(target.shape[0])]

    def synthesise(self, z: torch.Tensor) -> torch.Tensor:
        cfg = self.model.config
        with torch.no_grad():
            x = self.model.synthesis(z.view(-1, cfg.channels, cfg.code_side, cfg.code_side).to(self.model.device))
        return x.clamp(-1, 1).cpu()
