"""The worker side of a batch job: load the codec once, then code batches of items.

A :class:`Worker` is what a local process (its initializer) or a Ray actor holds. It codes with exactly what
``invcomp encode`` / ``invcomp decode`` run (:func:`invcomp.cli.encode.make_encoder` and
:func:`~invcomp.cli.encode.encode_chunk`, :func:`invcomp.cli.decode.decode_one`), so a file coded by a batch
job is the file those commands write. It never touches the manifest: it returns one result per item, and
the driver records them.
"""
from __future__ import annotations

import os
import socket
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


def result(item_id: str, *, ok: bool, permanent: bool = False, error: Optional[str] = None,
           row: Optional[dict] = None) -> dict[str, Any]:
    """One item's outcome as a worker returns it."""
    return {"id": item_id, "ok": ok, "permanent": permanent, "error": error, "row": row}


class Worker:
    """Loads the codec of ``spec`` once; :meth:`run` codes a batch and writes each output atomically."""

    def __init__(self, spec: JobSpec) -> None:
        t0 = time.perf_counter()
        import torch

        torch.set_num_threads(max(1, spec.threads))
        self.spec, self.where = spec, f"{socket.gethostname()}:{os.getpid()}"
        opts = dict(spec.options)
        if spec.kind == ENCODE:
            from ..cli.encode import make_encoder

            self.max_pixels = opts.pop("max_pixels")
            self.codec, self.goal = make_encoder(**opts)
        elif spec.kind == DECODE:
            from ..outputs import resolve_device

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
        out = self._encode(items) if self.spec.kind == ENCODE else self._decode(items)
        load, self._reported_load = (0.0 if self._reported_load else self.load_seconds), True
        return {"results": out, "worker": self.where, "load_seconds": load, "busy_seconds": time.perf_counter() - t0}

    def _encode(self, items: list[WorkItem]) -> list[dict[str, Any]]:
        from ..cli.common import ItemError
        from ..cli.encode import encode_chunk

        done = encode_chunk(self.codec, [(Path(i.path), Path(i.output)) for i in items], max_pixels=self.max_pixels,
                            force=True, goal=self.goal)
        return [result(i.id, ok=False, permanent=d.permanent, error=d.reason) if isinstance(d, ItemError)
                else result(i.id, ok=True, row=d[0]) for i, d in zip(items, done)]

    def _decode(self, items: list[WorkItem]) -> list[dict[str, Any]]:
        from ..cli.common import item_error
        from ..cli.decode import decode_one

        o, out = self.spec.options, []
        for i in items:
            try:
                row, _ = decode_one(Path(i.path), Path(i.output), o.get("model"), o.get("weights_path"),
                                    bool(o.get("native")), o["max_pixels"], True, self.cache, self.device,
                                    o.get("keep_layers"))
            except Exception as e:  # noqa: BLE001  (one bad file is that file's error)
                err = item_error(e)
                out.append(result(i.id, ok=False, permanent=err.permanent, error=err.reason))
                continue
            out.append(result(i.id, ok=True, row=row))
        return out


_WORKER: Optional[Worker] = None


def init_process(spec: JobSpec) -> None:
    """``ProcessPoolExecutor`` initializer: load this process's worker once."""
    global _WORKER
    _WORKER = Worker(spec)


def run_in_process(items: list[WorkItem]) -> dict[str, Any]:
    """``ProcessPoolExecutor`` task: code a batch with this process's worker."""
    if _WORKER is None:
        raise RuntimeError("worker process not initialised")
    return _WORKER.run(items)
