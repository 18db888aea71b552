"""The upsampler trainer's options, the face cache, the degradations, the batches and the validation figures.

The cache is written by ``experiments/upsample_data.py``: for each face of a split (train, or val which scores
snapshots; held-out faces are never read) the 200-px crop Lanczos-resized to 256 (the target) and to 64 (what a
64-px codec is given), and a shipped VAE-GAN's reconstruction of the 64-px face (a real decoded base). A training
pair (:func:`sample_pairs`) is a random ``crop`` x ``crop`` crop of a 64-px input and the aligned ``4 crop`` x
``4 crop`` crop of its target (input pixel ``i`` covers target pixels ``4i .. 4i + 3`` exactly: both are resizes of
the same crop), flipped at random. The input is, per sample:

- with probability ``p_base``: the VAE-GAN base, further degraded (:func:`degrade`) with probability
  ``p_base_degrade``;
- otherwise the clean 64-px face, degraded with probability ``p_degrade``: Gaussian blur (sigma 0.4-1.6 px),
  a down-and-up resize (x0.5-0.9), Gaussian noise (std 0.005-0.04 in [-1, 1] units) and JPEG (quality 25-90),
  each drawn independently, in that order, on the whole 64-px picture before cropping;
- then, with probability ``p_colour``, input and target get the same per-channel gain (0.9-1.1) and offset
  (±0.05), so colour is varied but never something the network must guess.

All randomness comes from one ``torch.Generator``, so a resumed run draws the same batches.
"""
from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from invcomp.errors import InvcompError
from invcomp.metrics import hf_ratio
from invcomp.metrics import ms_ssim, psnr, ssim
from invcomp.nets.upsampler import UpsamplerConfig

SCALE = 4


@dataclass(frozen=True)
class UpsampleTrainConfig:
    """One run's options (model shape, data mix, losses, schedule). Written to ``OUT/config.json`` at each start."""

    data: str
    out: str
    width: int = 48
    blocks: int = 2
    context_width: int = 96
    context_blocks: int = 4
    up_widths: tuple[int, ...] = (32, 16)
    ndf: int = 16
    batch_size: int = 16
    crop: int = 32
    lr: float = 2e-4
    lr_d: float = 2e-4
    l1_weight: float = 1.0
    ssim_weight: float = 1.0
    adv_weight: float = 0.1
    fm_weight: float = 1.0
    adv_warmup: int = 1000
    clip: float = 1.0
    ema: float = 0.999
    p_base: float = 0.5
    p_degrade: float = 0.8
    p_base_degrade: float = 0.3
    p_colour: float = 0.5
    hf_weight: float = 0.1
    steps: Optional[int] = None
    minutes: Optional[float] = None
    checkpoint_minutes: float = 5.0
    log_every: int = 50
    eval_faces: int = 32
    limit: Optional[int] = None
    threads: int = 1
    seed: int = 0

    def model_config(self) -> UpsamplerConfig:
        return UpsamplerConfig(width=self.width, blocks=self.blocks, context_width=self.context_width,
                               context_blocks=self.context_blocks, up_widths=tuple(self.up_widths))



class FaceCache:
    """One split of the ``experiments/upsample_data.py`` cache, memory-mapped read-only.

    ``x256`` ``(N, 3, 256, 256)``, ``x64`` and ``base`` ``(N, 3, 64, 64)``, all uint8.
    """

    def __init__(self, root: str | Path, split: str, limit: int | None = None) -> None:
        root = Path(root)
        meta_path = root / f"{split}.json"
        if not meta_path.exists():
            raise InvcompError(f"no complete {split} cache in {root}: run experiments/upsample_data.py first")
        self.meta = json.loads(meta_path.read_text())
        n = int(self.meta["n"])
        sizes = self.meta["sizes"]
        self.arrays = {k: np.memmap(root / f"{split}_{k}.u8", dtype=np.uint8, mode="r", shape=(n, 3, r, r))
                       for k, r in sizes.items()}
        self.n = n if limit is None else min(n, limit)
        self.names: list[str] = self.meta["names"][: self.n]

    def take(self, kind: str, idx: Sequence[int]) -> torch.Tensor:
        """Whole pictures of ``kind`` for faces ``idx`` as float ``(len(idx), 3, R, R)`` in [-1, 1]."""
        return torch.from_numpy(np.stack([self.arrays[kind][i] for i in idx])).float() / 127.5 - 1.0


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of one picture ``(3, H, W)`` (replicate border)."""
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    y = F.pad(x[None], (r, r, r, r), mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)[0]


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip (4:2:0, Pillow) of one picture ``(3, H, W)`` in [-1, 1]."""
    arr = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=quality)
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"), dtype=np.float32)
    return torch.from_numpy(back).permute(2, 0, 1) / 127.5 - 1.0


def degrade(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One random degradation of a picture ``(3, H, W)`` in [-1, 1] (see module doc); returns ``(3, H, W)``."""
    h, w = x.shape[-2:]
    if float(torch.rand((), generator=gen)) < 0.5:
        x = _blur(x, _uniform(0.4, 1.6, gen))
    if float(torch.rand((), generator=gen)) < 0.3:
        s = _uniform(0.5, 0.9, gen)
        small = F.interpolate(x[None], size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear",
                              align_corners=False, antialias=True)
        x = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]
    if float(torch.rand((), generator=gen)) < 0.4:
        std = _uniform(0.005, 0.04, gen)
        gray = float(torch.rand((), generator=gen)) < 0.5
        noise = torch.randn((1 if gray else 3, h, w), generator=gen) * std
        x = x + noise
    if float(torch.rand((), generator=gen)) < 0.4:
        x = _jpeg(x, int(torch.randint(25, 91, (), generator=gen)))
    return x.clamp(-1, 1)


def sample_pairs(cache: FaceCache, cfg: UpsampleTrainConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch: inputs ``(B, 3, c, c)`` and aligned targets ``(B, 3, 4c, 4c)``, both in [-1, 1]."""
    b, c = cfg.batch_size, cfg.crop
    idx = torch.randint(0, cache.n, (b,), generator=gen).tolist()
    lows, highs = [], []
    for i in idx:
        use_base = float(torch.rand((), generator=gen)) < cfg.p_base
        lo = cache.take("base" if use_base else "x64", [i])[0]  # (3, 64, 64)
        if float(torch.rand((), generator=gen)) < (cfg.p_base_degrade if use_base else cfg.p_degrade):
            lo = degrade(lo, gen)
        side = lo.shape[-1]
        y, x = (int(v) for v in torch.randint(0, side - c + 1, (2,), generator=gen))
        lo = lo[:, y:y + c, x:x + c]
        hi = torch.from_numpy(np.ascontiguousarray(
            cache.arrays["x256"][i, :, SCALE * y:SCALE * (y + c), SCALE * x:SCALE * (x + c)])).float() / 127.5 - 1.0
        if float(torch.rand((), generator=gen)) < 0.5:
            lo, hi = lo.flip(-1), hi.flip(-1)
        if float(torch.rand((), generator=gen)) < cfg.p_colour:
            gain = 0.9 + 0.2 * torch.rand(3, 1, 1, generator=gen)
            offset = 0.1 * torch.rand(3, 1, 1, generator=gen) - 0.05
            lo = ((lo + 1) * gain - 1 + offset).clamp(-1, 1)
            hi = ((hi + 1) * gain - 1 + offset).clamp(-1, 1)
        lows.append(lo)
        highs.append(hi)
    return torch.stack(lows), torch.stack(highs)


def bicubic(x: torch.Tensor) -> torch.Tensor:
    """The baseline: bicubic x4 of ``(N, 3, h, w)`` in [-1, 1], clamped, ``(N, 3, 4h, 4w)``."""
    return F.interpolate(x, scale_factor=SCALE, mode="bicubic", align_corners=False).clamp(-1, 1)


def figures(out: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Mean PSNR, SSIM, MS-SSIM and high-frequency energy ratio of ``out`` against ``target``, both ``(N, 3, H, W)``."""
    return {"psnr": float(psnr(out, target).mean()), "ssim": float(ssim(out, target).mean()),
            "ms_ssim": float(ms_ssim(out, target).mean()), "hf": float(hf_ratio(out, target).mean())}


def score_of(figs: dict[str, dict[str, float]], hf_weight: float) -> float:
    """The kept model's score: mean over input kinds of ``SSIM - hf_weight * |log2(HF ratio)|``."""
    return float(np.mean([f["ssim"] - hf_weight * abs(math.log2(max(f["hf"], 1e-6))) for f in figs.values()]))


def fmt_figures(f: dict[str, float], baseline: dict[str, float] | None = None) -> str:
    """One log phrase for :func:`figures` (and, if given, the bicubic baseline's PSNR, SSIM and HF ratio)."""
    text = f"PSNR {f['psnr']:.2f} dB, SSIM {f['ssim']:.4f}, MS-SSIM {f['ms_ssim']:.4f}, HF ratio {f['hf']:.3f}"
    if baseline is not None:
        text += f" (bicubic {baseline['psnr']:.2f} dB, SSIM {baseline['ssim']:.4f}, HF {baseline['hf']:.3f})"
    return text


def val_grid(val: dict[str, torch.Tensor], outs: dict[str, torch.Tensor], n: int = 4) -> torch.Tensor:
    """Rows of 5 for up to ``n`` faces: original, bicubic and network of the VAE-GAN base, then of the clean input.

    ``val``: ``x256`` ``(N, 3, 256, 256)``, ``base`` and ``clean`` ``(N, 3, 64, 64)``; ``outs``: the network's
    ``base`` and ``clean`` upscalings ``(N, 3, 256, 256)``. Returns ``(5 n, 3, 256, 256)``.
    """
    rows = [torch.stack([val["x256"][i], bicubic(val["base"][i:i + 1])[0], outs["base"][i],
                         bicubic(val["clean"][i:i + 1])[0], outs["clean"][i]]) for i in range(min(n, len(val["x256"])))]
    return torch.cat(rows)
