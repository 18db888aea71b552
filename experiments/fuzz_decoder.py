"""Fuzz the .ivc decoder through the API and through the CLI batch path: counts of clean errors, decodes,
crashes and hangs, and peak memory.

    python experiments/fuzz_decoder.py --cases 100000 --cli-cases 100000 --seed 0

Seeds are valid files of every shipped model (both modes: the DCGAN and PGAN inversion codecs and the three
VAE-GAN codecs, at random original sizes), files for every coder, bit depth 2..16 and flag combination, and
real encodes of the demo image. Mutators (:data:`invcomp.fuzz.MUTATORS`, in turn): bit flips, byte insertions
and deletions, truncation, random header bytes and huge varints (CRC fixed up), and three structural ones that
keep the CRC valid: header fields set to edge values, mode and model-id swaps among the shipped models, and files
built from scratch field by field.

- **API:** every case runs what ``invcomp decode`` runs (:func:`invcomp.codecs.table.decode_file`): the codec
  its header names, of either mode, and the original size, under a 4-Mpx limit.
- **CLI:** the cases are written to folders of ``--chunk`` files, and each folder is one
  ``python -m invcomp.cli decode DIR -o OUT --json --max-pixels 4000000`` process. A case is an error when its
  JSON line is a one-line error, a crash when it is an ``internal error`` or has no line at all (or the process
  exits otherwise than 0/1, or prints a traceback), and the chunk hangs when it passes ``--chunk`` seconds.

Writes OUT/fuzz.json and prints the tables.
"""
from __future__ import annotations

import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import click
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.codecs import EncodeSettings, load_codec  # noqa: E402
from invcomp.fuzz import MUTATORS, codec_seeds, make_case, run_fuzz, seed_streams  # noqa: E402
from invcomp.generators.registry import list_models  # noqa: E402
from invcomp.imageio import load_image  # noqa: E402
from invcomp.outputs import atomic_write  # noqa: E402

MAX_PIXELS = 4_000_000


def make_seeds(rng: random.Random) -> tuple[list[bytes], list[bytes]]:
    """Valid files of every shipped model and coder, and the shipped model ids."""
    entries = list_models()
    ids = [bytes.fromhex(e.sha256[:8]) for e in entries] + [e.model_id_v2 for e in entries if e.model_id_v2]
    seeds = []
    for e in entries:  # version-2 files (the default) and version-1 files of every shipped model
        seeds += codec_seeds(load_codec(e.name, for_decode=True), rng, 8)
        v1 = EncodeSettings(coder="elias", init=None if e.kind == "vaegan" else "random")
        seeds += codec_seeds(load_codec(e.name, v1), rng, 4)
    for coder in ("auto", "elias"):  # mode 2: inversion with its tone record, in both containers
        seeds += codec_seeds(load_codec("dcgan-utkface64", EncodeSettings(coder=coder, init="random"),
                                        mode="inversion-tone"), rng, 4)
    for res, plan in ((64, "tone,3"), (128, "tone,1,5"), (128, "2@64,4@128")):  # mode 3: layered files
        seeds += codec_seeds(load_codec("dcgan-utkface64", EncodeSettings(init="random"), mode="layered", resolution=res,
                                        layer_rates=plan), rng, 3)
    gen = load_codec("dcgan-utkface64", for_decode=True)
    seeds += seed_streams(rng, [gen.model_id, b"\x00\x01\x02\x03"], [gen.latent_dim, 8])
    demo = load_image(ROOT / "experiments" / "data" / "portraits" / "astronaut-face.png")
    for bits in (2, 4, 6, 8, 12, 16):  # 2 iterations from a random start
        codec = load_codec("dcgan-utkface64", EncodeSettings(init="random", iters=2, bits=bits))
        seeds.append(codec.encode([demo])[0].data)
    return seeds, ids


def run_cli(cases: int, seed: int, seeds: list[bytes], ids: list[bytes], chunk: int) -> dict:
    """The CLI batch path: folders of mutated files, one ``invcomp decode`` process each."""
    rng = random.Random(seed + 1)
    counts, by_mutator, crashes, slowest, rss = Counter(), {}, [], 0.0, 0
    work = Path(tempfile.mkdtemp(prefix="ivc-fuzz-"))
    try:
        with tqdm(total=cases, desc="fuzz (CLI)", file=sys.stderr) as bar:
            for start in range(0, cases, chunk):
                src, out = work / "in", work / "out"
                shutil.rmtree(src, ignore_errors=True)
                shutil.rmtree(out, ignore_errors=True)
                src.mkdir()
                kinds = {}
                for i in range(start, min(cases, start + chunk)):
                    name = f"{i:07d}.ivc"
                    (src / name).write_bytes(make_case(i, rng, seeds, ids))
                    kinds[str(src / name)] = MUTATORS[i % len(MUTATORS)]
                t0 = time.perf_counter()
                try:
                    p = subprocess.run([sys.executable, "-m", "invcomp.cli", "--threads", "1", "decode", str(src), "-o",
                                        str(out), "--json", "--max-pixels", str(MAX_PIXELS)], capture_output=True,
                                       text=True, timeout=max(60, len(kinds)), cwd=ROOT)
                except subprocess.TimeoutExpired:
                    counts["hang"] += len(kinds)
                    bar.update(len(kinds))
                    continue
                slowest = max(slowest, time.perf_counter() - t0)
                rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
                seen = set()
                for line in p.stdout.splitlines():
                    row = json.loads(line)
                    item = row["input"]
                    seen.add(item)
                    err = row.get("error")
                    outcome = "ok" if err is None else "crash" if err.startswith("internal error") else "error"
                    counts[outcome] += 1
                    by_mutator.setdefault(kinds[item], Counter())[outcome] += 1
                    if outcome == "crash":
                        crashes.append({"mutator": kinds[item], "error": err, "data": Path(item).read_bytes().hex()})
                missing = set(kinds) - seen
                counts["crash"] += len(missing)
                if p.returncode not in (0, 1) or "Traceback" in p.stderr or missing:
                    crashes.append({"process": p.returncode, "missing": len(missing), "stderr": p.stderr[-2000:]})
                bar.update(len(kinds))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"cases": cases, "errors": counts["error"], "ok": counts["ok"], "crashes": counts["crash"],
            "hangs": counts["hang"], "slowest_chunk_s": round(slowest, 1), "chunk": chunk,
            "max_rss_mib": round(rss / 1024), "by_mutator": {k: dict(v) for k, v in by_mutator.items()},
            "crash_examples": crashes[:5]}


@click.command()
@click.option("--cases", default=100_000, show_default=True, help="Cases through the API.")
@click.option("--cli-cases", default=100_000, show_default=True, help="Cases through the CLI batch path (0: none).")
@click.option("--chunk", default=5000, show_default=True, help="Files per CLI process.")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default="experiments/results", show_default=True)
def main(cases: int, cli_cases: int, chunk: int, seed: int, out: str) -> None:
    rng = random.Random(seed)
    seeds, ids = make_seeds(rng)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with tqdm(total=cases, desc="fuzz (API)", file=sys.stderr) as bar:
        stats = run_fuzz(cases, seed=seed, seeds=seeds, by_header=True, model_ids=ids, progress=bar.update,
                         max_pixels=MAX_PIXELS)
    api = stats.as_dict()
    api.update({"seconds": round(time.perf_counter() - t0, 1),
                "max_rss_growth_mib": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1)})
    t0 = time.perf_counter()
    cli = run_cli(cli_cases, seed, seeds, ids, chunk) if cli_cases else None
    if cli:
        cli["seconds"] = round(time.perf_counter() - t0, 1)
    row = {"api": api, "cli": cli, "seed_files": len(seeds), "model_ids": [i.hex() for i in ids],
           "command": " ".join(["python", *sys.argv])}
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(out, "fuzz.json"), (json.dumps(row, indent=1) + "\n").encode(), force=True)
    click.echo("| path | cases | clean errors | decoded | crashes | hangs | slowest | peak RSS |\n|---|---|---|---|---|---|---|---|")
    click.echo(f"| API | {api['cases']:,} | {api['errors']:,} | {api['ok']:,} | {api['crashes']} | {api['hangs']} | "
               f"{api['slowest_s'] * 1000:.0f} ms per case | +{api['max_rss_growth_mib']} MiB over the start |")
    if cli:
        click.echo(f"| CLI | {cli['cases']:,} | {cli['errors']:,} | {cli['ok']:,} | {cli['crashes']} | {cli['hangs']} | "
                   f"{cli['slowest_chunk_s']} s per {chunk:,}-file process | {cli['max_rss_mib']} MiB per process |")
    for path, r in (("API", api), ("CLI", cli or {})):
        for k, v in r.get("by_mutator", {}).items():
            click.echo(f"  {path} {k}: {v}")
    bad = api["crashes"] + api["hangs"] + (cli["crashes"] + cli["hangs"] if cli else 0)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
