"""The JSON API of jobs, mirroring the CLI: ``POST /api/jobs`` (encode), ``POST /api/decode``, ``POST /api/compare``,
then ``GET /api/jobs/{id}`` (state, progress, the report row), its files and its live events.

Every job runs in a worker process; a request only checks its uploads and queues. Errors are
``{"detail": "one line"}`` with a status: 404 (no such job), 409 (not in a state for that), 413 (a limit:
bytes, pixels, files), 422 (bad input or options), 503 (queue full, or too many uploads at once).
"""
from __future__ import annotations

import asyncio
import json
import re
from typing import Any, AsyncIterator, Optional

from fastapi import APIRouter, Body, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from invcomp.web.store import DONE, FILES, FINISHED, INPUT, INPUT_B, is_job_id
from invcomp.web.tasks import INPUT_IVC
from invcomp.web.uploads import WebError, check_count, check_image, check_ivc, check_room, display_name, encode_options, \
    queue_job, queue_jobs, read_limited

router = APIRouter(prefix="/api")
EVENT_SECONDS = 0.25
MAX_RATES = 8
MEDIA = {"ivc": "application/octet-stream", "png": "image/png", "original": "image/png", "reconstruction": "image/png"}


def _state(request: Request) -> Any:
    return request.app.state


def public(row: dict) -> dict:
    """A job as the API shows it, with the links to its page and files."""
    i = row["id"]
    links = {"self": f"/api/jobs/{i}", "page": f"/jobs/{i}", "events": f"/api/jobs/{i}/events"}
    if row["status"] == DONE:
        files = {"encode": ("ivc", "png", "original"), "decode": ("png",), "compare": ("original", "reconstruction")}
        links.update({k: f"/api/jobs/{i}/{k}" for k in files[row["kind"]]})
    return {**row, "links": links}


def _job(request: Request, job_id: str) -> dict:
    row = _state(request).store.get(job_id) if is_job_id(job_id) else None
    if row is None:
        raise WebError(404, f"no job {job_id[:40]!r} (finished jobs are removed after the retention time)")
    return row


async def _uploads(request: Request, files: Optional[list[UploadFile]], check: Any, room: bool = True
                   ) -> list[tuple[str, bytes]]:
    s = _state(request)
    lim = s.config.limits
    files = [f for f in files or [] if f is not None]
    check_count(len(files), lim)
    if room:  # a request the queue has no room for is refused before its uploads are checked
        await run_in_threadpool(check_room, s.store, lim, len(files))
    out = []
    for k, f in enumerate(files):
        name = display_name(f.filename, f"file {k + 1}")
        data = await run_in_threadpool(read_limited, f, lim, name)
        await run_in_threadpool(check, data, name, lim)
        out.append((name, data))
    return out


@router.post("/jobs", status_code=202, summary="Encode images: one job per image (as `invcomp encode IMAGES`)")
async def create_jobs(request: Request, files: Optional[list[UploadFile]] = File(None, description="images"),
                      mode: Optional[str] = Form(None), model: Optional[str] = Form(None, description="a registered name"),
                      bits: Optional[str] = Form(None), target_bytes: Optional[str] = Form(None),
                      target_bpp: Optional[str] = Form(None), target_ssim: Optional[str] = Form(None),
                      fit: Optional[str] = Form(None, description="auto, align (find the faces), crop or squash"),
                      faces: Optional[str] = Form(None, description="with align: largest or all"),
                      max_faces: Optional[str] = Form(None), on_no_face: Optional[str] = Form(None),
                      background: Optional[str] = Form(None, description="with align: none, thumb or CODEC:QUALITY"),
                      detail: Optional[str] = Form(None, description="the whole-frame detail layer: auto (the default's), "
                                                   "a rate such as 0 or 2, or none"),
                      quality: Optional[str] = Form(None, description="with the detail layer: low, medium, high or 1-5"),
                      iters: Optional[str] = Form(None),
                      resolution: Optional[str] = Form(None), channels: Optional[str] = Form(None),
                      seed: Optional[str] = Form(None), coder: Optional[str] = Form(None),
                      init: Optional[str] = Form(None), auto_tolerance: Optional[str] = Form(None),
                      layer_rates: Optional[str] = Form(None),
                      preserve: Optional[str] = Form(None, description="mode sc: faces (keep the detected faces)"),
                      preserve_box: Optional[str] = Form(None, description="mode sc: keep this box, x,y,w,h"),
                      preserve_halo: Optional[str] = Form(None, description="mode sc: cells kept around it")) -> dict:
    s = _state(request)
    form = await request.form()
    fields = {k: v for k, v in form.multi_items() if k != "files"}
    opts = encode_options(fields, s.catalog, s.config.limits)
    uploads = await _uploads(request, files, check_image)
    rows = await run_in_threadpool(queue_jobs, s.store, s.config.limits, "encode",
                                   [(name, opts, {INPUT: data}) for name, data in uploads])
    return {"jobs": [public(r) for r in rows]}


@router.post("/decode", status_code=202, summary="Decode .ivc files to PNG: one job per file (as `invcomp decode`)")
async def decode(request: Request, files: Optional[list[UploadFile]] = File(None, description=".ivc files"),
                 layers: Optional[str] = Form(None, description="layered files: decode the first K layers")) -> dict:
    s = _state(request)
    form = await request.form()
    unknown = {k for k in form.keys() if k not in ("files", "layers")}
    if unknown:
        raise WebError(422, f"unknown option(s): {', '.join(sorted(unknown))[:200]}")
    opts = {}
    if layers:
        if not layers.isdigit() or not 1 <= int(layers) <= 64:
            raise WebError(422, "layers must be an integer from 1 to 64")
        opts["layers"] = int(layers)
    uploads = await _uploads(request, files, check_ivc)
    rows = await run_in_threadpool(queue_jobs, s.store, s.config.limits, "decode",
                                   [(name, opts, {INPUT: data}) for name, data in uploads])
    return {"jobs": [public(r) for r in rows]}


@router.post("/compare", status_code=202, summary="Metrics between two images (as `invcomp compare`)")
async def compare(request: Request, original: Optional[UploadFile] = File(None),
                  reconstruction: Optional[UploadFile] = File(None),
                  bitstream: Optional[UploadFile] = File(None, description="optional .ivc: measure as encode did")) -> dict:
    s = _state(request)
    if original is None or reconstruction is None:
        raise WebError(422, "compare needs two images: multipart fields 'original' and 'reconstruction'")
    (na, a), = await _uploads(request, [original], check_image)
    (nb, b), = await _uploads(request, [reconstruction], check_image, room=False)
    files, names = {INPUT: a, INPUT_B: b}, [na, nb, "bitstream"]
    if bitstream is not None and bitstream.filename:
        (nc, c), = await _uploads(request, [bitstream], check_ivc, room=False)
        files[INPUT_IVC], names[2] = c, nc
    row = await run_in_threadpool(queue_job, s.store, s.config.limits, "compare", f"{na} vs {nb}", {"names": names}, files)
    return {"jobs": [public(row)]}


@router.get("/jobs", summary="Recent jobs, newest first")
def list_jobs(request: Request, limit: int = Query(50, ge=1, le=500)) -> dict:
    return {"jobs": [public(r) for r in _state(request).store.recent(limit)]}


def _ids(text: str) -> list[str]:
    ids = [i for i in text.split(",") if i]
    if not ids or len(ids) > 500 or not all(is_job_id(i) for i in ids):
        raise WebError(422, "ids must be 1 to 500 job ids, separated by commas")
    return ids


async def _events(request: Request, ids: list[str]) -> AsyncIterator[str]:
    """Server-sent events: ``job`` (a job whenever its state or progress changes), then ``end``."""
    store, last, beat = _state(request).store, {}, 0.0
    while True:
        rows = await run_in_threadpool(store.many, ids)
        for r in rows:
            key = (r["status"], r["done_units"], r["total_units"])
            if last.get(r["id"]) != key:
                last[r["id"]] = key
                yield f"event: job\ndata: {json.dumps(public(r))}\n\n"
        if len(rows) < len(ids) or all(r["status"] in FINISHED for r in rows):
            yield "event: end\ndata: {}\n\n"
            return
        beat += EVENT_SECONDS
        if beat >= 15:
            beat = 0.0
            yield ": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(EVENT_SECONDS)


@router.get("/events", summary="Live progress of several jobs (server-sent events)")
async def events(request: Request, ids: str = Query(..., description="job ids, comma-separated")) -> StreamingResponse:
    return StreamingResponse(_events(request, _ids(ids)), media_type="text/event-stream")


@router.get("/jobs/{job_id}", summary="One job: state, progress, and its report row when done")
def get_job(request: Request, job_id: str) -> dict:
    return public(_job(request, job_id))


@router.get("/jobs/{job_id}/events", summary="Live progress of one job (server-sent events)")
async def job_events(request: Request, job_id: str) -> StreamingResponse:
    _job(request, job_id)
    return StreamingResponse(_events(request, [job_id]), media_type="text/event-stream")


@router.get("/jobs/{job_id}/children", summary="The jobs made by POST /api/jobs/{id}/rates")
def children(request: Request, job_id: str) -> dict:
    _job(request, job_id)
    return {"jobs": [public(r) for r in _state(request).store.recent(100, parent=job_id)]}


@router.post("/jobs/{job_id}/cancel", summary="Cancel a queued or running job")
def cancel(request: Request, job_id: str) -> dict:
    row = _job(request, job_id)
    if row["status"] in FINISHED:
        raise WebError(409, f"job {job_id} is already {row['status']}")
    return public(_state(request).store.cancel(job_id) or row)


@router.delete("/jobs/{job_id}", summary="Remove a finished job and its files")
def delete(request: Request, job_id: str) -> dict:
    row = _job(request, job_id)
    if not _state(request).store.delete(job_id):
        raise WebError(409, f"job {job_id} is {row['status']}: cancel it first")
    return {"deleted": job_id}


@router.post("/jobs/{job_id}/rates", status_code=202, summary="Code the same image at other rates (bits or sizes)")
def rates(request: Request, job_id: str, body: dict = Body(..., examples=[{"bits": [3, 4, 8]}, {"target_bytes": [60, 200]}])
          ) -> dict:
    s, parent = _state(request), _job(request, job_id)
    if parent["kind"] != "encode":
        raise WebError(409, "only an encode job has other rates")
    if len(body) != 1 or next(iter(body)) not in ("bits", "target_bytes", "target_ssim"):
        raise WebError(422, "give one list: bits, target_bytes or target_ssim")
    key, values = next(iter(body.items()))
    if not isinstance(values, list) or not 1 <= len(values) <= MAX_RATES:
        raise WebError(422, f"{key} must be a list of 1 to {MAX_RATES} values")
    src = s.store.folder(job_id) / INPUT
    base = {k: v for k, v in parent["options"].items() if k not in ("bits", "target_bytes", "target_bpp", "target_ssim")}
    jobs = []
    for v in values:  # every value checked, and the queue's room, before any job exists
        opts = encode_options({**base, key: v}, s.catalog, s.config.limits)
        label = f"{opts[key]:g} bits" if key == "bits" else f"<= {opts[key]:g} B" if key == "target_bytes" \
            else f"SSIM {opts[key]:g}"
        jobs.append((f"{parent['name']} @ {label}", opts))
    check_room(s.store, s.config.limits, len(jobs))
    data = src.read_bytes() if src.is_file() else None
    if data is None:
        raise WebError(409, "this job's upload is gone (removed after the retention time)")
    made = queue_jobs(s.store, s.config.limits, "encode", [(name, opts, {INPUT: data}) for name, opts in jobs],
                      parent=job_id)
    return {"jobs": [public(r) for r in made]}


@router.get("/jobs/{job_id}/{file}", summary="A finished job's file: ivc, png, original or reconstruction")
def job_file(request: Request, job_id: str, file: str, download: bool = False) -> FileResponse:
    row = _job(request, job_id)
    if file not in FILES:
        raise WebError(404, f"no file {file[:20]!r}; a job has {', '.join(FILES)}")
    path = _state(request).store.folder(job_id) / FILES[file]
    if row["status"] != DONE or not path.is_file():
        raise WebError(409 if row["status"] != DONE else 404, f"job {job_id} is {row['status']}: no {file} file")
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", row["name"].rsplit(".", 1)[0])[:60] or "image"
    suffix = {"ivc": ".ivc", "png": ".decoded.png", "original": ".png", "reconstruction": ".reconstruction.png"}[file]
    return FileResponse(path, media_type=MEDIA[file], filename=stem + suffix if download else None,
                        content_disposition_type="attachment" if download else "inline")

