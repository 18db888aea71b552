"""The learned residual layer of the layered mode and of the detail layer: a conditional, variable-rate transform coder
(CompressAI's layer shapes, :mod:`invcomp.nets.layers`; CompressAI itself is needed only to train it).

It codes what the lower layers of a layered file (:mod:`invcomp.codecs.modes.layered`) got wrong, at the output
resolution, and is conditioned on their decoded picture ``base`` ``(N, 3, H, W)`` at both ends:

- the **encoder** ``g_a`` sees the image and the base side by side (and the stage plane, below) and maps them to a latent
  ``y`` ``(N, M, H/16, W/16)``;
- the **entropy model** is a Gaussian conditional (CompressAI's, :mod:`invcomp.coding.gaussian` codes with its
  tables without CompressAI), whose means and scales are predicted from the base alone (``c_a``), which the decoder
  has too: no hyperprior and no side stream, so a layer costs only its symbols plus the rANS coder's flush;
- the **decoder** ``g_s`` upsamples ``y_hat`` together with the base's features to a picture, and ``fuse``
  turns that picture and the base into the correction at full resolution: ``x_hat = base + fuse(g_s(...), base)``.

**Start.** ``g_a`` and ``g_s`` have the layer shapes of CompressAI's ``mbt2018-mean`` (plus extra input channels),
so training starts from a trained peer's transforms (:func:`init_from_peer`): the encoder sees the image as that
peer does, the base-dependent inputs start at zero, and ``fuse`` learns how to combine the two pictures.

**Rates.** One network serves ``rates`` operating points through per-rate channel gains (Cui et al. 2021,
"Asymmetric gained deep image compression"): ``y`` is multiplied by ``gain[r]`` before rounding (and the
predicted means and scales with it) and ``y_hat`` by ``inv_gain[r]`` after. Between two trained rates the log
gains are interpolated (their continuous rate adaptation). The rate is the layer's rate parameter, stored in
the file (in quarter steps, :mod:`invcomp.codecs.modes.layered`).

**Stages.** A residual layer over another residual layer's picture (a second layer) gets ``stage`` 1, a
constant input plane: its base is already sharp, and it must not sharpen it again (trained with chained passes).

**Sizes.** It is fully convolutional and trained on crops, so any size that is a multiple of 16 works
(others are padded by edge replication and cropped back), e.g. the 64- and 128-px faces.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from invcomp.coding import rans
from invcomp.errors import InvcompError
from invcomp.files import load_state_dict, sha256_file

DEFAULT_RESIDUAL = "residual-utkface"
EXTRA = "pip install invcomp[peers]  (CompressAI: only to train the network)"
STRIDE = 16
SCALE_BOUND = 0.11  # CompressAI's default lower bound on the Gaussian scales


def _modules(N: int, M: int) -> dict[str, nn.Module]:
    from invcomp.nets.layers import GDN, conv, deconv

    return {
        "g_a": nn.Sequential(conv(7, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M)),
        "c_a": nn.Sequential(conv(4, N), nn.LeakyReLU(0.1), conv(N, N), nn.LeakyReLU(0.1), conv(N, N),
                             nn.LeakyReLU(0.1), conv(N, N)),
        "params": nn.Sequential(nn.Conv2d(N, N, 1), nn.LeakyReLU(0.1), nn.Conv2d(N, 2 * M, 1)),
        "g_s": nn.Sequential(deconv(M + N, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
                             deconv(N, N), GDN(N, inverse=True), deconv(N, 3)),
        "fuse": nn.Sequential(nn.Conv2d(6 + 1, N, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(N, N, 3, padding=1),
                              nn.LeakyReLU(0.1), nn.Conv2d(N, 3, 3, padding=1)),
    }


class ResidualCoder(nn.Module):
    """The residual layer's network; images are in [0, 1]. See the module doc.

    ``N`` channels inside, ``M`` latent channels, ``rates`` operating points.
    """

    def __init__(self, N: int = 32, M: int = 48, rates: int = 8) -> None:
        super().__init__()
        self.N, self.M, self.rates = N, M, rates
        for name, module in _modules(N, M).items():
            self.add_module(name, module)
        with torch.no_grad():  # a small correction at first (zero would block every gradient behind it)
            self.fuse[-1].weight.mul_(0.1)
            self.fuse[-1].bias.zero_()
        start = torch.linspace(math.log(0.5), math.log(4.0), rates)[:, None].expand(rates, M)  # finer steps up the rates
        self.log_gain = nn.Parameter(start.clone())
        self.log_inv_gain = nn.Parameter(-start.clone())

    @property
    def gaussian(self) -> Any:
        """CompressAI's ``GaussianConditional``, built on first use: training's likelihoods (and the tables it builds
        in :meth:`update`). Coding and decoding do not use it (:mod:`invcomp.coding.gaussian`), so they need no
        CompressAI."""
        if "gaussian" not in self._modules:
            from compressai.entropy_models import GaussianConditional

            self._modules["gaussian"] = GaussianConditional(None, scale_bound=SCALE_BOUND)  # (add_module would ask the property)
        return self._modules["gaussian"]

    def config(self) -> dict[str, int]:
        return {"N": self.N, "M": self.M, "rates": self.rates}

    # --- pieces ----------------------------------------------------------------------------------------
    def _gains(self, rate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row gains ``(N, M, 1, 1)`` and inverse gains for rate positions ``rate`` ``(N,)``: an integer is a
        trained rate; a fraction between two interpolates their log gains (Cui et al.'s continuous rates)."""
        r = rate.float().clamp(0, self.rates - 1)
        lo = r.floor().long()
        hi, t = (lo + 1).clamp(max=self.rates - 1), (r - lo.float())[:, None]
        gain = ((1 - t) * self.log_gain[lo] + t * self.log_gain[hi]).exp()
        inv = ((1 - t) * self.log_inv_gain[lo] + t * self.log_inv_gain[hi]).exp()
        return gain[..., None, None], inv[..., None, None]

    def context(self, base: torch.Tensor, rate: torch.Tensor, stage: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Base ``(N, 3, H, W)`` -> its features ``(N, N, H/16, W/16)``, and the gained means and scales of ``y``."""
        h = self.c_a(with_stage(base, stage))
        means, scales = self.params(h).chunk(2, dim=1)
        gain = self._gains(rate)[0]
        return h, means * gain, F.softplus(scales) * gain

    def synthesise(self, y_hat: torch.Tensor, h: torch.Tensor, base: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
        """Gained symbols ``y_hat`` and the base's features -> the reconstruction ``(N, 3, H, W)``."""
        pic = self.g_s(torch.cat([y_hat * self._gains(rate)[1], h], dim=1))
        return base + self.fuse(torch.cat([pic, with_stage(base, rate.new_zeros(rate.shape[0]))], dim=1))

    # --- training --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, base: torch.Tensor, rate: torch.Tensor,
                stage: Optional[torch.Tensor] = None) -> dict[str, Any]:
        """Noisy-quantisation pass for training: ``x_hat`` and the likelihoods of ``y`` (both per pixel / symbol).
        ``x``, ``base`` ``(N, 3, H, W)`` with H, W multiples of 16; ``rate`` ``(N,)`` indices; ``stage`` ``(N,)``:
        0 over the lower layers' picture, 1 over an earlier residual layer's (default 0)."""
        stage = torch.zeros_like(rate) if stage is None else stage
        h, means, scales = self.context(base, rate, stage)
        y = self.g_a(torch.cat([x, with_stage(base, stage)], dim=1)) * self._gains(rate)[0]
        y_hat, likelihoods = self.gaussian(y, scales, means=means)
        return {"x_hat": self.synthesise(y_hat, h, base, rate), "likelihoods": likelihoods}

    # --- coding ----------------------------------------------------------------------------------------
    def compress(self, x: torch.Tensor, base: torch.Tensor, rate: float, stage: int = 0) -> tuple[bytes, torch.Tensor]:
        """One image ``x`` ``(1, 3, H, W)`` over ``base`` at rate index ``rate`` (``stage`` as in :meth:`forward`) ->
        the layer's bytes and the decoder's reconstruction ``(1, 3, H, W)`` in [0, 1] (what :meth:`decompress` gives)."""
        from invcomp.coding import gaussian

        x, base, (hh, ww) = pad(x), pad(base), x.shape[-2:]
        r, st = torch.tensor([rate]), torch.tensor([stage])
        h, means, scales = self.context(base, r, st)
        y = self.g_a(torch.cat([x, with_stage(base, st)], dim=1)) * self._gains(r)[0]
        data = gaussian.compress(y, scales, means)
        y_hat = gaussian.dequantize(gaussian.symbols(y, means), means)
        return data, finite(self.synthesise(y_hat, h, base, r))[..., :hh, :ww]

    def decompress(self, data: bytes, base: torch.Tensor, rate: float, stage: int = 0) -> torch.Tensor:
        """The layer's bytes over ``base`` ``(1, 3, H, W)`` -> the reconstruction ``(1, 3, H, W)`` in [0, 1].

        The bytes come from a file: they are decoded by :func:`decode_symbols` (bounds-checked, refusing any stream
        that is not the canonical code of the layer's symbols), never by CompressAI's unchecked decoder."""
        from invcomp.coding import gaussian

        hh, ww = base.shape[-2:]
        base, r, st = pad(base), torch.tensor([rate]), torch.tensor([stage])
        h, means, scales = self.context(base, r, st)
        y_hat = gaussian.decompress(data, scales, means, "the residual layer's stream")
        return finite(self.synthesise(y_hat, h, base, r))[..., :hh, :ww]

    def update(self) -> None:
        """Build the entropy coder's tables (CompressAI's default scale table)."""
        from compressai.models.google import get_scale_table

        self.gaussian.update_scale_table(get_scale_table(), force=True)


def entropy_tables(gaussian: Any) -> "rans.Tables":
    """The Gaussian conditional's CDF tables, checked, as :mod:`invcomp.coding.rans` decodes with them (cached until
    :meth:`ResidualCoder.update` builds new ones)."""
    cdf, lengths, offsets = gaussian._quantized_cdf, gaussian._cdf_length, gaussian._offset
    key = (id(cdf), cdf._version, id(lengths), id(offsets))
    cached = getattr(gaussian, "_invcomp_tables", None)
    if cached is None or cached[0] != key:
        if cdf.numel() == 0:
            raise InvcompError("the residual network's entropy tables are not built (run update())")
        cached = (key, rans.tables(cdf.tolist(), lengths.reshape(-1).tolist(), offsets.reshape(-1).tolist()))
        gaussian._invcomp_tables = cached
    return cached[1]


def decode_symbols(gaussian: Any, data: bytes, indexes: torch.Tensor) -> torch.Tensor:
    """A residual layer's rANS stream -> its symbols, shaped as ``indexes`` (int32, what CompressAI's
    ``decompress`` dequantises), by :func:`invcomp.coding.rans.decode`: every index checked against the CDF tables, the
    stream's length against the fewest bytes its symbols can take, every read against the stream's end, and the
    stream against the canonical code of what it decoded. A layer that fails is a one-line
    :class:`~invcomp.errors.BitstreamError`."""
    values = rans.decode(bytes(data), indexes.reshape(-1).tolist(), entropy_tables(gaussian), "the residual layer's stream")
    return torch.tensor(values, dtype=torch.int32).reshape(indexes.shape)


def init_from_peer(model: ResidualCoder, peer: nn.Module) -> None:
    """Copy a CompressAI ``mbt2018-mean``/``bmshj2018-hyperprior`` model's ``g_a`` and ``g_s`` (same N and M) into
    ``model``; the input channels that the peer lacks (the base, the stage; the base's features into ``g_s``) start
    at zero."""
    own, theirs = model.state_dict(), peer.state_dict()
    with torch.no_grad():
        for k, v in theirs.items():
            if not (k.startswith("g_a.") or k.startswith("g_s.")) or k not in own:
                continue
            mine = own[k]
            if mine.shape == v.shape:
                mine.copy_(v)
            elif k == "g_a.0.weight":  # (N, 7, 5, 5) <- (N, 3, 5, 5)
                mine.zero_()
                mine[:, :3].copy_(v)
            elif k == "g_s.0.weight":  # transposed conv (M + N, N, 5, 5) <- (M, N, 5, 5)
                mine.zero_()
                mine[: v.shape[0]].copy_(v)
            else:
                raise ValueError(f"{k}: peer {tuple(v.shape)} does not fit {tuple(mine.shape)}")


def finite(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1], NaN to 0: a forged layer (valid CRC, garbage symbols) still decodes to a picture."""
    return torch.nan_to_num(x, nan=0.0).clamp(0, 1)


def with_stage(base: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` and stages ``(N,)`` -> ``(N, 4, H, W)``: the picture and a constant plane of its stage."""
    plane = stage.to(base.dtype)[:, None, None, None].expand(base.shape[0], 1, *base.shape[-2:])
    return torch.cat([base, plane], dim=1)


def pad(x: torch.Tensor) -> torch.Tensor:
    """Pad ``(N, C, H, W)`` by edge replication to multiples of :data:`STRIDE`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def bits(likelihoods: torch.Tensor) -> torch.Tensor:
    """Bits per row ``(N,)`` from symbol likelihoods ``(N, ...)``."""
    return -torch.log2(likelihoods.clamp(min=1e-9)).flatten(1).sum(1)


def rate_lambdas(rates: int, low: float, high: float) -> list[float]:
    """The distortion weights of the ``rates`` operating points, geometric from ``low`` to ``high``."""
    if rates == 1:
        return [high]
    return [low * math.exp(math.log(high / low) * i / (rates - 1)) for i in range(rates)]


@dataclass(frozen=True)
class Residual:
    """A loaded residual network: ``module`` (:class:`~invcomp.nets.residual.ResidualCoder`), its ``name``, ``key``
    (2 bytes of its weights' sha256: the layer CRCs' decoder key), ``base`` (the generator it was trained over)."""

    name: str
    module: Any
    key: bytes
    base: str
    rates: int


def residual_dir() -> Path:
    from invcomp.files import pretrained_dir

    return pretrained_dir() / "layered"


def load_residual(spec: str = DEFAULT_RESIDUAL) -> Residual:
    """A shipped residual network by name (``pretrained/layered/NAME.json``), or a ``.pt`` with its ``.json`` beside
    it; weights loaded with ``weights_only=True`` (fp16 stored, fp32 used), sha256-checked when the JSON has one."""
    path = Path(spec)
    cfg_path = path.with_suffix(".json") if path.suffix == ".pt" else residual_dir() / f"{spec}.json"
    if not cfg_path.is_file():
        raise InvcompError(f"no residual network {spec!r} (looked for {cfg_path})")
    cfg = json.loads(cfg_path.read_text())
    weights = path if path.suffix == ".pt" else cfg_path.parent / cfg["weights"]
    digest = sha256_file(weights)
    if cfg.get("sha256") and cfg["sha256"] != digest:
        raise InvcompError(f"{weights} does not match the sha256 in {cfg_path}")
    module = ResidualCoder(int(cfg["N"]), int(cfg["M"]), int(cfg["rates"]))
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_state_dict(str(weights)).items()
             if not k.startswith("gaussian.")}  # the entropy tables are rebuilt below
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise InvcompError(f"{weights} does not fit a residual network of its config: {str(e).splitlines()[-1].strip()}") from None
    module.eval()  # coding needs no tables here: they ship as data (invcomp.coding.gaussian)
    return Residual(cfg_path.stem if path.suffix != ".pt" else path.stem, module, bytes.fromhex(digest)[:2],
                    cfg.get("base", "dcgan-utkface64"), int(cfg["rates"]))
