"""The driver of a batch job: hand batches of pending items to an engine's workers, record every result in
the manifest, retry what failed, and report.

The loop is the same for every engine (:class:`LocalEngine`: processes on this machine;
:class:`invcomp.batch.ray_engine.RayEngine`: Ray actors). An engine only submits a batch to a worker and
says which batches finished (with the worker's results, or the exception that lost them: a worker that
died, a batch that raised). Each item is in at most one batch at a time, and is marked done once, when its
result comes back; its output was written atomically under its final name before that, so a batch that is
lost and retried writes the same bytes again, never a second file.
"""
from __future__ import annotations

import logging
import sys
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, Protocol

from invcomp.batch.manifest import DONE, FAILED, PENDING, RUNNING, Store, counts
from invcomp.batch.work import JobSpec, WorkItem, driver_process, init_process, run_in_process

log = logging.getLogger(__name__)
DEPTH = 2  # batches in flight per worker: one running, one queued behind it (hides the round trip)


class Engine(Protocol):
    workers: int

    def submit(self, batch: list[WorkItem]) -> Any: ...
    def wait(self, handles: list[Any], timeout: float) -> list[tuple[Any, Any]]: ...
    def close(self) -> None: ...


@dataclass
class JobReport:
    """What a run did: counts, failures (id, reason), throughput and where the time went."""

    total: int = 0
    skipped: int = 0  # done before this run
    done: int = 0
    failed: int = 0
    retried: int = 0  # items given another try after a failure that was not bad input
    worker_losses: int = 0  # batches lost to a worker that died or raised
    wall_seconds: float = 0.0
    first_result_seconds: Optional[float] = None
    load_seconds: float = 0.0  # codec loading, summed over workers
    busy_seconds: float = 0.0  # coding inside workers, summed
    workers: int = 0
    engine: str = ""
    manifest_writes: int = 0
    failures: list = field(default_factory=list)

    @property
    def items_per_second(self) -> float:
        return self.done / self.wall_seconds if self.wall_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "items_per_second": round(self.items_per_second, 4)}

    def summary(self) -> str:
        line = (f"{self.done} done, {self.skipped} already done, {self.failed} failed of {self.total}"
                f" in {self.wall_seconds:.1f} s ({self.items_per_second:.2f} items/s, {self.workers} {self.engine or 'idle'} workers")
        line += f", {self.retried} retried" if self.retried else ""
        line += f", {self.worker_losses} batches lost to workers and redone" if self.worker_losses else ""
        return line + ")"


def run_job(store: Store, todo: list[dict[str, Any]], engine: Engine, *, batch_size: int, max_attempts: int,
            report: JobReport, on_result: Optional[Callable[[Engine, int], None]] = None, progress: bool = True) -> JobReport:
    """Run the rows ``todo`` of ``store`` on ``engine``, ``batch_size`` items per call, until each is done or
    has failed: at once for bad input (it would fail the same way again), after ``max_attempts`` tries
    in this run for anything else. Each batch is recorded (attempts + 1, running) before it is submitted, and
    each result as it arrives. ``on_result(engine, n)`` is called after the n-th batch result (a test hook).

    A lost batch (its worker died, or it raised) is charged to its items only when it ran alone: a worker that
    dies takes every batch in flight with it (a broken process pool), so the others' items are not to blame. The
    lost batches' items become *suspects*, run one batch at a time with nothing else in flight; a suspect batch
    lost alone is split in halves, down to the one item that kills its worker, which then fails with its own
    error after ``max_attempts`` deaths, while every other item is coded as usual."""
    from tqdm import tqdm

    t0, tries = time.perf_counter(), {r["id"]: 0 for r in todo}
    queue = deque(r["id"] for r in todo)
    suspects: deque[list[str]] = deque()  # batches to run alone, after a worker loss
    inflight: dict[Any, list[str]] = {}
    alone: dict[Any, bool] = {}  # a batch in flight: has nothing else been in flight since it was submitted?
    bar = tqdm(total=len(todo), desc=f"batch {engine.__class__.__name__}", unit="img", file=sys.stderr,
               disable=None if progress else True, dynamic_ncols=True)
    results = 0

    def settle(item_id: str, ok: bool, **changes: Any) -> None:
        store.state[item_id] = {**store.state[item_id], **changes, "status": DONE if ok else FAILED}
        if ok:
            report.done += 1
        else:
            report.failed += 1
            report.failures.append([item_id, changes.get("error")])
        bar.update(1)

    def retry_or_fail(item_id: str, reason: str, permanent: bool) -> bool:
        """Fail the item (bad input, or out of tries) or mark it for another try (the caller requeues it)."""
        if permanent or tries[item_id] >= max_attempts:
            settle(item_id, False, error=reason)
            return False
        report.retried += 1
        store.state[item_id] = {**store.state[item_id], "status": PENDING, "error": reason}
        return True

    def submit(ids: list[str]) -> None:
        for i in ids:
            tries[i] += 1
        store.update([{**store.state[i], "status": RUNNING, "attempts": store.state[i]["attempts"] + 1} for i in ids])
        rows = [store.state[i] for i in ids]
        for h in inflight:
            alone[h] = False
        handle = engine.submit([WorkItem(r["id"], r["path"], r["output"]) for r in rows])
        alone[handle] = not inflight
        inflight[handle] = ids

    def lost(ids: list[str], was_alone: bool, outcome: BaseException) -> None:
        reason = f"worker lost: {_one_line(outcome)}"
        if was_alone and len(ids) == 1:  # it died by itself: that item's own doing
            if retry_or_fail(ids[0], reason, permanent=False):
                suspects.append(ids)
            return
        report.retried += len(ids)
        for i in ids:  # not (only) its fault: this try is not counted against it
            tries[i] -= 1
            store.state[i] = {**store.state[i], "status": PENDING, "error": reason}
        if was_alone:  # one of these did it: halve the batch and run each half alone
            half = (len(ids) + 1) // 2
            suspects.appendleft(ids[half:])
            suspects.appendleft(ids[:half])
        else:
            suspects.append(ids)

    try:
        while queue or inflight or suspects:
            if suspects:
                if not inflight:  # suspects run with nothing else in flight
                    submit(suspects.popleft())
            else:
                while queue and len(inflight) < DEPTH * engine.workers:
                    submit([queue.popleft() for _ in range(min(batch_size, len(queue)))])
            for handle, outcome in engine.wait(list(inflight), timeout=1.0):
                ids = inflight.pop(handle)
                was_alone = alone.pop(handle, False)
                results += 1
                if report.first_result_seconds is None:
                    report.first_result_seconds = time.perf_counter() - t0
                if isinstance(outcome, BaseException):  # the batch was lost: its items get another try
                    report.worker_losses += 1
                    log.warning("a batch of %d items was lost (%s); retrying them%s", len(ids), _one_line(outcome),
                                "" if was_alone else ", apart from the others")
                    lost(ids, was_alone, outcome)
                else:
                    report.load_seconds += outcome["load_seconds"]
                    report.busy_seconds += outcome["busy_seconds"]
                    for i, res in zip(ids, outcome["results"]):
                        if res["ok"]:
                            row = res["row"]
                            settle(i, True, error=None, bytes=row.get("bytes"), seconds=row.get("seconds"),
                                   metrics={k: v for k, v in row.items() if k not in ("input", "output")})
                        elif retry_or_fail(i, res["error"], res["permanent"]):
                            queue.append(i)
                store.update([store.state[i] for i in ids])
                bar.set_postfix(failed=report.failed, refresh=False)
                if on_result is not None:
                    on_result(engine, results)
    finally:
        bar.close()
        report.wall_seconds = time.perf_counter() - t0
        report.manifest_writes = store.writes
    c = counts(store.state)
    log.info("manifest %s: %s", store.path, ", ".join(f"{v} {k}" for k, v in c.items() if v))
    return report


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"[:300]


class LocalEngine:
    """``workers`` processes on this machine, each loading the codec once in its initializer. They are forked
    from a fresh server process that has imported torch and invcomp (``forkserver``; ``spawn`` where there is
    none), so nothing of the driver's threads is inherited and a start does not import torch again. A
    process that dies breaks the pool: its batches, and the others in flight, are retried on a new pool. Each
    worker dies with the driver (:func:`invcomp.batch.work.die_with_driver`), even after a ``kill -9`` of it."""

    name = "local"

    def __init__(self, spec: JobSpec, workers: int) -> None:
        import multiprocessing

        self.spec, self.workers = spec, workers
        if "forkserver" in multiprocessing.get_all_start_methods():
            self._ctx = multiprocessing.get_context("forkserver")
            self._ctx.set_forkserver_preload(["torch", "invcomp.service.encode", "invcomp.batch.work"])
        else:
            self._ctx = multiprocessing.get_context("spawn")
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=init_process,
                                   initargs=(self.spec, driver_process()))

    def submit(self, batch: list[WorkItem]) -> Future:
        try:
            return self._pool.submit(run_in_process, batch)
        except RuntimeError:  # a broken pool refuses new work: start another one
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(run_in_process, batch)

    def wait(self, handles: list[Future], timeout: float) -> list[tuple[Future, Any]]:
        done, _ = wait_futures(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for f in done:
            e = f.exception()
            out.append((f, e if e is not None else f.result()))
        return out

    def pids(self) -> list[int]:
        """The worker processes' ids (for tests that kill one)."""
        return list(getattr(self._pool, "_processes", {}) or {})

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
