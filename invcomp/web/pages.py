"""The HTML pages. They are rendered from the store and the catalog (Jinja2, every value escaped), and act
through the JSON API (``/static/app.js`` calls it with the page's CSRF token): the pages have no powers of
their own. ``/login`` is the one HTML form (a server with ``--token``)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from invcomp.web.security import SESSION, same, safe_next, session_value
from invcomp.web.store import FINISHED, is_job_id
from invcomp.web.uploads import WebError

router = APIRouter(include_in_schema=False)
TEMPLATES = Path(__file__).parent / "templates"
RATE_PRESETS = {"bits": [3, 4, 5, 8], "target_bytes": [60, 120, 250, 500]}


def _env() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    return env


ENV: Optional[Any] = None


def _num(v: Any, digits: int = 4) -> str:
    """A metric for display: ``n/a`` for a missing one, ``inf`` for identical images."""
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return "inf"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    global ENV
    if ENV is None:
        ENV = _env()
    s = request.app.state
    html = ENV.get_template(template).render(csrf=request.scope.get("state", {}).get("csrf", ""),
                                              token_required=s.config.token is not None, path=request.url.path, **ctx)
    return HTMLResponse(html, status_code=status)


def _job(request: Request, job_id: str) -> dict:
    row = request.app.state.store.get(job_id) if is_job_id(job_id) else None
    if row is None:
        raise WebError(404, f"no job {job_id[:40]!r} (finished jobs are removed after the retention time)")
    return row


@router.get("/", response_class=HTMLResponse)
def compress(request: Request) -> HTMLResponse:
    from invcomp.service.encode import PHOTO_FITS as FITS

    s = request.app.state
    return render(request, "compress.html", modes=s.catalog.modes(), models=s.catalog.model_names(), fits=FITS,
                  limits=s.config.limits)


@router.get("/jobs", response_class=HTMLResponse)
def jobs(request: Request) -> HTMLResponse:
    return render(request, "jobs.html", jobs=request.app.state.store.recent(100))


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job(request: Request, job_id: str) -> HTMLResponse:
    row = _job(request, job_id)
    kids = request.app.state.store.recent(100, parent=job_id)
    return render(request, "job.html", job=row, result=row["result"] or {}, finished=row["status"] in FINISHED,
                  children=kids, presets=RATE_PRESETS)


@router.get("/decompress", response_class=HTMLResponse)
def decompress(request: Request) -> HTMLResponse:
    return render(request, "decompress.html", limits=request.app.state.config.limits)


@router.get("/compare", response_class=HTMLResponse)
def compare(request: Request) -> HTMLResponse:
    return render(request, "compare.html", limits=request.app.state.config.limits)


@router.get("/models", response_class=HTMLResponse)
def models(request: Request) -> HTMLResponse:
    return render(request, "models.html", models=request.app.state.catalog.models())


@router.get("/models/{name}", response_class=HTMLResponse)
def model(request: Request, name: str) -> HTMLResponse:
    m = request.app.state.catalog.model(name)
    if m is None:
        raise WebError(404, f"no model {name[:60]!r} is registered")
    return render(request, "model.html", model=m)


@router.get("/benchmarks", response_class=HTMLResponse)
def benchmarks(request: Request) -> HTMLResponse:
    return render(request, "benchmarks.html", names=list(request.app.state.catalog.benchmarks()),
                  roots=len(request.app.state.config.bench_dirs))


@router.get("/benchmarks/{name}", response_class=HTMLResponse)
def benchmark(request: Request, name: str) -> HTMLResponse:
    b = request.app.state.catalog.benchmark(name)
    if b is None:
        raise WebError(404, f"no results folder {name[:60]!r}")
    return render(request, "benchmark.html", bench=b)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> HTMLResponse:
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login")
def login(request: Request, token: str = Form(""), csrf_token: str = Form(""), next: str = Form("/")) -> Any:
    cfg = request.app.state.config
    if not same(csrf_token, request.cookies.get("invcomp_csrf")):
        return render(request, "login.html", status=403, next=safe_next(next),
                      error="the form expired (missing or wrong CSRF token): load the page again")
    if cfg.token is None:
        return RedirectResponse(safe_next(next), status_code=303)
    if not same(token, cfg.token):
        return render(request, "login.html", status=401, next=safe_next(next), error="wrong token")
    resp = RedirectResponse(safe_next(next), status_code=303)
    resp.set_cookie(SESSION, session_value(cfg.token), httponly=True, samesite="strict", secure=cfg.secure_cookies,
                    path="/")
    return resp
