"""GC's speed per megapixel on the CPU, its peak memory on a 24-megapixel image, and tiled against whole decoding.

    python experiments/gc_speed.py --kodak ../shared/data/kodak --model gc-utkface-c8

- **Speed:** encode (to bytes) and decode (to uint8 pixels) of ``--images`` Kodak images (768x512), one torch thread,
  wall and CPU seconds per megapixel (median over the images; on a shared machine the CPU time is the fair figure).
- **Memory:** in a fresh process, a 6000 x 4000 picture (Kodak image 1 resized with Lanczos) encoded, then its file
  decoded; the peak resident set (``ru_maxrss``) after each, beside the process's size once the model is loaded.
- **The commands:** ``invcomp encode`` and ``invcomp decode`` of the same 24-megapixel PNG, each in its own process:
  wall seconds and peak resident set, the report's metrics included.
- **Tiles:** a Kodak image decoded in tiles of 8 cells (128 px: many seams) with halos of 2..12 cells against one
  whole pass: mean and largest pixel difference (of 255), and the difference within 2 px of a seam.
Writes ``OUT/speed_MODEL.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.codecs import load_codec  # noqa: E402
from invcomp.codecs.modes.gc import image_array, symbols_of  # noqa: E402
from invcomp.nets.generative import tiles  # noqa: E402

log = logging.getLogger("gc_speed")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def big(model: str, kodak: str) -> dict:
    """Runs in a child process: the 24-megapixel encode and decode."""
    torch.set_num_threads(1)
    codec = load_codec(model, mode="gc")
    loaded = rss_mb()
    img = image_array(Image.open(Path(kodak) / "kodim01.png").convert("RGB").resize((6000, 4000), Image.Resampling.LANCZOS))
    with_image = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    data = codec.encode_one(img, recon=False)[0]
    t1, c1 = time.perf_counter(), time.process_time()
    after_encode = rss_mb()
    del img
    _, pixels = codec.decode_pixels(data)
    t2, c2 = time.perf_counter(), time.process_time()
    return {"width": 6000, "height": 4000, "bytes": len(data), "bpp": 8 * len(data) / 24e6, "encode_s": t1 - t0,
            "decode_s": t2 - t1, "encode_cpu_s": c1 - c0, "decode_cpu_s": c2 - c1, "rss_mb_model_loaded": loaded, "rss_mb_with_image": with_image,
            "peak_rss_mb_encode": after_encode, "peak_rss_mb_decode": rss_mb(), "decoded_shape": list(pixels.shape)}


PEAK = ("import resource, subprocess, sys, time; t = time.perf_counter(); r = subprocess.run(sys.argv[1:]); "
        "print(r.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def cli_peaks(model: str, kodak: str) -> dict:
    """``invcomp encode`` and ``invcomp decode`` of the 24-megapixel picture, each in its own process: exit code,
    wall seconds and peak resident set (what a user's command takes, metrics and report included)."""
    import tempfile

    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        src, ivc, dec = Path(tmp) / "big.png", Path(tmp) / "big.ivc", Path(tmp) / "big.decoded.png"
        Image.open(Path(kodak) / "kodim01.png").convert("RGB").resize((6000, 4000), Image.Resampling.LANCZOS).save(
            src, compress_level=1)
        cli = [sys.executable, "-m", "invcomp.cli", "--threads", "1"]
        for name, args in (("encode", ["encode", str(src), "--mode", "gc", "--model", model, "-o", str(ivc)]),
                           ("decode", ["decode", str(ivc), "-o", str(dec)])):
            r = subprocess.run([sys.executable, "-c", PEAK, *cli, *args], capture_output=True, text=True)
            code, secs, peak = r.stdout.split()[-3:]
            out[name] = {"exit": int(code), "wall_s": float(secs), "peak_rss_mb": int(peak) / 1024}
            log.info("invcomp %s of 6000x4000: exit %s, %.0f s, peak %.0f MB", name, code, float(secs), int(peak) / 1024)
        out["bytes"] = ivc.stat().st_size if ivc.exists() else None
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kodak", required=True)
    ap.add_argument("--model", default="gc-utkface-c8")
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "gc"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.child:
        print(json.dumps(big(a.model, a.kodak)))
        return
    codec = load_codec(a.model, mode="gc")
    enc_t, dec_t, enc_c, dec_c = [], [], [], []
    for f in sorted(Path(a.kodak).glob("kodim*.png"))[:a.images]:
        img = image_array(Image.open(f).convert("RGB"))
        mp = img.shape[0] * img.shape[1] / 1e6
        t0, c0 = time.perf_counter(), time.process_time()
        data = codec.encode_one(img, recon=False)[0]
        t1, c1 = time.perf_counter(), time.process_time()
        codec.decode_pixels(data)
        dec_t.append((time.perf_counter() - t1) / mp)
        dec_c.append((time.process_time() - c1) / mp)
        enc_t.append((t1 - t0) / mp)
        enc_c.append((c1 - c0) / mp)
    img = image_array(Image.open(Path(a.kodak) / "kodim23.png").convert("RGB"))
    _, sym = symbols_of(codec.model, img)
    values = codec.model.net.Q.values(sym)
    whole = tiles.decode_tiled(lambda c: codec.model.net.G(c), values, *img.shape[:2], tile=0).astype(int)
    seams = np.zeros(whole.shape[:2], bool)
    for k in range(128, max(whole.shape), 128):
        seams[max(0, k - 2):k + 2, :] = True
        seams[:, max(0, k - 2):k + 2] = True
    halo = {}
    for h in (2, 4, 6, 8, 12):
        t = tiles.decode_tiled(lambda c: codec.model.net.G(c), values, *img.shape[:2], tile=8, halo=h).astype(int)
        d = np.abs(t - whole)
        halo[h] = {"mean": float(d.mean()), "max": int(d.max()), "seam_mean": float(d[seams].mean())}
        log.info("halo %d cells: mean %.3f, max %d, at seams %.3f (of 255)", h, d.mean(), d.max(), d[seams].mean())
    child = subprocess.run([sys.executable, __file__, "--child", "--kodak", a.kodak, "--model", a.model],
                           capture_output=True, text=True, check=True)
    doc = {"model": a.model, "threads": 1, "kodak_images": len(enc_t),
           "encode_s_per_megapixel": float(np.median(enc_t)), "decode_s_per_megapixel": float(np.median(dec_t)),
           "encode_cpu_s_per_megapixel": float(np.median(enc_c)), "decode_cpu_s_per_megapixel": float(np.median(dec_c)),
           "note": "wall (s) and CPU (cpu_s) seconds, one thread; wall time includes waiting for a loaded machine",
           "tiles_vs_whole_kodim23": {"tile_cells": 8, "default_halo": tiles.DECODE_HALO, "by_halo": halo},
           "24_megapixels": json.loads(child.stdout.strip().splitlines()[-1]),
           "24_megapixels_cli": cli_peaks(a.model, a.kodak),
           "command": "python experiments/gc_speed.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out) / f"speed_{a.model}.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
