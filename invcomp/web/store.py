"""The persistent job store: one SQLite file (WAL) shared by the server and its worker processes.

A job is one row: its ``kind`` (encode, decode, compare), ``status`` (queued, running, done, failed,
cancelled), options (JSON), progress, the one-line ``error`` or the ``result`` (JSON), and the ``owner`` (the
worker running it). Its files live in ``DATA/jobs/ID/`` under fixed names (:data:`INPUT`, ...), never under a
name from a request. Every change is one transaction, and a worker's claim, progress and finish are
conditional on it still owning the job, so a job re-queued after its worker died is never finished twice.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
KINDS = ("encode", "decode", "compare")
INPUT, INPUT_B = "input", "input-b"  # the uploaded bytes (compare: two), as they came
IVC, PNG, ORIGINAL = "output.ivc", "output.png", "original.png"  # the results, each written atomically
FILES = {"ivc": IVC, "png": PNG, "original": ORIGINAL, "reconstruction": "reconstruction.png"}
"""What ``GET /api/jobs/{id}/{file}`` may serve: a fixed name per key, never a path from the request."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    name TEXT NOT NULL,
    options TEXT NOT NULL,
    parent TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    done_units INTEGER NOT NULL DEFAULT 0,
    total_units INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    cancel INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_parent ON jobs (parent);
"""


def new_id() -> str:
    """A job id: 32 random hex digits (also the name of its folder)."""
    return secrets.token_hex(16)


def is_job_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


class JobStore:
    """The jobs of one data folder. One instance per process (and thread); connections are opened per call."""

    def __init__(self, data: Path) -> None:
        self.data = Path(data)
        self.db = self.data / "jobs.sqlite"
        self.jobs_dir = self.data / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        c = sqlite3.connect(self.db, timeout=30.0)
        try:
            c.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer; kept in the file
            c.executescript(SCHEMA)
        finally:
            c.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction (``BEGIN IMMEDIATE``: writers queue for the lock instead of failing)."""
        c = sqlite3.connect(self.db, timeout=30.0, isolation_level=None)
        try:
            c.row_factory = sqlite3.Row
            c.execute("PRAGMA synchronous=FULL")  # a finished job survives a power cut, not only a kill
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")
        finally:
            c.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read-only look (WAL: it sees the last commit and never waits for a writer's lock)."""
        c = sqlite3.connect(self.db, timeout=5.0)
        try:
            c.row_factory = sqlite3.Row
            yield c
        finally:
            c.close()

    def folder(self, job_id: str) -> Path:
        """``DATA/jobs/ID``: only a well-formed id (never a name from a request) becomes a path."""
        if not is_job_id(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.jobs_dir / job_id

    # --- the server's side ----------------------------------------------------------------------------------
    def create(self, job_id: str, kind: str, name: str, options: dict, *, parent: Optional[str] = None,
               max_queue: Optional[int] = None) -> Optional[dict]:
        """Queue a job whose input files are already in its folder; ``None`` when ``max_queue`` jobs wait."""
        rows = self.create_many([(job_id, kind, name, options)], parent=parent, max_queue=max_queue)
        return rows[0] if rows else None

    def create_many(self, jobs: list[tuple[str, str, str, dict]], *, parent: Optional[str] = None,
                    max_queue: Optional[int] = None) -> Optional[list[dict]]:
        """Queue ``(id, kind, name, options)`` jobs in one transaction: all of them, or none (``None``) when the
        queue has no room for them all under ``max_queue``."""
        if any(kind not in KINDS for _, kind, _, _ in jobs):
            raise ValueError(f"unknown job kind in {[k for _, k, _, _ in jobs]!r}")
        with self._tx() as c:
            if max_queue is not None and c.execute("SELECT COUNT(*) FROM jobs WHERE status=?",
                                                   (QUEUED,)).fetchone()[0] + len(jobs) > max_queue:
                return None
            now = time.time()
            c.executemany("INSERT INTO jobs (id, kind, status, name, options, parent, created) VALUES (?,?,?,?,?,?,?)",
                          [(job_id, kind, QUEUED, name[:200], json.dumps(options, sort_keys=True), parent, now)
                           for job_id, kind, name, options in jobs])
            return [_row(c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()) for job_id, *_ in jobs]

    def queued(self) -> int:
        """How many jobs wait (a read: it never waits for a writer)."""
        with self._read() as c:
            return int(c.execute("SELECT COUNT(*) FROM jobs WHERE status=?", (QUEUED,)).fetchone()[0])

    def running(self) -> list[dict]:
        """The running jobs as the supervisor sees them: ``id``, ``kind``, ``owner``, ``started`` (seconds since the
        epoch) and ``cancel`` (asked to stop)."""
        with self._read() as c:
            return [dict(r) for r in c.execute("SELECT id, kind, owner, started, cancel FROM jobs WHERE status=?",
                                               (RUNNING,))]

    def get(self, job_id: str) -> Optional[dict]:
        with self._tx() as c:
            return _row(c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def many(self, ids: list[str]) -> list[dict]:
        with self._tx() as c:
            marks = ",".join("?" * len(ids))
            rows = c.execute(f"SELECT * FROM jobs WHERE id IN ({marks})", ids).fetchall() if ids else []
        by_id = {r["id"]: _row(r) for r in rows}
        return [by_id[i] for i in ids if i in by_id]

    def recent(self, limit: int = 50, *, parent: Optional[str] = None) -> list[dict]:
        with self._tx() as c:
            if parent is None:
                rows = c.execute("SELECT * FROM jobs ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = c.execute("SELECT * FROM jobs WHERE parent=? ORDER BY seq LIMIT ?", (parent, limit)).fetchall()
        return [_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._read() as c:
            got = dict(c.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        return {s: int(got.get(s, 0)) for s in (QUEUED, RUNNING, DONE, FAILED, CANCELLED)}

    def cancel(self, job_id: str) -> Optional[dict]:
        """A queued job is cancelled at once; a running one is flagged (its worker stops at its next progress
        report). Returns the row after the change (``None``: no such job)."""
        with self._tx() as c:
            c.execute("UPDATE jobs SET status=?, finished=?, error=? WHERE id=? AND status=?",
                      (CANCELLED, time.time(), "cancelled before it started", job_id, QUEUED))
            c.execute("UPDATE jobs SET cancel=1 WHERE id=? AND status=?", (job_id, RUNNING))
            return _row(c.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone())

    def delete(self, job_id: str) -> bool:
        """Remove a finished job and its folder (a queued or running one must be cancelled first)."""
        with self._tx() as c:
            n = c.execute(f"DELETE FROM jobs WHERE id=? AND status IN ({','.join('?' * len(FINISHED))})",
                          (job_id, *FINISHED)).rowcount
        if n:
            shutil.rmtree(self.folder(job_id), ignore_errors=True)
        return bool(n)

    def requeue_running(self, max_attempts: int) -> int:
        """At start-up: every job left running by a server that was killed is queued again (or failed, after
        ``max_attempts`` runs). Returns how many were re-queued."""
        with self._tx() as c:
            c.execute("UPDATE jobs SET status=?, finished=?, owner=NULL, error=? WHERE status=? AND attempts>=?",
                      (FAILED, time.time(), f"interrupted {max_attempts} times (the server or its worker was killed)",
                       RUNNING, max_attempts))
            return c.execute("UPDATE jobs SET status=?, owner=NULL, done_units=0 WHERE status=?",
                             (QUEUED, RUNNING)).rowcount

    def requeue_owner(self, owner: str, max_attempts: int) -> list[str]:
        """The jobs of a worker that died: queued again, or failed after ``max_attempts`` runs."""
        with self._tx() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM jobs WHERE owner=? AND status=?", (owner, RUNNING))]
            c.execute("UPDATE jobs SET status=?, finished=?, owner=NULL, error=? WHERE owner=? AND status=? "
                      "AND attempts>=?", (FAILED, time.time(), f"its worker died {max_attempts} times while running it "
                                                               "(out of memory?)", owner, RUNNING, max_attempts))
            c.execute("UPDATE jobs SET status=?, owner=NULL, done_units=0 WHERE owner=? AND status=?",
                      (QUEUED, owner, RUNNING))
        return ids

    def purge(self, older_than: float) -> list[str]:
        """Remove the jobs finished more than ``older_than`` seconds ago, with their folders, and folders that
        no row names (a server killed between writing an upload and queueing it). Returns the ids removed."""
        cutoff = time.time() - older_than
        with self._tx() as c:
            ids = [r[0] for r in c.execute(f"SELECT id FROM jobs WHERE status IN ({','.join('?' * len(FINISHED))}) "
                                           "AND finished < ?", (*FINISHED, cutoff))]
            c.executemany("DELETE FROM jobs WHERE id=?", [(i,) for i in ids])
            known = {r[0] for r in c.execute("SELECT id FROM jobs")}
        for i in ids:
            shutil.rmtree(self.folder(i), ignore_errors=True)
        for d in self.jobs_dir.iterdir():
            if is_job_id(d.name) and d.name not in known and d.stat().st_mtime < time.time() - 3600:
                shutil.rmtree(d, ignore_errors=True)
        return ids

    # --- a worker's side ------------------------------------------------------------------------------------
    def claim(self, owner: str) -> Optional[dict]:
        """The oldest queued job, now running under ``owner`` (``None`` when nothing waits)."""
        with self._tx() as c:
            r = c.execute("SELECT id FROM jobs WHERE status=? ORDER BY seq LIMIT 1", (QUEUED,)).fetchone()
            if r is None:
                return None
            c.execute("UPDATE jobs SET status=?, owner=?, started=?, attempts=attempts+1, done_units=0, error=NULL "
                      "WHERE id=?", (RUNNING, owner, time.time(), r[0]))
            return _row(c.execute("SELECT * FROM jobs WHERE id=?", (r[0],)).fetchone())

    def progress(self, job_id: str, owner: str, done: int, total: int) -> bool:
        """Record progress; returns whether the job should stop (cancelled, or no longer this owner's)."""
        with self._tx() as c:
            n = c.execute("UPDATE jobs SET done_units=?, total_units=? WHERE id=? AND owner=? AND status=?",
                          (done, total, job_id, owner, RUNNING)).rowcount
            if n == 0:
                return True
            return bool(c.execute("SELECT cancel FROM jobs WHERE id=?", (job_id,)).fetchone()[0])

    def finish(self, job_id: str, owner: str, status: str, *, result: Optional[dict] = None,
               error: Optional[str] = None) -> bool:
        """End a running job (its files are already in place); ``False`` when it is no longer ``owner``'s."""
        with self._tx() as c:
            return c.execute("UPDATE jobs SET status=?, finished=?, result=?, error=?, owner=NULL, "
                             "done_units=CASE WHEN ?='done' THEN total_units ELSE done_units END "
                             "WHERE id=? AND owner=? AND status=?",
                             (status, time.time(), None if result is None else json.dumps(result), error, status,
                              job_id, owner, RUNNING)).rowcount == 1


def _row(r: Optional[sqlite3.Row]) -> Optional[dict]:
    """A row as the API shows it (options and result decoded; no owner)."""
    if r is None:
        return None
    d: dict[str, Any] = dict(r)
    d["options"] = json.loads(d["options"])
    d["result"] = json.loads(d["result"]) if d["result"] else None
    d["cancel_requested"] = bool(d.pop("cancel"))
    d["progress"] = min(1.0, d["done_units"] / d["total_units"]) if d["total_units"] else (
        1.0 if d["status"] == DONE else 0.0)
    d.pop("owner", None)
    d.pop("seq", None)
    return d


def link_or_copy(src: Path, dst: Path) -> None:
    """Share an input file with another job's folder (a hard link where the file system has them)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
