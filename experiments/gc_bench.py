"""GC beside HEIF (the BPG stand-in), AVIF, WebP, JPEG XL and the CompressAI peers, at GC's bytes and at twice them.

    python experiments/gc_bench.py --set faces --data ../shared/data/utkface --limit 48
    python experiments/gc_bench.py --set kodak --data ../shared/data/kodak
    python experiments/gc_bench.py --set ood --data /tmp/ood/reframed --name reframed   # faces of another framing

For every image (held-out UTKFace faces at their full 200 px, or the 24 Kodak images, out of domain) and every
shipped GC model, the file's bytes B are the targets; each other codec is set, by the bench's equal-bytes search
(:func:`invcomp.classic.search.find_closest`, the closest file to the target, ties to the smaller), to B and to 2B.
Measured on the decoded 8-bit pixels against the original: bpp, PSNR, MS-SSIM (as many scales as the size allows),
identity distance (faces only; dlib, where installed), and the blur proxy :func:`invcomp.metrics.hf_ratio`;
GC's encode (which includes its reconstruction) and decode CPU seconds.
Writes ``OUT/SET/summary.json`` (means per codec and target, CompressAI-style ``results`` for the GC models),
``tables.md`` and ``per_image.csv.gz``.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.classic.codecs import build_codecs  # noqa: E402
from invcomp.classic.search import find_closest  # noqa: E402
from invcomp.codecs import load_codec  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.metrics import hf_ratio  # noqa: E402
from invcomp.zoo.registry import list_models  # noqa: E402
from invcomp.imageio import from_image, load_image  # noqa: E402
from invcomp.metrics import ms_ssim, psnr, ssim  # noqa: E402

log = logging.getLogger("gc_bench")
OTHERS = ("heif", "avif", "webp", "jpegxl", "compressai-hyperprior", "compressai-mbt-mean")
SAME_PERSON = 0.6


def csv_bytes(rows: list[dict]) -> bytes:
    import csv

    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r[k]) for k in keys})
    return buf.getvalue().encode()


def gc_models() -> list[str]:
    return sorted(e.name for e in list_models() if e.kind == "gc")


def images(which: str, data: str, limit: int | None) -> list[Path]:
    files = list_images(data, "holdout" if which == "faces" else "all")  # kodak, ood: every image of the folder
    return files[:limit] if limit else files


def measure(original: torch.Tensor, decoded: Image.Image, n_bytes: int, faces: bool) -> dict[str, Any]:
    """Metrics of a decoded picture against the original ``(3, H, W)`` in [-1, 1]."""
    x, y = from_image(decoded)[None], original[None]
    h, w = original.shape[-2:]
    row = {"bytes": n_bytes, "bpp": 8 * n_bytes / (h * w), "psnr": float(psnr(x, y)), "ssim": float(ssim(x, y)),
           "ms_ssim": float(ms_ssim(x, y)), "hf_ratio": float(hf_ratio(x, y)), "identity": None}
    if faces:
        from invcomp.identity import identity_or_none

        ident = identity_or_none(y, x)
        row["identity"] = None if ident is None else ident[0]
    return row


def cached(codec: Any, img: Image.Image) -> tuple[Callable[[float], int], dict]:
    store: dict[float, bytes] = {}

    def size_at(q: float) -> int:
        if q not in store:
            store[q] = codec.encode(img, q)
        return len(store[q])

    return size_at, store


def run_image(path: Path, gcs: dict[str, Any], others: dict[str, Any], faces: bool) -> list[dict]:
    img = load_image(path)
    x = from_image(img)
    rows = []
    targets = {}
    for name, codec in gcs.items():
        t0 = time.process_time()  # CPU seconds (one thread): fair on a shared machine
        enc = codec.encode([img])[0]
        t1 = time.process_time()
        _, pixels = codec.decode_pixels(enc.data)
        t2 = time.process_time()
        row = measure(x, Image.fromarray(pixels), len(enc.data), faces)
        cfg, cells = codec.model.config, enc.extra["grid"][1] * enc.extra["grid"][2]
        row.update(bits_per_cell=8 * (len(enc.data) - 9) / cells, bound_bits_per_cell=cfg.channels * np.log2(cfg.centres))
        rows.append({"image": path.name, "codec": name, "target": f"{name} x1", "setting": "", "cannot_reach": False,
                     "encode_s": t1 - t0, "decode_s": t2 - t1, "megapixels": x.shape[1] * x.shape[2] / 1e6, **row})
        targets[name] = len(enc.data)
    for cname, codec in others.items():
        size_at, store = cached(codec, img)
        for gname, b in targets.items():
            for k in (1, 2):
                res = find_closest(size_at, k * b, codec.knob)
                dec = codec.decode(store[res.quality])
                rows.append({"image": path.name, "codec": cname, "target": f"{gname} x{k}",
                             "setting": codec.setting_label(res.quality), "cannot_reach": res.cannot_reach,
                             **measure(x, dec, res.bytes, faces)})
    return rows


def summarise(rows: list[dict]) -> dict[str, Any]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["target"], r["codec"]), []).append(r)
    out = {}
    for (target, codec), rs in sorted(groups.items()):
        ids = [r["identity"] for r in rs if r["identity"] is not None]
        stats = {k: float(np.mean([r[k] for r in rs])) for k in ("bytes", "bpp", "psnr", "ssim", "ms_ssim", "hf_ratio")}
        stats.update(n=len(rs), cannot_reach=sum(bool(r["cannot_reach"]) for r in rs),
                     identity=float(np.mean(ids)) if ids else None,
                     same_person=float(np.mean([d < SAME_PERSON for d in ids])) if ids else None)
        if "bits_per_cell" in rs[0]:  # GC: the payload (file less its 9 bytes of header and CRC) per 16x16 cell
            stats.update(bits_per_cell=float(np.mean([r["bits_per_cell"] for r in rs])), bound_bits_per_cell=rs[0]["bound_bits_per_cell"])
        if "encode_s" in rs[0]:
            mp = sum(r["megapixels"] for r in rs)
            stats.update(encode_s_per_mp=sum(r["encode_s"] for r in rs) / mp, decode_s_per_mp=sum(r["decode_s"] for r in rs) / mp)
        out.setdefault(target, {})[codec] = stats
    return out


def tables(summary: dict[str, Any], title: str) -> str:
    lines = [f"# {title}", ""]
    for target, by_codec in summary.items():
        lines += [f"## at {target.replace(' x1', ''). replace(' x2', '')}'s bytes" + (" x2" if target.endswith("x2") else ""), "",
                  "| codec | bytes | bpp | PSNR dB | MS-SSIM | SSIM | HF ratio | identity | same person | cannot reach |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for codec, s in sorted(by_codec.items(), key=lambda kv: -kv[1]["ms_ssim"]):
            ident = "n/a" if s["identity"] is None else f"{s['identity']:.3f}"
            same = "n/a" if s["same_person"] is None else f"{100 * s['same_person']:.0f}%"
            lines.append(f"| {codec} | {s['bytes']:.0f} | {s['bpp']:.4f} | {s['psnr']:.2f} | {s['ms_ssim']:.4f} | "
                         f"{s['ssim']:.4f} | {s['hf_ratio']:.2f} | {ident} | {same} | {s['cannot_reach']}/{s['n']} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", dest="which", choices=["faces", "kodak", "ood"], required=True,
                    help="faces: held-out UTKFace; kodak: out of domain; ood: every face of --data (identity measured)")
    ap.add_argument("--name", default=None, help="the results folder [default: the set]")
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--models", default=None, help="comma list of GC models [default: every shipped one]")
    ap.add_argument("--codecs", default=",".join(OTHERS))
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "gc"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    faces = a.which in ("faces", "ood")
    gcs = {m: load_codec(m, mode="gc") for m in (a.models.split(",") if a.models else gc_models())}
    all_codecs = build_codecs()
    others = {}
    for c in a.codecs.split(","):
        why = all_codecs[c].unavailable()
        if why:
            log.warning("%s is unavailable: %s", c, why)
        else:
            others[c] = all_codecs[c]
    rows = []
    files = images(a.which, a.data, a.limit)
    for i, f in enumerate(files):
        rows += run_image(f, gcs, others, faces)
        log.info("%d/%d %s", i + 1, len(files), f.name)
    out = Path(a.out) / (a.name or a.which)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    title = {"faces": "held-out UTKFace faces at 200 px", "kodak": "Kodak (out of domain)",
             "ood": f"faces of {a.name or Path(a.data).name} (out of distribution)"}[a.which]
    doc = {"name": f"gc-bench-{a.which}", "description": f"GC vs classic and learned codecs, {title}, {len(files)} images",
           "images": len(files), "summary": summary,
           "results": {m: {"bpp": [r["bpp"] for r in rows if r["codec"] == m],
                           "psnr-rgb": [r["psnr"] for r in rows if r["codec"] == m],
                           "ms-ssim-rgb": [r["ms_ssim"] for r in rows if r["codec"] == m],
                           "encoding_time": [r["encode_s"] for r in rows if r["codec"] == m],
                           "decoding_time": [r["decode_s"] for r in rows if r["codec"] == m]} for m in gcs},
           "command": "python experiments/gc_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "tables.md").write_text(tables(summary, f"GC: {title} ({len(files)} images)"))
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        gz.write(csv_bytes(rows))
    (out / "per_image.csv.gz").write_bytes(buf.getvalue())
    print(tables(summary, f"GC: {title} ({len(files)} images)"))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
