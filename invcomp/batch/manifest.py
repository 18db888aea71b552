"""The manifest of a batch job: one row per item, the job's source of truth.

A row is a plain dict with the fields of :data:`FIELDS`: the item's ``id``, input ``path``, ``output``
path, ``status`` (:data:`PENDING`, :data:`RUNNING`, :data:`DONE` or :data:`FAILED`), ``attempts``, the
output's ``bytes``, its ``metrics`` (the ``invcomp encode --json`` / ``decode --json`` row), the last
``error`` and the ``seconds`` it took.

The functions here are pure (rows in, rows out), except for the readers and the :class:`Store`, which
persists updates:

- a **JSONL** manifest is a journal: each update appends the changed rows (one line each, flushed and
  synced), and the last line of an id wins, so a write costs what changed, not the whole job; a torn last
  line (a writer killed mid-line) is ignored. :meth:`Store.compact` rewrites it, atomically, to one line per
  item at the end of a run.
- a **Parquet** manifest is rewritten atomically at every update (simple, but the whole job each time: use
  JSONL past some 100,000 items).

Only the driver writes; workers return results.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from invcomp.errors import UsageError
from invcomp.files import atomic_write, dumps

log = logging.getLogger(__name__)

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
FIELDS = ("id", "path", "output", "status", "attempts", "bytes", "metrics", "error", "seconds")
PARQUET = (".parquet", ".pq")


def new_row(item_id: str, path: str, output: str) -> dict[str, Any]:
    """A pending row that has never run."""
    return {"id": item_id, "path": path, "output": output, "status": PENDING, "attempts": 0, "bytes": None,
            "metrics": None, "error": None, "seconds": None}


def is_parquet(path: Path) -> bool:
    return Path(path).suffix.lower() in PARQUET


def parse_jsonl(text: str, name: str) -> list[dict[str, Any]]:
    """The JSON objects of a JSONL text, one a line (blank lines skipped). A torn last line, one without its
    newline, is dropped with a warning (a writer was killed mid-line); any other bad line is a
    :class:`UsageError` naming the line."""
    rows = []
    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if n == len(lines):  # no newline after it: the last write was cut short
                log.warning("%s: ignoring its torn last line (%d characters)", name, len(line))
                break
            raise UsageError(f"bad manifest {name}: line {n}: {e.msg}") from None
        if not isinstance(row, dict):
            raise UsageError(f"bad manifest {name}: line {n} is not a JSON object")
        rows.append(row)
    return rows


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a JSONL or Parquet file, in file order (a journal's updates included)."""
    path = Path(path)
    try:
        if is_parquet(path):
            import pyarrow.parquet as pq

            rows = pq.read_table(path).to_pylist()
            for r in rows:
                if isinstance(r.get("metrics"), str):
                    r["metrics"] = json.loads(r["metrics"])
            return rows
        return parse_jsonl(path.read_text(), str(path))
    except ImportError:
        raise UsageError(f"reading {path} needs pyarrow: pip install 'invcomp[ray]' (or pyarrow)") from None
    except OSError as e:
        raise UsageError(f"cannot read manifest {path}: {e.strerror or e}") from None
    except UsageError:
        raise
    except Exception as e:  # pyarrow's errors for a file that is not Parquet, a bad metrics string
        raise UsageError(f"bad manifest {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def merge(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fold a journal into the state: the last row of each id wins; ids keep their first position."""
    state: dict[str, dict[str, Any]] = {}
    for r in rows:
        if not isinstance(r.get("id"), str):
            raise UsageError(f"bad manifest row (no string id): {dumps(r)[:120]}")
        state[r["id"]] = {**state.get(r["id"], {}), **r}
    return state


def plan(state: dict[str, dict[str, Any]], items: Iterable[dict[str, Any]], where: str) -> dict[str, dict[str, Any]]:
    """The state for a run over ``items`` (new rows): known ids keep their status; new ids are added pending.

    An id whose path or output differs from the manifest's is refused (the manifest belongs to another job).
    """
    out = dict(state)
    for it in items:
        old = out.get(it["id"])
        if old is None:
            out[it["id"]] = it
        elif (old.get("path"), old.get("output")) != (it["path"], it["output"]):
            raise UsageError(f"manifest {where} has item {it['id']!r} as {old.get('path')} -> {old.get('output')}, "
                             f"not {it['path']} -> {it['output']}; use another --manifest")
    return out


def to_run(state: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a run must do, in manifest order: all but the done ones whose output is still there.

    Running rows are those of a driver that died; failed rows get another try. A done row whose output has
    gone is done again.
    """
    todo = []
    for r in state.values():
        if r.get("status") == DONE and Path(r["output"]).is_file():
            continue
        todo.append(r)
    return todo


def counts(state: dict[str, dict[str, Any]]) -> dict[str, int]:
    """How many rows have each status."""
    out = {PENDING: 0, RUNNING: 0, DONE: 0, FAILED: 0}
    for r in state.values():
        out[r.get("status", PENDING)] = out.get(r.get("status", PENDING), 0) + 1
    return out


def _parquet_bytes(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("id", pa.string()), ("path", pa.string()), ("output", pa.string()), ("status", pa.string()),
                        ("attempts", pa.int64()), ("bytes", pa.int64()), ("metrics", pa.string()),
                        ("error", pa.string()), ("seconds", pa.float64())])
    flat = [{**{k: r.get(k) for k in FIELDS}, "metrics": None if r.get("metrics") is None else dumps(r["metrics"])}
            for r in rows]
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(flat, schema=schema), sink)
    return sink.getvalue().to_pybytes()


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` (one per item) to a JSONL or Parquet file, atomically."""
    if is_parquet(path):
        data = _parquet_bytes(rows)
    else:
        data = "".join(dumps({k: r.get(k) for k in FIELDS}) + "\n" for r in rows).encode()
    atomic_write(Path(path), data, force=True)


class Store:
    """The manifest on disk, rewritten once as ``state`` when opened (unless ``compact`` is false: a store only
    read); then :meth:`update` persists changed rows (an append for JSONL, a rewrite for Parquet)."""

    def __init__(self, path: Path, state: dict[str, dict[str, Any]], *, compact: bool = True) -> None:
        self.path, self.state, self.writes = Path(path), state, 0
        if compact:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.compact()  # one line per item, and no torn last line for the appends to follow

    @classmethod
    def open(cls, path: Path) -> tuple[dict[str, dict[str, Any]], bool]:
        """The state in ``path`` (empty when it does not exist) and whether it existed."""
        path = Path(path)
        if not path.exists():
            return {}, False
        return merge(read_rows(path)), True

    def update(self, rows: list[dict[str, Any]]) -> None:
        """Record ``rows`` (whole rows) in the state and on disk, before returning."""
        if not rows:
            return
        for r in rows:
            self.state[r["id"]] = r
        self.writes += 1
        if is_parquet(self.path):
            self.compact()
            return
        with open(self.path, "ab") as f:
            f.write("".join(dumps({k: r.get(k) for k in FIELDS}) + "\n" for r in rows).encode())
            f.flush()
            os.fsync(f.fileno())

    def compact(self) -> None:
        """Rewrite the manifest atomically as one row per item."""
        write_rows(self.path, list(self.state.values()))


def lock(manifest: Path) -> Any:
    """Hold the manifest for one run: an exclusive lock on ``M.lock`` (released when the returned file is
    closed, or the process dies). A second run on the same manifest is refused in one line."""
    where = Path(manifest).with_name(Path(manifest).name + ".lock")
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        f = open(where, "a")
    except OSError as e:
        raise UsageError(f"cannot write the lock {where} of manifest {manifest}: {e.strerror or e}") from None
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): no lock
        return f
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UsageError(f"manifest {manifest} is in use by another run (its lock {where} is held)") from None
    return f


def job_file(manifest: Path) -> Path:
    """Where the job's settings are kept, beside its manifest."""
    return Path(manifest).with_name(Path(manifest).name + ".job.json")


def check_job(manifest: Path, job: dict[str, Any], existed: bool) -> None:
    """Record the job's kind and options beside a new manifest; refuse a rerun with other ones (its files
    would not be the same bytes)."""
    from invcomp.files import read_json_object, write_json

    where = job_file(manifest)
    new = json.loads(dumps(job))  # as stored: tuples are lists, non-finite floats strings
    if existed and where.exists():
        old = read_json_object(where, "job settings")
        if old != new:
            diff = differing_options(old.get("options", {}), new["options"]) or ["kind"]
            raise UsageError(f"manifest {manifest} was made with other settings ({', '.join(diff)}); "
                             "rerun with the same options, or use another --manifest")
        return
    where.parent.mkdir(parents=True, exist_ok=True)
    write_json(new, where)


def differing_options(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The names of the options whose values differ between two jobs' settings, both in their JSON form."""
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))

