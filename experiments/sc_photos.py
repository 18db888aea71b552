"""SC on real photos: the faces that invcomp.faces finds are preserved, everything around them is synthesised.

    python experiments/sc_photos.py

For each committed photo of ``experiments/data/photos`` named below (uncropped, at its own size; out of the models'
domain everywhere but the faces): GC's file of the whole photo, and SC's with ``--preserve faces`` (the detector's
boxes grown by a quarter of their side, then the model's halo of cells). Bytes of both and of SC's records, the
share of cells kept, PSNR inside the preserved pixels (SC and GC against the original, SC against GC) and outside.
Picture: per photo the original, GC, SC and the kept cells, at half size, and the first face at full scale.
Writes ``OUT/sc/photos.json`` and ``OUT/sc/sc_photos.webp``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.codecs import load_codec  # noqa: E402
from invcomp.codecs.modes.gc import GCCodec  # noqa: E402
from invcomp.nets.generative import masks  # noqa: E402
from sc_savings import masked_psnr  # noqa: E402

log = logging.getLogger("sc_photos")
PHOTOS = ("obama-oval-office-2012.jpg", "obama-congress-2009.jpg", "coelho-mahotas.jpg")
PANEL = 256  # px: the height of each whole-photo panel


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default=str(ROOT / "experiments" / "data" / "photos"))
    ap.add_argument("--model", default="sc-utkface-c8")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "gc"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    sc = load_codec(a.model, mode="sc", preserve="faces")
    gc = GCCodec(sc.sc.base)  # the SC model's own base
    rows, panels = [], []
    for name in PHOTOS:
        im = Image.open(Path(a.photos) / name).convert("RGB")
        img = np.asarray(im)
        pmask = masks.pixel_mask(im, "faces", ())
        cells = masks.cell_mask(pmask, sc.halo)
        g_data, _, _, _, g_px = gc.encode_one(img)
        s_data, _, _, _, s_px, sizes = sc.encode_one_sc(img, cells, None)
        _, s_dec = sc.decode_pixels(s_data)
        assert np.array_equal(s_dec, s_px), "SC's encoder and decoder disagree"
        rows.append({"photo": name, "size": list(im.size), "gc_bytes": len(g_data), "sc_bytes": len(s_data),
                     "saved": 1 - len(s_data) / len(g_data), "cells_kept": float(cells.mean()),
                     "preserved_area": float(pmask.mean()), **sizes,
                     "psnr_in_sc": masked_psnr(s_px, img, pmask), "psnr_in_gc": masked_psnr(g_px, img, pmask),
                     "psnr_in_sc_vs_gc": masked_psnr(s_px, g_px, pmask),
                     "psnr_out_sc": masked_psnr(s_px, img, ~pmask), "psnr_out_gc": masked_psnr(g_px, img, ~pmask)})
        log.info("%s %dx%d: GC %d B, SC %d B (%.0f%% of the cells kept)", name, *im.size, len(g_data), len(s_data),
                 100 * cells.mean())
        keep = np.kron(cells, np.ones((16, 16), bool))[:img.shape[0], :img.shape[1]]
        shade = np.where(keep[..., None], img, img // 3).astype(np.uint8)
        ys, xs = np.nonzero(pmask)
        y0, x0 = int(ys.min()), int(xs.min())
        face = (x0, y0, min(img.shape[1], x0 + PANEL), min(img.shape[0], y0 + PANEL))
        panels.append([Image.fromarray(p) for p in (img, g_px, s_px, shade)] +
                      [Image.fromarray(p).crop(face) for p in (img, g_px, s_px)])
    out = Path(a.out) / "sc"
    out.mkdir(parents=True, exist_ok=True)
    doc = {"model": a.model, "base": sc.sc.base.name, "halo": sc.halo, "photos": rows,
           "command": "python experiments/sc_photos.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    (out / "photos.json").write_text(json.dumps(doc, indent=2) + "\n")
    scaled = [[p.resize((max(1, round(p.width * PANEL / p.height)), PANEL), Image.Resampling.LANCZOS) if k < 4 else p
               for k, p in enumerate(row)] for row in panels]
    width = max(sum(p.width + 4 for p in row) for row in scaled) + 4
    sheet = Image.new("RGB", (width, len(scaled) * (PANEL + 4) + 4), (255, 255, 255))
    for r, row in enumerate(scaled):
        x = 4
        for p in row:
            sheet.paste(p, (x, 4 + r * (PANEL + 4)))
            x += p.width + 4
    sheet.save(out / "sc_photos.webp", quality=85, method=6)
    for r in rows:
        print(f"{r['photo']}: GC {r['gc_bytes']} B, SC {r['sc_bytes']} B ({100 * r['saved']:.0f}% saved; mask "
              f"{r['mask_bytes']} B), {100 * r['cells_kept']:.0f}% cells kept; PSNR in faces SC {r['psnr_in_sc']:.2f} / "
              f"GC {r['psnr_in_gc']:.2f} dB, SC vs GC {r['psnr_in_sc_vs_gc']:.2f} dB; outside SC {r['psnr_out_sc']:.2f} / "
              f"GC {r['psnr_out_gc']:.2f} dB")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
