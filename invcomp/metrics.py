"""Image-quality metrics and rate figures (pure functions).

Images are float tensors ``(N, 3, H, W)`` in [-1, 1]; every metric returns a
per-image tensor ``(N,)`` and is computed in [0, 1] (``data_range=1``).

MS-SSIM on small images: the standard 5 scales with an 11-tap window need a
side over 160 px. We use the largest number of scales L <= 5 for which the
smaller side exceeds ``10 * 2**(L-1)`` (64 px -> 3 scales, 32 px -> 2,
16 px -> 1), and the first L of the standard weights
(0.0448, 0.2856, 0.3001, 0.2363, 0.1333) renormalised to sum to 1. At
L = 1 MS-SSIM equals SSIM.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as _pm_ssim
from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

from invcomp.errors import LpipsUnavailable

log = logging.getLogger(__name__)

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN = 11
LPIPS_MIN_SIDE = 32


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two (N, C, H, W) tensors of equal shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def _unit(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(-1, 1) + 1.0) * 0.5


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error in [0, 1] units, per image ``(N,)``."""
    _check(x, y)
    return ((_unit(x) - _unit(y)) ** 2).flatten(1).mean(1)


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB for peak 1 (the same as peak 255 on 8-bit data), per image; inf when identical."""
    m = mse(x, y)
    return 10.0 * torch.log10(1.0 / m)


def ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """SSIM (11-tap Gaussian, sigma 1.5, K=(0.01, 0.03)) via pytorch-msssim, per image ``(N,)``."""
    _check(x, y)
    side = min(x.shape[-2:])
    if side < WIN:  # an image smaller than the window (GC codes any size, 1x1 up): the largest odd window it holds
        size = side if side % 2 else side - 1
        win = _fspecial_gauss_1d(size, 1.5 * size / WIN).to(x).repeat([x.shape[1], 1, 1, 1])
        return _ssim(_unit(x), _unit(y), data_range=1.0, win=win, size_average=False, K=(0.01, 0.03))[0].mean(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pytorch-msssim warns when an image is smaller than the window
        return _pm_ssim(_unit(x), _unit(y), data_range=1.0, size_average=False)


def ms_ssim_levels(side: int) -> int:
    """Number of MS-SSIM scales used for images whose smaller side is ``side`` (see module doc)."""
    levels = 1
    while levels < 5 and side > (WIN - 1) * 2**levels:
        levels += 1
    return levels


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM with as many scales as the size allows (see module doc), per image ``(N,)``."""
    _check(x, y)
    levels = ms_ssim_levels(min(x.shape[-2:]))
    if levels == 1:  # one scale: SSIM itself (also for images smaller than the window)
        return ssim(x, y)
    w = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=x.dtype, device=x.device)
    w = w / w.sum()
    win = _fspecial_gauss_1d(WIN, 1.5).to(x).repeat([x.shape[1], 1, 1, 1])
    a, b = _unit(x), _unit(y)
    mcs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(levels):
            s, cs = _ssim(a, b, data_range=1.0, win=win, size_average=False, K=(0.01, 0.03))
            if i < levels - 1:
                mcs.append(torch.relu(cs))
                pad = [d % 2 for d in a.shape[2:]]
                a, b = F.avg_pool2d(a, 2, padding=pad), F.avg_pool2d(b, 2, padding=pad)
    stack = torch.stack(mcs + [torch.relu(s)], 0)  # (L, N, C)
    return torch.prod(stack ** w.view(-1, 1, 1), 0).mean(1)


_LPIPS: dict[str, torch.nn.Module] = {}  # device -> network
_LPIPS_FAILED: Optional[str] = None  # why LPIPS cannot load in this process: then it is never tried again
_LPIPS_REMEDY = "put torchvision's AlexNet weights in $TORCH_HOME/hub/checkpoints, or allow the download"


def _lpips_failure(e: Exception) -> str:
    """The one-line reason LPIPS cannot load, from what its constructor raised."""
    if isinstance(e, ImportError):
        return "LPIPS unavailable (the lpips package is not installed)"
    if isinstance(e, OSError):  # URLError (no network, no route, refused), a timeout, an unwritable cache
        return "LPIPS unavailable (its AlexNet weights cannot be downloaded)"
    return f"LPIPS unavailable (its AlexNet backbone did not load: {type(e).__name__})"


def get_lpips(device: torch.device | str = "cpu") -> torch.nn.Module:
    """The LPIPS(alex) network, built once per device. Raises :class:`LpipsUnavailable` when its backbone cannot
    load; that is found out once per process (no download is tried again, on any device)."""
    global _LPIPS_FAILED
    key = str(device)
    if _LPIPS_FAILED is not None:  # a fresh exception each time: re-raising one would chain every caller's frames
        raise LpipsUnavailable(f"{_LPIPS_FAILED}; {_LPIPS_REMEDY}", short=_LPIPS_FAILED)
    if key not in _LPIPS:
        try:
            import lpips

            log.info("LPIPS: loading its AlexNet backbone (torchvision downloads its weights on first use)")
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                net = lpips.LPIPS(net="alex", verbose=False).eval().to(device)
            for p in net.parameters():
                p.requires_grad_(False)
            _LPIPS[key] = net
        except Exception as e:  # no network, no cached AlexNet weights, or no lpips
            _LPIPS_FAILED = _lpips_failure(e)
            log.debug("LPIPS: %s: %s", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            raise LpipsUnavailable(f"{_LPIPS_FAILED}; {_LPIPS_REMEDY}", short=_LPIPS_FAILED) from None
    return _LPIPS[key]


def lpips_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS(alex) distance per image ``(N,)``; inputs in [-1, 1]. Raises :class:`LpipsUnavailable`."""
    _check(x, y)
    if min(x.shape[-2:]) < LPIPS_MIN_SIDE:
        raise LpipsUnavailable(f"LPIPS needs images of at least {LPIPS_MIN_SIDE} px a side (AlexNet's pooling), got {tuple(x.shape[-2:])}")
    net = get_lpips(x.device)
    return net(x, y, normalize=False).flatten()


_warned = False


def lpips_or_none(x: torch.Tensor, y: torch.Tensor) -> Optional[list[float]]:
    """LPIPS per image as floats, or ``None`` (with one short warning per process) when unavailable."""
    global _warned
    try:
        with torch.no_grad():
            return [float(v) for v in lpips_distance(x, y)]
    except LpipsUnavailable as e:
        if not _warned:
            log.warning("%s: reported as n/a", e.short)
            _warned = True
        return None


def bpp(n_bytes: int, width: int, height: int) -> float:
    """Bits per pixel: ``8 * n_bytes / (width * height)``."""
    return 8.0 * n_bytes / (width * height)


def compression_ratio(n_bytes: int, reference_bytes: int) -> float:
    """How many times smaller than a reference (raw RGB = ``3*W*H``, or a PNG's size)."""
    return reference_bytes / n_bytes if n_bytes else math.inf


def quality(x: torch.Tensor, y: torch.Tensor, *, with_lpips: bool = True, with_identity: bool = False) -> list[dict]:
    """All distortion metrics for a batch ``x`` (decoded) against ``y`` (originals), one dict per image (keys psnr,
    mse, ssim, ms_ssim, lpips, identity). ``identity`` is the face recogniser's distance
    (:mod:`invcomp.identity`), ``None`` unless ``with_identity`` and the recogniser is installed."""
    with torch.no_grad():
        cols = {"psnr": psnr(x, y), "mse": mse(x, y), "ssim": ssim(x, y), "ms_ssim": ms_ssim(x, y)}
        lp = lpips_or_none(x, y) if with_lpips else None
    ident = None
    if with_identity:
        from invcomp.identity import identity_or_none

        ident = identity_or_none(y, x)
    rows = []
    for i in range(x.shape[0]):
        row = {k: float(v[i]) for k, v in cols.items()}
        row["lpips"] = None if lp is None else lp[i]
        row["identity"] = None if ident is None else ident[i]
        rows.append(row)
    return rows


# Sharpness.
# A proxy for blur: the high-frequency energy of a reconstruction against the original's (pure).
#
# Agustsson et al.'s claim (viewers prefer GC to BPG at twice the bits) needs a user study or an FID network,
# neither available here. What can be measured is whether a codec keeps texture or smooths it away:
# :func:`hf_ratio` is the energy of the Laplacian-of-Gaussian band (the image minus its Gaussian blur, sigma 1.5)
# of the reconstruction over the original's. 1 keeps as much fine detail as the original (not necessarily the
# same detail), below 1 is blurred, above 1 adds energy (noise, ringing, synthesised texture).

SIGMA = 1.5  # the Gaussian blur of the detail band, in pixels


def _blur(x: torch.Tensor, sigma: float = SIGMA) -> torch.Tensor:
    r = int(3 * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t**2 / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def high_pass(x: torch.Tensor) -> torch.Tensor:
    """The detail band of ``(N, C, H, W)``: ``x - blur(x)``, same shape."""
    return x - _blur(x)


def hf_energy(x: torch.Tensor) -> torch.Tensor:
    """Mean squared detail band per image ``(N,)`` of ``(N, C, H, W)`` in [-1, 1]."""
    return high_pass(x.float()).pow(2).flatten(1).mean(1)


def hf_ratio(recon: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """High-frequency energy of ``recon`` over that of ``original`` per image ``(N,)``; both ``(N, 3, H, W)``."""
    if recon.shape != original.shape:
        raise ValueError(f"expected equal shapes, got {tuple(recon.shape)} and {tuple(original.shape)}")
    return hf_energy(recon) / hf_energy(original).clamp(min=1e-12)
