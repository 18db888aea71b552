"""The server's worker processes and the thread that keeps them (and the store) healthy.

At start-up every job left ``running`` by a server that was killed is queued again (its workers died with
it). Then :class:`WorkerPool` starts ``--workers`` processes (``spawn``: nothing of the server's threads is
inherited) and a supervisor thread that, every :data:`WATCH_SECONDS`:

- stops a job that ran past ``job_timeout`` (any kind: encode, decode, compare, other rates), or that was
  cancelled and whose worker did not stop by itself within :data:`CANCEL_GRACE` seconds, by killing its worker
  (``SIGKILL``: whatever it is doing, in Python or in a C call), then records the job failed or cancelled;
- replaces a worker process that died, after re-queueing the job it held (failed after ``max_attempts``);
- removes, every ``sweep_seconds``, the jobs finished more than ``retention_seconds`` ago, with their files.

A worker also stops a job by itself, at its progress reports (cancel, the time limit): the kill is for the phases
that report nothing (loading a model, a decode, a long C call) and for a worker that hangs.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import threading
import time
from typing import Any, Optional

from invcomp.web.config import WebConfig
from invcomp.web.store import CANCELLED, FAILED, JobStore
from invcomp.web.worker import WorkerSpec, main, time_limit_reason

log = logging.getLogger(__name__)
WATCH_SECONDS = 0.5
KILL_GRACE = 1.0  # seconds past the time limit before the worker is killed (it may stop the job itself first)
CANCEL_GRACE = 2.0  # seconds a cancelled job's worker has to stop by itself (it reports every 0.25 s when it can)


class WorkerPool:
    """``config.workers`` worker processes over ``config.data``'s store, supervised."""

    def __init__(self, config: WebConfig, store: JobStore) -> None:
        self.config, self.store = config, store
        self.generation = secrets.token_hex(4)
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: dict[int, tuple[Any, str]] = {}  # slot -> (process, owner)
        self._starts = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._last_sweep = 0.0
        self._cancel_seen: dict[str, float] = {}  # job id -> when the supervisor first saw its cancel
        self.requeued_at_start = 0
        self.replaced = 0
        self.killed = 0  # workers killed to stop a job (time limit or cancel)

    def start(self) -> None:
        lim = self.config.limits
        self.requeued_at_start = self.store.requeue_running(lim.max_attempts)
        if self.requeued_at_start:
            log.warning("re-queued %d job(s) interrupted by the previous server", self.requeued_at_start)
        self.sweep()
        for slot in range(self.config.workers):
            self._spawn(slot)
        self._thread = threading.Thread(target=self._watch, name="invcomp-web-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self, slot: int) -> None:
        self._starts += 1
        owner = f"{self.generation}:{slot}:{self._starts}"
        lim = self.config.limits
        spec = WorkerSpec(data=str(self.config.data), owner=owner, server_pid=os.getpid(), device=self.config.device,
                          threads=self.config.threads_per_worker, max_pixels=lim.max_pixels, job_timeout=lim.job_timeout)
        p = self._ctx.Process(target=main, args=(spec,), name=f"invcomp-web-worker-{slot}", daemon=True)
        p.start()
        self._procs[slot] = (p, owner)

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_SECONDS):
            try:
                self.check()
            except Exception:  # noqa: BLE001  (the supervisor must outlive a bad moment: a locked store, a full disk)
                log.exception("worker supervisor")

    def enforce(self) -> list[str]:
        """Stop, by killing its worker, each running job past the time limit or cancelled but still running after
        :data:`CANCEL_GRACE`; the job is then failed or cancelled (its worker is replaced by :meth:`check`).
        Returns the ids of the jobs stopped."""
        lim, now, mono = self.config.limits, time.time(), time.monotonic()
        procs = {owner: p for p, owner in self._procs.values()}
        running, stopped = self.store.running(), []
        for job in running:
            p = procs.get(job["owner"])
            if p is None:
                continue  # not one of this server's workers (it is re-queued when its owner is found dead)
            if job["cancel"]:
                if mono - self._cancel_seen.setdefault(job["id"], mono) < CANCEL_GRACE:
                    continue
                status, reason = CANCELLED, "cancelled while running"
            elif job["started"] is not None and now - job["started"] > lim.job_timeout + KILL_GRACE:
                status, reason = FAILED, time_limit_reason(lim.job_timeout)
            else:
                continue
            p.kill()  # first: the worker can then neither finish this job nor claim another
            p.join(5)
            if self.store.finish(job["id"], job["owner"], status, error=reason):
                log.warning("job %s (%s): %s; its worker %s was killed", job["id"], job["kind"], reason, job["owner"])
                stopped.append(job["id"])
            self.killed += 1
        live = {j["id"] for j in running}
        self._cancel_seen = {k: v for k, v in self._cancel_seen.items() if k in live}
        return stopped

    def check(self) -> None:
        """Stop jobs past their limit or cancelled (:meth:`enforce`), replace dead workers (re-queueing their
        jobs) and sweep old jobs when it is time."""
        if not self._stop.is_set():
            self.enforce()
        for slot, (p, owner) in list(self._procs.items()):
            if p.is_alive() or self._stop.is_set():
                continue
            ids = self.store.requeue_owner(owner, self.config.limits.max_attempts)
            log.warning("worker %s exited (code %s); its job(s) %s re-queued; starting another", owner, p.exitcode,
                        ", ".join(ids) or "(none)")
            self.replaced += 1
            self._spawn(slot)
        if time.monotonic() - self._last_sweep >= self.config.sweep_seconds:
            self.sweep()

    def sweep(self) -> list[str]:
        self._last_sweep = time.monotonic()
        gone = self.store.purge(self.config.retention_seconds)
        if gone:
            log.info("removed %d job(s) older than the retention time", len(gone))
        return gone

    def pids(self) -> list[int]:
        """The worker processes' ids (tests kill one)."""
        return [p.pid for p, _ in self._procs.values() if p.pid is not None]

    def alive(self) -> int:
        return sum(p.is_alive() for p, _ in self._procs.values())

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the supervisor and the workers (a running job is re-queued by the next start)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for p, _ in self._procs.values():
            p.terminate()
        for p, _ in self._procs.values():
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join(timeout)
        self._procs.clear()
