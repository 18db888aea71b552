"""The FastAPI app: :func:`create_app` wires the store, the catalog, the worker pool, the guard and the routes.

    from invcomp.web.app import create_app
    from invcomp.web.config import WebConfig
    app = create_app(WebConfig(data=Path("web-data"), workers=2))   # then: uvicorn.run(app, port=8000)

The worker pool starts with the app (its lifespan) and stops with it; ``workers=0`` gives an app that
queues jobs and never runs them (for tests of the API alone).
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from invcomp import __version__
from invcomp.web.api import router as jobs_router
from invcomp.web.api_catalog import router as catalog_router
from invcomp.web.catalog import Catalog
from invcomp.web.config import WebConfig
from invcomp.web.pages import render, router as pages_router
from invcomp.web.pool import WorkerPool
from invcomp.web.security import Guard
from invcomp.web.store import JobStore
from invcomp.web.uploads import WebError

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(config: WebConfig) -> FastAPI:
    """The app for ``config`` (checked first: an unsafe binding is refused)."""
    config.check()
    store = JobStore(config.data)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_warm, app.state.catalog)  # before the first request, not during it
        pool = WorkerPool(config, store)
        pool.start()
        app.state.pool = pool
        log.info("invcomp serve: %d worker(s), data in %s", config.workers, config.data)
        try:
            yield
        finally:
            pool.stop()

    app = FastAPI(title="invcomp", version=__version__, lifespan=lifespan,
                  description="GAN-inversion image compression as background jobs. Every job runs the library's "
                              "codec contract (the same files as `invcomp encode` / `decode` / `compare`).")
    app.state.config, app.state.store, app.state.catalog, app.state.pool = config, store, Catalog(config.bench_dirs), None
    app.include_router(catalog_router)
    app.include_router(jobs_router)
    app.include_router(pages_router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    app.add_exception_handler(WebError, _web_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_middleware(Guard, config=config)
    return app


def _warm(catalog: Catalog) -> None:
    """Load what requests use (the registry, the modes, the image decoder and torch under it) once, at start."""
    import importlib

    catalog.models()
    catalog.modes()
    importlib.import_module("invcomp.imageio")


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith(("/api/", "/static/")) and request.method == "GET"


def _respond(request: Request, status: int, detail: str, headers: Any = None) -> Any:
    if _wants_html(request):
        return render(request, "error.html", status=status, status_code=status, detail=detail)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def _web_error(request: Request, exc: WebError) -> Any:
    return _respond(request, exc.status, exc.detail, exc.headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such page or endpoint: {request.url.path[:80]} (the API is listed at /docs)"
    return _respond(request, exc.status_code, detail, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's list of errors as one line: ``bits: Input should be a valid integer``."""
    parts = []
    for e in exc.errors()[:3]:
        where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path", "form"))
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)
