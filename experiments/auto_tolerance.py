"""Choose ``--mode auto``'s SSIM tolerance on validation faces: replay the decision on every candidate's files.

    python experiments/ood_faces.py --data ../shared/data/utkface --split val --limit 32 --out /tmp/oodval
    python experiments/range_study.py --out /tmp/range_val --runs "auto (default)" --set val=/tmp/oodval/plain --set val-reframed=/tmp/oodval/reframed \
        --set val-relit=/tmp/oodval/relit --set val-colour=/tmp/oodval/colour --set val-gray=/tmp/oodval/gray
    python experiments/auto_tolerance.py --study /tmp/range_val --out experiments/results/auto_tolerance_val.md

``range_study.py``'s auto run keeps every candidate's file of every face, scored like the chosen ones (bytes,
SSIM on the decoder's pixels, PSNR, identity);
this script runs :func:`invcomp.codecs.modes.auto.choose` on them for each tolerance, exactly as the encoder decides,
and prints per set the mean bytes, SSIM, PSNR, identity distance and same-person share of the chosen files,
beside WebP at its lowest setting. The validation faces are not the held-out faces the targets are checked on.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import click
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.codecs.modes.auto import choose  # noqa: E402
from invcomp.identity import SAME_PERSON  # noqa: E402

log = logging.getLogger("auto_tolerance")
TOLERANCES = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1, 1.0)


def _file(label: str) -> str:
    return label.replace(" ", "_").replace("=", "").replace("(", "").replace(")", "").replace("+", "-") + ".json"


def load_candidates(cache: Path, key: Optional[dict] = None) -> dict[str, dict]:
    """The candidates' cached runs of one set (written by range_study.py's auto run), in auto's order."""
    f = cache / "candidates.json"
    if not f.exists():
        return {}
    out = {}
    for name in json.loads(f.read_text()):
        doc = json.loads((cache / _file("candidate " + name)).read_text())
        if key is None or doc["key"] == key:
            out[name] = doc
    return out


def replay(rows: dict[str, list[dict]], tolerance: float, max_bytes: Optional[int] = None) -> list[dict]:
    """The row auto would keep for each face, from each candidate's rows (same faces, same order as ``rows``)."""
    labels = list(rows)
    out = []
    for i in range(len(rows[labels[0]])):
        cand = [rows[c][i] for c in labels]
        pick = choose([r["ssim"] for r in cand], [r["bytes"] for r in cand], tolerance, max_bytes)
        out.append({**cand[pick], "chosen": labels[pick]} if pick is not None else {})
    return out


def stats(rows: list[dict]) -> dict:
    ids = [r["identity"] for r in rows if r.get("identity") is not None]
    return {"bytes": float(np.mean([r["bytes"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows])),
            "psnr": float(np.mean([r["psnr"] for r in rows])), "identity": float(np.mean(ids)) if ids else None,
            "same": float(np.mean([d < SAME_PERSON for d in ids])) if ids else None}


@click.command()
@click.option("--study", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The --out folder of a range_study.py run with the candidate runs.")
@click.option("--out", default=None, type=click.Path(dir_okay=False, path_type=Path))
def main(study: Path, out: Optional[Path]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = json.loads((study / "summary.json").read_text())
    lines = ["# --mode auto: the SSIM tolerance, replayed on validation faces", "",
             f"`python experiments/auto_tolerance.py --study {study}`", "",
             "Per set: the mean of the files auto keeps at each tolerance (0: the best SSIM whatever its bytes), "
             "and which candidates it keeps. Identity: dlib's recogniser, the same person below 0.6.", ""]
    for name, s in summary["sets"].items():
        rows = {c: d["rows"] for c, d in load_candidates(study / "cache" / name).items()}
        if not rows:
            continue
        w = s["webp"]
        lines += [f"## {name} ({s['n']} faces)", "",
                  f"WebP, lowest setting: {w['bytes']:.1f} B, SSIM {w['ssim']:.4f}, PSNR {w['psnr']:.2f} dB, identity "
                  f"{w['identity']:.3f}, same person {w['same_person']:.0%}.", "",
                  "| tolerance | bytes | SSIM | PSNR | identity | same person | kept |", "|---|---|---|---|---|---|---|"]
        for tol in TOLERANCES:
            picked = replay(rows, tol)
            st = stats(picked)
            kept = {}
            for r in picked:
                kept[r["chosen"]] = kept.get(r["chosen"], 0) + 1
            lines.append(f"| {tol:g} | {st['bytes']:.1f} | {st['ssim']:.4f} | {st['psnr']:.2f} | "
                         f"{st['identity']:.3f} | {st['same']:.0%} | "
                         + ", ".join(f"{k} {v}" for k, v in kept.items()) + " |")
        lines.append("")
    text = "\n".join(lines)
    if out is not None:
        out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
