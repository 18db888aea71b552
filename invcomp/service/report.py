"""What an encode reports of each written file (the CLI, batch and the web app alike): the JSON row, the human line,
and the metrics behind them."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any


def _png_bytes(img: Any) -> int:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.tell()


def rates(n_bytes: int, target: Any) -> dict:
    """Bytes, bpp and compression ratios (vs raw 24-bit RGB and an optimised PNG) of a file for ``target`` ``(3, R, R)``."""
    from invcomp import metrics
    from invcomp.imageio import to_pil

    r, w = target.shape[-2], target.shape[-1]  # (GC codes any H x W)
    big = r * w > METRICS_MAX_PIXELS  # an optimised PNG of 24 MP takes minutes: no PNG ratio there
    return {"bytes": n_bytes, "bpp": metrics.bpp(n_bytes, w, r), "cr_raw": metrics.compression_ratio(n_bytes, 3 * r * w),
            "cr_png": None if big else metrics.compression_ratio(n_bytes, _png_bytes(to_pil(target)))}


METRICS_MAX_PIXELS = 4_000_000
"""Above this, the report's quality metrics are measured on area-downscaled copies (GC codes 24 MP and more; SSIM at
full size would take minutes and gigabytes for a figure of the report, not of the file)."""


def metrics_view(x: Any, y: Any) -> tuple[Any, Any]:
    """``x``, ``y`` ``(1, 3, H, W)``, or both area-downscaled by one factor to at most :data:`METRICS_MAX_PIXELS`."""
    import math

    import torch.nn.functional as F

    h, w = y.shape[-2:]
    if h * w <= METRICS_MAX_PIXELS:
        return x, y
    k = math.ceil(math.sqrt(h * w / METRICS_MAX_PIXELS))
    return F.avg_pool2d(x, k, ceil_mode=True), F.avg_pool2d(y, k, ceil_mode=True)


def file_metrics(e: Any, original: Any, with_identity: bool) -> dict:
    """What the report says of one coded image: the quality metrics at the model resolution, on the pixels the
    decoder writes; with ``with_identity`` (the full report: ``--json``, the web app), LPIPS and the identity distance of the picture ``invcomp decode`` writes
    against the original, at the original's size (:func:`invcomp.identity.picture_distance`, as ``invcomp
    compare`` and the web app measure it)."""
    from invcomp import metrics
    from invcomp.codecs import stored_pixels
    from invcomp.codecs.base import decoded_picture

    m = metrics.quality(*metrics_view(stored_pixels(e.recon[None]), e.target[None]), with_lpips=with_identity)[0]
    if e.target.shape[-2] * e.target.shape[-1] > METRICS_MAX_PIXELS:
        m["metrics_at"] = "area-downscaled to at most 4 MP"
    if with_identity:
        from invcomp.identity import picture_distance

        m["identity"] = picture_distance(original, decoded_picture(e))
    return m


def report_row(codec: Any, src: Path, dst: Path, e: Any, m: dict, seconds: float, goal: Any) -> tuple[dict, str]:
    """The JSON row and the human line of one written file."""
    row = {"input": str(src), "output": str(dst), **rates(len(e.data), e.target), **m, **codec.describe(),
           "seconds": round(seconds, 3), "coder": e.header.coder, "format": e.header.version, "bits": e.header.bits}
    human = (f"{src} -> {dst}: {row['bytes']} B, {row['bpp']:.3f} bpp, SSIM {m['ssim']:.4f}, "
             f"PSNR {m['psnr']:.2f} dB (at {e.target.shape[-1]}x{e.target.shape[-2]}), {seconds:.2f} s")
    if "auto" in e.extra:  # the mode decision: what was chosen, and what else was tried
        chosen = e.extra["auto"]["chosen"]
        row.update(mode=chosen.split(":")[0], model=chosen.split(":", 1)[1], auto=e.extra["auto"])
        human += f" [auto: {chosen}]"
    if "layers" in e.extra:  # layered: what each prefix of the file costs
        row["layers"] = e.extra["layers"]
        human += " [layers: " + ", ".join(f"{s['kind']}{'@' + str(s['rate']) if 'rate' in s and s['kind'] == 'residual' else ''}"
                                           f" {s['bytes']} B" for s in e.extra["layers"]) + "]"
    if "mask_bytes" in e.extra:  # SC: where the bytes went
        row["records"] = {k: e.extra[k] for k in ("mask_bytes", "semantic_bytes", "code_bytes")}
        row["preserved_cells"], row["cells"] = e.extra["preserved_cells"], e.extra["cells"]
        human += (f" [SC: {e.extra['preserved_cells']} of {e.extra['cells']} cells kept; mask {e.extra['mask_bytes']} B, "
                  f"map {e.extra['semantic_bytes']} B, code {e.extra['code_bytes']} B]")
    if "photo" in e.extra and e.extra["photo"]["fit"] != "whole":  # the photo's fit, its faces, where its bytes went
        info = e.extra["photo"]
        row.update(fit=info["fit"], photo=info)
        human += photo_line(info)
    if goal is not None:
        row["target"] = {"bytes": goal.max_bytes, "ssim": goal.min_ssim, "reached": e.extra["reached"],
                         "bits": e.header.bits, "trims": e.extra["trims"], "norm_code": e.extra.get("norm_code")}
        human += (f"; target {goal.describe()}: {e.header.bits} bits, {e.extra['trims']} trims"
                  + ("" if e.extra["reached"] else " (NOT reached: the best file there is)"))
    return row, human


def photo_line(info: dict) -> str:
    """The human line's part about a photo: the fit chosen, the faces, and the face's SSIM in the frame."""
    out = f" [fit {info['fit']}" + (f": {info['note']}" if info.get("note") else "")
    if info["fit"] == "align":
        out += f", {info['faces_coded']} of {info['faces_found']} face{'s' * (info['faces_found'] != 1)}"
        if info.get("face_ssim") is not None:
            out += f", face SSIM {info['face_ssim']:.4f} in the frame"
        if info.get("background", "none") != "none":
            out += f", background {info['background']} {info['bytes']['background']} B"
            if info.get("frame_ssim") is not None:
                out += f", frame SSIM {info['frame_ssim']:.4f}"
    if info.get("detail"):
        d = info["detail"]
        out += f", detail layer rate {d['rate']:g} at {d['side']} px {d['bytes']} B"
    return out + (", grayscale" if info.get("grayscale") else "") + "]"
