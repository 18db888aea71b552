"""Helpers of the web app's tests: apps on a temporary data folder, uploads, waiting for jobs, a real server."""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from .conftest import DEMO_IMAGE, REPO

FAST = {"mode": "vaegan", "model": "vaegan-utkface64-c4"}  # one forward pass: the quickest real codec
FINISHED = ("done", "failed", "cancelled")


def face_bytes() -> bytes:
    return DEMO_IMAGE.read_bytes()


def png_bytes(size: tuple[int, int] = (40, 30), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def make_app(data: Path, **changes: Any) -> Any:
    """An app over ``data`` (no workers unless asked) that accepts the test client's Host."""
    from invcomp.web.app import create_app
    from invcomp.web.config import Limits, WebConfig

    limits = changes.pop("limits", None) or Limits()
    cfg = WebConfig(data=data, workers=changes.pop("workers", 0), allowed_hosts=("testserver",), limits=limits, **changes)
    return create_app(cfg)


def client(app: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app)


def page(c: Any, path: str) -> Any:
    """GET a page as a browser does: it hands out the CSRF cookie, which the client's later posts then echo."""
    r = c.get(path)
    if c.cookies.get("invcomp_csrf"):
        c.headers["x-csrf-token"] = c.cookies.get("invcomp_csrf")
    return r


def upload(c: Any, files: list[tuple[str, bytes]], url: str = "/api/jobs", field: str = "files", **data: Any) -> Any:
    return c.post(url, files=[(field, (name, body, "application/octet-stream")) for name, body in files],
                  data={k: str(v) for k, v in data.items()})


def wait(c: Any, job_id: str, statuses: tuple[str, ...] = FINISHED, timeout: float = 180.0,
         headers: Optional[dict] = None) -> dict:
    """Poll a job until its status is one of ``statuses``."""
    t0 = time.monotonic()
    while True:
        job = c.get(f"/api/jobs/{job_id}", headers=headers or {}).json()
        if job["status"] in statuses:
            return job
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"job {job_id} still {job['status']} after {timeout} s")
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, port: int, *args: str) -> subprocess.Popen:
    """``invcomp serve`` in its own process (its own session, so a kill -9 takes only it)."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    log = open(data.parent / f"server-{port}.log", "ab")  # noqa: SIM115  (the server's, closed when it ends)
    return subprocess.Popen([sys.executable, "-m", "invcomp.cli", "--threads", "1", "serve", "--port", str(port),
                             "--data", str(data), *args], env=env, stdout=subprocess.DEVNULL, stderr=log,
                            start_new_session=True)


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}: see server-{port}.log beside its data folder")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("server did not start")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(20)
