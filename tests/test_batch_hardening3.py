"""Hardening, third round (issue 30), batch jobs: an input that kills its worker fails alone (with its own error,
not the others' as BrokenProcessPool), a device as input is refused in one line, an output under a symlinked
folder of ``--out`` is refused, and the workers die with their driver (kill -9), locally and in Ray."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest

from invcomp.batch import JobOptions, run
from invcomp.batch import manifest as mf
from invcomp.batch.runner import JobReport, run_job
from invcomp.batch.sources import items_for
from invcomp.service.encode import codec_defaults
from invcomp.errors import UsageError

from .conftest import DEMO_IMAGE, REPO


class _PoolThatBreaks:
    """An in-process engine of ``workers`` workers that behaves like a ``ProcessPoolExecutor``: when a batch holding
    the item ``bad`` runs, its worker dies and every batch in flight is lost with ``BrokenProcessPool``."""

    name = "breaking"

    def __init__(self, workers: int, bad: str) -> None:
        self.workers, self.bad, self._next, self.batches = workers, bad, 0, {}
        self.runs: list[list[str]] = []

    def submit(self, batch: list) -> int:
        self._next += 1
        self.batches[self._next] = batch
        return self._next

    def wait(self, handles: list, timeout: float) -> list:
        running = handles[: self.workers]  # the oldest in flight are running
        if any(it.id == self.bad for h in running for it in self.batches[h]):
            self.runs.append([it.id for h in handles for it in self.batches[h]])
            return [(h, BrokenProcessPool("A process in the process pool was terminated abruptly while the future "
                                          "was running or pending.")) for h in handles]
        h = handles[0]
        batch = self.batches.pop(h)
        self.runs.append([it.id for it in batch])
        return [(h, {"results": [{"id": it.id, "ok": True, "row": {"bytes": 1}} for it in batch],
                     "load_seconds": 0.0, "busy_seconds": 0.0})]

    def close(self) -> None:
        pass


@pytest.mark.parametrize("batch_size", [1, 3])
def test_an_item_that_kills_its_worker_fails_alone(tmp_path: Path, batch_size: int) -> None:
    ids = [f"i{k}" for k in range(12)]
    state = {i: mf.new_row(i, str(tmp_path / f"{i}.png"), str(tmp_path / f"{i}.ivc")) for i in ids}
    store = mf.Store(tmp_path / "m.jsonl", state)
    engine = _PoolThatBreaks(workers=2, bad="i5")
    report = run_job(store, list(state.values()), engine, batch_size=batch_size, max_attempts=3, report=JobReport(),
                     progress=False)
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "m.jsonl").read_text().splitlines())}
    assert rows["i5"]["status"] == "failed" and rows["i5"]["error"].startswith("worker lost: BrokenProcessPool")
    assert "\n" not in rows["i5"]["error"]
    assert {i for i in ids if rows[i]["status"] == "done"} == set(ids) - {"i5"}, rows
    assert (report.done, report.failed) == (11, 1)


def test_a_device_in_a_manifest_fails_alone_in_one_line(tmp_path: Path) -> None:
    """``{"path": "/dev/zero"}``: its own one-line error, no worker lost, and the other rows done."""
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(DEMO_IMAGE, src / "a.png")
    shutil.copy(DEMO_IMAGE, src / "b.png")
    man = tmp_path / "in.jsonl"
    man.write_text("\n".join(json.dumps(r) for r in ({"path": "src/a.png"}, {"path": "/dev/zero", "id": "zero"},
                                                       {"path": "src/b.png"})) + "\n")
    report, _ = run("encode", str(man), tmp_path / "out", options=codec_defaults(model="dcgan-utkface64", iters=2),
                    job=JobOptions(ray="none", workers=1, batch_size=3, progress=False))
    rows = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").read_text().splitlines())}
    assert rows["zero"]["status"] == "failed" and rows["zero"]["attempts"] == 1, rows["zero"]
    assert "/dev/zero" in rows["zero"]["error"] and "\n" not in rows["zero"]["error"]
    assert "BrokenProcessPool" not in rows["zero"]["error"] and report.worker_losses == 0
    assert rows["src/a.png"]["status"] == "done" and rows["src/b.png"]["status"] == "done"


def test_an_output_under_a_symlinked_folder_of_out_is_refused(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    outside.mkdir()
    (out / "link").symlink_to(outside, target_is_directory=True)
    (tmp_path / "a.png").write_bytes(DEMO_IMAGE.read_bytes())
    for row in ({"path": "a.png", "output": "link/a.ivc"}, {"path": "a.png", "id": "link/a"}):
        man = tmp_path / "m.jsonl"
        man.write_text(json.dumps(row) + "\n")
        with pytest.raises(UsageError, match="outside --out"):
            items_for(str(man), out, (".png",), ".ivc")
    man.write_text(json.dumps({"path": "a.png", "output": "sub/a.ivc"}) + "\n")  # a real folder inside is fine
    (out / "sub").mkdir()
    assert items_for(str(man), out, (".png",), ".ivc")[0]["output"] == str(out / "sub" / "a.ivc")
    linked_out = tmp_path / "out-link"  # --out itself a symlink: its targets are inside it
    linked_out.symlink_to(outside, target_is_directory=True)
    man.write_text(json.dumps({"path": "a.png", "output": "x/a.ivc"}) + "\n")
    assert items_for(str(man), linked_out, (".png",), ".ivc")[0]["output"] == str(linked_out / "x" / "a.ivc")


# --- item 7: workers die with their driver ----------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_driver_and_watch(script: str, limit: float) -> tuple[list[int], float]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=False)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        pids = [int(p) for p in line.split()]
        assert pids, proc.stderr.read() if proc.poll() is not None else "no pids"  # type: ignore[union-attr]
        assert all(_alive(p) for p in pids)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    t0 = time.monotonic()
    while any(_alive(p) for p in pids) and time.monotonic() - t0 < limit:
        time.sleep(0.1)
    left = [p for p in pids if _alive(p)]
    for p in left:  # the test's own cleanup, of the processes it named
        os.kill(p, signal.SIGKILL)
    return left, time.monotonic() - t0


LOCAL_DRIVER = """
import multiprocessing.forkserver as fs, os, time
from invcomp.batch.runner import LocalEngine
from invcomp.batch.work import JobSpec
e = LocalEngine(JobSpec("decode", {"device": "cpu"}), 1)
worker = e._pool.submit(os.getpid).result()
e._pool.submit(time.sleep, 600)
server = getattr(fs._forkserver, "_forkserver_pid", None)
print(worker, *([server] if server else []), flush=True)
time.sleep(600)
"""


def test_local_workers_die_with_their_driver() -> None:
    left, took = _kill_driver_and_watch(LOCAL_DRIVER, limit=15)
    assert left == [], f"still alive {took:.0f} s after kill -9 of the driver: {left}"


RAY_DRIVER = """
import os, time, ray, logging
from invcomp.batch.ray_engine import RayEngine
from invcomp.batch.work import JobSpec
ray.init(num_cpus=1, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
e = RayEngine(JobSpec("decode", {"device": "cpu"}), 1)
where = ray.get(e.actors[0].run.remote([]))["worker"]
print(where.rsplit(":", 1)[1], flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_ray_workers_die_with_their_driver() -> None:
    pytest.importorskip("ray")
    left, took = _kill_driver_and_watch(RAY_DRIVER, limit=30)
    assert left == [], f"still alive {took:.0f} s after kill -9 of the driver: {left}"
