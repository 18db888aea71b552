"""Where one whole-process ``invcomp encode`` spends its time, for several source trees side by side (issue 33).

    python experiments/encode_phases.py --tree old=/tmp/wt-277de49 --tree new=. --image FACE.jpg --repeats 3 \
        --out experiments/results/speed

Each run is a fresh ``python -m invcomp.cli encode IMAGE -o OUT --force`` of one tree (on ``PYTHONPATH``), under
cProfile; the trees alternate, ``--repeats`` times. The process's wall time is taken from outside; the phases are
the cumulative seconds of the functions that do them, found by name in the profile (the layout differs between
releases): loading the codec, finding the face (the landmark models included), the warm-start encoder, the search,
entropy coding (quantise, code, draw the decoded picture), the detail layer, the report's metrics, writing the
file. "Start-up and imports" is the wall time before the command runs. cProfile slows Python-heavy code a little;
compare trees, not absolute figures. A bare ``python -c 'import torch'`` is timed in the same loop. Medians.
"""
from __future__ import annotations

import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

PHASES = {  # phase -> function names (any match counts; the largest cumulative time of a match is taken)
    "load the codec": ("build_encoder", "load_codec"),
    "find and align the face": ("plan", "detect_faces", "detect"),
    "warm-start encoder": ("predict_latents",),
    "search": ("invert",),
    "entropy coding and the decoded picture": ("encode_symbols",),
    "detail layer": ("with_detail",),
    "report (metrics)": ("file_metrics", "quality"),
    "write": ("write_bytes",),
}


def phases(prof: Path) -> dict[str, float]:
    stats = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    main = 0.0
    for (_, _, name), (_, _, _, cum, _) in stats.items():
        if name == "main" and cum > main:
            main = cum
        for phase, names in PHASES.items():
            if name in names:
                out[phase] = max(out.get(phase, 0.0), cum)
    out["the command (all of it)"] = main
    return out


@click.command()
@click.option("--tree", "trees", multiple=True, required=True, metavar="NAME=PATH")
@click.option("--image", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--repeats", default=3, show_default=True)
@click.option("--python", "python", default=sys.executable, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
def main(trees: tuple[str, ...], image: str, repeats: int, python: str, out: Path) -> None:
    named = [(t.split("=", 1)[0], Path(t.split("=", 1)[1]).resolve()) for t in trees]
    runs: dict[str, list[dict[str, float]]] = {n: [] for n, _ in named}
    bare: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            t0 = time.perf_counter()
            subprocess.run([python, "-c", "import torch"], check=True)
            bare.append(time.perf_counter() - t0)
            for name, path in named:
                prof, dst = Path(tmp) / f"{name}{r}.prof", Path(tmp) / f"{name}{r}.ivc"
                env = {**os.environ, "PYTHONPATH": str(path)}
                t0 = time.perf_counter()
                subprocess.run([python, "-m", "cProfile", "-o", str(prof), "-m", "invcomp.cli", "encode", image, "-o", str(dst),
                                "--force"], check=True, env=env, cwd=tmp, capture_output=True)
                wall = time.perf_counter() - t0
                row = phases(prof)
                row["whole process"] = wall
                row["start-up and imports"] = wall - row["the command (all of it)"]
                row["bytes"] = dst.stat().st_size
                runs[name].append(row)
    keys = ["whole process", "start-up and imports", *PHASES, "the command (all of it)", "bytes"]
    med = {n: {k: statistics.median(r.get(k, 0.0) for r in rs) for k in keys} for n, rs in runs.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "phases.json").write_text(json.dumps({"bare_import_torch": statistics.median(bare), "trees": {
        n: str(p) for n, p in named}, "medians": med, "runs": runs}, indent=1))
    names = [n for n, _ in named]
    lines = [f"`python experiments/encode_phases.py {' '.join(sys.argv[1:])}`", "",
             f"One whole-process `invcomp encode` of one face, medians of {repeats} runs alternated; seconds. A bare "
             f"`python -c 'import torch'`: {statistics.median(bare):.2f} s.", "",
             "| phase | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in keys:
        fmt = (lambda v: f"{v:.0f}") if k == "bytes" else (lambda v: f"{v:.2f}")
        lines.append(f"| {k} | " + " | ".join(fmt(med[n][k]) for n in names) + " |")
    (out / "phases.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
