"""Classic codecs that downscale to reach GC's bytes: the equal-bytes comparison that a user could actually make.

    python experiments/gc_downscaled.py --set faces --data ../shared/data/utkface --limit 32
    python experiments/gc_downscaled.py --set kodak --data ../shared/data/kodak --limit 12

On a 200-px face no classic codec's smallest file is as small as GC's (``experiments/gc_bench.py``: "cannot
reach"). A user who must hit that size would downscale first. So for every image, shipped GC model and target (GC's
bytes B, and 2B), each codec codes the image downscaled (Lanczos) by each factor of ``--scales``, at the setting
whose file is closest to the target without exceeding it; the decoded picture is upscaled back (Lanczos), and the
scale with the best MS-SSIM is kept, as a user choosing by eye would. Images where no scale fits count as "cannot
reach". Metrics as in gc_bench.py. Writes ``OUT/SET/downscaled.json`` and ``downscaled.md``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))
from gc_bench import gc_models, images, measure  # noqa: E402

from invcomp.classic.codecs import build_codecs  # noqa: E402
from invcomp.classic.search import find_closest  # noqa: E402
from invcomp.codecs import load_codec  # noqa: E402
from invcomp.imageio import from_image, load_image  # noqa: E402

log = logging.getLogger("gc_downscaled")
SAME_PERSON = 0.6


def best_downscaled(codec: Any, img: Image.Image, x: torch.Tensor, target: int, scales: list[float],
                    faces: bool, cache: dict, keep_picture: bool = False) -> dict | None:
    """The best-MS-SSIM file of ``codec`` at most ``target`` bytes over the downscales, or ``None`` (``keep_picture``:
    the row holds its decoded picture under ``picture``)."""
    w, h = img.size
    best = None
    for s in scales:
        small = img if s == 1 else img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
        store = cache.setdefault(s, {})

        def size_at(q: float, store: dict = store, small: Image.Image = small) -> int:
            if q not in store:
                store[q] = codec.encode(small, q)
            return len(store[q])

        res = find_closest(size_at, target, codec.knob)
        if res.bytes > target:
            continue
        dec = codec.decode(store[res.quality]).convert("RGB").resize((w, h), Image.Resampling.LANCZOS)
        row = measure(x, dec, res.bytes, faces)
        row.update(scale=s, setting=codec.setting_label(res.quality))
        if keep_picture:
            row["picture"] = dec
        if best is None or row["ms_ssim"] > best["ms_ssim"]:
            best = row
    return best


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", dest="which", choices=["faces", "kodak"], required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--codecs", default="heif,webp,avif,jpegxl")
    ap.add_argument("--scales", default="1,0.75,0.5,0.35,0.25")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "gc"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    faces = a.which == "faces"
    scales = [float(v) for v in a.scales.split(",")]
    gcs = {m: load_codec(m, mode="gc") for m in gc_models()}
    all_codecs = build_codecs()
    others = {c: all_codecs[c] for c in a.codecs.split(",") if all_codecs[c].unavailable() is None}
    rows = []
    files = images(a.which, a.data, a.limit)
    for i, f in enumerate(files):
        img = load_image(f)
        x = from_image(img)
        caches: dict[str, dict] = {c: {} for c in others}
        for gname, gc in gcs.items():
            enc = gc.encode([img])[0]
            _, px = gc.decode_pixels(enc.data)
            rows.append({"image": f.name, "target": f"{gname} x1", "codec": gname, "scale": 1.0,
                         **measure(x, Image.fromarray(px), len(enc.data), faces)})
            for k in (1, 2):
                for cname, codec in others.items():
                    r = best_downscaled(codec, img, x, k * len(enc.data), scales, faces, caches[cname])
                    rows.append({"image": f.name, "target": f"{gname} x{k}", "codec": cname, "reached": r is not None,
                                 **(r or {})})
        log.info("%d/%d %s", i + 1, len(files), f.name)
    summary: dict[str, dict] = {}
    for r in rows:
        summary.setdefault(r["target"], {}).setdefault(r["codec"], []).append(r)
    lines = [f"# Classic codecs downscaled to GC's bytes: {a.which} ({len(files)} images; scales {a.scales})", ""]
    doc: dict[str, Any] = {"images": len(files), "scales": scales, "summary": {},
                           "command": "python experiments/gc_downscaled.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    for target, by in summary.items():
        lines += [f"## at {target.split(' ')[0]}'s bytes" + (" x2" if target.endswith("x2") else ""), "",
                  "| codec | reached | bytes | bpp | PSNR dB | MS-SSIM | HF ratio | identity | same person | scales chosen |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        stats = {}
        for codec, rs in by.items():
            ok = [r for r in rs if r.get("reached", True)]
            if not ok:
                stats[codec] = {"n": len(rs), "reached": 0}
                lines.append(f"| {codec} | 0/{len(rs)} | | | | | | | | |")
                continue
            ids = [r["identity"] for r in ok if r.get("identity") is not None]
            s = {k: float(np.mean([r[k] for r in ok])) for k in ("bytes", "bpp", "psnr", "ms_ssim", "hf_ratio")}
            s.update(n=len(rs), reached=len(ok), identity=float(np.mean(ids)) if ids else None,
                     same_person=float(np.mean([d < SAME_PERSON for d in ids])) if ids else None,
                     scales={str(v): sum(r["scale"] == v for r in ok) for v in sorted({r["scale"] for r in ok})})
            stats[codec] = s
            ident = "n/a" if s["identity"] is None else f"{s['identity']:.3f}"
            same = "n/a" if s["same_person"] is None else f"{100 * s['same_person']:.0f}%"
            lines.append(f"| {codec} | {len(ok)}/{len(rs)} | {s['bytes']:.0f} | {s['bpp']:.4f} | {s['psnr']:.2f} | "
                         f"{s['ms_ssim']:.4f} | {s['hf_ratio']:.2f} | {ident} | {same} | "
                         + ", ".join(f"{k}: {v}" for k, v in s["scales"].items()) + " |")
        lines.append("")
        doc["summary"][target] = stats
    out = Path(a.out) / a.which
    out.mkdir(parents=True, exist_ok=True)
    (out / "downscaled.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "downscaled.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
