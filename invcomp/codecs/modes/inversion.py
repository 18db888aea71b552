"""Mode 0, GAN inversion: search the latent z of a frozen generator G whose G(z) matches the image.

The symbols are the latent ``(D,)``; the search (:func:`invcomp.search.inversion.invert`) starts from a warm-start
network's guess (:mod:`invcomp.nets.warmstart`), the prior's mean or a seeded random draw. Decoding is one pass
of G. Files of norm-free generators (``G(c z) = G(z)``) store no norm.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Iterable, Optional, Union

import torch

from invcomp.formats import ivc as bitstream
from invcomp.search import tone
from invcomp.errors import InvcompError
from invcomp.zoo import registry
from invcomp.search.inversion import QuantSpec, invert
from invcomp.search.losses import LossFn, make_loss
from invcomp.coding.tables import soft_rate_bits
from invcomp.coding.quantize import dequantize, levels_for_bits
from invcomp.nets.warmstart import LoadedWarmStart, load_warm_start, predict_latents
from invcomp.zoo.warmstart import check_warm_start, shipped_warm_start
from invcomp.codecs import entropy
from invcomp.codecs.base import Codec, Progress
from invcomp.codecs.settings import EncodeSettings, resolve_search
from invcomp.codecs.registry import register_mode


@register_mode
class InversionCodec(Codec):
    """GAN inversion with generator ``gen`` (a :class:`~invcomp.zoo.registry.LoadedGenerator`) and, for
    ``init="encoder"``, the warm-start network ``warm_start`` trained for it."""

    mode = bitstream.MODE_INVERSION
    mode_key = "inversion"
    title = "GAN-inversion"
    searches = True

    def __init__(self, gen: registry.LoadedGenerator, settings: Optional[EncodeSettings] = None,
                 warm_start: Optional[LoadedWarmStart] = None) -> None:
        if warm_start is not None:
            check_warm_start(warm_start, gen)
        tables, id_v2 = registry.entropy_tables(gen.name, gen.sha256, gen.config_sha256)
        s = resolve_search(settings or EncodeSettings(), has_warm_start=warm_start is not None,
                           has_prior=tables is not None)
        if s.init == "encoder" and warm_start is None:
            raise InvcompError(f"model {gen.name!r} has no warm-start network; train one with "
                               "`invcomp train warm-start`, or start from init 'random'")
        cfg = gen.config
        super().__init__(name=gen.name, model_id=gen.model_id, resolution=cfg.resolution, latent_dim=cfg.latent_dim,
                         settings=s, prior=cfg.prior, norm_free=cfg.norm_free, tables=tables,
                         model_id_v2=id_v2)
        self.gen = gen
        self.warm_start = warm_start if s.init == "encoder" else None

    @classmethod
    def load(cls, spec: str, settings: Optional[EncodeSettings] = None, *, device: str = "cpu",
             for_decode: bool = False, weights: Optional[str] = None, warm_start: Optional[str] = None,
             **options: Any) -> "InversionCodec":
        """``spec``: a registered or user-registered name, a DCGAN/PGAN ``.pt`` state_dict, a TorchScript file or
        ``file.py:factory`` (which runs that file's code). ``weights``: a state_dict for a user model.
        ``warm_start``: a warm-start network ``.pt``; else the registry's for this model (unless init says
        otherwise)."""
        if "channels" in options:
            raise InvcompError("a channel count applies only to the VAE-GAN mode (--mode vaegan)")
        if options:
            raise InvcompError(f"{', '.join(sorted(options))} do not apply to the GAN-inversion mode")
        gen = registry.load_generator(spec, device, weights)
        settings = settings or EncodeSettings()
        ws = None
        if warm_start is not None:
            ws = load_warm_start(warm_start, device)  # a wrong network is refused whatever the init
        elif not for_decode and (settings.init or "auto") in ("auto", "encoder"):
            ws = shipped_warm_start(gen, device)
        if for_decode:
            return cls(gen, EncodeSettings(init="random"), None)
        return cls(gen, settings, ws)

    @classmethod
    def claims(cls, spec: str) -> bool:
        return True  # the default mode: anything another mode does not claim is a generator spec

    @property
    def device(self) -> torch.device:
        return next(self.gen.module.parameters()).device

    def work(self, n_images: int) -> int:
        return n_images * max(self.settings.iters or 0, 1)  # iters is resolved at load (never None here)

    def describe(self) -> dict[str, Any]:
        s = self.settings
        return {**super().describe(), "iters": s.iters, "init": s.init, "loss": s.loss, "restarts": s.restarts,
                "patience": s.patience}

    def start(self, target: torch.Tensor) -> Union[str, torch.Tensor]:
        """What the search starts from: ``"random"``/``"mean"``, or the warm-start latents ``(N, D)``."""
        if self.settings.init != "encoder":
            return self.settings.init  # type: ignore[return-value]
        assert self.warm_start is not None
        return predict_latents(self.warm_start.module, target)

    def find_symbols(self, target: torch.Tensor, progress: Optional[Progress],
                     init: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, list[dict]]:
        """Search each image on its own (its restarts batched together), one image per CPU thread.

        Batched convolutions do not give bit-identical rows for every batch size, and 200 Adam steps amplify
        the last bit into another latent. So each image's search runs alone, single-threaded, and the images
        of a call run side by side on up to ``torch.get_num_threads()`` threads: its file does not depend on
        the other images in the call, on its position or on ``--batch-size``.
        """
        n = target.shape[0]
        workers = max(1, min(n, torch.get_num_threads()))
        if self.device.type != "cpu":
            return self._search_rows(target, range(n), progress, init)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            if workers == 1:
                return self._search_rows(target, range(n), progress, init)
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(lambda i: self._search_rows(target, [i], progress, init), range(n)))
        finally:
            torch.set_num_threads(threads)
        return torch.cat([z for z, _ in parts]), [e for _, ex in parts for e in ex]

    def quant_spec(self) -> Optional[QuantSpec]:
        """The quantiser (and, in a version-2 file, the rate under the prior) that the search's last phase sees."""
        s = self.settings
        if not s.quant_aware:
            return None
        if entropy.container(self) != 2:
            return QuantSpec(s.bits, s.scaling)  # type: ignore[arg-type]
        prior, nearest = self.tables, replace(s, rounding="nearest")
        levels = levels_for_bits(s.bits)  # type: ignore[arg-type]

        def quantise(z: torch.Tensor) -> torch.Tensor:
            q = entropy.quantise_rows(z.cpu(), nearest, norm_free=self.norm_free, prior=prior)
            return dequantize(q)

        def rate(z: torch.Tensor) -> torch.Tensor:
            if prior.scaling == "max":  # type: ignore[union-attr]
                norm = z.abs().amax(dim=1, keepdim=True).clamp(min=1e-8)
            else:  # norm-free models too: their levels are of the direction
                norm = z.norm(dim=1, keepdim=True).clamp(min=1e-8)
            return soft_rate_bits(z * levels / norm, s.bits, prior).to(z.dtype)  # type: ignore[arg-type]

        return QuantSpec(s.bits, s.scaling, quantise=quantise, rate=rate, rate_weight=s.rate_weight or 0.0)  # type: ignore[arg-type]

    def _search_rows(self, target: torch.Tensor, rows: Iterable[int], progress: Optional[Progress],
                     init: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, list[dict]]:
        s, zs, extras = self.settings, [], []
        quant = self.quant_spec()
        for i in rows:
            x = target[i:i + 1]
            res = invert(
                self.gen.module, x, loss=self.search_loss(), iters=s.iters, lr=s.lr, restarts=s.restarts,  # type: ignore[arg-type]
                init=self.start(x) if init is None else init[i:i + 1], prior=self.prior, norm_weight=s.norm_weight,
                quant=quant,
                quant_fraction=s.quant_fraction, seed=s.seed, patience=s.patience or None,
                callback=(lambda *_: progress(1)) if progress is not None else None,
            )
            saved = (s.iters or 0) - int(res.steps.max()) if res.steps is not None else 0
            if progress is not None and saved > 0:
                progress(saved)  # the steps early stopping saved
            if progress is not None and s.iters == 0:
                progress(1)
            zs.append(res.z)
            extras.append({"float_loss": float(res.float_loss[0]), "loss": float(res.loss[0]),
                           "steps": s.iters if res.steps is None else int(res.steps[0])})
        return torch.cat(zs), extras

    def search_loss(self) -> Union[str, LossFn]:
        """What the search minimises per row: the ``loss`` setting."""
        return self.settings.loss  # type: ignore[return-value]

    def synthesise(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.gen.module(z.to(self.device)).cpu().clamp(-1, 1)


@register_mode
class ToneInversionCodec(InversionCodec):
    """Mode 2: GAN inversion plus a per-image colour and tone correction (:mod:`invcomp.search.tone`, an 8-byte side
    record after the norm). The search scores G(z) after the correction that best matches the target, so G
    only has to draw the face, not its white balance, exposure or saturation; the stored correction is then
    fitted to the quantised latent's picture. Same models, ids and priors as mode 0."""

    mode = bitstream.MODE_INVERSION_TONE
    mode_key = "inversion-tone"
    title = "GAN-inversion+tone"
    side_bytes = tone.BYTES

    @classmethod
    def claims(cls, spec: str) -> bool:
        return False  # asked for by --mode only

    @classmethod
    def sharing(cls, codec: InversionCodec) -> "ToneInversionCodec":  # type: ignore[override]
        """The tone mode over the generator, warm-start network and resolved settings of a loaded mode-0 codec
        (nothing loaded or resolved again)."""
        out = cls.__new__(cls)
        out.__dict__.update(codec.__dict__)
        return out

    def search_loss(self) -> Union[str, LossFn]:
        loss = self.settings.loss
        base: LossFn = make_loss(loss) if isinstance(loss, str) else loss  # type: ignore[assignment]

        def toned(x_hat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return base(tone.matched(x_hat, target), target)

        return toned

    def side_info(self, recon: torch.Tensor, target: torch.Tensor) -> bytes:
        return tone.pack(tone.fit(recon[None].float(), target[None].float())[0])

    def finish(self, recon: torch.Tensor, side: bytes) -> torch.Tensor:
        return tone.apply(recon, tone.unpack(side)[None].expand(recon.shape[0], 3, 3))
