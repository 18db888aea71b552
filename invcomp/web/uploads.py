"""Requests to jobs: uploads checked by decoding them, options checked against the registry, files stored
under generated names. Every refusal is a :class:`WebError`: an HTTP status and one line.

- An image is decoded with Pillow (as ``invcomp encode`` reads it, :func:`invcomp.imageio.decode_image_bytes`),
  its pixel count checked from its header first; a ``.ivc`` file is parsed (:func:`invcomp.formats.ivc.unpack`)
  and its declared size checked. Extensions and content types are never trusted.
- Only registered model names, and the modes, fits, coders and starts the CLI knows, are accepted: never a
  path or a ``file.py:factory`` spec. Numbers are range-checked (the search length against the server's cap).
- The upload's own name is kept only for display (escaped wherever it is shown); its bytes go to
  ``DATA/jobs/ID/input``.
"""
from __future__ import annotations

import math
import re
from typing import Any, Optional

from invcomp.errors import InvcompError
from invcomp.files import atomic_write
from invcomp.web.config import Limits
from invcomp.web.store import JobStore, new_id

LAYER_RATES = re.compile(r"^[0-9a-z.,@]{1,64}$")
BOX = re.compile(r"^[0-9]{1,5},[0-9]{1,5},[0-9]{1,5},[0-9]{1,5}$")  # SC's preserve_box: x,y,w,h in pixels
BACKGROUND = re.compile(r"^(none|thumb|[a-z0-9]{1,12}:[0-9]{1,3})$")  # checked again by the encoder
QUALITY = re.compile(r"^(low|medium|high|[1-5](\.[0-9]{1,2})?)$")  # checked again by the encoder
DETAIL = re.compile(r"^(none|auto|[0-9]{1,2}(\.[0-9]{1,2})?)$")  # the detail layer: checked again by the encoder


class WebError(Exception):
    """A refused request: ``status`` and a one-line ``detail``."""

    def __init__(self, status: int, detail: str, headers: Optional[dict] = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, " ".join(detail.split()), headers


def display_name(filename: Optional[str], fallback: str = "upload") -> str:
    """The last part of an upload's name, printable, at most 100 characters: for display only."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = "".join(ch for ch in name if ch.isprintable())[:100].strip()
    return name or fallback


def read_limited(upload: Any, limits: Limits, name: str) -> bytes:
    """An UploadFile's bytes, refused (413) past ``max_upload_bytes`` without reading further."""
    upload.file.seek(0)
    data = upload.file.read(limits.max_upload_bytes + 1)
    if len(data) > limits.max_upload_bytes:
        raise WebError(413, f"{name} is over the limit of {limits.max_upload_bytes:,} bytes per file")
    if not data:
        raise WebError(422, f"{name} is empty")
    return data


def check_count(n: int, limits: Limits, what: str = "files") -> None:
    if n == 0:
        raise WebError(422, f"no {what} in the request (send them as multipart field 'files')")
    if n > limits.max_files:
        raise WebError(413, f"{n} {what} in one request; the limit is {limits.max_files}")


def check_image(data: bytes, name: str, limits: Limits) -> None:
    """Refuse what is not a decodable image in one of the accepted formats (422: never EPS or PostScript, whatever
    its name), or has more than ``max_pixels`` pixels (413, from its header, before any pixel is decoded)."""
    from invcomp.imageio import TooManyPixels, decode_image_bytes

    try:
        decode_image_bytes(data, name=name, max_pixels=limits.max_pixels)
    except TooManyPixels as e:
        w, h = e.size
        said = f"is {w}x{h} = {w * h:,} pixels" if w * h else "declares too many pixels"
        raise WebError(413, f"{name} {said}, over this server's limit of {limits.max_pixels:,}") from None
    except InvcompError as e:
        raise WebError(422, str(e)) from None


def check_ivc(data: bytes, name: str, limits: Limits) -> None:
    """Refuse what the ``.ivc`` parser (or the photo container's) rejects, or a file that declares more than
    ``max_pixels`` pixels."""
    from invcomp.formats import ivc as bitstream
    from invcomp.formats import photo as container
    from invcomp.formats.sniff import MAX_FILE_BYTES

    if len(data) > MAX_FILE_BYTES:
        raise WebError(413, f"{name} is larger than the largest legal .ivc file")
    try:
        header = container.unpack(data) if container.is_photo(data) else bitstream.unpack(data)[0]
    except InvcompError as e:
        raise WebError(422, f"{name}: {e}") from None
    if header.width * header.height > limits.max_pixels:
        raise WebError(413, f"{name} declares a {header.width}x{header.height} image, over this server's limit of "
                            f"{limits.max_pixels:,} pixels")
    from invcomp.codecs import budget
    from invcomp.errors import BitstreamError

    try:  # every size its decode would draw (layers, faces, tiles, their sum), as the worker checks it again
        budget.check_file(data, limits.max_pixels, name=name)
    except BitstreamError as e:
        raise WebError(422, f"{name}: {e}") from None
    except InvcompError as e:
        raise WebError(413, str(e).replace("raise it with --max-pixels", "this server's limit").replace(
            "raise --max-pixels", "this server's limit")) from None


def _number(form: dict, key: str, kind: type, lo: float, hi: float) -> Any:
    """``form[key]`` as a finite ``kind`` in ``[lo, hi]`` (``None`` when absent); anything else is a 422: a string that
    is no number, ``Infinity``, ``NaN``, ``1e400`` (JSON gives floats past the largest as infinity), a fraction for an
    integer, a boolean."""
    raw = form.get(key)
    if raw is None or raw == "":
        return None
    want = "an integer" if kind is int else "a number"
    try:
        if isinstance(raw, bool) or (kind is int and isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        value = kind(raw)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise WebError(422, f"{key} must be {want} between {lo:g} and {hi:g}, not {str(raw)[:40]!r}") from None
    if not lo <= value <= hi:
        raise WebError(422, f"{key} must be between {lo:g} and {hi:g}, not {value:g}")
    return value


def _choice(form: dict, key: str, choices: tuple[str, ...] | list[str]) -> Optional[str]:
    raw = form.get(key)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        shown = ", ".join(choices) if len(choices) < 20 else f"{len(choices)} names (GET /api/models)"
        raise WebError(422, f"{key} {str(raw)[:60]!r} is not one of {shown}")
    return str(raw)


def encode_options(form: dict, catalog: Any, limits: Limits) -> dict:
    """Form fields -> fields of :class:`invcomp.service.encode.EncodeRequest` (those given only)."""
    from invcomp.service.encode import PHOTO_FITS
    from invcomp.codecs.settings import CODERS, INITS

    unknown = set(form) - set(ENCODE_FIELDS)
    if unknown:
        raise WebError(422, f"unknown option(s): {', '.join(sorted(unknown))[:200]}")
    out: dict[str, Any] = {
        "mode": _choice(form, "mode", catalog.modes()),
        "model": _choice(form, "model", catalog.model_names()),
        "bits": _number(form, "bits", int, 2, 16),
        "target_bytes": _number(form, "target_bytes", int, 1, 1_000_000),
        "target_bpp": _number(form, "target_bpp", float, 1e-6, 48),
        "target_ssim": _number(form, "target_ssim", float, -1, 1),
        "fit": _choice(form, "fit", PHOTO_FITS),
        "faces": _choice(form, "faces", ("largest", "all")),
        "max_faces": _number(form, "max_faces", int, 1, 64),
        "on_no_face": _choice(form, "on_no_face", ("crop", "error")),
        "iters": _number(form, "iters", int, 0, limits.max_iters),
        "resolution": _number(form, "resolution", int, 16, 1024),
        "channels": _number(form, "channels", int, 1, 256),
        "seed": _number(form, "seed", int, 0, 2**31 - 1),
        "coder": _choice(form, "coder", CODERS),
        "init": _choice(form, "init", INITS),
        "auto_tolerance": _number(form, "auto_tolerance", float, 0, 1),
        "preserve": _choice(form, "preserve", ("faces",)),  # a mask file is a path on the server: not offered here
        "preserve_halo": _number(form, "preserve_halo", int, 0, 16),
    }
    boxes = [str(b) for b in (form.get("preserve_box"),) if b]
    if boxes:
        if not all(BOX.match(b) for b in boxes):
            raise WebError(422, "preserve_box must be x,y,w,h in pixels, e.g. 40,30,120,150")
        out["preserve_box"] = tuple(boxes)
    rates = form.get("layer_rates")
    if rates:
        if not LAYER_RATES.match(str(rates)):
            raise WebError(422, "layer_rates must be a plan such as tone,3 or 2@64,5@128")
        check_layer_plan(str(rates), out["resolution"], limits)
        out["layer_rates"] = str(rates)
    for name, pattern, want in (
            ("background", BACKGROUND, "none, thumb or CODEC:QUALITY (webp:40, avif:30, jpeg:50, jpegxl:40)"),
            ("detail", DETAIL, "none, auto or a rate such as 0, 0.5 or 2"),
            ("quality", QUALITY, "low, medium, high or a number from 1 to 5")):
        value = form.get(name)
        if value:  # a pattern here, and the encoder checks it again
            if not pattern.match(str(value)):
                raise WebError(422, f"{name} must be {want}")
            out[name] = str(value)
    if sum(out[k] is not None for k in ("target_bytes", "target_bpp", "target_ssim")) > 1:
        raise WebError(422, "give one of target_bytes, target_bpp and target_ssim")
    if out["bits"] is not None and any(out[k] is not None for k in ("target_bytes", "target_bpp", "target_ssim")):
        raise WebError(422, "rate control chooses the bits: give bits or a target, not both")
    return {k: v for k, v in out.items() if v is not None}


def check_layer_plan(text: str, resolution: Optional[int], limits: Limits) -> None:
    """Refuse, before a job exists, a layered plan whose layers would not fit this server's pixel limit and the
    memory budget derived from it (413; the worker's codec checks the same again), or that does not parse (422)."""
    from invcomp.codecs.modes import layered

    try:
        plan = layered.parse_plan(text, resolution or layered.BASE_RESOLUTION, 1 << 20)  # rates: the codec checks
    except InvcompError as e:
        raise WebError(422, f"layer_rates: {e}") from None
    try:
        layered.check_plan(plan, resolution or layered.BASE_RESOLUTION, limits.max_pixels, text)
    except InvcompError as e:
        raise WebError(413, str(e).replace("(raise it with --max-pixels)", "(this server's limit)")) from None


ENCODE_FIELDS = ("mode", "model", "bits", "target_bytes", "target_bpp", "target_ssim", "fit", "faces", "max_faces",
                 "on_no_face", "background", "detail", "quality", "iters", "resolution", "channels", "seed", "coder", "init", "auto_tolerance",
                 "layer_rates", "preserve", "preserve_box", "preserve_halo")


def queue_full(limits: Limits) -> WebError:
    return WebError(503, f"the queue is full ({limits.max_queue} jobs waiting); try again later",
                    headers={"Retry-After": "10"})


def check_room(store: JobStore, limits: Limits, n: int) -> None:
    """Refuse (503) a request for ``n`` jobs that the queue has no room for, before any upload is read or checked."""
    if store.queued() + n > limits.max_queue:
        raise queue_full(limits)


def queue_jobs(store: JobStore, limits: Limits, kind: str, jobs: list[tuple[str, dict, dict[str, bytes]]], *,
               parent: Optional[str] = None) -> list[dict]:
    """Queue every job of one request, or none: each ``(name, options, files)`` gets its folder (``files``: fixed
    name -> bytes, written atomically), then all rows are created in one transaction, which refuses (503) when the
    queue has no room for all of them; the folders are then removed and no job exists."""
    import shutil

    ids, rows = [new_id() for _ in jobs], None
    try:
        for job_id, (_, _, files) in zip(ids, jobs):
            for fname, data in files.items():
                atomic_write(store.folder(job_id) / fname, data, force=True)
        rows = store.create_many([(job_id, kind, name, options) for job_id, (name, options, _) in zip(ids, jobs)],
                                 parent=parent, max_queue=limits.max_queue)
    finally:
        if rows is None:
            for job_id in ids:
                shutil.rmtree(store.folder(job_id), ignore_errors=True)
    if rows is None:
        raise queue_full(limits)
    return rows


def queue_job(store: JobStore, limits: Limits, kind: str, name: str, options: dict, files: dict[str, bytes], *,
              parent: Optional[str] = None) -> dict:
    """Store ``files`` (fixed name -> bytes) in a new job's folder, atomically, then queue the job."""
    return queue_jobs(store, limits, kind, [(name, options, files)], parent=parent)[0]
