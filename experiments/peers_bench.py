"""invcomp against what users would pick instead, on one face set: RD curves, equal bytes at 1x/2x/4x invcomp's
size, the bytes each codec needs to match invcomp, and a picture.

Every codec codes the same R x R pixels (the bench's centre crops), and every decoded face is scored with SSIM,
MS-SSIM, PSNR and the identity distance of dlib's face recogniser (the same person below 0.6), with the bench's
own functions (:mod:`invcomp.bench.run`). The codecs: invcomp's inversion codec (default DCGAN at its default 6
bits, and at 4 and 8 bits), the VAE-GAN codec (C = 2, 4, 8), the CompressAI peers trained on UTKFace, JPEG XL,
WebP, AVIF, HEIF, JPEG 2000, JPEG, ThumbHash and BlurHash.

    python experiments/peers_bench.py --data ../shared/data/utkface --split holdout --limit 128 \
        --out experiments/results/peers_utkface_holdout128
    python experiments/lfw_faces.py --out /tmp/lfw_portraits
    cp experiments/data/portraits/*.png /tmp/lfw_portraits/
    python experiments/peers_bench.py --data /tmp/lfw_portraits --limit 102 --out experiments/results/peers_lfw_portraits

Each codec's rows are kept in ``OUT/cache`` (with invcomp's files), so a rerun with more codecs codes only those.
OUT gets ``tables.md`` (every setting of every codec; equal bytes at 1x, 2x and 4x invcomp's file; the bytes each
codec needs to match invcomp; the impostor baseline), ``summary.json`` (the same numbers),
``rd_{ssim,ms_ssim,psnr,identity}.png``, ``grid.webp`` and ``grid_2x.webp`` (8 faces, each codec at about invcomp's
bytes, and at twice them; a codec that cannot go that low shows its smallest file; bytes under each face) and
``per_image.csv.gz``.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Optional

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invcomp.bench import report  # noqa: E402
from invcomp.classic.codecs import build_codecs, check_available, peer_names  # noqa: E402
from invcomp.bench.run import COLUMNS, Coded, load_inputs, run_equal_bytes, run_fixed, run_invcomp  # noqa: E402
from invcomp.files import dumps  # noqa: E402

log = logging.getLogger("invcomp.experiments.peers_bench")
INVCOMP_RUNS = (("invcomp", "dcgan-utkface64", None), ("invcomp 4 bits", "dcgan-utkface64", 4),
                ("invcomp 8 bits", "dcgan-utkface64", 8), ("invcomp VAE-GAN C=2", "vaegan-utkface64-c2", None),
                ("invcomp VAE-GAN C=4", "vaegan-utkface64-c4", None), ("invcomp VAE-GAN C=8", "vaegan-utkface64-c8", None))
OTHERS = ("jpegxl", "webp", "avif", "heif", "jpeg2000", "jpeg", "thumbhash", "blurhash")
MULTIPLES = (1, 2, 4)
METRICS = (("ssim", "SSIM", True), ("ms_ssim", "MS-SSIM", True), ("psnr", "PSNR (dB)", True),
           ("identity", "identity distance", False))


def _mean(v: list) -> Optional[float]:
    v = [float(x) for x in v if x is not None]
    return float(np.mean(v)) if v else None


def bytes_to_match(pts: list[dict], metric: str, goal: float, higher: bool) -> tuple[Optional[float], str]:
    """Bytes at which a codec's mean curve (its fixed settings, by bytes) first reaches ``goal``: log-linear
    interpolation between the two settings around it. ``(None, why)`` when its range never reaches it."""
    pts = sorted((p for p in pts if p.get(metric) is not None and math.isfinite(p[metric])), key=lambda p: p["bytes"])
    if not pts:
        return None, "not measured"
    ok = [(p[metric] >= goal) if higher else (p[metric] <= goal) for p in pts]
    if ok[0]:
        return pts[0]["bytes"], "at or below its smallest file"
    for a, b, oa, ob in zip(pts, pts[1:], ok, ok[1:]):
        if ob and not oa:
            t = (goal - a[metric]) / (b[metric] - a[metric])
            return float(math.exp(math.log(a["bytes"]) + t * (math.log(b["bytes"]) - math.log(a["bytes"])))), ""
    return None, f"never, up to {pts[-1]['bytes']:.0f} B"


def impostor(inputs, seed: int = 0) -> dict:  # type: ignore[no-untyped-def]
    """Each face against another person's (a fixed derangement): the identity distance of a wrong face."""
    from invcomp import identity

    n = len(inputs.names)
    u = identity.to_uint8(inputs.targets)
    d, found = identity.distances(u, u[identity.impostor_pairs(n, seed)])
    return {"n": n, "mean_distance": float(d.mean()), "same_person": float((d < identity.SAME_PERSON).mean()),
            "faces_detected": float(found.mean()), "threshold": identity.SAME_PERSON}


def grid(inputs, picks: list[int], columns: list[tuple[str, list]]) -> bytes:  # type: ignore[no-untyped-def]
    """A WebP picture (quality 95): one row per picked face, one column per (label, per-image (bytes, RGB image or None))."""
    from PIL import Image, ImageDraw

    r = inputs.resolution
    lab = 38
    W, H = (r + 4) * (len(columns) + 1) + 4, lab + (r + 14) * len(picks) + 4
    canvas = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(canvas)
    heads = ["original"] + [c[0] for c in columns]
    for j, head in enumerate(heads):
        x = 4 + j * (r + 4)
        for k, part in enumerate(head.split("\n")[:3]):
            draw.text((x, 2 + 12 * k), part[:11], fill="black")
    for i, idx in enumerate(picks):
        y = lab + i * (r + 14)
        canvas.paste(inputs.images[idx], (4, y))
        for j, (_, cells) in enumerate(columns):
            x = 4 + (j + 1) * (r + 4)
            n_bytes, img = cells[idx]
            if img is not None:
                canvas.paste(img.resize((r, r)), (x, y))
            draw.text((x, y + r), f"{n_bytes} B" if n_bytes is not None else "-", fill="black")
    buf = io.BytesIO()
    canvas.save(buf, "WEBP", quality=95, method=6)  # a third of a lossless file; far finer than the codecs' artefacts
    return buf.getvalue()


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--split", default="all", type=click.Choice(["all", "holdout", "val", "train"]), show_default=True)
@click.option("--limit", default=128, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--codecs", default=None, help="Comma list of the other codecs [default: every one available].")
@click.option("--no-vaegan", is_flag=True, help="Leave the VAE-GAN runs out.")
@click.option("--max-steps", default=12, show_default=True)
@click.option("--threads", default=2, show_default=True, help="Torch threads (1 when something else is running).")
def main(data: Path, split: str, limit: int, out: Path, codecs: Optional[str], no_vaegan: bool, max_steps: int,
         threads: int) -> None:
    import torch

    from invcomp.bench.plots import rd_plots
    from invcomp.bench.run import warm_up
    from invcomp.codecs import load_codec
    from invcomp.codecs.settings import EncodeSettings
    from invcomp.imageio import to_pil as to_image

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    inputs = load_inputs(data, 64, limit, split)  # type: ignore[arg-type]
    t_start = time.time()
    classic = build_codecs()
    names = [c.strip() for c in codecs.split(",")] if codecs else list(peer_names()) + list(OTHERS)
    names = [n for n in names if check_available(classic[n]) is None or log.warning("%s unavailable: %s", n,
                                                                                   check_available(classic[n]))]
    rows: list[dict] = []
    files: dict[str, list[bytes]] = {}
    decoded: dict[str, list] = {}
    cache = out / "cache"  # each codec's rows (and invcomp's files), so a rerun with more codecs codes only those
    cache.mkdir(exist_ok=True)
    key = {"data": str(data), "split": split, "names": inputs.names}

    def cached(label: str) -> Optional[dict]:
        f = cache / f"{label.replace(' ', '_').replace('=', '')}.json"
        if f.exists():
            doc = json.loads(f.read_text())
            if doc["key"] == key:
                log.info("%s: from %s", label, f)
                return doc
        return None

    def keep(label: str, doc: dict) -> None:
        f = cache / f"{label.replace(' ', '_').replace('=', '')}.json"
        f.write_text(json.dumps({"key": key, **json.loads(dumps(doc))}))

    for label, model, bits in INVCOMP_RUNS:
        if no_vaegan and "VAE" in label:
            continue
        codec = load_codec(model, EncodeSettings(bits=bits))
        doc = cached(label)
        if doc is None:
            warm_up(codec, inputs.images[0])
            t0 = time.time()
            r, f = run_invcomp(codec, inputs, label=label, with_lpips=False, with_identity=True)
            doc = {"rows": r, "files": [d.hex() for d in f]}
            keep(label, doc)
            log.info("%s: %.1f B, SSIM %.4f, %.0f s", label, _mean([x["bytes"] for x in r]),
                     _mean([x["ssim"] for x in r]), time.time() - t0)
        rows += doc["rows"]
        files[label] = [bytes.fromhex(h) for h in doc["files"]]
        decoded[label] = [to_image(codec.decode(d)[1]) for d in files[label]]
    base = [len(d) for d in files["invcomp"]]
    refs: dict[int, dict[str, list]] = {k: {} for k in MULTIPLES}
    for name in names:
        t0 = time.time()
        c = classic[name]
        coded = Coded(c, inputs)
        doc = cached(name)
        if doc is None:
            new = run_fixed(coded, with_lpips=False, with_identity=True)
            if c.knob is not None:
                for k in MULTIPLES:
                    new += run_equal_bytes(coded, [k * b for b in base], 6, max_steps=max_steps, with_lpips=False,
                                           with_identity=True, reference=f"invcomp x{k}")
            doc = {"rows": new}
            keep(name, doc)
        rows += doc["rows"]
        for k in (1, 2):
            if c.knob is not None:
                eq = [r for r in doc["rows"] if r.get("reference") == f"invcomp x{k}"]
                refs[k][name] = [(r["bytes"], c.decode(coded.get(i, r["quality"])[0])) for i, r in enumerate(eq)]
            elif c.placeholder:  # one operating point (ThumbHash): the same file in both halves of the picture
                refs[k][name] = [(len(coded.get(i, None)[0]), c.decode(coded.get(i, None)[0])) for i in range(len(base))]
        log.info("%s: %.0f s", name, time.time() - t0)

    # RD points (fixed settings) of every codec, and the curves
    labels = [lab for lab, _, _ in INVCOMP_RUNS if lab in files] + names
    pts = {lab: report.points(rows, lab) for lab in labels}
    inv_curve = [p for lab in ("invcomp 4 bits", "invcomp", "invcomp 8 bits") for p in pts.get(lab, [])]
    vae_curve = [p for lab in labels if "VAE" in lab for p in pts[lab]]
    curves = {"invcomp (DCGAN, 4/6/8 bits)": inv_curve, **({"invcomp VAE-GAN (C=2/4/8)": vae_curve} if vae_curve else {}),
              **{n: pts[n] for n in names}}
    title = f"{len(inputs.names)} faces of {data.name} ({split}) at 64x64"
    for fname, png in rd_plots({k: v for k, v in curves.items() if v}, title).items():
        (out / fname).write_bytes(png)

    inv = pts["invcomp"][0]
    summary: dict = {"data": str(data), "split": split, "n": len(inputs.names), "resolution": 64,
                     "command": "python experiments/peers_bench.py " + " ".join(sys.argv[1:]),
                     "descriptions": {n: classic[n].description for n in names}, "points": pts}
    summary["impostor"] = impostor(inputs)
    # equal bytes at 1x, 2x, 4x invcomp's own bytes, per image
    eq_table = {}
    for k in MULTIPLES:
        for name in names:
            rs = [r for r in rows if r["codec"] == name and r.get("reference") == f"invcomp x{k}"]
            if rs:
                eq_table[f"{name} x{k}"] = {
                    "n": len(rs), "bytes": _mean([r["bytes"] for r in rs]), "ssim": _mean([r["ssim"] for r in rs]),
                    "ms_ssim": _mean([r["ms_ssim"] for r in rs]), "psnr": _mean([r["psnr"] for r in rs]),
                    "identity": _mean([r["identity"] for r in rs]), "same_person": report.same_person(rs),
                    "cannot_reach": sum(bool(r["cannot_reach"]) for r in rs)}
    summary["equal_bytes"] = eq_table
    # bytes needed to match invcomp's mean SSIM and its same-person share
    match = {}
    for name in names:
        row = {}
        for metric, goal, higher in (("ssim", inv["ssim"], True), ("same_person", inv["same_person"], True),
                                     ("psnr", inv["psnr"], True)):
            if goal is None:
                continue
            b, why = bytes_to_match(pts[name], metric, goal, higher)
            row[metric] = {"bytes": b, "ratio": None if b is None else b / inv["bytes"], "note": why}
        match[name] = row
    summary["match"] = {"invcomp": {k: inv[k] for k in ("bytes", "ssim", "psnr", "same_person")}, "codecs": match}
    summary["seconds"] = round(time.time() - t_start)
    (out / "summary.json").write_text(json.dumps(json.loads(dumps(summary)), indent=1) + "\n")
    (out / "tables.md").write_text(tables_markdown(summary, labels))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else (round(r[k], 5) if isinstance(r[k], float) else r[k])) for k in COLUMNS})
    (out / "per_image.csv.gz").write_bytes(gzip.compress(buf.getvalue().encode(), mtime=0))

    # the pictures: 8 faces, invcomp and every codec at about invcomp's bytes (grid.png), then at 2x (grid_2x.png)
    picks = list(np.linspace(0, len(inputs.names) - 1, 8).round().astype(int))
    inv_cols = [("invcomp\n(DCGAN)", [(len(files["invcomp"][i]), decoded["invcomp"][i]) for i in range(len(base))])]
    if "invcomp VAE-GAN C=4" in decoded:
        inv_cols.append(("invcomp\nVAE-GAN C=4", [(len(d), im) for d, im in zip(files["invcomp VAE-GAN C=4"],
                                                                               decoded["invcomp VAE-GAN C=4"])]))
    short = {"compressai-factorized": "CAI fact.", "compressai-hyperprior": "CAI hyper", "compressai-mbt-mean": "CAI mbt"}
    for k, fname in ((1, "grid.webp"), (2, "grid_2x.webp")):
        cols = inv_cols + [(f"{short.get(n, n.replace('compressai-', 'CAI ').replace('-msssim', chr(10) + 'MS-SSIM'))}"
                            f"\n@{k}x", cells) for n, cells in refs[k].items()]
        (out / fname).write_bytes(grid(inputs, picks, cols))
    click.echo((out / "tables.md").read_text())


def _f(v: Optional[float], spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def tables_markdown(s: dict, labels: list[str]) -> str:
    lines = [f"# {s['n']} faces of {Path(s['data']).name} ({s['split']}), 64x64", "", f"`{s['command']}`", "",
             f"Impostor baseline (each face against another person): mean identity distance "
             f"{s['impostor']['mean_distance']:.3f}, {100 * s['impostor']['same_person']:.0f}% called the same person "
             f"(threshold {s['impostor']['threshold']}); dlib found a face in "
             f"{100 * s['impostor']['faces_detected']:.0f}% of the originals (else the assumed box).", "",
             "## Every setting (means over faces)", "",
             "| codec | setting | bytes | bpp | SSIM | MS-SSIM | PSNR | identity distance | same person |",
             "|---|---|---|---|---|---|---|---|---|"]
    for lab in labels:
        for p in s["points"][lab]:
            sp = p.get("same_person")
            lines.append(f"| {lab} | {p['setting']} | {p['bytes']:.1f} | {p['bpp']:.3f} | {p['ssim']:.4f} | "
                         f"{p['ms_ssim']:.4f} | {p['psnr']:.2f} | {_f(p.get('identity'), '.3f')} | "
                         f"{'n/a' if sp is None else f'{100 * sp:.0f}%'} |")
    inv = s["points"]["invcomp"][0]
    for k in MULTIPLES:
        lines += ["", f"## Equal bytes: {k}x invcomp's file, per face (invcomp: {k * inv['bytes']:.1f} B mean)", "",
                  "| codec | bytes | SSIM | MS-SSIM | PSNR | identity distance | same person | cannot reach |",
                  "|---|---|---|---|---|---|---|---|"]
        if k == 1:
            sp = inv.get("same_person")
            lines.append(f"| **invcomp** | {inv['bytes']:.1f} | {inv['ssim']:.4f} | {inv['ms_ssim']:.4f} | {inv['psnr']:.2f} | "
                         f"{_f(inv.get('identity'), '.3f')} | {'n/a' if sp is None else f'{100 * sp:.0f}%'} | - |")
        for key, e in s["equal_bytes"].items():
            if key.endswith(f" x{k}"):
                sp = e["same_person"]
                lines.append(f"| {key[:-len(f' x{k}')]} | {e['bytes']:.1f} | {e['ssim']:.4f} | {e['ms_ssim']:.4f} | "
                             f"{e['psnr']:.2f} | {_f(e['identity'], '.3f')} | {'n/a' if sp is None else f'{100 * sp:.0f}%'} | "
                             f"{e['cannot_reach']}/{e['n']} |")
    m = s["match"]["invcomp"]
    lines += ["", f"## Bytes needed to match invcomp ({m['bytes']:.1f} B: SSIM {m['ssim']:.4f}, PSNR {m['psnr']:.2f} dB, "
              f"same person {_f(None if m['same_person'] is None else 100 * m['same_person'], '.0f')}%)", "",
              "From each codec's mean curve (log-linear between its settings); ratio = its bytes / invcomp's.", "",
              "| codec | bytes for SSIM | ratio | bytes for same-person share | ratio | bytes for PSNR | ratio |",
              "|---|---|---|---|---|---|---|"]
    for name, row in s["match"]["codecs"].items():
        cells = []
        for metric in ("ssim", "same_person", "psnr"):
            e = row.get(metric)
            if e is None:
                cells += ["n/a", "n/a"]
            elif e["bytes"] is None:
                cells += [e["note"], "-"]
            else:
                note = " (its smallest file)" if e["note"] else ""
                cells += [f"{e['bytes']:.0f}{note}", f"{e['ratio']:.2f}x"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
