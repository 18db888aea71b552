"""The JSON API of what the server offers: health, the options of ``POST /api/jobs``, the model registry with
its cards, and the ``invcomp bench`` results folders (by name) with their plots and equal-bytes tables."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from invcomp.web.uploads import ENCODE_FIELDS, WebError

router = APIRouter(prefix="/api")


def _state(request: Request) -> Any:
    return request.app.state


_HEALTH = ThreadPoolExecutor(max_workers=2, thread_name_prefix="invcomp-health")
"""Threads of its own for the health check: it answers while uploads being checked hold the shared thread pool."""


@router.get("/health", summary="Liveness, workers and queue counts")
async def health(request: Request) -> dict:
    s = _state(request)
    from invcomp import __version__

    counts = await asyncio.get_running_loop().run_in_executor(_HEALTH, s.store.counts)
    return {"ok": True, "version": __version__, "workers": s.pool.alive() if s.pool else 0,
            "jobs": counts, "requeued_at_start": s.pool.requeued_at_start if s.pool else 0}


@router.get("/options", summary="What POST /api/jobs accepts: modes, models, fits, coders, starts, limits")
def options(request: Request) -> dict:
    from invcomp.service.encode import PHOTO_FITS
    from invcomp.codecs.settings import CODERS, INITS

    s = _state(request)
    lim = s.config.limits
    return {"modes": s.catalog.modes(), "models": s.catalog.model_names(), "fits": list(PHOTO_FITS), "coders": list(CODERS),
            "inits": list(INITS), "fields": list(ENCODE_FIELDS),
            "limits": {"max_upload_bytes": lim.max_upload_bytes, "max_files": lim.max_files, "max_pixels": lim.max_pixels,
                       "max_queue": lim.max_queue, "max_iters": lim.max_iters, "workers": s.config.workers,
                       "max_active_uploads": lim.max_active_uploads, "job_timeout": lim.job_timeout,
                       "retention_seconds": s.config.retention_seconds}}


@router.get("/models", summary="The registry: every model, as `invcomp models --json`, with its card")
def models(request: Request) -> list[dict]:
    return _state(request).catalog.models()


@router.get("/models/{name}", summary="One model and its card")
def model(request: Request, name: str) -> dict:
    m = _state(request).catalog.model(name)
    if m is None:
        raise WebError(404, f"no model {name[:60]!r} is registered (GET /api/models)")
    return m



@router.get("/benchmarks", summary="The `invcomp bench` results folders this server was given (--bench)")
def benchmarks(request: Request) -> list[dict]:
    return [{"name": n, "links": {"self": f"/api/benchmarks/{n}", "page": f"/benchmarks/{n}"}}
            for n in _state(request).catalog.benchmarks()]


@router.get("/benchmarks/{name}", summary="One results folder: its codecs, RD plots and equal-bytes tables")
def benchmark(request: Request, name: str) -> dict:
    b = _state(request).catalog.benchmark(name)
    if b is None:
        raise WebError(404, f"no results folder {name[:60]!r} (GET /api/benchmarks)")
    return {**b, "plot_links": [f"/api/benchmarks/{name}/plots/{p}" for p in b["plots"]]}


@router.get("/benchmarks/{name}/plots/{plot}", summary="One RD plot of a results folder")
def plot(request: Request, name: str, plot: str) -> FileResponse:
    path = _state(request).catalog.plot(name, plot)
    if path is None:
        raise WebError(404, f"no plot {plot[:60]!r} in {name[:60]!r}")
    return FileResponse(path, media_type="image/png" if plot.endswith(".png") else "image/webp")
