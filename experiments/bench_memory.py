"""Peak memory of `invcomp encode` on many small images in one command, against batch size and file count.

    python experiments/bench_memory.py --files 100,1000 --batch-sizes 1,8,32,128 --iters 2

Each run is a fresh process (`python -m invcomp.cli encode ... -o DIR/`) with the shipped model; its peak
RSS is read from the waiter's ru_maxrss. Prints a table and writes OUT/memory.json.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from invcomp.files import atomic_write  # noqa: E402
WAITER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
          "stderr=subprocess.DEVNULL); print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def make_images(folder: Path, n: int, size: int) -> list[str]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img{i:05d}.png"
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(p)
        out.append(str(p))
    return out


@click.command()
@click.option("--files", default="100,1000", show_default=True)
@click.option("--batch-sizes", default="1,8,32,128", show_default=True)
@click.option("--iters", default=2, show_default=True, help="Few iterations: this measures memory, not quality.")
@click.option("--size", default=96, show_default=True, help="Side of the synthetic input images.")
@click.option("--out", default="experiments/results", show_default=True)
def main(files: str, batch_sizes: str, iters: int, size: int, out: str) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        counts = [int(x) for x in files.split(",")]
        imgs = make_images(Path(tmp) / "in", max(counts), size)
        for n in counts:
            for b in [int(x) for x in batch_sizes.split(",")]:
                dest = Path(tmp) / f"out_{n}_{b}"
                cmd = [sys.executable, "-m", "invcomp.cli", "encode", *imgs[:n], "--iters", str(iters),
                       "--batch-size", str(b), "-o", f"{dest}/"]
                t0 = time.perf_counter()
                r = subprocess.run([sys.executable, "-c", WAITER, *cmd], cwd=REPO, capture_output=True, text=True)
                rc, rss_kib = (int(v) for v in r.stdout.split())
                rows.append({"files": n, "batch_size": b, "exit": rc, "written": len(list(dest.glob("*.ivc"))),
                             "peak_rss_mib": round(rss_kib / 1024, 1), "seconds": round(time.perf_counter() - t0, 1)})
                click.echo(f"files {n:5d}  batch {b:4d}  exit {rc}  written {rows[-1]['written']:5d}  "
                           f"peak RSS {rows[-1]['peak_rss_mib']:7.1f} MiB  {rows[-1]['seconds']:.1f} s")
    Path(out).mkdir(parents=True, exist_ok=True)
    summary = {"command": " ".join(["python", *sys.argv]), "iters": iters, "image_size": size, "rows": rows}
    atomic_write(Path(out, "memory.json"), (json.dumps(summary, indent=1) + "\n").encode(), force=True)


if __name__ == "__main__":
    main()
