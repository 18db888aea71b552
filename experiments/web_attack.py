"""The web app under attack, in one scripted run (issue 30): ``invcomp serve`` on a free loopback port with small
limits, and at the same time

- **slow uploads**: clients from a few loopback addresses (127.0.0.10-13) open more uploads than their share, send
  the headers and a few bytes, then stall (the read timeout) or trickle a byte a second (the upload deadline), and
  reconnect as soon as they are cut off;
- **a queue flood**: requests of 16 images each, back to back, until the queue refuses them;
- **bomb headers**: PNGs that declare 20000x20000 and other sizes past the server's pixel limit;
- **PostScript uploads named .png**, with a ``gs`` on the server's PATH that leaves a mark if it ever runs;
- **8 heavy layered jobs** (``layer_rates`` of ``@4080`` layers);
- **a crafted photo decode**: 64 faces, each declaring 4000x4000, in a 4000x4000 frame;
- **long jobs**: two searches as long as the server allows (``iters`` at its cap), one left to run into the job
  time limit, one cancelled once it runs;

while 20 legitimate encode jobs are posted from 127.0.0.1 (a 503 or 429 is retried after its ``Retry-After``, as a
client should) and the health check is polled every 0.2 s. Everything runs on this machine (loopback only) and ends
within ``--limit`` seconds; the server and every client are stopped at the end.

    python experiments/web_attack.py                      # -> experiments/results/web_attack.json

It prints the JSON summary and writes it to ``--out``: how many legitimate jobs finished, the health check's
largest latency, and what each attack got (statuses, times).
"""
from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
FACE = REPO / "experiments" / "data" / "portraits" / "astronaut-face.png"
FAST = {"mode": "vaegan", "model": "vaegan-utkface64-c4"}
POSTSCRIPT = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n%%EndComments\n"
              b"/Helvetica findfont 12 scalefont setfont 0 0 moveto (hello) show showpage\n%%EOF\n")
FINISHED = ("done", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(size: tuple[int, int], seed: int = 0) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def faces(n: int) -> list[tuple[str, bytes]]:
    """``n`` distinct faces: the demo portrait, shifted and flipped (deterministic)."""
    from PIL import Image, ImageOps

    base = Image.open(FACE).convert("RGB")
    out = []
    for i in range(n):
        img = base.crop((i % 5, (i // 5) % 5, base.width - 5 + i % 5, base.height - 5 + (i // 5) % 5))
        img = ImageOps.mirror(img) if i % 2 else img
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append((f"legit-{i:02d}.png", buf.getvalue()))
    return out


def png_header(w: int, h: int) -> bytes:
    """A PNG that declares ``w`` x ``h``: a decompression bomb's header."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 256)) + chunk(b"IEND", b""))


def crafted_photo(work: Path, side: int = 4000, n: int = 64) -> bytes:
    """A photo file of ``n`` faces, each a real VAE-GAN face file that declares ``side`` x ``side`` (the face of a
    ``side``-px picture, coded at 64 px), each covering the whole ``side`` x ``side`` frame."""
    from PIL import Image

    from invcomp.formats import photo as container

    big = work / "big.png"
    Image.new("RGB", (side, side), (120, 90, 80)).save(big)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "invcomp.cli", "--threads", "1", "encode", str(big), "--fit", "crop",
                    "--mode", FAST["mode"], "--model", FAST["model"], "-o", str(work / "face.ivc"), "--force"],
                   env=env, check=True, capture_output=True, timeout=300)
    face = (work / "face.ivc").read_bytes()
    return container.pack(container.Photo(side, side, [container.FaceRecord(None, face)] * n))


class Server:
    """``invcomp serve`` in its own process group, with a ``gs`` on its PATH that leaves a mark if run."""

    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.port, self.work = free_port(), work
        bin_dir = work / "bin"
        bin_dir.mkdir()
        self.mark = work / "ghostscript-ran"
        (bin_dir / "gs").write_text(f"#!/bin/sh\necho \"$@\" >> {self.mark}\nexit 1\n")
        (bin_dir / "gs").chmod(0o755)
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
               "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.cmd = [sys.executable, "-m", "invcomp.cli", "--threads", "1", "serve", "--port", str(self.port), "--data",
                    str(work / "data"), "--workers", str(args.workers), "--max-queue", str(args.max_queue),
                    "--job-timeout", str(args.job_timeout), "--read-timeout", str(args.read_timeout),
                    "--upload-timeout", str(args.upload_timeout), "--max-uploads-per-client", str(args.per_client),
                    "--max-pixels", str(args.max_pixels)]
        self.log = (work / "server.log").open("ab")
        self.proc = subprocess.Popen(self.cmd, env=env, stdout=subprocess.DEVNULL, stderr=self.log,
                                     start_new_session=True, cwd=work)
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_up(self, timeout: float = 180) -> None:
        import httpx

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self.work / 'server.log'}")
            try:
                if httpx.get(self.url + "/api/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit("the server did not start")

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(20)
        self.log.close()


def client(source: str = "127.0.0.1", timeout: float = 60) -> Any:
    """An HTTP client whose connections come from loopback address ``source`` (one client, as the server sees it)."""
    import httpx

    return httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=timeout)


def post_files(c: Any, url: str, files: list[tuple[str, bytes]], data: Optional[dict] = None,
               field: str = "files") -> Any:
    return c.post(url, files=[(field, (n, b, "application/octet-stream")) for n, b in files], data=data or {})


class Health(threading.Thread):
    """GET /api/health every ``every`` seconds; each latency kept."""

    def __init__(self, url: str, stop: threading.Event, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.every = url, stop, every
        self.latencies: list[float] = []
        self.errors: Counter = Counter()

    def run(self) -> None:
        with client(timeout=10) as c:
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    r = c.get(self.url + "/api/health")
                    if r.status_code != 200:
                        self.errors[str(r.status_code)] += 1
                except Exception as e:  # noqa: BLE001  (a timeout or a refused connection is the finding)
                    self.errors[type(e).__name__] += 1
                took = time.monotonic() - t0
                self.latencies.append(took)
                self.stop.wait(max(0.0, self.every - took))

    def summary(self) -> dict:
        lat = self.latencies
        return {"polls": len(lat), "errors": dict(self.errors), "max_latency_s": round(max(lat), 3) if lat else None,
                "p99_latency_s": round(sorted(lat)[int(0.99 * (len(lat) - 1))], 3) if lat else None,
                "median_latency_s": round(statistics.median(lat), 4) if lat else None,
                "over_1s": sum(x > 1.0 for x in lat)}


def slow_uploader(port: int, source: str, trickle: bool, stop: threading.Event, log: list) -> None:
    """One slow client connection after another from ``source``: headers and a few bytes, then nothing (or a byte a
    second); each ends with the server's answer, recorded with how long the connection was held."""
    head = (b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
            b"Content-Length: 1000000\r\n\r\n--xx\r\nContent-Disposition: form-data; name=\"files\"; "
            b"filename=\"slow.png\"\r\n\r\n\x89PNG" % port)
    while not stop.is_set():
        t0, status = time.monotonic(), 0
        try:
            with socket.socket() as s:
                s.bind((source, 0))
                s.connect(("127.0.0.1", port))
                s.sendall(head)
                s.settimeout(1.0)
                data = b""
                while not stop.is_set() and b"\r\n" not in data:
                    try:
                        got = s.recv(4096)
                        if not got:
                            break
                        data += got
                    except socket.timeout:
                        if trickle:
                            s.sendall(b"x")
                    if time.monotonic() - t0 > 120:
                        break
                parts = data.split(b"\r\n", 1)[0].split()
                status = int(parts[1]) if len(parts) > 1 else -1
        except OSError:
            status = -2
        if not stop.is_set() or status > 0:
            log.append((status, round(time.monotonic() - t0, 2), trickle))
        if status in (429, 503):
            stop.wait(0.5)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.monotonic()
    out = fn()
    return out, round(time.monotonic() - t0, 3)


def wait_job(c: Any, url: str, job_id: str, deadline: float) -> dict:
    while time.monotonic() < deadline:
        j = c.get(f"{url}/api/jobs/{job_id}").json()
        if j["status"] in FINISHED:
            return j
        time.sleep(0.3)
    return c.get(f"{url}/api/jobs/{job_id}").json()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--job-timeout", type=float, default=10.0)
    ap.add_argument("--read-timeout", type=float, default=3.0)
    ap.add_argument("--upload-timeout", type=float, default=10.0)
    ap.add_argument("--per-client", type=int, default=4, help="--max-uploads-per-client")
    ap.add_argument("--max-queue", type=int, default=40)
    ap.add_argument("--max-pixels", type=int, default=16_000_000)
    ap.add_argument("--legit", type=int, default=20, help="legitimate jobs")
    ap.add_argument("--limit", type=float, default=420.0, help="seconds the whole run may take")
    ap.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "web_attack.json")
    args = ap.parse_args()
    t_start = time.monotonic()
    deadline = t_start + args.limit
    with tempfile.TemporaryDirectory(prefix="invcomp-web-attack-") as tmp:
        work = Path(tmp)
        photo = crafted_photo(work)
        server = Server(work, args)
        try:
            server.wait_up()
            summary = attack(server, args, photo, deadline)
        finally:
            server.stop()
        summary["ghostscript_ran"] = server.mark.exists()
    summary["wall_seconds"] = round(time.monotonic() - t_start, 1)
    summary["command"] = "python experiments/web_attack.py " + " ".join(sys.argv[1:])
    summary["server_command"] = "invcomp " + " ".join(server.cmd[server.cmd.index("serve"):]).replace(str(work), "TMP")
    text = json.dumps(summary, indent=2)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


def attack(server: Server, args: argparse.Namespace, photo: bytes, deadline: float) -> dict:
    url, port = server.url, server.port
    stop, stop_slow = threading.Event(), threading.Event()
    health = Health(url, stop)
    health.start()
    results: dict[str, Any] = {"server": {k: getattr(args, k) for k in ("workers", "job_timeout", "read_timeout",
                                                                        "upload_timeout", "per_client", "max_queue",
                                                                        "max_pixels")}}
    threads: list[threading.Thread] = []

    def spawn(fn: Callable[[], None]) -> None:
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        threads.append(t)

    # slow uploads: 4 clients, each opening 6 connections (2 over its share), half stalling, half trickling
    slow_log: list = []
    slow_threads = []
    for k in range(4):
        for j in range(6):
            t = threading.Thread(target=slow_uploader, args=(port, f"127.0.0.{10 + k}", j % 2 == 1, stop_slow, slow_log),
                                 daemon=True)
            t.start()
            slow_threads.append(t)
    time.sleep(1.0)

    # the queue flood
    flood: dict[str, Any] = {}

    def do_flood() -> None:
        statuses, created = Counter(), 0
        imgs = [(f"flood-{i}.png", png((48, 48), seed=100 + i)) for i in range(16)]
        with client("127.0.0.20") as c:
            for _ in range(12):
                r = post_files(c, url + "/api/jobs", imgs, FAST)
                statuses[str(r.status_code)] += 1
                created += len(r.json().get("jobs", [])) if r.status_code == 202 else 0
        flood.update(requests=12, files_per_request=16, statuses=dict(statuses), jobs_created=created)

    spawn(do_flood)

    # bomb headers and PostScript named .png
    bombs: dict[str, Any] = {}
    postscript: dict[str, Any] = {}

    def do_bombs() -> None:
        statuses, times = Counter(), []
        with client("127.0.0.21") as c:
            for w, h in ((20000, 20000), (65535, 65535), (13000, 12000), (5000, 5000), (4001, 4000), (100000, 1000)):
                r, took = timed(lambda: post_files(c, url + "/api/jobs", [("bomb.png", png_header(w, h))], FAST))
                statuses[str(r.status_code)] += 1
                times.append(took)
        bombs.update(uploads=sum(statuses.values()), statuses=dict(statuses), max_answer_s=max(times))

    def do_postscript() -> None:
        statuses, times, details = Counter(), [], set()
        with client("127.0.0.22") as c:
            for k in range(6):
                if k % 3 == 2:
                    call = lambda: c.post(url + "/api/compare", files=[  # noqa: E731
                        ("original", ("innocent.png", POSTSCRIPT, "image/png")),
                        ("reconstruction", ("b.png", png((32, 32)), "image/png"))])
                else:
                    call = lambda: post_files(c, url + "/api/jobs", [("innocent.png", POSTSCRIPT)], FAST)  # noqa: E731
                r, took = timed(call)
                statuses[str(r.status_code)] += 1
                times.append(took)
                details.add(r.json().get("detail", "")[:160])
        postscript.update(uploads=6, statuses=dict(statuses), max_answer_s=max(times), details=sorted(details))

    spawn(do_bombs)
    spawn(do_postscript)

    # 8 heavy layered jobs
    heavy: dict[str, Any] = {}

    def do_heavy() -> None:
        statuses, times, ids, details = Counter(), [], [], set()
        plans = ["3@4080", "0@1024,1@2048,3@4080", "3@4080,3@4080", "2@4080", "1@2048,3@4080", "3@4080", "0@4080",
                 "2@2048,3@4080"]
        with client("127.0.0.23") as c:
            for plan in plans:
                r, took = timed(lambda: post_files(c, url + "/api/jobs", [("heavy.png", faces(1)[0][1])],
                                                   {"mode": "layered", "layer_rates": plan}))
                statuses[str(r.status_code)] += 1
                times.append(took)
                if r.status_code == 202:
                    ids += [j["id"] for j in r.json()["jobs"]]
                else:
                    details.add(r.json().get("detail", "")[:160])
            ended = [wait_job(c, url, i, deadline - 30) for i in ids]
        heavy.update(requests=len(plans), statuses=dict(statuses), max_answer_s=max(times), details=sorted(details),
                     jobs=[{"status": j["status"], "error": j.get("error"),
                            "seconds": round(j["finished"] - j["started"], 1) if j.get("finished") and j.get("started")
                            else None} for j in ended])

    spawn(do_heavy)

    # the crafted photo decode
    crafted: dict[str, Any] = {}

    def do_crafted() -> None:
        with client("127.0.0.24") as c:
            r, took = timed(lambda: post_files(c, url + "/api/decode", [("crafted.ivc", photo)]))
            crafted.update(bytes=len(photo), upload_status=r.status_code, upload_s=took)
            if r.status_code != 202:
                crafted["detail"] = r.json().get("detail")
                return
            j = wait_job(c, url, r.json()["jobs"][0]["id"], deadline - 20)
            crafted.update(job_status=j["status"], error=j.get("error"),
                           run_seconds=round(j["finished"] - j["started"], 1) if j.get("finished") and j.get("started")
                           else None)

    spawn(do_crafted)

    # long jobs: one runs into the time limit, one is cancelled once it runs
    long_jobs: list[dict] = []

    def do_long(cancel: bool) -> None:
        with client(f"127.0.0.{25 + cancel}") as c:
            r = post_files(c, url + "/api/jobs", [("long.png", faces(1)[0][1])],
                           {"mode": "inversion", "model": "dcgan-utkface64", "iters": "2000"})
            row: dict[str, Any] = {"cancel": cancel, "upload_status": r.status_code}
            if r.status_code != 202:
                row["detail"] = r.json().get("detail")
                long_jobs.append(row)
                return
            job_id = r.json()["jobs"][0]["id"]
            if cancel:
                while time.monotonic() < deadline - 30:
                    if c.get(f"{url}/api/jobs/{job_id}").json()["status"] != "queued":
                        break
                    time.sleep(0.2)
                time.sleep(1.0)
                t0 = time.monotonic()
                c.post(f"{url}/api/jobs/{job_id}/cancel")
                j = wait_job(c, url, job_id, deadline - 20)
                row["cancel_to_end_s"] = round(time.monotonic() - t0, 2)
            else:
                j = wait_job(c, url, job_id, deadline - 20)
            row.update(job_status=j["status"], error=j.get("error"),
                       run_seconds=round(j["finished"] - j["started"], 1) if j.get("finished") and j.get("started")
                       else None)
            long_jobs.append(row)

    spawn(lambda: do_long(False))
    spawn(lambda: do_long(True))

    # the legitimate jobs, one a second from 127.0.0.1, each retried after a 503/429 as Retry-After says
    legit_rows: list[dict] = []
    retries: Counter = Counter()
    with client("127.0.0.1") as c:
        posted = []
        for name, data in faces(args.legit):
            t0 = time.monotonic()
            while True:
                r = post_files(c, url + "/api/jobs", [(name, data)], FAST)
                if r.status_code in (429, 503) and time.monotonic() < deadline - 60:
                    retries[str(r.status_code)] += 1
                    time.sleep(float(r.headers.get("retry-after", "2")))
                    continue
                break
            posted.append((name, r.status_code, r.json()["jobs"][0]["id"] if r.status_code == 202 else None, t0))
            time.sleep(1.0)
        for name, status, job_id, t0 in posted:
            j = wait_job(c, url, job_id, deadline - 15) if job_id else {"status": f"refused {status}"}
            legit_rows.append({"name": name, "status": j["status"], "error": j.get("error"),
                               "latency_s": round((j.get("finished") or time.time()) - (j.get("created") or 0), 1)
                               if job_id else None})
    for t in threads:
        t.join(max(1.0, deadline - 10 - time.monotonic()))
    stop_slow.set()
    for t in slow_threads:
        t.join(5)
    stop.set()
    health.join(10)
    with client() as c:  # every job in the store was answered 202: a refused request created none
        results["jobs_in_store"] = len(c.get(url + "/api/jobs", params={"limit": 500}).json()["jobs"])
        results["jobs_answered_202"] = flood.get("jobs_created", 0) + sum(r["status"] != "refused 503" for r in legit_rows) \
            + sum(r.get("upload_status") == 202 for r in long_jobs) + len(heavy.get("jobs", [])) \
            + (crafted.get("upload_status") == 202)
    done = [r for r in legit_rows if r["status"] == "done"]
    lat = [r["latency_s"] for r in done if r["latency_s"] is not None]
    results["legit"] = {"posted": len(legit_rows), "done": len(done), "not_done": [r for r in legit_rows if r not in done],
                        "retried_after": dict(retries), "latency_s": {"median": statistics.median(lat) if lat else None,
                                                                      "max": max(lat) if lat else None}}
    results["health"] = health.summary()
    held = [h for s, h, _ in slow_log if s in (408,)]
    results["slow_uploads"] = {"clients": 4, "connections_each": 6, "answers": dict(Counter(str(s) for s, _, _ in slow_log)),
                               "stalled_held_s_max": max([h for s, h, t in slow_log if s == 408 and not t], default=None),
                               "trickled_held_s_max": max([h for s, h, t in slow_log if s == 408 and t], default=None),
                               "refused_at_once_s_max": max([h for s, h, _ in slow_log if s in (429, 503)], default=None),
                               "cut_off": len(held)}
    results["queue_flood"] = flood
    results["bomb_headers"] = bombs
    results["postscript_named_png"] = postscript
    results["heavy_layered"] = heavy
    results["crafted_photo_decode"] = crafted
    results["long_jobs"] = long_jobs
    return results


if __name__ == "__main__":
    main()
