"""Layered coding (mode 3) against the bench's anchors and learned peers: RD curves, equal-bytes identity, targets.

    python experiments/layered_rd.py --data ../shared/data/utkface --split holdout --limit 48 --resolution 64 \
        --out experiments/results/layered/rd64
    python experiments/layered_rd.py --data ../shared/data/utkface --split holdout --limit 48 --resolution 128 \
        --out experiments/results/layered/rd128 --figure experiments/results/layered/faces128.webp
    python experiments/layered_rd.py --data /tmp/ood/reframed --limit 32 --resolution 64 --anchors webp --peers none \
        --out experiments/results/layered/ood-reframed64

One inversion search per face (what ``invcomp encode --mode layered`` runs); then every plan of the rate
controller (the base, base+tone, base+tone+one residual layer at each rate) and two two-residual plans are coded
from it and decoded with the codec (so the figures are of the files' real bytes and decoded pixels). The anchors
(WebP, AVIF, HEIF, JPEG XL, JPEG 2000) and the CompressAI peers run their fixed sweeps through the bench's own
code on the same pixels; WebP is also searched to the same bytes as every invcomp file, per face (equal bytes).

Writes ``OUT/summary.json`` (every curve point: mean bytes, bpp, PSNR, SSIM, MS-SSIM, identity distance, share of
faces kept as the same person), ``OUT/tables.md`` (the curves and each target, met or missed, by how much) and
``OUT/rd.webp`` (SSIM, MS-SSIM and PSNR against bpp). Curves are compared at invcomp's points by interpolating the
other codec's curve in log bpp; a codec whose smallest file is larger than invcomp's at a point cannot reach it
there, which counts for invcomp (and is said).
"""
from __future__ import annotations

import io
import json
import logging
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

import click
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp import metrics  # noqa: E402
from invcomp.classic.codecs import build_codecs  # noqa: E402
from invcomp.bench.run import Coded, load_inputs, measure, run_equal_bytes, run_fixed  # noqa: E402
from invcomp.codecs import load_codec  # noqa: E402
from invcomp.codecs.base import prepare  # noqa: E402
from invcomp.codecs.modes.layered import parse_plan  # noqa: E402
from invcomp.identity import SAME_PERSON  # noqa: E402
from invcomp.imageio import quantize_pixels  # noqa: E402

log = logging.getLogger("layered_rd")
ANCHORS = "webp,avif,heif,jpegxl,jpeg2000"
KEYS = ("bytes", "bpp", "psnr", "ssim", "ms_ssim", "identity")


def point(rows: list[dict], label: str) -> dict:
    """Mean of each metric over the faces; ``same_person``: the share whose identity distance is below 0.6."""
    out: dict[str, Any] = {"label": label, "n": len(rows)}
    for k in KEYS:
        vals = [r[k] for r in rows if r.get(k) is not None and math.isfinite(r[k])]
        out[k] = statistics.fmean(vals) if vals else None
    ids = [r["identity"] for r in rows if r.get("identity") is not None]
    out["same_person"] = sum(d < SAME_PERSON for d in ids) / len(ids) if ids else None
    return out


def plans(rates: int) -> list[str]:
    """The base, base+tone, one residual layer at every half step of the rate, and two two-residual plans."""
    return (["none", "tone"] + [f"tone,{r / 2:g}" for r in range(2 * rates - 1)]
            + [f"tone,{rates // 2},{rates - 1}", f"tone,{rates - 1},{rates - 1}"])


def interp(curve: list[dict], bpp: float, key: str) -> Optional[float]:
    """``curve``'s ``key`` at ``bpp`` (linear in log bpp between its points; ``None`` below its smallest file,
    its top value above its largest)."""
    pts = sorted((p["bpp"], p[key]) for p in curve if p.get(key) is not None)
    if not pts or bpp < pts[0][0]:
        return None
    for (b0, v0), (b1, v1) in zip(pts, pts[1:]):
        if b0 <= bpp <= b1:
            t = 0.0 if b1 == b0 else (math.log(bpp) - math.log(b0)) / (math.log(b1) - math.log(b0))
            return v0 + t * (v1 - v0)
    return pts[-1][1]


def search(codec: Any, inputs: Any, t64: torch.Tensor, cache: Optional[Path]) -> tuple[torch.Tensor, Optional[float]]:
    """The float latents ``(N, D)`` of the faces and the search's seconds per face; with ``cache``, read from there
    when it holds the same faces and search settings (the 64- and 128-px runs share one search), else written."""
    key = {"names": list(inputs.names), "settings": repr(codec.settings)}
    if cache is not None and cache.is_file():
        held = torch.load(cache, weights_only=True)
        if held.get("key") == json.dumps(key):
            log.info("latents of %d faces from %s", len(inputs.names), cache)
            return held["z"], held.get("seconds")
    t0 = time.perf_counter()
    z, _ = codec.find_symbols(t64, None)
    seconds = (time.perf_counter() - t0) / len(t64)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"key": json.dumps(key), "z": z, "seconds": seconds}, cache)
    return z, seconds


def code_invcomp(codec: Any, inputs: Any, plan_list: list[str],
                 cache: Optional[Path] = None) -> tuple[dict[str, list[dict]], dict[str, list[bytes]], dict]:
    """One search per face (or the cached latents), then every plan; rows per plan (bytes and metrics of the decoded
    file)."""
    t64 = torch.stack([prepare(im, 64, "crop") for im in inputs.originals])
    z, search_s = search(codec, inputs, t64, cache)
    rows: dict[str, list[dict]] = {}
    files: dict[str, list[bytes]] = {}
    layer_s: list[float] = []
    for plan in plan_list:
        codec.plan = parse_plan(plan, codec.resolution, codec.residual.rates)
        t0 = time.perf_counter()
        enc = codec.encode_symbols(z, inputs.originals, target=t64)
        layer_s.append((time.perf_counter() - t0) / len(enc))
        data = [e.data for e in enc]
        ms, dec = measure(lambda d: quantize_pixels(codec.decode(d)[1]), data, inputs.targets, False, True)
        rows[plan] = [{**m, "bytes": len(d), "bpp": metrics.bpp(len(d), inputs.resolution, inputs.resolution),
                       "decode_s": s} for d, m, s in zip(data, ms, dec)]
        files[plan] = data
        log.info("invcomp %-10s %7.1f B  SSIM %.4f  PSNR %.2f", plan, *(point(rows[plan], plan)[k] for k in ("bytes", "ssim", "psnr")))
    cost = {"search_s_per_face": search_s, "layers_s_per_face": max(layer_s),
            "decode_ms_median": 1000 * statistics.median(r["decode_s"] for p in plan_list for r in rows[p])}
    return rows, files, cost


def checks(R: int, inv: list[dict], others: dict[str, list[dict]], webp_eq: dict[str, dict]) -> list[str]:
    """Each target of the issue at this resolution: met or missed, and by how much."""
    out = []
    curve = list(inv)  # every plan: the base, base + tone, one residual layer at each rate, two residual layers
    single = [p for p in curve if p["label"].count(",") <= 1]
    ordered = sorted(curve, key=lambda p: p["bpp"])
    drops = [f"{a['label']} -> {b['label']} ({a['ssim']:.4f} -> {b['ssim']:.4f})" for a, b in zip(ordered, ordered[1:])
             if not b["ssim"] > a["ssim"]]
    top = max(p["bpp"] for p in curve)
    out.append(f"RD curve (every plan, by bpp) rises monotonically in SSIM: {'met' if not drops else 'MISSED: ' + '; '.join(drops)}; "
               f"it reaches {top:.3f} bpp" + (f" ({'met' if top >= 1 else 'MISSED'} for >= 1 bpp)" if R == 64 else ""))
    if R == 64:
        fit = [p for p in curve if p["bytes"] <= 150]
        best = max(fit, key=lambda p: p["ssim"]) if fit else None
        out.append(f"SSIM >= 0.85 at <= 150 B: best {best['ssim']:.4f} at {best['bytes']:.1f} B ({best['label']}): "
                   f"{'met' if best['ssim'] >= 0.85 else 'MISSED by %.4f' % (0.85 - best['ssim'])}" if best else
                   "SSIM >= 0.85 at <= 150 B: no invcomp point at <= 150 B: MISSED")
        w = min(others.get("webp", []), key=lambda p: p["bytes"], default=None)
        if w:
            fit = [p for p in curve if p["bytes"] <= w["bytes"]]
            best = max(fit, key=lambda p: p["psnr"]) if fit else None
            out.append(f"PSNR >= WebP lowest ({w['psnr']:.2f} dB at {w['bytes']:.1f} B) at <= its bytes: best "
                       + (f"{best['psnr']:.2f} dB at {best['bytes']:.1f} B ({best['label']}): "
                          f"{'met' if best['psnr'] >= w['psnr'] else 'MISSED by %.2f dB' % (w['psnr'] - best['psnr'])}" if best else "none: MISSED"))
    else:
        at = [p for p in curve if p["bytes"] <= 150]
        best = max(at, key=lambda p: p["ssim"]) if at else None
        out.append(f"SSIM >= 0.75 at 150 B: best {best['ssim']:.4f} at {best['bytes']:.1f} B ({best['label']}): "
                   f"{'met' if best['ssim'] >= 0.75 else 'MISSED by %.4f' % (0.75 - best['ssim'])}" if best else "no point at <= 150 B: MISSED")
        for key in ("ssim", "ms_ssim"):
            bad = []
            for p in (q for q in single if q["bpp"] <= 0.5):
                for name, c in others.items():
                    v = interp(c, p["bpp"], key)
                    if v is not None and v > p[key]:
                        bad.append(f"{name} at {p['bpp']:.3f} bpp by {v - p[key]:.4f}")
            out.append(f"{key.upper()} above every anchor and peer from the lowest point to 0.5 bpp: "
                       + ("met" if not bad else "MISSED: " + "; ".join(bad)))
        bad = []
        for p in (q for q in single if q["bpp"] >= 0.15):
            vals = [(interp(c, p["bpp"], "psnr"), n) for n, c in others.items() if n.startswith("compressai")]
            vals = [(v, n) for v, n in vals if v is not None]
            if vals:
                v, n = max(vals)
                if p["psnr"] < v - 0.5:
                    bad.append(f"{p['bpp']:.3f} bpp: {p['psnr']:.2f} dB vs {n} {v:.2f} dB ({v - p['psnr']:.2f} dB under)")
        out.append("PSNR within 0.5 dB of the best peer at every point >= 0.15 bpp: " + ("met" if not bad else "MISSED: " + "; ".join(bad)))
    matched = {k: e for k, e in webp_eq.items() if e["faces_compared"]}
    below = [k for k, e in webp_eq.items() if not e["faces_compared"]]
    note = f" (WebP cannot code any face as small as plans {', '.join(below)}: they count for invcomp)" if below else ""
    lose = [f"{k} ({e['faces_compared']} faces): {e['invcomp_same']:.0%} vs WebP {e['webp_same']:.0%}" for k, e in matched.items()
            if e["invcomp_same"] is not None and e["webp_same"] is not None and e["invcomp_same"] < e["webp_same"]]
    out.append("identity kept at least as often as WebP at equal bytes, every plan WebP can match: "
               + ("met" if not lose else "MISSED: " + "; ".join(lose)) + note)
    lose = [f"{k} ({e['faces_compared']} faces): SSIM {e['invcomp_ssim']:.4f} vs WebP {e['webp_ssim']:.4f}" for k, e in matched.items()
            if e["invcomp_ssim"] < e["webp_ssim"]]
    out.append("SSIM at least WebP's at equal bytes, every plan WebP can match: "
               + ("met" if not lose else "MISSED: " + "; ".join(lose)) + note)
    return out


def rd_plot(inv: list[dict], others: dict[str, list[dict]], title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key in zip(axes, ("ssim", "ms_ssim", "psnr")):
        single = sorted((p for p in inv if p["label"].count(",") <= 1), key=lambda p: p["bpp"])
        ax.plot([p["bpp"] for p in single], [p[key] for p in single], "o-", lw=2, color="black", label="invcomp layered")
        for name, c in others.items():
            c = sorted(c, key=lambda p: p["bpp"])
            ax.plot([p["bpp"] for p in c], [p[key] for p in c], "--" if not name.startswith("compressai") else ":",
                    marker=".", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("bpp")
        ax.set_title(key.upper().replace("_", "-"))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(buf.getvalue())).convert("RGB").save(out, "WEBP", quality=80)
    return out.getvalue()


@click.command()
@click.option("--data", required=True, type=click.Path(exists=True))
@click.option("--split", default="all", type=click.Choice(["all", "train", "val", "holdout"]))
@click.option("--limit", default=48, show_default=True)
@click.option("--resolution", default=64, show_default=True)
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--anchors", default=ANCHORS, show_default=True)
@click.option("--peers", default="all", show_default=True, help="Comma list of compressai-* peers, all, or none.")
@click.option("--iters", default=None, type=int, help="Search steps [default: as invcomp encode].")
@click.option("--threads", default=2, show_default=True)
@click.option("--figure", default=None, type=click.Path(path_type=Path), help="Also draw one face at 5 rates here.")
@click.option("--latents", default=None, type=click.Path(path_type=Path),
              help="Cache of the search's latents: read when it holds these faces and settings, else written.")
@click.option("--search-only", is_flag=True, help="Only fill the --latents cache (the searches do not depend on the "
              "residual network, so they can run before it is trained).")
@click.option("--extra-peers", default=None, type=click.Path(exists=True, path_type=Path),
              help="A folder with a peers.json (experiments/pack_peers.py --out) of peers not shipped, e.g. trained at 128 px.")
def main(data: str, split: str, limit: int, resolution: int, out: Path, anchors: str, peers: str, iters: Optional[int],
         threads: int, figure: Optional[Path], latents: Optional[Path], search_only: bool,
         extra_peers: Optional[Path]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(threads)
    out.mkdir(parents=True, exist_ok=True)
    inputs = load_inputs(data, resolution, limit, split)  # type: ignore[arg-type]
    codec = load_codec(mode="layered", resolution=resolution)
    if iters is not None:
        from dataclasses import replace

        codec.settings = replace(codec.settings, iters=iters)
    if search_only:
        if latents is None:
            raise click.UsageError("--search-only needs --latents")
        search(codec, inputs, torch.stack([prepare(im, 64, "crop") for im in inputs.originals]), latents)
        return
    plan_list = plans(codec.residual.rates)
    rows, files, cost = code_invcomp(codec, inputs, plan_list, latents)
    inv = [{**point(rows[p], p), "plan": p} for p in plan_list]
    classic = build_codecs()
    names = [a for a in anchors.split(",") if a]
    if extra_peers is not None:
        classic.update(extra_peer_codecs(extra_peers))
        names += [n for n in classic if n.endswith("@extra")]
    peer_names = [n for n in classic if n.startswith("compressai")] if peers == "all" else \
        [] if peers == "none" else peers.split(",")
    others: dict[str, list[dict]] = {}
    coded: dict[str, Coded] = {}
    for name in names + peer_names:
        c = classic[name]
        why = c.unavailable()
        if why:
            log.warning("%s skipped: %s", name, why)
            continue
        coded[name] = Coded(c, inputs)
        fixed = run_fixed(coded[name], with_lpips=False, with_identity=True)
        by: dict[str, list[dict]] = {}
        for r in fixed:
            by.setdefault(r["setting"], []).append(r)
        others[name] = [point(v, k) for k, v in by.items()]
        log.info("%s: %d settings", name, len(by))
    webp_eq: dict[str, dict] = {}
    if "webp" in coded:
        for p in plan_list:
            eq = run_equal_bytes(coded["webp"], [len(d) for d in files[p]], 0, with_lpips=False, with_identity=True)
            # compared on the faces whose invcomp file WebP can match in size (its smallest file is not larger)
            keep = [k for k, r in enumerate(eq) if not r["cannot_reach"]]
            e = {"webp_cannot_reach": len(eq) - len(keep), "faces_compared": len(keep)}
            if keep:
                w, i = point([eq[k] for k in keep], "webp"), point([rows[p][k] for k in keep], p)
                e.update({"invcomp_bytes": i["bytes"], "webp_bytes": w["bytes"], "invcomp_ssim": i["ssim"],
                          "webp_ssim": w["ssim"], "invcomp_same": i["same_person"], "webp_same": w["same_person"]})
            webp_eq[p] = e
    summary = {"command": " ".join(sys.argv), "resolution": resolution, "faces": len(inputs.names), "invcomp": inv,
               "others": others, "webp_equal_bytes": webp_eq, "cost": {**cost, "threads": threads},
               "checks": checks(resolution, inv, others, webp_eq)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "tables.md").write_text(tables(summary))
    (out / "rd.webp").write_bytes(rd_plot(inv, others, f"{len(inputs.names)} faces at {resolution} px ({data}, {split})"))
    if figure is not None:
        from layered_figure import draw  # experiments/layered_figure.py

        figure.write_bytes(draw(codec, inputs, files, plan_list, coded, summary))
    for line in summary["checks"]:
        log.info("%s", line)


def extra_peer_codecs(root: Path) -> dict:
    """The peers of ``root/peers.json`` as bench codecs named ``NAME-RES@extra`` (as the bench builds its own)."""
    from invcomp.nets import peers as learned
    from invcomp.classic.codecs import ClassicCodec
    from invcomp.classic.search import Knob

    out = {}
    for fam in learned.read_manifest(root).values():
        n, name = len(fam.models), f"{fam.name}-{fam.resolution}px@extra"
        out[name] = ClassicCodec(name, fam.describe(), lambda im, q, f=fam: learned.encode(f, im, q),
                                 lambda d, f=fam: learned.decode(f, d), tuple(range(n)), Knob(0, n - 1), "model",
                                 learned.compressai_unavailable, label=fam.label)
    return out


def tables(s: dict) -> str:
    lines = [f"# Layered coding at {s['resolution']} px, {s['faces']} faces", "", f"`{s['command']}`", "",
             "| codec | setting | bytes | bpp | PSNR | SSIM | MS-SSIM | identity distance | same person |",
             "|---|---|---|---|---|---|---|---|---|"]

    def fmt(v: Any, f: str) -> str:
        return "-" if v is None else format(v, f)

    for p in s["invcomp"]:
        lines.append(f"| invcomp layered | {p['label']} | {p['bytes']:.1f} | {p['bpp']:.3f} | {fmt(p['psnr'], '.2f')} | "
                     f"{p['ssim']:.4f} | {fmt(p['ms_ssim'], '.4f')} | {fmt(p['identity'], '.3f')} | {fmt(p['same_person'], '.0%')} |")
    for name, c in s["others"].items():
        for p in sorted(c, key=lambda p: p["bpp"]):
            lines.append(f"| {name} | {p['label']} | {p['bytes']:.1f} | {p['bpp']:.3f} | {fmt(p['psnr'], '.2f')} | "
                         f"{p['ssim']:.4f} | {fmt(p['ms_ssim'], '.4f')} | {fmt(p['identity'], '.3f')} | {fmt(p['same_person'], '.0%')} |")
    if s["webp_equal_bytes"]:
        lines += ["", "## WebP at the same bytes, per face", "",
                  "Means over the faces whose invcomp file WebP can match (its smallest file is not larger); the last "
                  "column counts the faces it cannot.", "",
                  "| plan | invcomp bytes | WebP bytes | invcomp SSIM | WebP SSIM | invcomp same person | WebP same person | WebP cannot reach |",
                  "|---|---|---|---|---|---|---|---|"]
        for k, e in s["webp_equal_bytes"].items():
            if not e["faces_compared"]:
                lines.append(f"| {k} | - | - | - | - | - | - | all {e['webp_cannot_reach']} |")
                continue
            lines.append(f"| {k} | {e['invcomp_bytes']:.1f} | {e['webp_bytes']:.1f} | {e['invcomp_ssim']:.4f} | "
                         f"{e['webp_ssim']:.4f} | {fmt(e['invcomp_same'], '.0%')} | {fmt(e['webp_same'], '.0%')} | "
                         f"{e['webp_cannot_reach']} |")
    c = s["cost"]
    lines += ["", f"## Cost (whole-batch figures, {c.get('threads', 2)} CPU threads)", "",
              f"- search: {c['search_s_per_face']:.2f} s per face; coding the layers: {c['layers_s_per_face'] * 1000:.0f} ms "
              f"per face (the largest plan); decode: median {c['decode_ms_median']:.1f} ms per face", "",
              "## Targets", ""] + [f"- {line}" for line in s["checks"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
