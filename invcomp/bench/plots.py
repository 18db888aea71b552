"""Rate-distortion plots (PNG, matplotlib's Agg backend): bpp against SSIM, PSNR, MS-SSIM and identity distance.

invcomp is drawn as a solid line with markers, the classic codecs dashed. bpp is on a log axis
(invcomp's ~0.1 bpp and PNG's ~10 bpp share one plot). Points with a non-finite value (the PSNR
of a lossless codec) are left out of that plot. matplotlib is an optional extra, imported lazily.
"""
from __future__ import annotations

import io
import math

from invcomp.errors import InvcompError
from invcomp.classic.codecs import BENCH_EXTRA, INVCOMP, is_invcomp

PLOTS = (("ssim", "SSIM", "rd_ssim.png"), ("psnr", "PSNR (dB)", "rd_psnr.png"), ("ms_ssim", "MS-SSIM", "rd_ms_ssim.png"),
         ("identity", "identity distance (dlib; same person < 0.6; lower is better)", "rd_identity.png"))


def require_matplotlib() -> None:
    """Raise a one-line :class:`InvcompError` when matplotlib is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InvcompError(f"the RD plots need matplotlib, which is not installed ({BENCH_EXTRA}), "
                           "or pass --no-plots") from None


def rd_plot(curves: dict[str, list[dict]], metric: str, label: str, title: str) -> bytes:
    """One RD plot as PNG bytes. ``curves`` maps a codec name to its points (dicts with ``bpp`` and
    ``metric``, as :func:`invcomp.bench.report.points` gives), drawn in bpp order."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(7, 5), dpi=120)
    ax = fig.add_subplot()
    if len(curves) > 10:  # more curves than the default 10 colours: no two share one
        from cycler import cycler

        ax.set_prop_cycle(cycler(color=matplotlib.colormaps["tab20"].colors))
    for name, pts in curves.items():
        xy = sorted((p["bpp"], p[metric]) for p in pts
                    if p.get(metric) is not None and p.get("bpp") is not None
                    and math.isfinite(p[metric]) and p["bpp"] > 0)
        if not xy:
            continue
        xs, ys = zip(*xy)
        if name == INVCOMP:
            ax.plot(xs, ys, "-o", lw=2.2, ms=6, color="black", label=name, zorder=3)
        elif is_invcomp(name) or name.startswith(INVCOMP + " "):  # invcomp:MODEL, or a label such as "invcomp (...)"
            ax.plot(xs, ys, "-s", lw=2.0, ms=5, label=name, zorder=3)
        else:
            ax.plot(xs, ys, "--", marker=".", lw=1.3, ms=6, label=name)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel("bits per pixel (whole file)")
    ax.set_ylabel(label)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def rd_plots(curves: dict[str, list[dict]], title: str) -> dict[str, bytes]:
    """All RD plots: file name -> PNG bytes (the identity plot only when identity was measured)."""
    return {fname: rd_plot(curves, metric, label, f"{title}: bpp vs {label.split(' (')[0]}") for metric, label, fname in PLOTS
            if any(p.get(metric) is not None for pts in curves.values() for p in pts)}
