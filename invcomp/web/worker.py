"""A worker process: claim the oldest queued job, run it (:mod:`invcomp.web.tasks`), record how it ended.

Workers are separate processes, so torch work never blocks the server's event loop. A worker reports
progress to the store at most every :data:`REPORT_SECONDS`, and each report reads back whether the job was
cancelled (then it stops at once, between two steps of the search). A job's failure is its own (one line in
the store); the worker goes on with the next. A worker dies with its server: the kernel kills it when the
server goes (``PR_SET_PDEATHSIG``), and it also stops when it sees the server's process gone, so a job
re-queued by the next server is never run by an orphan at the same time.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Optional

from invcomp.web.store import CANCELLED, DONE, FAILED, JobStore

log = logging.getLogger(__name__)
REPORT_SECONDS = 0.25
IDLE_SECONDS = 0.1  # how often an idle worker looks for a job


class JobStopped(BaseException):
    """Raised from a progress report to stop a job (a ``BaseException``, so no library handler catches it)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is started with."""

    data: str
    owner: str  # GENERATION:SLOT:N, unique per process start
    server_pid: int
    device: str = "cpu"
    threads: int = 1
    max_pixels: int = 16_000_000
    job_timeout: float = 900.0


def time_limit_reason(seconds: float) -> str:
    """A job's error when it ran past the server's time limit (the worker's own check, or the supervisor's kill)."""
    return f"took longer than the server's limit of {seconds:.0f} s"


def die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Reporter:
    """The progress callback of one job: throttled writes to the store, cancel and deadline checks."""

    def __init__(self, store: JobStore, job_id: str, spec: WorkerSpec) -> None:
        self.store, self.job_id, self.spec = store, job_id, spec
        self.done = self.total = 0
        self.t0 = self.last = time.monotonic()

    def start(self, total: int) -> None:
        self.total = max(1, int(total))
        self.report(force=True)

    def tick(self, n: int) -> None:
        self.done = min(self.total, self.done + int(n))
        self.report()

    def report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < REPORT_SECONDS:
            return
        self.last = now
        if not _alive(self.spec.server_pid):
            raise SystemExit(0)  # the server is gone: the next one re-queues this job
        if now - self.t0 > self.spec.job_timeout:
            raise JobStopped(FAILED, time_limit_reason(self.spec.job_timeout))
        if self.store.progress(self.job_id, self.spec.owner, self.done, self.total):
            raise JobStopped(CANCELLED, "cancelled while running")


def main(spec: WorkerSpec, max_jobs: Optional[int] = None) -> None:
    """The worker process's entry point: run jobs until the server goes (``max_jobs``: stop after that many)."""
    die_with_parent()
    os.environ.setdefault("OMP_NUM_THREADS", str(spec.threads))
    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s worker {spec.owner}: %(message)s")
    import torch

    torch.set_num_threads(spec.threads)
    from invcomp.web.tasks import Tasks, TaskError

    store, tasks, ran = JobStore(spec.data), Tasks(spec.device, spec.max_pixels), 0
    while _alive(spec.server_pid) and (max_jobs is None or ran < max_jobs):
        job = store.claim(spec.owner)
        if job is None:
            time.sleep(IDLE_SECONDS)
            continue
        ran += 1
        rep = Reporter(store, job["id"], spec)
        t0 = time.perf_counter()
        try:
            result = tasks.run(job["kind"], store.folder(job["id"]), job["options"], job["name"], start=rep.start,
                               tick=rep.tick)
            result["job_seconds"] = round(time.perf_counter() - t0, 3)
            store.finish(job["id"], spec.owner, DONE, result=result)
        except TaskError as e:
            store.finish(job["id"], spec.owner, FAILED, error=str(e))
        except JobStopped as e:
            store.finish(job["id"], spec.owner, e.status, error=e.reason)
        log.info("job %s (%s) ended in %.2f s", job["id"], job["kind"], time.perf_counter() - t0)
