"""``--mode auto``'s decision by rate and distortion, and its predicted (skipped) searches (issue 33).

    python experiments/auto_predict.py --split val --limit 48 --out /tmp/auto_val        # choose SEARCH_GAIN, the slope
    python experiments/auto_predict.py --split holdout --limit 48 --out experiments/results/speed/auto_predict

Every face (UTKFace, coded at 64 px as ``--mode auto`` codes it) is coded by every candidate in full: the warm start's
preview (0 steps), the search, the tone record, the three VAE-GANs; each file is decoded to the picture ``invcomp
decode`` writes and measured (SSIM at 64 px as auto scores it; the identity distance at the input's size). From
these, with no further coding:

* **the search's gain over its preview** (SSIM), whose 99th percentile on validation faces is ``SEARCH_GAIN``;
* **the decision** at each price of a byte (``--quality`` 1 to 5; the searched latents and the previews also at one
  bit fewer and one more) and by the earlier tolerance rule: mean bytes, SSIM,
  the share of faces kept as the same person, and the gap to the candidates' lower convex hull (in bytes, at the
  decision's SSIM);
* **the prediction**: where the preview plus ``SEARCH_GAIN`` cannot win, the search is skipped. How often the
  predicted file is the full decision's, what the misses cost (bytes, SSIM), and the share of searches skipped.
  (A face's files do not depend on the other faces, so the skipped searches are simulated exactly.)
* **wall time** of ``AutoCodec.encode`` with and without prediction, measured in this process (``--timed`` faces).
"""
from __future__ import annotations

import json
import math
import logging
import statistics
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.codecs import EncodeSettings, load_codec  # noqa: E402
from invcomp.codecs.modes import auto  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402
from invcomp.identity import SAME_PERSON, picture_distance  # noqa: E402
from invcomp.service.encode import DEFAULT_AUTO_SLOPE, parse_quality  # noqa: E402

log = logging.getLogger("auto_predict")
SEARCHED = ("inversion:dcgan-utkface64", "inversion-tone:dcgan-utkface64")
PREVIEW = "inversion:dcgan-utkface64@0"


def hull_gap(points: list[tuple[float, float]], b: float, s: float) -> float:
    """How many bytes more than the candidates' lower convex hull (bytes against SSIM, the fewest bytes for an SSIM)
    the point (b, s) spends, as a share of b (0 or less: on or below the hull)."""
    pts = sorted(points, key=lambda p: p[1])
    best = min((p[0] for p in pts if p[1] >= s), default=None)
    for (b0, s0), (b1, s1) in zip(pts, pts[1:]):
        if s0 <= s <= s1 and s1 > s0:
            interp = b0 + (b1 - b0) * (s - s0) / (s1 - s0)
            best = interp if best is None else min(best, interp)
    for i in range(len(pts)):
        for j in range(i + 1, len(pts)):
            (b0, s0), (b1, s1) = pts[i], pts[j]
            if s0 <= s <= s1 and s1 > s0:
                best = min(best if best is not None else float("inf"), b0 + (b1 - b0) * (s - s0) / (s1 - s0))
    return 0.0 if best is None else (b - best) / b


def decide(files: dict[str, dict], slope: float | None, tolerance: float | None) -> str:
    names = list(files)
    scores, sizes = [files[k]["ssim"] for k in names], [files[k]["bytes"] for k in names]
    i = auto.choose_rd(scores, sizes, slope, None) if slope is not None else auto.choose(scores, sizes, tolerance, None)
    return names[i]  # type: ignore[index]


def predicted(files: dict[str, dict], slope: float, gain: float) -> tuple[str, bool]:
    """The decision when the search runs only where the preview plus ``gain`` can win; and whether it ran."""
    cheap = {k: v for k, v in files.items() if k.split("/")[0] not in SEARCHED}  # (NAME/5bit: a searched latent)
    best = max(v["ssim"] - slope * v["bytes"] for v in cheap.values())
    p = max(v["ssim"] - slope * v["bytes"] for k, v in files.items() if k.split("/")[0] == PREVIEW)  # any bit depth
    runs = p + gain >= best
    return decide(files if runs else cheap, slope, None), runs


@click.command()
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--split", default="val", show_default=True, type=click.Choice(["val", "holdout"]))
@click.option("--limit", default=48, show_default=True)
@click.option("--timed", default=8, show_default=True, help="Faces whose whole auto encode is timed both ways.")
@click.option("--gain", default=None, type=float, help="The SSIM bound to simulate [default: the shipped SEARCH_GAIN].")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def main(data: str, split: str, limit: int, timed: int, gain: float | None, out: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    gain = auto.SEARCH_GAIN if gain is None else gain
    files = list_images(data, split)[:limit]
    full = load_codec(None, EncodeSettings(), mode="auto", slope=DEFAULT_AUTO_SLOPE, search_gain=math.inf)
    full.keep_candidates = True
    faces = []
    cache = out / "faces.jsonl"  # a rerun reuses the faces already coded
    out.mkdir(parents=True, exist_ok=True)
    done = {d["face"]: d for d in map(json.loads, cache.read_text().splitlines())} if cache.exists() else {}
    for p in files:
        if p.name in done:
            faces.append(done[p.name])
            continue
        img = Image.open(p).convert("RGB")
        e = full.encode([img])[0]
        cands = {}
        coded = {f"{c.mode_key}:{c.name}": d for c, d in zip(full.candidates, e.extra["auto"]["files"])}
        coded.update(e.extra["auto"]["more_files"])
        for c in e.extra["auto"]["candidates"]:
            data_c = coded[c["codec"]]
            _, pic = full.decode_picture(data_c)
            cands[c["codec"]] = {"bytes": len(data_c), "ssim": c["ssim"], "identity": picture_distance(img, pic)}
        faces.append({"face": p.name, "files": cands})
        with cache.open("a") as f:
            f.write(json.dumps(faces[-1]) + "\n")
        log.info("%s: %s", p.name, {k: (v["bytes"], round(v["ssim"], 3)) for k, v in cands.items()})
    gains = [f["files"][f"inversion:dcgan-utkface64{b}"]["ssim"] - f["files"][f"{PREVIEW}{b}"]["ssim"] for f in faces
             for b in ("", "/5bit", "/7bit")]  # the search against its preview, bit depth by bit depth
    summary: dict = {"split": split, "faces": len(faces), "search_gain": gain,
                     "gain_quantiles": {q: float(np.quantile(gains, q / 100)) for q in (50, 90, 95, 99, 100)}}
    rules = [(f"--quality {q}", parse_quality(str(q), DEFAULT_AUTO_SLOPE), None) for q in (1, 2, 3, 4, 5)]
    rules += [("tolerance 0.03 (earlier rule)", None, 0.03)]
    names = list(faces[0]["files"])
    means = {k: (statistics.mean(f["files"][k]["bytes"] for f in faces), statistics.mean(f["files"][k]["ssim"] for f in faces))
             for k in names}
    table = []
    for label, slope, tol in rules:
        picks = [decide(f["files"], slope, tol) for f in faces]
        chosen = [f["files"][k] for f, k in zip(faces, picks)]
        b, s = statistics.mean(c["bytes"] for c in chosen), statistics.mean(c["ssim"] for c in chosen)
        same = statistics.mean((c["identity"] is not None and c["identity"] < SAME_PERSON) for c in chosen)
        row = {"rule": label, "slope": slope, "bytes": b, "ssim": s, "same": same, "hull_gap": hull_gap(list(means.values()), b, s),
               "picked": {k: picks.count(k) for k in set(picks)}}
        if slope is not None:
            pred = [predicted(f["files"], slope, gain) for f in faces]
            agree = [p == k for (p, _), k in zip(pred, picks)]
            pb = statistics.mean(f["files"][p]["bytes"] for f, (p, _) in zip(faces, pred))
            ps = statistics.mean(f["files"][p]["ssim"] for f, (p, _) in zip(faces, pred))
            row.update(agree=statistics.mean(agree), skipped=1 - statistics.mean(r for _, r in pred),
                       miss_bytes=pb - b, miss_ssim=ps - s)
        table.append(row)
    summary["rules"], summary["candidates"] = table, {k: {"bytes": v[0], "ssim": v[1]} for k, v in means.items()}
    if timed:
        imgs = [Image.open(p).convert("RGB") for p in files[:timed]]
        timing = {}
        for label, g in (("full", math.inf), ("predicted", gain)):
            codec = load_codec(None, EncodeSettings(), mode="auto", slope=DEFAULT_AUTO_SLOPE, search_gain=g)
            t0 = time.perf_counter()
            for im in imgs:
                codec.encode([im])
            timing[label] = (time.perf_counter() - t0) / len(imgs)
        summary["seconds_per_face"] = timing
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "auto_predict.json", json.dumps({"summary": summary, "faces": faces}, indent=1).encode())
    cmd = "python experiments/auto_predict.py " + " ".join(sys.argv[1:])
    lines = [f"`{cmd}`", "", f"{len(faces)} {split} faces, `--mode auto` at 64 px. The search's SSIM gain over its "
             f"preview: median {summary['gain_quantiles'][50]:.3f}, 95th percentile {summary['gain_quantiles'][95]:.3f}, "
             f"99th {summary['gain_quantiles'][99]:.3f}, largest {summary['gain_quantiles'][100]:.3f}; "
             f"the bound simulated: {gain:g}.", "", "| candidate (every face) | bytes | SSIM |", "|---|---|---|"]
    lines += [f"| {k} | {v[0]:.1f} | {v[1]:.4f} |" for k, v in means.items()]
    lines += ["", "| decision | price of a byte | bytes | SSIM | same person | bytes over the hull | predicted = full | "
              "searches skipped | misses cost (bytes, SSIM) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in table:
        pred = (f"{r['agree']:.0%} | {r['skipped']:.0%} | {r['miss_bytes']:+.1f}, {r['miss_ssim']:+.4f}"
                if "agree" in r else "- | - | -")
        lines.append(f"| {r['rule']} | {'-' if r['slope'] is None else format(r['slope'], '.5f')} | {r['bytes']:.1f} | "
                     f"{r['ssim']:.4f} | {r['same']:.0%} | {max(0.0, r['hull_gap']):.1%} | {pred} |")
    if timed:
        t = summary["seconds_per_face"]
        lines += ["", f"Wall time of one `--mode auto` encode per face ({timed} faces, one thread, this process): full "
                  f"{t['full']:.2f} s, predicted {t['predicted']:.2f} s ({t['full'] / t['predicted']:.2f}x faster)."]
    atomic_write(out / "auto_predict.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
