"""Hardening, third round (issue 30), the web app and the image decoder: uploads never reach Ghostscript (a format
allowlist), every job kind has a wall-clock limit enforced by killing its worker (cancel too), slow uploads time out
and hold at most a few slots per client, and the smaller defects (an infinite rate, a queue-full answer that
created jobs, Pillow's global bomb guard, user models given as code, token guesses, bomb headers)."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

import pytest
from PIL import Image

from invcomp.errors import InvcompError
from invcomp.imageio import decode_image_bytes

from .conftest import DEMO_IMAGE, REPO, tiny_dcgan

POSTSCRIPT = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
              b"/Helvetica findfont 12 scalefont setfont 0 0 moveto (hello) show showpage\n%%EOF\n")


def _png_header(w: int, h: int) -> bytes:
    """A PNG that declares ``w`` x ``h`` (an IHDR and a broken IDAT): a bomb's header, small and quick to make."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def no_ghostscript(monkeypatch: pytest.MonkeyPatch) -> list:
    """Pillow's EPS plugin, with every call into Ghostscript recorded (and refused)."""
    from PIL import EpsImagePlugin

    calls: list = []

    def fake(*a: Any, **k: Any) -> Any:
        calls.append(a)
        raise OSError("Ghostscript was run")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", fake)
    return calls


# --- item 3: a format allowlist ---------------------------------------------------------------------------------


def test_postscript_named_png_never_reaches_ghostscript(no_ghostscript: list) -> None:
    with pytest.raises(InvcompError) as ei:
        decode_image_bytes(POSTSCRIPT, name="innocent.png")
    assert no_ghostscript == []
    assert "not an image that Pillow can read" in str(ei.value) and "\n" not in str(ei.value)


def test_only_the_allowlisted_formats_open() -> None:
    from invcomp.imageio import IMAGE_FORMATS, image_formats

    assert set(image_formats()) <= set(IMAGE_FORMATS) and "EPS" not in IMAGE_FORMATS
    assert {"PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"} <= set(image_formats())
    img = Image.new("RGB", (8, 6), (10, 200, 30))
    for fmt in ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF"):
        import io

        buf = io.BytesIO()
        img.save(buf, fmt)
        assert decode_image_bytes(buf.getvalue(), name=f"x.{fmt}").size == (8, 6), fmt
    for fmt in ("PPM", "TGA", "PCX", "ICO"):  # Pillow reads them; an input need not be one
        buf = io.BytesIO()
        img.save(buf, fmt)
        with pytest.raises(InvcompError, match="not an image that Pillow can read"):
            decode_image_bytes(buf.getvalue(), name=f"x.{fmt}")


def test_the_cli_refuses_postscript_in_one_line_without_running_gs(tmp_path: Path) -> None:
    """A ``gs`` on the PATH that leaves a mark: ``invcomp encode innocent.png`` (PostScript) never runs it, and says so
    in one line with no command line nor temporary path."""
    import torch

    bin_dir, mark = tmp_path / "bin", tmp_path / "gs-ran"
    bin_dir.mkdir()
    (bin_dir / "gs").write_text(f"#!/bin/sh\necho ran > {mark}\nexit 1\n")
    (bin_dir / "gs").chmod(0o755)
    torch.save(tiny_dcgan().state_dict(), tmp_path / "tiny.pt")
    (tmp_path / "innocent.png").write_bytes(POSTSCRIPT)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "invcomp.cli", "encode", str(tmp_path / "innocent.png"), "--model",
                        str(tmp_path / "tiny.pt"), "--iters", "0", "-o", str(tmp_path / "o.ivc")],
                       env=env, capture_output=True, text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert not mark.exists() and "gs " not in r.stderr and "/tmp" not in r.stderr.replace(str(tmp_path), "")
    assert "not an image that Pillow can read" in lines[0]


def test_pillow_global_bomb_guard_is_never_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit is passed per call: Pillow's global ``MAX_IMAGE_PIXELS`` is the same during a decode (another thread
    decoding at that moment sees it) and after, and a raised limit still decodes past it."""
    from PIL import ImageOps

    import invcomp.imageio as imageio

    seen: list = []
    real = ImageOps.exif_transpose

    def spy(img: Any, **k: Any) -> Any:
        seen.append(Image.MAX_IMAGE_PIXELS)
        return real(img, **k)

    monkeypatch.setattr(imageio.ImageOps, "exif_transpose", spy)
    before = Image.MAX_IMAGE_PIXELS
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a process that lowered it: a 40x40 image is over 2x
    import io

    buf = io.BytesIO()
    Image.new("RGB", (40, 40)).save(buf, "PNG")
    assert decode_image_bytes(buf.getvalue(), max_pixels=2000).size == (40, 40)
    assert seen == [1000] and Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(InvcompError, match="exceeds the limit of 1,000"):
        decode_image_bytes(buf.getvalue(), max_pixels=1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", before)


# --- the web app: uploads ----------------------------------------------------------------------------------------

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'invcomp[web]')")

from invcomp.web.config import Limits  # noqa: E402

from .webutil import FAST, client, face_bytes, free_port, make_app, png_bytes, upload, wait  # noqa: E402


def _one_line(r: Any) -> str:
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail, r.json()
    return detail


def test_a_postscript_upload_named_png_is_a_422_and_never_reaches_ghostscript(tmp_path: Path,
                                                                              no_ghostscript: list) -> None:
    with client(make_app(tmp_path / "d")) as c:
        r = upload(c, [("innocent.png", POSTSCRIPT)], **FAST)
        assert r.status_code == 422 and "innocent.png" in _one_line(r), r.text
        r = c.post("/api/compare", files=[("original", ("a.png", POSTSCRIPT, "image/png")),
                                           ("reconstruction", ("b.png", png_bytes(), "image/png"))])
        assert r.status_code == 422 and "a.png" in _one_line(r), r.text
    assert no_ghostscript == [] and not list((tmp_path / "d" / "jobs").iterdir())


def test_bomb_headers_are_413(tmp_path: Path) -> None:
    with client(make_app(tmp_path / "d")) as c:
        for w, h in ((20000, 20000), (13000, 12000), (5000, 5000)):  # past Pillow's 2x guard, past its 1x, past ours
            r = upload(c, [("bomb.png", _png_header(w, h))], **FAST)
            assert r.status_code == 413 and f"{w}x{h}" in _one_line(r), (w, h, r.text)


def test_an_infinite_or_huge_rate_is_a_422(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from invcomp.web.uploads import queue_job

    app = make_app(tmp_path / "d")
    with TestClient(app, raise_server_exceptions=False) as c:
        parent = queue_job(app.state.store, app.state.config.limits, "encode", "f.png", dict(FAST), {"input": face_bytes()})
        for body in ('{"bits": [Infinity]}', '{"bits": [1e400]}', '{"bits": [-Infinity]}', '{"bits": [NaN]}',
                     '{"target_bytes": [1e400]}', '{"target_ssim": [Infinity]}', '{"bits": [4.5]}'):
            r = c.post(f"/api/jobs/{parent['id']}/rates", content=body, headers={"content-type": "application/json"})
            assert r.status_code == 422, (body, r.status_code, r.text)
            assert "bits" in _one_line(r) or "target" in _one_line(r)
        assert c.get(f"/api/jobs/{parent['id']}/children").json()["jobs"] == []


def test_a_full_queue_refuses_the_whole_request_before_any_job(tmp_path: Path) -> None:
    lim = Limits(max_queue=3)
    with client(make_app(tmp_path / "d", limits=lim)) as c:
        assert upload(c, [("a.png", png_bytes())], **FAST).status_code == 202
        r = upload(c, [(f"{i}.png", png_bytes(seed=i)) for i in range(3)], **FAST)  # room for 2, not 3
        assert r.status_code == 503 and "queue" in _one_line(r)
        assert len(c.get("/api/jobs").json()["jobs"]) == 1
        assert len(list((tmp_path / "d" / "jobs").iterdir())) == 1
        parent = c.get("/api/jobs").json()["jobs"][0]["id"]
        r = c.post(f"/api/jobs/{parent}/rates", json={"bits": [3, 4, 5]})
        assert r.status_code == 503 and c.get(f"/api/jobs/{parent}/children").json()["jobs"] == []
        r = c.post(f"/api/jobs/{parent}/rates", json={"bits": [3, 4]})
        assert r.status_code == 202 and len(r.json()["jobs"]) == 2
        assert len(c.get("/api/jobs").json()["jobs"]) == 3


def test_token_guesses_are_limited_per_client(tmp_path: Path) -> None:
    lim = Limits(max_auth_failures=5, auth_window=60.0)
    with client(make_app(tmp_path / "d", token="s3cret-token", limits=lim)) as c:
        codes = [c.get("/api/jobs", headers={"authorization": f"Bearer guess-{i:04d}"}).status_code for i in range(12)]
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
        r = c.get("/api/jobs", headers={"authorization": "Bearer s3cret-token"})  # locked out: even the right one
        assert r.status_code == 429 and "retry-after" in r.headers and "wrong" in _one_line(r)
        r = c.post("/login", data={"token": "s3cret-token", "csrf_token": "x", "next": "/"}, follow_redirects=False)
        assert r.status_code == 429
        assert c.get("/api/health").status_code == 200  # no credentials: not a guess, not refused


def test_login_guesses_count_too(tmp_path: Path) -> None:
    lim = Limits(max_auth_failures=3, auth_window=60.0)
    with client(make_app(tmp_path / "d", token="s3cret-token", limits=lim)) as c:
        c.get("/login")
        csrf = c.cookies.get("invcomp_csrf")
        codes = [c.post("/login", data={"token": f"nope{i}", "csrf_token": csrf, "next": "/"},
                        follow_redirects=False).status_code for i in range(5)]
        assert codes == [401, 401, 401, 429, 429], codes


# --- slow uploads: a read timeout and slots per client -----------------------------------------------------------


@contextlib.contextmanager
def _serve(app: Any) -> Iterator[int]:
    """``app`` under a real uvicorn on a free loopback port, in a thread."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    t0 = time.monotonic()
    while not server.started:
        assert time.monotonic() - t0 < 60 and t.is_alive()
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        t.join(20)


def _slow_upload(port: int, source: str = "127.0.0.1") -> socket.socket:
    """A multipart upload that sends its headers and a few bytes of its body, then nothing."""
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: multipart/form-data; boundary=xx\r\n"
              b"Content-Length: 100000\r\n\r\n--xx\r\nContent-Disposition: form-data; name=\"files\"; "
              b"filename=\"a.png\"\r\n\r\n\x89PNG" % port)
    return s


def _status(s: socket.socket, timeout: float) -> tuple[int, float, bytes]:
    s.settimeout(timeout)
    t0 = time.monotonic()
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            got = s.recv(4096)
            if not got:
                break
            data += got
    except socket.timeout:
        return 0, time.monotonic() - t0, data
    head = data.split(b"\r\n", 1)[0].split()
    return (int(head[1]) if len(head) > 1 else -1), time.monotonic() - t0, data


def test_a_stalled_upload_gets_408_after_the_read_timeout(tmp_path: Path) -> None:
    lim = Limits(read_timeout=1.0, upload_seconds=30.0)
    with _serve(make_app(tmp_path / "d", limits=lim)) as port:
        s = _slow_upload(port)
        try:
            status, took, _ = _status(s, 15)
        finally:
            s.close()
        assert status == 408 and 0.8 < took < 6, (status, took)


def test_a_trickled_upload_gets_408_at_the_upload_deadline(tmp_path: Path) -> None:
    lim = Limits(read_timeout=5.0, upload_seconds=2.0)
    with _serve(make_app(tmp_path / "d", limits=lim)) as port:
        s = _slow_upload(port)
        try:
            t0 = time.monotonic()
            status = 0
            while time.monotonic() - t0 < 15:
                try:
                    s.sendall(b"x")  # a byte every 0.3 s: never idle long enough for the read timeout
                except OSError:
                    break
                s.settimeout(0.3)
                with contextlib.suppress(socket.timeout):
                    got = s.recv(4096)
                    status = int(got.split(b"\r\n", 1)[0].split()[1]) if got else -1
                    break
            took = time.monotonic() - t0
        finally:
            s.close()
        assert status == 408 and 1.5 < took < 8, (status, took)


def test_one_client_holds_at_most_its_share_of_upload_slots(tmp_path: Path) -> None:
    import httpx

    lim = Limits(read_timeout=20.0, max_uploads_per_client=2, max_active_uploads=8)
    with _serve(make_app(tmp_path / "d", limits=lim)) as port:
        held = [_slow_upload(port, "127.0.0.3") for _ in range(2)]
        try:
            time.sleep(0.5)
            third = _slow_upload(port, "127.0.0.3")
            status, took, data = _status(third, 5)
            third.close()
            assert status == 429 and took < 2 and b"retry-after" in data.lower(), data
            other = _slow_upload(port, "127.0.0.4")  # another client still gets a slot
            assert _status(other, 1.0)[0] == 0
            other.close()
            r = httpx.post(f"http://127.0.0.1:{port}/api/jobs", files=[("files", ("f.png", png_bytes(), "image/png"))],
                           data=FAST, timeout=10)
            assert r.status_code == 202, r.text
        finally:
            for s in held:
                s.close()


# --- item 5: a wall-clock limit for every job kind, enforced by killing the worker; cancel in any phase ---------


class _FakeProcess:
    def __init__(self) -> None:
        self.killed, self.pid, self.exitcode = False, 99999999, None

    def is_alive(self) -> bool:
        return not self.killed

    def kill(self) -> None:
        self.killed = True

    terminate = kill

    def join(self, timeout: Any = None) -> None:
        pass


def _pool_with_a_running_job(tmp_path: Path, kind: str, started_ago: float, job_timeout: float = 60.0) -> Any:
    from invcomp.web.config import WebConfig
    from invcomp.web.pool import WorkerPool
    from invcomp.web.store import JobStore

    store = JobStore(tmp_path / "d")
    cfg = WebConfig(data=tmp_path / "d", workers=0, limits=Limits(job_timeout=job_timeout))
    pool = WorkerPool(cfg, store)
    store.create("a" * 32, kind, "slow.ivc", {})
    owner = "gen:0:1"
    assert store.claim(owner)["id"] == "a" * 32
    with store._tx() as c:
        c.execute("UPDATE jobs SET started=? WHERE id=?", (time.time() - started_ago, "a" * 32))
    proc = _FakeProcess()
    pool._procs[0] = (proc, owner)
    pool._spawn = lambda slot: pool._procs.__setitem__(slot, (_FakeProcess(), "gen:0:2"))  # type: ignore[method-assign]
    return pool, store, proc


@pytest.mark.parametrize("kind", ["decode", "encode", "compare"])
def test_a_job_past_its_time_limit_is_stopped_by_killing_its_worker(tmp_path: Path, kind: str) -> None:
    pool, store, proc = _pool_with_a_running_job(tmp_path, kind, started_ago=75, job_timeout=60)
    pool.check()
    job = store.get("a" * 32)
    assert proc.killed and job["status"] == "failed", job
    assert job["error"] == "took longer than the server's limit of 60 s"
    assert pool._procs[0][1] == "gen:0:2"  # a new worker in its place


def test_a_job_within_its_time_limit_is_left_alone(tmp_path: Path) -> None:
    pool, store, proc = _pool_with_a_running_job(tmp_path, "decode", started_ago=10, job_timeout=60)
    pool.check()
    assert not proc.killed and store.get("a" * 32)["status"] == "running"


def test_a_cancelled_job_whose_worker_does_not_stop_is_killed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import invcomp.web.pool as pool_mod

    monkeypatch.setattr(pool_mod, "CANCEL_GRACE", 0.2)
    pool, store, proc = _pool_with_a_running_job(tmp_path, "decode", started_ago=1)
    store.cancel("a" * 32)
    pool.check()
    assert not proc.killed  # the worker gets a moment to stop by itself
    time.sleep(0.3)
    pool.check()
    job = store.get("a" * 32)
    assert proc.killed and job["status"] == "cancelled" and job["error"] == "cancelled while running", job


SLOW = {"mode": "inversion", "model": "dcgan-utkface64", "iters": "2000"}


def _running_worker(c: Any, app: Any, job_id: str) -> int:
    t0 = time.monotonic()
    while True:
        j = c.get(f"/api/jobs/{job_id}").json()
        if j["status"] == "running" and j["progress"] > 0:
            return app.state.pool.pids()[0]
        assert time.monotonic() - t0 < 120, j
        time.sleep(0.1)


def test_a_hung_worker_is_killed_at_the_limit_and_on_cancel(tmp_path: Path) -> None:
    """A worker that stops answering (SIGSTOP: as stuck as a long C call) in the middle of a job: cancel still ends the
    job within seconds, and a job nobody cancels fails at the time limit; each time a new worker takes its place."""
    app = make_app(tmp_path / "d", workers=1, limits=Limits(job_timeout=12.0))
    with client(app) as c:
        job = upload(c, [("slow.png", face_bytes())], **SLOW).json()["jobs"][0]
        pid = _running_worker(c, app, job["id"])
        os.kill(pid, signal.SIGSTOP)
        t1 = time.monotonic()
        assert c.post(f"/api/jobs/{job['id']}/cancel").json()["cancel_requested"] is True
        j = wait(c, job["id"], timeout=20)
        assert j["status"] == "cancelled" and j["error"] == "cancelled while running", j
        assert time.monotonic() - t1 < 8
        job = upload(c, [("slow2.png", face_bytes())], **SLOW).json()["jobs"][0]
        pid2 = _running_worker(c, app, job["id"])
        assert pid2 != pid
        os.kill(pid2, signal.SIGSTOP)
        j = wait(c, job["id"], timeout=40)
        assert j["status"] == "failed" and "took longer than the server's limit of 12 s" in j["error"], j
        assert j["finished"] - j["started"] < 12 + 4
        t2 = time.monotonic()
        while c.get("/api/health").json()["workers"] != 1:
            assert time.monotonic() - t2 < 30
            time.sleep(0.2)


# --- item 8: user models given as code --------------------------------------------------------------------------

GEN = """
import torch
from torch import nn
open(MARK, "a").write("ran\\n")

class G(nn.Module):
    latent_dim = 8
    resolution = 16
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.lin = nn.Linear(8, 3 * 16 * 16)
    def forward(self, z):
        return torch.tanh(self.lin(z)).view(-1, 3, 16, 16) * SCALE

def make():
    return G()
"""


def test_an_edited_generator_file_is_refused_before_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from invcomp.cli import cli
    from invcomp.zoo import registry

    monkeypatch.setenv("INVCOMP_HOME", str(tmp_path / "home"))
    gen, mark = tmp_path / "gen.py", tmp_path / "mark"
    gen.write_text(GEN.replace("MARK", repr(str(mark))).replace("SCALE", "1.0"))
    r = CliRunner().invoke(cli, ["models", "--register", "mine", "--model", f"{gen}:make"])
    assert r.exit_code == 0, r.output + r.stderr
    entry = json.loads((tmp_path / "home" / "models.json").read_text())["mine"]
    import hashlib

    assert entry["code_sha256"] == hashlib.sha256(gen.read_bytes()).hexdigest()
    assert registry.load_generator("mine").sha256 == entry["sha256"]  # unchanged: loads
    gen.write_text(GEN.replace("MARK", repr(str(mark))).replace("SCALE", "0.5"))  # same weights, other pixels
    mark.unlink()
    with pytest.raises(InvcompError) as ei:
        registry.load_generator("mine")
    assert "changed since it was registered" in str(ei.value) and "\n" not in str(ei.value)
    assert not mark.exists()  # refused before a line of it ran
    r = CliRunner().invoke(cli, ["encode", str(DEMO_IMAGE), "--model", "mine", "--iters", "0", "-o",
                                 str(tmp_path / "x.ivc")])
    assert r.exit_code == 1 and len(r.stderr.strip().splitlines()) == 1 and "changed since it was registered" in r.stderr
    assert not mark.exists()
