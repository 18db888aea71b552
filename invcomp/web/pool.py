"""The server's worker processes and the thread that keeps them (and the store) healthy.

At start-up every job left ``running`` by a server that was killed is queued again (its workers died with
it). Then :class:`WorkerPool` starts ``--workers`` processes (``spawn``: nothing of the server's threads is
inherited) and a supervisor thread that, every :data:`WATCH_SECONDS`:

- replaces a worker process that died, after re-queueing the job it held (failed after ``max_attempts``);
- removes, every ``sweep_seconds``, the jobs finished more than ``retention_seconds`` ago, with their files.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import secrets
import threading
import time
from typing import Any, Optional

from .config import WebConfig
from .store import JobStore
from .worker import WorkerSpec, main

log = logging.getLogger(__name__)
WATCH_SECONDS = 0.5


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
        self.requeued_at_start = 0
        self.replaced = 0

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

    def check(self) -> None:
        """Replace dead workers (re-queueing their jobs) and sweep old jobs when it is time."""
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
