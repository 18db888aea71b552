"""Two processes write one output at the same moment, without --force, over many trials: exactly one must win.

Each trial starts two processes that wait on a shared barrier, then call ``invcomp.files.atomic_write`` on the
same path with different bytes. Prints how often exactly one won, and whether any hidden temporary file was left.

    python experiments/race_writes.py --trials 100
"""
from __future__ import annotations

import multiprocessing as mp
import sys
import tempfile
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.errors import InvcompError  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402


def _writer(path: str, payload: bytes, barrier: "mp.synchronize.Barrier", results: "mp.Queue") -> None:
    barrier.wait()
    try:
        atomic_write(Path(path), payload)
        results.put("ok")
    except InvcompError:
        results.put("exists")


@click.command()
@click.option("--trials", default=100, show_default=True, type=click.IntRange(1))
def main(trials: int) -> None:
    ctx = mp.get_context("fork")
    one_winner = 0
    with tempfile.TemporaryDirectory() as tmp:
        for t in range(trials):
            path = str(Path(tmp, f"out{t}.ivc"))
            barrier, results = ctx.Barrier(2), ctx.Queue()
            procs = [ctx.Process(target=_writer, args=(path, bytes([i]) * 4096, barrier, results)) for i in (1, 2)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            got = sorted(results.get() for _ in procs)
            one_winner += got == ["exists", "ok"] and Path(path).read_bytes() in (b"\x01" * 4096, b"\x02" * 4096)
        leftovers = [p.name for p in Path(tmp).iterdir() if p.name.startswith(".")]
    click.echo(f"| trials | exactly one writer won | hidden temporary files left |\n|---|---|---|\n"
               f"| {trials} | {one_winner} | {len(leftovers)} |")
    sys.exit(0 if one_winner == trials and not leftovers else 1)


if __name__ == "__main__":
    main()
