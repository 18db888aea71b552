"""Fuzz the .ivc decoder through the API and through the CLI batch path: counts of clean errors, decodes,
crashes and hangs, and every case's peak memory against the decode budget.

    nice -n 10 python experiments/fuzz_decoder.py --cases 100000 --cli-cases 100000 --seed 0 \\
        --max-pixels 1000000 --out experiments/results/fuzz3

Seeds are valid files of every shipped model (the DCGAN and PGAN inversion codecs and the VAE-GAN codecs, at
random original sizes, in both containers), files for every coder, bit depth 2..16 and flag combination, real
encodes of the demo image, **layered files** (base, tone and residual layers at 64, 128 and 256 px), **photo
files** (plain faces, and up to 8 layered faces each), and **GC and SC files** of the shipped GC and SC models.
Mutators (:data:`invcomp.fuzz.MUTATORS`, in turn): bit flips, byte insertions and deletions, truncation, random
header bytes and huge varints (CRC fixed up), and structural ones that keep every CRC valid: header fields at edge
values, mode and model-id swaps, files built from scratch, and, each on seeds of its kind, **layer** (residual
records at 16..4080 px with forged rANS streams, rates, kinds, repeats and orders, each record's CRC under the
installed residual network's key), **photo** (layered faces mutated, up to 64 faces, edge placements and frame
sizes) and **gc** (GC/SC sizes, tables flag, mode, id, payload and SC records).

- **API:** every case runs what ``invcomp decode`` runs (:func:`invcomp.faces.decode.decode_any`): the codec its
  header names, of any mode, under ``--max-pixels``; the models are loaded before the first case. Each case's peak
  RSS is the process's high-water mark, reset before it (``/proc/self/clear_refs``).
- **CLI batch:** the cases are written to folders of ``--chunk`` files with a manifest, and each folder is one
  ``invcomp batch decode MANIFEST --out OUT --ray none --workers 1 --max-attempts 1 --max-pixels N`` job. A case is
  an error when its manifest row failed with a one-line error, a crash when it failed as an ``internal error`` or a
  lost worker, has no row, or the job exits otherwise than 0/1 or prints a traceback, and a hang when it took more
  than ``--hang`` seconds (the job is killed after ``--hang`` times its files). The worker records each case's peak
  RSS and time (a ``sitecustomize`` hook around :func:`invcomp.service.decode.decode_item`, on ``PYTHONPATH`` for the
  job only).

A case's **growth** is its peak minus the RSS at its start, and its **peak over the floor** its peak minus the
process's RSS once every model is loaded (the API: after decoding every seed; a batch worker: at its first case,
after warm-up rows of every model that are not counted); both must be within :func:`invcomp.codecs.budget.memory_budget`
of ``--max-pixels`` (384 MiB + 16 B per pixel) for every case. Writes OUT/fuzz.json (the summary) and OUT/fuzz.log
(progress), and prints the tables; exits 1 on any crash, hang or case over the budget.
"""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.codecs.budget import memory_budget  # noqa: E402
from invcomp.codecs import EncodeSettings, load_codec  # noqa: E402
from invcomp.fuzz import (MUTATORS, codec_seeds, gc_seeds, make_case, photo_seeds, rss_kib,  # noqa: E402
                          run_fuzz, seed_streams)
from invcomp.zoo.registry import list_models  # noqa: E402
from invcomp.imageio import load_image  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402

HOOK = r'''
import os
if os.environ.get("INVCOMP_FUZZ_RSS"):  # experiments/fuzz_decoder.py: each decoded file's peak RSS and time
    import time
    import invcomp.service.decode as _decode
    from invcomp.fuzz import reset_peak_rss, rss_kib
    _real = _decode.decode_item
    def decode_item(src, *args, **kwargs):
        reset_peak_rss()
        start, t0 = rss_kib()[0], time.perf_counter()
        try:
            return _real(src, *args, **kwargs)
        finally:
            line = f"{os.path.basename(str(src))}\t{rss_kib()[1]}\t{start}\t{time.perf_counter() - t0:.4f}\n"
            with open(os.path.join(os.environ["INVCOMP_FUZZ_RSS"], f"rss-{os.getpid()}.tsv"), "a") as f:
                f.write(line)
    _decode.decode_item = decode_item
'''


def log(out: Path, text: str) -> None:
    line = f"{time.strftime('%H:%M:%S')} {text}"
    print(line, flush=True)
    with open(out / "fuzz.log", "a") as f:
        f.write(line + "\n")


def make_seeds(rng: random.Random) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Valid files of every shipped model, coder and container kind; the shipped model ids; the layer keys."""
    from invcomp.nets.residual import load_residual

    entries = list_models()
    ids = [bytes.fromhex(e.sha256[:8]) for e in entries] + [e.model_id_v2 for e in entries if e.model_id_v2]
    seeds = []
    for e in entries:  # version-2 files (the default) and version-1 files of every shipped face model
        if e.kind not in ("generator", "vaegan") or "@" in e.name:
            continue
        seeds += codec_seeds(load_codec(e.name, for_decode=True), rng, 8)
        v1 = EncodeSettings(coder="elias", init=None if e.kind == "vaegan" else "random")
        seeds += codec_seeds(load_codec(e.name, v1), rng, 4)
    for coder in ("auto", "elias"):  # mode 2: inversion with its tone record, in both containers
        seeds += codec_seeds(load_codec("dcgan-utkface64", EncodeSettings(coder=coder, init="random"),
                                        mode="inversion-tone"), rng, 4)
    faces = []
    for res, plan in ((64, "tone,3"), (128, "tone,1,5"), (128, "2@64,4@128"), (256, "tone,3@256"), (64, "none")):
        made = codec_seeds(load_codec("dcgan-utkface64", EncodeSettings(init="random"), mode="layered", resolution=res,
                                      layer_rates=plan), rng, 3)
        seeds += made  # mode 3: layered files, with residual records
        faces += made
    gen = load_codec("dcgan-utkface64", for_decode=True)
    seeds += seed_streams(rng, [gen.model_id, b"\x00\x01\x02\x03"], [gen.latent_dim, 8])
    demo = load_image(ROOT / "experiments" / "data" / "portraits" / "astronaut-face.png")
    for bits in (2, 4, 6, 8, 12, 16):  # 2 iterations from a random start
        codec = load_codec("dcgan-utkface64", EncodeSettings(init="random", iters=2, bits=bits))
        seeds.append(codec.encode([demo])[0].data)
    plain = [s for s in seeds[:40] if s[:1] in (b"I", b"\xb2")]
    seeds += photo_seeds(plain, rng, 8)  # photo files of plain faces
    seeds += photo_seeds(faces, rng, 16, layered=True)  # photo files of layered faces
    seeds += gc_seeds(rng, 6)  # GC and SC files
    return seeds, ids, [load_residual().key]


def warm(seeds: list[bytes], cache: dict, max_pixels: int) -> None:
    """Decode every seed once, so that every model a case can name is loaded before the first case."""
    from invcomp.errors import InvcompError
    from invcomp.faces.decode import decode_any

    for s in seeds:
        try:
            decode_any(s, cache=cache, max_pixels=max_pixels)
        except InvcompError:
            pass


MIB_BIN = 4  # growth histogram bins, MiB


def hist(rss: list, floor: int = 0) -> dict:
    """Per-case ``(peak KiB, start KiB)`` -> a small record: the largest peak, the largest growth (peak - start) and a
    histogram of growths in :data:`MIB_BIN`-MiB bins (parts of a run add up)."""
    bins = Counter(int((p - s) / 1024 // MIB_BIN) for p, s in rss)
    return {"max_peak_mib": round(max((p for p, _ in rss), default=0) / 1024, 1),
            "max_growth_mib": round(max((p - s for p, s in rss), default=0) / 1024, 1),
            "max_over_floor_mib": round((max((p for p, _ in rss), default=floor) - floor) / 1024, 1) if floor else None,
            "growth_hist": {str(k * MIB_BIN): v for k, v in sorted(bins.items())}}


def merge(parts: list[dict]) -> dict:
    """The totals of part records (:func:`run_api_part`, :func:`run_cli_part`)."""
    if not parts:
        return {}
    out: dict[str, Any] = {k: sum(p[k] for p in parts) for k in ("cases", "errors", "ok", "crashes", "hangs", "seconds")}
    out["ranges"] = sorted([p["start"], p["start"] + p["cases"]] for p in parts)
    out["cases_per_second"] = round(out["cases"] / max(out["seconds"], 1e-9), 2)
    slow = max(parts, key=lambda p: p["slowest_s"])
    out["slowest_s"], out["slowest_mutator"] = slow["slowest_s"], slow["slowest_mutator"]
    by: dict[str, Counter] = {}
    for p in parts:
        for k, v in p["by_mutator"].items():
            by.setdefault(k, Counter()).update(v)
    out["by_mutator"] = {k: dict(v) for k, v in by.items()}
    out["crash_examples"] = [c for p in parts for c in p["crash_examples"]][:5]
    bins: Counter = Counter()
    for p in parts:
        bins.update({int(k): v for k, v in p["rss"]["growth_hist"].items()})
    n, acc, pct = sum(bins.values()), 0, {}
    for k in sorted(bins):
        acc += bins[k]
        for q in (50, 99, 99.9):
            if q not in pct and acc >= q / 100 * n:
                pct[q] = k + MIB_BIN
    out["rss"] = {"cases": n, "max_peak_mib": max(p["rss"]["max_peak_mib"] for p in parts),
                  "max_case_growth_mib": max(p["rss"]["max_growth_mib"] for p in parts),
                  "p50_case_growth_below_mib": pct.get(50), "p99_case_growth_below_mib": pct.get(99),
                  "p999_case_growth_below_mib": pct.get(99.9),
                  "cases_over_budget": sum(p["rss"]["over_budget"] for p in parts)}
    floors = [p["rss"].get("max_over_floor_mib") for p in parts if p["rss"].get("max_over_floor_mib") is not None]
    if floors:
        out["rss"]["max_over_floor_mib"] = max(floors)
    return out


def run_api_part(start: int, n: int, seed: int, seeds: list[bytes], ids: list[bytes], keys: list[bytes],
                 max_pixels: int, hang: float, cache: dict, floor: int) -> dict:
    """Cases ``start .. start + n - 1`` through the API (their own rng: a part reruns alone)."""
    t0 = time.perf_counter()
    stats = run_fuzz(n, seed=seed * 1_000_003 + start, seeds=seeds, by_header=True, model_ids=ids, layer_keys=keys,
                     time_limit=hang, max_pixels=max_pixels, rss=True, start=start, cache=cache)
    d = stats.as_dict()
    budget_kib = memory_budget(max_pixels) // 1024
    rss = {**hist(stats.rss, floor),
           "over_budget": sum(1 for p, b in stats.rss if p - b > budget_kib or p - floor > budget_kib)}
    return {"start": start, "cases": d["cases"], "errors": d["errors"], "ok": d["ok"], "crashes": d["crashes"],
            "hangs": d["hangs"], "seconds": round(time.perf_counter() - t0, 1), "slowest_s": round(d["slowest_s"], 3),
            "slowest_mutator": d["slowest_mutator"], "by_mutator": d["by_mutator"],
            "crash_examples": [{**c, "data": c["data"][:4000]} for c in d["crash_examples"]], "rss": rss}


def warm_files(seeds: list[bytes]) -> list[bytes]:
    """One seed per (kind, model id): decoding them first loads every model a case can name."""
    from invcomp.fuzz import seed_kind

    seen, out = set(), []
    for s in seeds:
        key = (seed_kind(s), s[:3] if s[:1] == b"\xb2" else s[:8])
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def run_cli_part(start: int, n: int, seed: int, seeds: list[bytes], ids: list[bytes], keys: list[bytes],
                 max_pixels: int, hang: float, work: Path, env: dict) -> dict:
    """Cases ``start .. start + n - 1`` as one ``invcomp batch decode`` job over a manifest (after warm-up rows that
    are not counted: one file of each model, so that model loading is no case's memory)."""
    rng = random.Random(seed * 1_000_003 + 500_000_009 + start)
    counts: Counter = Counter()
    by_mutator: dict[str, Counter] = {}
    crashes: list = []
    rss: list = []
    slowest = (0.0, "")
    src, dst, logs = work / "in", work / "out", work / "rss"
    for d in (src, dst, logs):
        shutil.rmtree(d, ignore_errors=True)
    src.mkdir()
    logs.mkdir()
    rows = []
    for j, w in enumerate(warm_files(seeds)):
        (src / f"warm-{j:03d}.ivc").write_bytes(w)
        rows.append(json.dumps({"path": f"warm-{j:03d}.ivc"}))
    kinds = {}
    for i in range(start, start + n):
        name = f"{i:07d}.ivc"
        (src / name).write_bytes(make_case(i, rng, seeds, ids, keys))
        kinds[name] = MUTATORS[i % len(MUTATORS)]
        rows.append(json.dumps({"path": name}))
    (src / "manifest.jsonl").write_text("\n".join(rows) + "\n")
    cmd = [sys.executable, "-m", "invcomp.cli", "--threads", "1", "batch", "decode", str(src / "manifest.jsonl"),
           "--out", str(dst), "--ray", "none", "--workers", "1", "--batch-size", "32", "--max-attempts", "1",
           "--max-pixels", str(max_pixels), "--json"]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300 + hang * n, cwd=ROOT,
                           env={**env, "INVCOMP_FUZZ_RSS": str(logs)})
    except subprocess.TimeoutExpired:
        p = None
    final: dict[str, dict] = {}
    manifest = dst / "manifest.jsonl"
    if manifest.exists():
        for line in manifest.read_text().splitlines():
            row = json.loads(line)
            final[Path(row["path"]).name] = row
    for name, kind in kinds.items():
        row = final.get(name, {})
        err = row.get("error")
        if row.get("status") == "done":
            outcome = "ok"
        elif row.get("status") == "failed" and err and not err.startswith("internal error") \
                and "worker" not in err.split(":")[0]:
            outcome = "error"
        elif p is None and row.get("status") != "failed":
            outcome = "hang"
        else:
            outcome = "crash"
            crashes.append({"mutator": kind, "error": err, "status": row.get("status"),
                            "data": (src / name).read_bytes().hex()[:4000]})
        counts[outcome] += 1
        by_mutator.setdefault(kind, Counter())[outcome] += 1
    if p is not None and (p.returncode not in (0, 1) or "Traceback" in p.stderr):
        counts["crash"] += 1
        crashes.append({"chunk": start, "process": p.returncode, "stderr": p.stderr[-2000:]})
    for f in logs.glob("rss-*.tsv"):
        for line in f.read_text().splitlines():
            name, peak, begin, secs = line.split("\t")
            if name.startswith("warm-"):
                continue
            rss.append((int(peak), int(begin)))
            if float(secs) > slowest[0]:
                slowest = (float(secs), kinds.get(name, "?"))
            if float(secs) > hang:
                counts["hang"] += 1
                by_mutator.setdefault(kinds.get(name, "?"), Counter())["hang"] += 1
    budget_kib = memory_budget(max_pixels) // 1024
    floor = min((b for _, b in rss), default=0)  # the worker's RSS once the warm-up rows have loaded every model
    return {"start": start, "cases": n, "errors": counts["error"], "ok": counts["ok"], "crashes": counts["crash"],
            "hangs": counts["hang"], "seconds": round(time.perf_counter() - t0, 1), "slowest_s": round(slowest[0], 3),
            "slowest_mutator": slowest[1], "by_mutator": {k: dict(v) for k, v in by_mutator.items()},
            "crash_examples": crashes[:5], "job_exit": None if p is None else p.returncode,
            "rss": {**hist(rss, floor), "over_budget": sum(1 for a, b in rss if a - b > budget_kib or a - floor > budget_kib)}}


def parts_of(parts_dir: Path, kind: str) -> list[dict]:
    return [json.loads(f.read_text()) for f in sorted(parts_dir.glob(f"{kind}-*.json"))]


@click.command()
@click.option("--cases", default=100_000, show_default=True, help="Cases through the API.")
@click.option("--cli-cases", default=100_000, show_default=True, help="Cases through the CLI batch path (0: none).")
@click.option("--api-start", default=0, show_default=True, help="The first API case (resume at a part boundary).")
@click.option("--cli-start", default=0, show_default=True, help="The first CLI case (resume at a chunk boundary).")
@click.option("--part", default=5000, show_default=True, help="Cases per API part and per batch job (manifest).")
@click.option("--seed", default=0, show_default=True)
@click.option("--max-pixels", default=1_000_000, show_default=True, help="The decoders' --max-pixels.")
@click.option("--hang", default=30.0, show_default=True, help="Seconds after which a case is a hang.")
@click.option("--out", default="experiments/results/fuzz3", show_default=True)
@click.option("--parts-dir", default=None, help="Where each part's record goes.  [default: OUT/parts]")
def main(cases: int, cli_cases: int, api_start: int, cli_start: int, part: int, seed: int, max_pixels: int,
         hang: float, out: str, parts_dir: Optional[str]) -> None:
    import gc
    import os

    import torch

    torch.set_num_threads(1)  # as the batch jobs' --threads 1: one core
    dest = Path(out)
    pdir = Path(parts_dir) if parts_dir else dest / "parts"
    pdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    t0 = time.perf_counter()
    seeds, ids, keys = make_seeds(rng)
    log(dest, f"{len(seeds)} seed files in {time.perf_counter() - t0:.0f} s; budget {memory_budget(max_pixels) / 2**20:.0f} "
              f"MiB for --max-pixels {max_pixels:,}; " + " ".join(sys.argv[1:]))

    def save() -> dict:
        api, cli = merge(parts_of(pdir, "api")), merge(parts_of(pdir, "cli"))
        command = "nice -n 10 python experiments/fuzz_decoder.py " + " ".join(sys.argv[1:])
        try:  # every invocation that wrote parts here (a run resumed with --api-start / --cli-start adds one)
            commands = json.loads((dest / "fuzz.json").read_text()).get("commands", [])
        except (OSError, ValueError):
            commands = []
        row = {"commands": commands + [command] * (command not in commands),
               "seed_files": len(seeds), "model_ids": [i.hex() for i in ids], "max_pixels": max_pixels,
               "budget_mib": round(memory_budget(max_pixels) / 2**20, 1),
               "budget_formula": "384 MiB + 16 B * max_pixels (invcomp.codecs.budget.memory_budget), above the process's "
                                 "floor; a case is within it when its peak RSS minus its RSS at its start, and its "
                                 "peak minus the process's RSS once every model is loaded (the floor), are",
               "hang_s": hang, "api": api or None, "cli": cli or None}
        atomic_write(dest / "fuzz.json", (json.dumps(row, indent=1) + "\n").encode(), force=True)
        return row

    def api_parts() -> Any:
        cache: dict = {}
        warm(seeds, cache, max_pixels)
        gc.collect()
        floor = rss_kib()[0]
        for a in range(api_start, api_start + cases, part):
            rec = run_api_part(a, min(part, api_start + cases - a), seed, seeds, ids, keys, max_pixels, hang, cache, floor)
            (pdir / f"api-{a:07d}.json").write_text(json.dumps(rec) + "\n")
            t = save()["api"]
            log(dest, f"API {rec['start']:,}+{rec['cases']:,}: {rec['errors']:,} errors, {rec['ok']:,} ok, {rec['crashes']} "
                      f"crashes, {rec['hangs']} hangs, {rec['cases'] / rec['seconds']:.1f} cases/s, max growth "
                      f"{rec['rss']['max_growth_mib']} MiB | total {t['cases']:,} cases, {t['crashes']} crashes, "
                      f"{t['hangs']} hangs, {t['rss']['cases_over_budget']} over budget")
            yield

    def cli_parts() -> Any:
        work = Path(tempfile.mkdtemp(prefix="ivc-fuzz-"))
        try:
            (work / "hook").mkdir()
            (work / "hook" / "sitecustomize.py").write_text(HOOK)
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(work / "hook"), str(ROOT)])}
            for a in range(cli_start, cli_start + cli_cases, part):
                rec = run_cli_part(a, min(part, cli_start + cli_cases - a), seed, seeds, ids, keys, max_pixels, hang,
                                   work, env)
                (pdir / f"cli-{a:07d}.json").write_text(json.dumps(rec) + "\n")
                t = save()["cli"]
                log(dest, f"CLI {rec['start']:,}+{rec['cases']:,}: {rec['errors']:,} errors, {rec['ok']:,} ok, "
                          f"{rec['crashes']} crashes, {rec['hangs']} hangs, {rec['cases'] / rec['seconds']:.1f} cases/s, "
                          f"job exit {rec['job_exit']}, max growth {rec['rss']['max_growth_mib']} MiB | total "
                          f"{t['cases']:,} cases, {t['crashes']} crashes, {t['hangs']} hangs, "
                          f"{t['rss']['cases_over_budget']} over budget")
                yield
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # the two paths take turns, a part each, so that a run stopped early has some of both
    runs = [it for it, n in ((api_parts(), cases), (cli_parts(), cli_cases)) if n]
    while runs:
        for it in list(runs):
            if next(it, StopIteration) is StopIteration:
                runs.remove(it)
    row = save()
    click.echo("| path | cases | clean errors | decoded | crashes | hangs | cases/s | slowest | max case growth "
               "(budget) |\n|---|---|---|---|---|---|---|---|---|")
    for path, r in (("API", row["api"]), ("CLI batch", row["cli"])):
        if r:
            click.echo(f"| {path} | {r['cases']:,} | {r['errors']:,} | {r['ok']:,} | {r['crashes']} | {r['hangs']} | "
                       f"{r['cases_per_second']} | {r['slowest_s']} s ({r['slowest_mutator']}) | "
                       f"{r['rss']['max_case_growth_mib']} MiB ({row['budget_mib']} MiB) |")
    for path, r in (("API", row["api"] or {}), ("CLI", row["cli"] or {})):
        for k, v in r.get("by_mutator", {}).items():
            click.echo(f"  {path} {k}: {v}")
    bad = sum((r or {}).get(k, 0) for r in (row["api"], row["cli"]) for k in ("crashes", "hangs"))
    bad += sum(((r or {}).get("rss") or {}).get("cases_over_budget", 0) for r in (row["api"], row["cli"]))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
