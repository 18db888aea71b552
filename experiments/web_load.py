"""Load and fault test of ``invcomp serve``: concurrent uploads to a real local server, then the same with a
``kill -9`` of the server mid-run and a restart on the same data folder.

    python experiments/web_load.py --jobs 50 --workers 2 --out experiments/results/web/load

Each run posts ``--jobs`` distinct faces at once (one thread each) and polls until every job has finished. It
prints and writes (``OUT.json``, ``OUT.txt``):

- job creation latency (POST -> 202) and completion latency (POST -> seen done), p50 and p95;
- lost (a job id that never finished), duplicated (more jobs in the store than posted, or two with one name),
  failed jobs;
- whole files: every ``.ivc`` parses, has the length its job reports and is byte-identical to the library's own
  encode of the same image; every PNG decodes; no temporary file is left in any job folder;
- for the fault run: which worker processes outlived the killed server (none should), how many jobs were re-run.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FACE = REPO / "experiments" / "data" / "portraits" / "astronaut-face.png"


def faces(n: int) -> list[tuple[str, bytes]]:
    """``n`` distinct faces: the demo portrait, shifted, flipped and re-toned (deterministic)."""
    from PIL import Image, ImageEnhance, ImageOps

    base = Image.open(FACE).convert("RGB")
    out = []
    for i in range(n):
        img = base.crop((i % 7, (i // 7) % 7, base.width - 6 + i % 7, base.height - 6 + (i // 7) % 7))
        img = ImageOps.mirror(img) if i % 2 else img
        img = ImageEnhance.Brightness(img).enhance(0.85 + 0.3 * ((i * 37) % 10) / 10)
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append((f"face-{i:03d}.png", buf.getvalue()))
    return out


def pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return round(v[min(len(v) - 1, max(0, round(q * (len(v) - 1))))], 3) if v else float("nan")


def start(data: Path, port: int, workers: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "invcomp.cli", "--threads", "1", "serve", "--port", str(port), "--data",
                             str(data), "--workers", str(workers), "--max-queue", "10000"], env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"), start_new_session=True)


def up(url: str, proc: subprocess.Popen) -> float:
    import httpx

    t0 = time.monotonic()
    while proc.poll() is None:
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the server exited with {proc.returncode}")


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3]
    except OSError:
        return False


def run(args: argparse.Namespace, kill: bool, work: Path) -> dict[str, Any]:
    import httpx

    data, port = work / ("fault" if kill else "plain"), args.port + (1 if kill else 0)
    url, log = f"http://127.0.0.1:{port}", work / f"server-{port}.log"
    proc = start(data, port, args.workers, log)
    startup = up(url, proc)
    items = faces(args.jobs)
    options = {"mode": args.mode, **({"model": args.model} if args.model else {})}
    posted: dict[str, dict] = {}

    def post(item: tuple[str, bytes]) -> None:
        t0 = time.monotonic()
        r = httpx.post(f"{url}/api/jobs", files={"files": (item[0], item[1], "image/png")}, data=options, timeout=120)
        t1 = time.monotonic()
        r.raise_for_status()
        job = r.json()["jobs"][0]
        posted[job["id"]] = {"name": item[0], "t0": t0, "created": t1 - t0, "done_at": None}

    t_start = time.monotonic()
    with ThreadPoolExecutor(len(items)) as pool:
        list(pool.map(post, items))
    killed: dict[str, Any] = {}
    while True:
        try:
            jobs = httpx.get(f"{url}/api/jobs", params={"limit": 500}, timeout=30).json()["jobs"]
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        now = time.monotonic()
        for j in jobs:
            if j["id"] in posted and j["status"] in ("done", "failed", "cancelled") and posted[j["id"]]["done_at"] is None:
                posted[j["id"]]["done_at"], posted[j["id"]]["status"] = now, j["status"]
        finished = sum(p["done_at"] is not None for p in posted.values())
        if kill and not killed and finished >= args.kill_at * len(posted):
            workers = children(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            killed = {"at_finished": finished, "running_when_killed": sum(j["status"] == "running" for j in jobs)}
            time.sleep(1.0)
            killed["workers_left_alive"] = [w for w in workers if alive(w)]
            proc = start(data, port, args.workers, log)
            killed["restart_seconds"] = round(up(url, proc), 2)
            killed["requeued_at_start"] = httpx.get(f"{url}/api/health").json()["requeued_at_start"]
            continue
        if finished == len(posted) or now - t_start > args.timeout:
            break
        time.sleep(0.2)
    wall = time.monotonic() - t_start
    jobs = httpx.get(f"{url}/api/jobs", params={"limit": 500}, timeout=30).json()["jobs"]
    check = whole(url, jobs, dict(items), options)
    alone = [] if kill else one_at_a_time(url, items[: args.sequential], options)
    proc.terminate()
    proc.wait(30)
    done = [p for p in posted.values() if p.get("status") == "done"]
    return {
        "kill_9": kill, "jobs": len(items), "workers": args.workers, "options": options, "wall_seconds": round(wall, 2),
        "server_start_seconds": round(startup, 2),
        "creation_p50": pct([p["created"] for p in posted.values()], 0.5),
        "creation_p95": pct([p["created"] for p in posted.values()], 0.95),
        "completion_p50": pct([p["done_at"] - p["t0"] for p in done], 0.5),
        "completion_p95": pct([p["done_at"] - p["t0"] for p in done], 0.95),
        "done": len(done), "failed": sum(p.get("status") == "failed" for p in posted.values()),
        "lost": sum(p["done_at"] is None for p in posted.values()),
        "duplicated": len(jobs) - len(posted) + len(jobs) - len({j["name"] for j in jobs}),
        "rerun": sum(j["attempts"] > 1 for j in jobs), **check, **({"fault": killed} if kill else {}),
        **({"alone_creation_p50": pct([a[0] for a in alone], 0.5), "alone_completion_p50": pct([a[1] for a in alone], 0.5),
            "alone_n": len(alone)} if alone else {}),
        "jobs_per_second": round(len(done) / wall, 3),
    }


def one_at_a_time(url: str, items: list[tuple[str, bytes]], options: dict) -> list[tuple[float, float]]:
    """After the burst, on an idle queue: (creation, completion) seconds of jobs posted one at a time."""
    import httpx

    out = []
    for name, data in items:
        t0 = time.monotonic()
        job = httpx.post(f"{url}/api/jobs", files={"files": ("alone-" + name, data, "image/png")}, data=options,
                         timeout=120).json()["jobs"][0]
        t1 = time.monotonic()
        while httpx.get(f"{url}/api/jobs/{job['id']}", timeout=30).json()["status"] not in ("done", "failed"):
            time.sleep(0.05)
        out.append((t1 - t0, time.monotonic() - t0))
    return out


def whole(url: str, jobs: list[dict], images: dict[str, bytes], options: dict) -> dict[str, Any]:
    """Every result file whole, and the same bytes as the library's own encode of the same image."""
    import httpx
    from PIL import Image

    from invcomp.formats import ivc as bitstream
    from invcomp.service.encode import EncodeRequest, build_encoder
    from invcomp.imageio import decode_image_bytes

    codec = build_encoder(EncodeRequest(**options, device="cpu")).codec
    bad, same = [], 0
    for j in jobs:
        if j["status"] != "done":
            bad.append(f"{j['name']}: {j['status']}")
            continue
        ivc = httpx.get(f"{url}/api/jobs/{j['id']}/ivc").content
        png = httpx.get(f"{url}/api/jobs/{j['id']}/png").content
        try:
            bitstream.unpack(ivc)
            Image.open(io.BytesIO(png)).load()
        except Exception as e:  # noqa: BLE001
            bad.append(f"{j['name']}: {e}")
            continue
        if len(ivc) != j["result"]["bytes"]:
            bad.append(f"{j['name']}: {len(ivc)} bytes, the job says {j['result']['bytes']}")
        ref = codec.encode([decode_image_bytes(images[j["name"]])])[0].data
        same += ref == ivc
    return {"files_whole": len(jobs) - len(bad), "files_bad": bad[:10], "same_bytes_as_library": same}


def temporaries(work: Path) -> int:
    return sum(1 for _ in work.rglob("*.tmp"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mode", default="vaegan")
    ap.add_argument("--model", default="vaegan-utkface64-c4")
    ap.add_argument("--kill-at", type=float, default=0.4, help="kill -9 once this share of the jobs has finished")
    ap.add_argument("--sequential", type=int, default=10, help="then this many jobs one at a time, on an idle queue")
    ap.add_argument("--port", type=int, default=18731)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", type=Path, default=None, help="write OUT.json and OUT.txt")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="invcomp-web-load-") as tmp:
        work = Path(tmp)
        runs = [run(args, False, work), run(args, True, work)]
        for r in runs:
            r["temporary_files_left"] = temporaries(work / ("fault" if r["kill_9"] else "plain"))
    load = os.getloadavg()[0]
    lines = [f"invcomp serve, {args.jobs} concurrent uploads, {args.workers} workers, {runs[0]['options']}, "
             f"{os.cpu_count()} CPUs (1-minute load {load:.1f} at the end)"]
    for r in runs:
        lines.append(f"{'kill -9 mid-run + restart' if r['kill_9'] else 'plain run'}: {r['done']}/{r['jobs']} done, "
                     f"{r['failed']} failed, {r['lost']} lost, {r['duplicated']} duplicated, {r['rerun']} re-run; "
                     f"creation p50 {r['creation_p50']} s p95 {r['creation_p95']} s; completion p50 "
                     f"{r['completion_p50']} s p95 {r['completion_p95']} s; {r['files_whole']} result files whole, "
                     f"{r['same_bytes_as_library']} byte-identical to the library's encode; "
                     f"{r['temporary_files_left']} temporary files left; {r['wall_seconds']} s wall")
        if "alone_n" in r:
            lines.append(f"  then {r['alone_n']} jobs one at a time on an idle queue: creation p50 {r['alone_creation_p50']} s, "
                         f"completion p50 {r['alone_completion_p50']} s")
        if r["kill_9"]:
            f = r["fault"]
            lines.append(f"  killed after {f['at_finished']} finished with {f['running_when_killed']} running; workers left "
                         f"alive: {len(f['workers_left_alive'])}; restart {f['restart_seconds']} s, "
                         f"{f['requeued_at_start']} re-queued at start")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps({"command": "python experiments/web_load.py " + " ".join(
            argv if argv is not None else sys.argv[1:]), "cpus": os.cpu_count(), "load_1min_at_end": load, "runs": runs},
            indent=2) + "\n")
        args.out.with_suffix(".txt").write_text(text + "\n")
    ok = all(r["done"] == r["jobs"] and not r["lost"] and not r["duplicated"] and not r["files_bad"] for r in runs)
    return 0 if ok and not runs[1]["fault"]["workers_left_alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
