"""The worker side of a batch job: load the codec once, then code batches of items.

A :class:`Worker` is what a local process (its initializer) or a Ray actor holds. It codes with exactly what
``invcomp encode`` / ``invcomp decode`` run (:func:`invcomp.service.encode.build_encoder` and
:func:`~invcomp.service.encode.encode_items`, :func:`invcomp.service.decode.decode_item`), so a file coded by a batch
job is the file those commands write. It never touches the manifest: it returns one result per item, and
the driver records them.

A worker dies with its driver: the driver's process (host, pid and start time) is handed to it, and a watchdog
thread kills the worker when that process is gone (a local worker's parent is the forkserver, a Ray actor's the
raylet, so the kernel's ``PR_SET_PDEATHSIG``, also set for a local worker, does not cover it alone). An input that
is not a regular file (a device such as ``/dev/zero``, a FIFO, a socket) is that item's one-line error.
"""
from __future__ import annotations

import os
import signal
import socket
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

ENCODE, DECODE = "encode", "decode"


@dataclass(frozen=True)
class JobSpec:
    """What every worker of a job loads: the ``kind`` (encode or decode), the command's options (as click
    gives them) and the torch threads of each worker."""

    kind: str
    options: dict = field(default_factory=dict)
    threads: int = 1


@dataclass(frozen=True)
class WorkItem:
    """One item as a worker sees it: the manifest id, the input and the output (absolute paths)."""

    id: str
    path: str
    output: str


WATCH_SECONDS = 0.5  # how often a worker looks for its driver


def _start_time(pid: int) -> Optional[str]:
    """The start time of process ``pid`` (Linux: field 22 of /proc/PID/stat), so a reused pid is told apart."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def driver_process() -> dict[str, Any]:
    """This process, as the workers it starts watch it."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid)}


def _gone(driver: dict[str, Any]) -> bool:
    try:
        os.kill(driver["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    start = _start_time(driver["pid"])
    return driver.get("start") is not None and start is not None and start != driver["start"]


def _watch(driver: dict[str, Any]) -> None:
    while not _gone(driver):
        time.sleep(WATCH_SECONDS)
    os.kill(os.getpid(), signal.SIGKILL)  # at once, whatever the worker is doing: its batch is the driver's to redo


def die_with_driver(driver: Optional[dict[str, Any]], *, parent_too: bool = False) -> None:
    """Kill this worker when ``driver`` (:func:`driver_process`, on this host) goes; ``parent_too``: also when this
    process's parent goes (Linux ``PR_SET_PDEATHSIG``; only for a parent that forked it from its main thread)."""
    if parent_too:
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if driver is None or driver.get("host") != socket.gethostname() or driver.get("pid") == os.getpid():
        return  # another machine (Ray kills an actor whose owner died), or in the driver itself
    if _gone(driver):
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_watch, args=(driver,), name="invcomp-driver-watch", daemon=True).start()


def not_regular(path: str) -> Optional[str]:
    """Why ``path`` cannot be an input (a device, FIFO, socket or folder), or ``None`` for a regular file (or a
    missing one: the coder says so)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    kind = ("a folder" if stat.S_ISDIR(mode) else "a character device" if stat.S_ISCHR(mode) else "a block device"
            if stat.S_ISBLK(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket"
            if stat.S_ISSOCK(mode) else "not a regular file")
    return f"cannot read {path}: it is {kind}, not a regular file"


def result(item_id: str, *, ok: bool, permanent: bool = False, error: Optional[str] = None,
           row: Optional[dict] = None) -> dict[str, Any]:
    """One item's outcome as a worker returns it."""
    return {"id": item_id, "ok": ok, "permanent": permanent, "error": error, "row": row}


class Worker:
    """Loads the codec of ``spec`` once; :meth:`run` codes a batch and writes each output atomically."""

    def __init__(self, spec: JobSpec, driver: Optional[dict[str, Any]] = None) -> None:
        t0 = time.perf_counter()
        die_with_driver(driver)  # a Ray actor: watched (Ray itself ends an actor whose owner is gone, off this host)
        import torch

        torch.set_num_threads(max(1, spec.threads))
        self.spec, self.where = spec, f"{socket.gethostname()}:{os.getpid()}"
        opts = dict(spec.options)
        if spec.kind == ENCODE:
            from invcomp.service.encode import EncodeRequest, build_encoder

            self.encoder = build_encoder(EncodeRequest(**opts))
        elif spec.kind == DECODE:
            from invcomp.nets import resolve_device

            self.device, self.cache = resolve_device(opts.pop("device")), {}
        else:
            raise ValueError(f"unknown job kind {spec.kind!r}")
        self.load_seconds = time.perf_counter() - t0
        self._reported_load = False

    def run(self, items: list[WorkItem]) -> dict[str, Any]:
        """Code ``items`` (overwriting their outputs: the driver hands out only its own) and return
        ``{"results": [one per item, in order], "worker", "load_seconds" (first call only), "busy_seconds"}``.
        An error of the whole batch that is not bad input is raised: the driver retries the batch."""
        t0 = time.perf_counter()
        refused = {i.id: why for i in items if (why := not_regular(i.path))}  # never opened: /dev/zero, a FIFO
        rest = [i for i in items if i.id not in refused]
        done = iter(self._encode(rest) if self.spec.kind == ENCODE else self._decode(rest)) if rest else iter(())
        out = [result(i.id, ok=False, permanent=True, error=refused[i.id]) if i.id in refused else next(done)
               for i in items]
        load, self._reported_load = (0.0 if self._reported_load else self.load_seconds), True
        return {"results": out, "worker": self.where, "load_seconds": load, "busy_seconds": time.perf_counter() - t0}

    def _encode(self, items: list[WorkItem]) -> list[dict[str, Any]]:
        from invcomp.service.encode import encode_items
        from invcomp.service.items import ItemError

        done = encode_items(self.encoder, [(Path(i.path), Path(i.output)) for i in items], force=True)
        return [result(i.id, ok=False, permanent=d.permanent, error=d.reason) if isinstance(d, ItemError)
                else result(i.id, ok=True, row=d[0]) for i, d in zip(items, done)]

    def _decode(self, items: list[WorkItem]) -> list[dict[str, Any]]:
        from invcomp.service.decode import DecodeOptions, decode_item
        from invcomp.service.items import item_error

        options, out = DecodeOptions(**{**self.spec.options, "device": self.device}), []
        for i in items:
            try:
                row, _ = decode_item(Path(i.path), Path(i.output), options, force=True, cache=self.cache,
                                     device=self.device)
            except Exception as e:  # noqa: BLE001  (one bad file is that file's error)
                err = item_error(e)
                out.append(result(i.id, ok=False, permanent=err.permanent, error=err.reason))
                continue
            out.append(result(i.id, ok=True, row=row))
        return out


_WORKER: Optional[Worker] = None


def init_process(spec: JobSpec, driver: Optional[dict[str, Any]] = None) -> None:
    """``ProcessPoolExecutor`` initializer: die with the driver (and the forkserver), then load this process's worker
    once."""
    global _WORKER
    die_with_driver(driver, parent_too=True)
    _WORKER = Worker(spec)


def run_in_process(items: list[WorkItem]) -> dict[str, Any]:
    """``ProcessPoolExecutor`` task: code a batch with this process's worker."""
    if _WORKER is None:
        raise RuntimeError("worker process not initialised")
    return _WORKER.run(items)
