"""Fuzz the .ivc decoder: >= 100,000 mutated bitstreams, counts of clean errors, successes, crashes and hangs.

    python experiments/fuzz_decoder.py --cases 100000 --seed 0

Seeds are valid files for every coder, bit depth 2..16 and flag combination, for
the shipped generator's id (100-d) and a small 8-d one, plus real encodes of the
demo image. Mutators: bit flips, byte insertions and deletions, truncation, random
header fields (CRC fixed up so the field checks are reached) and huge varints.
Every case that parses then goes through the shipped model's full decode (its header checked against the
codec, then a generator pass).
Writes OUT/fuzz.json and prints the table.
"""
from __future__ import annotations

import json
import random
import resource
import sys
import time
from pathlib import Path

import click
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.outputs import atomic_write  # noqa: E402
from invcomp.codecs import EncodeSettings, InversionCodec  # noqa: E402
from invcomp.fuzz import run_fuzz, seed_streams  # noqa: E402
from invcomp.generators.registry import load_generator  # noqa: E402
from invcomp.imageio import load_image  # noqa: E402


@click.command()
@click.option("--cases", default=100_000, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--out", default="experiments/results", show_default=True)
def main(cases: int, seed: int, out: str) -> None:
    gen = load_generator()
    rng = random.Random(seed)
    seeds = seed_streams(rng, [gen.model_id, b"\x00\x01\x02\x03"], [gen.config.latent_dim, 8])
    demo = load_image(Path(__file__).parent / "data" / "portraits" / "astronaut-face.png")
    for bits in (2, 4, 6, 8, 12, 16):  # 2 iterations from a random start, as the figures were measured
        seeds.append(InversionCodec(gen, EncodeSettings(init="random", iters=2, bits=bits)).encode([demo])[0].data)
    codec = InversionCodec(gen, EncodeSettings(init="random"))  # decodes only: its settings do not matter
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with tqdm(total=cases, desc="fuzz", file=sys.stderr) as bar:
        stats = run_fuzz(cases, seed=seed, seeds=seeds, codec=codec, progress=bar.update)
    row = stats.as_dict()
    row.update({"seconds": round(time.perf_counter() - t0, 1), "seed_files": len(seeds),
                "max_rss_growth_mib": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1),
                "command": " ".join(["python", *sys.argv])})
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(out, "fuzz.json"), (json.dumps(row, indent=1) + "\n").encode(), force=True)
    click.echo(f"| cases | clean errors | decoded | crashes | hangs (>1 s) | slowest case | peak RSS growth |\n"
               f"|---|---|---|---|---|---|---|\n| {row['cases']:,} | {row['errors']:,} | {row['ok']:,} | {row['crashes']} | "
               f"{row['hangs']} | {row['slowest_s'] * 1000:.1f} ms | {row['max_rss_growth_mib']} MiB |")
    for k, v in row["by_mutator"].items():
        click.echo(f"  {k}: {v}")
    sys.exit(1 if row["crashes"] or row["hangs"] else 0)


if __name__ == "__main__":
    main()
