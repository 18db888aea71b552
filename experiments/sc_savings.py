"""SC against GC on held-out faces: the bytes saved as a function of the preserved area, and the quality inside.

    python experiments/sc_savings.py --data ../shared/data/utkface --limit 32

For each held-out face (200 px): GC's file (the base model), and SC's files preserving
- **the face:** the pixels that its landmark label map (:mod:`invcomp.nets.generative.semantic`) does not call background, with the
  map coded in the file and without it;
- **centred boxes** covering 0%, 10%, 25%, 50%, 75% and 100% of the picture (the map coded).
Bytes (and each record's), and inside the preserved pixels PSNR against the original for SC and GC, and SC against
GC; outside them PSNR and the blur proxy. Pictures of four faces: original, GC, SC with the map, SC without, and the
kept cells over the map. Writes ``OUT/sc/summary.json``, ``tables.md`` and ``sc_faces.webp``.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.codecs import load_codec  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.nets.generative import masks
from invcomp.nets.generative import semantic  # noqa: E402
from invcomp.metrics import hf_ratio  # noqa: E402
from invcomp.identity import ASSUMED_BOX  # noqa: E402

log = logging.getLogger("sc_savings")
AREAS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


def masked_psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    if not where.any():
        return float("nan")
    d = (a.astype(np.float64) - b.astype(np.float64))[where]
    mse = float((d ** 2).mean()) / 255 ** 2
    return 10 * math.log10(1 / mse) if mse > 0 else float("inf")


def nanmean(vals: list[float]) -> float:
    """The mean of the finite values (an empty region has no PSNR; identical pictures have an infinite one)."""
    finite = [v for v in vals if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def centred_box(area: float, w: int, h: int) -> np.ndarray:
    s = math.sqrt(area)
    bw, bh = round(w * s), round(h * s)
    m = np.zeros((h, w), bool)
    if bw and bh:
        x, y = (w - bw) // 2, (h - bh) // 2
        m[y:y + bh, x:x + bw] = True
    return m


def row(kind: str, sc, img: np.ndarray, gc_pixels: np.ndarray, gc_bytes: int, pmask: np.ndarray,  # type: ignore[no-untyped-def]
        labels: np.ndarray | None) -> tuple[dict, np.ndarray]:
    cells = masks.cell_mask(pmask, sc.halo)
    data, _, _, _, pixels, sizes = sc.encode_one_sc(img, cells, labels)
    out = ~pmask
    x, y = torch.from_numpy(pixels).permute(2, 0, 1)[None].float(), torch.from_numpy(img).permute(2, 0, 1)[None].float()
    return {"kind": kind, "area": float(pmask.mean()), "cells_kept": float(cells.mean()), "bytes": len(data),
            "gc_bytes": gc_bytes, "saved": 1 - len(data) / gc_bytes, **sizes,
            "psnr_in_sc": masked_psnr(pixels, img, pmask), "psnr_in_gc": masked_psnr(gc_pixels, img, pmask),
            "psnr_in_sc_vs_gc": masked_psnr(pixels, gc_pixels, pmask),
            "psnr_out_sc": masked_psnr(pixels, img, out), "psnr_out_gc": masked_psnr(gc_pixels, img, out),
            "hf_ratio_sc": float(hf_ratio(x / 127.5 - 1, y / 127.5 - 1))}, pixels


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=32)
    ap.add_argument("--model", default="sc-utkface-c8")
    ap.add_argument("--halos", default="0,1", help="preserved halos (cells) to measure")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "gc"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    sc = load_codec(a.model, mode="sc", preserve_box=("0,0,1,1",))
    gc = load_codec(sc.sc.base.name, mode="gc")
    rows, pics = [], []
    halos, default_halo = [int(v) for v in a.halos.split(",")], sc.halo
    files = list_images(a.data, "holdout")[:a.limit]
    for i, f in enumerate(files):
        img = np.asarray(Image.open(f).convert("RGB"))
        h, w = img.shape[:2]
        data, _, _, _, gc_pixels = gc.encode_one(img)
        labels_px = semantic.landmark_map(img, ASSUMED_BOX)
        grid = semantic.to_grid(labels_px)
        face = labels_px > 0
        for halo in halos:
            sc.halo = halo
            r1, p1 = row(f"face, map, halo {halo}", sc, img, gc_pixels, len(data), face, grid)
            r2, p2 = row(f"face, no map, halo {halo}", sc, img, gc_pixels, len(data), face, None)
            rows += [dict(r1, image=f.name), dict(r2, image=f.name)]
            for area in AREAS:
                box = centred_box(area, w, h)
                rows.append(dict(row(f"box {area:.2f}, halo {halo}", sc, img, gc_pixels, len(data), box, grid)[0], image=f.name))
        sc.halo = default_halo
        r1, p1 = row("face, map", sc, img, gc_pixels, len(data), face, grid)
        r2, p2 = row("face, no map", sc, img, gc_pixels, len(data), face, None)
        if i < 4:
            cells = masks.cell_mask(face, default_halo)
            over = semantic.PALETTE
            colours = np.array(over, dtype=np.uint8).reshape(-1, 3)[labels_px]
            keep = np.kron(cells, np.ones((16, 16), bool))[:h, :w]
            overlay = np.where(keep[..., None], (0.5 * img + 0.5 * colours).astype(np.uint8), colours // 2)
            pics.append([img, gc_pixels, p1, p2, overlay])
        log.info("%d/%d %s: GC %d B, SC face+map %d B", i + 1, len(files), f.name, len(data), r1["bytes"])
    kinds = list(dict.fromkeys(r["kind"] for r in rows))
    summary = {k: {m: nanmean([r[m] for r in rows if r["kind"] == k]) for m in rows[0] if m not in ("kind", "image")}
               for k in kinds}
    out = Path(a.out) / "sc"
    out.mkdir(parents=True, exist_ok=True)
    doc = {"model": a.model, "base": sc.sc.base.name, "faces": len(files), "default_halo": default_halo, "summary": summary,
           "command": "python experiments/sc_savings.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [f"# SC ({a.model}) against GC ({sc.sc.base.name}) on {len(files)} held-out faces at 200 px", "",
             "| preserved | area | cells kept | bytes | GC bytes | saved | mask B | map B | code B | PSNR in, SC | PSNR in, GC | "
             "SC vs GC in | PSNR out, SC | PSNR out, GC |", "|---" * 14 + "|"]
    for k, s in summary.items():
        lines.append(f"| {k} | {100 * s['area']:.0f}% | {100 * s['cells_kept']:.0f}% | {s['bytes']:.1f} | {s['gc_bytes']:.1f} | "
                     f"{100 * s['saved']:.0f}% | {s['mask_bytes']:.1f} | {s['semantic_bytes']:.1f} | {s['code_bytes']:.1f} | "
                     f"{s['psnr_in_sc']:.2f} | {s['psnr_in_gc']:.2f} | {s['psnr_in_sc_vs_gc']:.2f} | {s['psnr_out_sc']:.2f} | "
                     f"{s['psnr_out_gc']:.2f} |")
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    if pics:
        side = pics[0][0].shape[0]
        sheet = Image.new("RGB", (5 * (side + 4) + 4, len(pics) * (side + 4) + 4), (255, 255, 255))
        for r, ims in enumerate(pics):
            for c, im in enumerate(ims):
                sheet.paste(Image.fromarray(im), (4 + c * (side + 4), 4 + r * (side + 4)))
        sheet.save(out / "sc_faces.webp", quality=90, method=6)
    print("\n".join(lines))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
