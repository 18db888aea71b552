"""The web app's jobs with real worker processes: a job's whole life (events, files, cancel), the same files as
the CLI, failures that stay the job's own, retention, and restarts (a killed worker, a killed server)."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'invcomp[web]')")

from invcomp.web.store import JobStore  # noqa: E402
from invcomp.web.uploads import queue_job  # noqa: E402

from .conftest import DEMO_IMAGE, cli_runner  # noqa: E402
from .webutil import (FAST, client, face_bytes, free_port, make_app, page, png_bytes, start_server, stop,  # noqa: E402
                      upload, wait, wait_up)

SLOW = {"mode": "inversion", "model": "dcgan-utkface64", "iters": "2000"}  # long enough to cancel while it runs


def _cli(*args: Any) -> Any:
    """``invcomp --threads 1 ...`` in this process (the workers run one thread), leaving torch's threads as they were."""
    import torch

    from invcomp.cli import cli

    n = torch.get_num_threads()
    try:
        return cli_runner().invoke(cli, ["--threads", "1", *[str(a) for a in args]])
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Any:
    app = make_app(tmp_path_factory.mktemp("web") / "data", workers=1)
    with client(app) as c:
        c.app_ = app
        yield c


def _events(c: Any, job_id: str) -> list[dict]:
    out = []
    with c.stream("GET", f"/api/jobs/{job_id}/events") as s:
        kind = None
        for line in s.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "job":
                out.append(json.loads(line[6:]))
    return out


def test_an_encode_job_writes_what_the_cli_writes(live: Any, tmp_path: Path) -> None:
    job = upload(live, [("face.png", face_bytes())], **FAST).json()["jobs"][0]
    seen = _events(live, job["id"])
    assert seen[0]["status"] in ("queued", "running") and seen[-1]["status"] == "done", seen[-1].get("error")
    assert [e["progress"] for e in seen] == sorted(e["progress"] for e in seen) and seen[-1]["progress"] == 1.0
    done = live.get(f"/api/jobs/{job['id']}").json()
    res = done["result"]
    assert res["mode"] == "vaegan" and res["model"] == "vaegan-utkface64-c4" and res["bytes"] > 20
    for key in ("bpp", "ssim", "ms_ssim", "psnr", "lpips", "identity", "cr_raw", "seconds"):
        assert key in res, key
    assert "input" not in res and str(live.app_.state.config.data) not in json.dumps(done)
    ivc, png = live.get(done["links"]["ivc"]).content, live.get(done["links"]["png"]).content
    assert len(ivc) == res["bytes"]
    r = _cli("encode", DEMO_IMAGE, "--model", "vaegan-utkface64-c4", "-o", tmp_path / "cli.ivc", "--json")
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "cli.ivc").read_bytes() == ivc
    assert abs(json.loads(r.stdout)["ssim"] - res["ssim"]) < 1e-6
    (tmp_path / "web.ivc").write_bytes(ivc)
    assert _cli("decode", tmp_path / "web.ivc", "-o", tmp_path / "cli.png").exit_code == 0
    assert (tmp_path / "cli.png").read_bytes() == png
    d = live.get(done["links"]["ivc"] + "?download=1").headers["content-disposition"]
    assert d == 'attachment; filename="face.ivc"'
    assert live.get(done["links"]["original"]).content[:8] == b"\x89PNG\r\n\x1a\n"
    html = page(live, f"/jobs/{job['id']}").text
    assert f"{res['ssim']:.4f}" in html and 'id="img-left"' in html and 'id="dl-ivc"' in html

    # decode: the same PNG again, the decoder found from the model id
    dec = upload(live, [("face.ivc", ivc)], url="/api/decode").json()["jobs"][0]
    dec = wait(live, dec["id"])
    assert dec["status"] == "done", dec["error"]
    assert live.get(dec["links"]["png"]).content == png and dec["result"]["model"] == "vaegan-utkface64-c4"

    # compare: what `invcomp compare --json` reports
    cmp = live.post("/api/compare", files=[("original", ("face.png", face_bytes(), "image/png")),
                                           ("reconstruction", ("dec.png", png, "image/png")),
                                           ("bitstream", ("face.ivc", ivc, "application/octet-stream"))]).json()["jobs"][0]
    cmp = wait(live, cmp["id"])
    assert cmp["status"] == "done", cmp["error"]
    r = _cli("compare", DEMO_IMAGE, tmp_path / "cli.png", "--bitstream", tmp_path / "web.ivc", "--json")
    want = json.loads(r.stdout)
    for key in ("ssim", "psnr", "ms_ssim", "bytes"):
        assert cmp["result"][key] == pytest.approx(want[key], abs=1e-6), key
    assert cmp["result"]["original"] == "face.png" and "SSIM" in page(live, f"/jobs/{cmp['id']}").text


def test_a_failed_job_shows_its_reason_and_the_worker_goes_on(live: Any, tmp_path: Path) -> None:
    bad = upload(live, [("f.png", png_bytes())], **FAST, iters=5).json()["jobs"][0]  # iters do not apply
    bad = wait(live, bad["id"])
    assert bad["status"] == "failed" and "iters" in bad["error"] and "\n" not in bad["error"]
    assert str(live.app_.state.config.data) not in bad["error"]
    html = page(live, f"/jobs/{bad['id']}").text
    assert 'id="job-error"' in html and "iters" in html
    # a file the parser takes but no decoder here can: a mode this invcomp does not know
    from PIL import Image

    from invcomp.codecs import register_mode, unregister_mode

    from .test_contract import IdentityCodec

    register_mode(IdentityCodec)
    try:
        data = IdentityCodec().encode([Image.new("RGB", (4, 4))])[0].data
    finally:
        unregister_mode(IdentityCodec.mode)
    dec = wait(live, upload(live, [("x.ivc", data)], url="/api/decode").json()["jobs"][0]["id"])
    assert dec["status"] == "failed" and "mode 7, which this invcomp does not know" in dec["error"], dec["error"]
    assert "\n" not in dec["error"]
    ok = wait(live, upload(live, [("h.png", png_bytes((64, 64), seed=3))], **FAST).json()["jobs"][0]["id"])
    assert ok["status"] == "done" and live.get("/api/health").json()["workers"] == 1


def test_cancel_a_running_and_a_queued_job(live: Any) -> None:
    slow = upload(live, [("slow.png", face_bytes())], **SLOW).json()["jobs"][0]
    behind = upload(live, [("behind.png", face_bytes())], **FAST).json()["jobs"][0]
    t0 = time.monotonic()
    while True:
        j = live.get(f"/api/jobs/{slow['id']}").json()
        if j["status"] == "running" and j["progress"] > 0:
            break
        assert time.monotonic() - t0 < 120, j
        time.sleep(0.1)
    assert live.post(f"/api/jobs/{behind['id']}/cancel").json()["status"] == "cancelled"
    r = live.post(f"/api/jobs/{slow['id']}/cancel").json()
    assert r["status"] == "running" and r["cancel_requested"] is True
    t1 = time.monotonic()
    j = wait(live, slow["id"], timeout=30)
    assert j["status"] == "cancelled" and j["error"] == "cancelled while running", j
    assert time.monotonic() - t1 < 10 and j["progress"] < 1.0
    assert live.get(f"/api/jobs/{slow['id']}/ivc").status_code == 409
    assert not (live.app_.state.store.folder(slow["id"]) / "output.ivc").exists()
    again = wait(live, upload(live, [("next.png", face_bytes())], **FAST).json()["jobs"][0]["id"])
    assert again["status"] == "done"


def test_a_photo_goes_through_the_photo_container(live: Any) -> None:
    photo = DEMO_IMAGE.parents[1] / "photos" / "coelho-mahotas.jpg"
    if not photo.is_file():
        pytest.skip("no photo in experiments/data/photos")
    job = wait(live, upload(live, [("photo.jpg", photo.read_bytes())], **FAST, fit="align", background="thumb")
               .json()["jobs"][0]["id"], timeout=300)
    assert job["status"] == "done", job["error"]
    assert job["result"]["photo"]["fit"] == "align" and job["result"]["photo"]["faces_coded"] == 1
    assert "fit align: 1 of" in page(live, f"/jobs/{job['id']}").text
    ivc = live.get(job["links"]["ivc"]).content
    dec = wait(live, upload(live, [("photo.ivc", ivc)], url="/api/decode").json()["jobs"][0]["id"])
    assert dec["status"] == "done", dec["error"]
    assert dec["result"]["photo"]["faces"] == 1 and live.get(dec["links"]["png"]).content == live.get(job["links"]["png"]).content


def test_other_rates_of_a_result(live: Any) -> None:
    parent = wait(live, upload(live, [("face.png", face_bytes())], mode="inversion", iters=0).json()["jobs"][0]["id"])
    assert parent["status"] == "done", parent["error"]
    kids = live.post(f"/api/jobs/{parent['id']}/rates", json={"bits": [3, 8]}).json()["jobs"]
    kids = [wait(live, k["id"]) for k in kids]
    assert [k["result"]["bits"] for k in kids] == [3, 8]
    assert kids[0]["result"]["bytes"] < parent["result"]["bytes"] < kids[1]["result"]["bytes"]
    html = page(live, f"/jobs/{parent['id']}").text
    assert all(k["id"] in html for k in kids)


def test_old_jobs_are_removed_with_their_files(live: Any) -> None:
    job = wait(live, upload(live, [("old.png", png_bytes((64, 64)))], **FAST).json()["jobs"][0]["id"])
    store = live.app_.state.store
    folder = store.folder(job["id"])
    assert folder.is_dir()
    with sqlite3.connect(store.db) as db:
        db.execute("UPDATE jobs SET finished=? WHERE id=?", (time.time() - 8 * 24 * 3600, job["id"]))
    assert job["id"] in live.app_.state.pool.sweep()
    assert live.get(f"/api/jobs/{job['id']}").status_code == 404 and not folder.exists()


def test_a_restart_runs_queued_jobs_and_requeues_interrupted_ones(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = JobStore(data)
    from invcomp.web.config import Limits

    a = queue_job(store, Limits(), "encode", "a.png", FAST, {"input": face_bytes()})
    b = queue_job(store, Limits(), "encode", "b.png", FAST, {"input": png_bytes((64, 64))})
    assert store.claim("killed-server:0:1")["id"] == a["id"]  # a was running when its server died
    with client(make_app(data, workers=1)) as c:
        assert c.get("/api/health").json()["requeued_at_start"] == 1
        ja, jb = wait(c, a["id"]), wait(c, b["id"])
    assert (ja["status"], jb["status"]) == ("done", "done")
    assert (ja["attempts"], jb["attempts"]) == (2, 1)


def test_a_killed_worker_is_replaced_and_its_job_redone(live: Any) -> None:
    pool = live.app_.state.pool
    job = upload(live, [("face.png", face_bytes())], mode="inversion", iters=300).json()["jobs"][0]
    t0 = time.monotonic()
    while live.get(f"/api/jobs/{job['id']}").json()["progress"] <= 0:  # mid-search
        assert time.monotonic() - t0 < 120
        time.sleep(0.1)
    os.kill(pool.pids()[0], signal.SIGKILL)
    j = wait(live, job["id"], timeout=240)
    assert j["status"] == "done" and j["attempts"] == 2, j
    assert pool.replaced == 1 and live.get("/api/health").json()["workers"] == 1


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the worker processes")
def test_kill_9_of_the_server_loses_no_job(tmp_path: Path) -> None:
    import httpx

    data, port = tmp_path / "data", free_port()
    proc = start_server(data, port, "--workers", "1")
    try:
        wait_up(port, proc)
        url = f"http://127.0.0.1:{port}"
        files = {"files": ("face.png", face_bytes(), "image/png")}
        slow = httpx.post(f"{url}/api/jobs", files=files, data={"mode": "inversion", "iters": "200"}).json()["jobs"][0]
        fast = httpx.post(f"{url}/api/jobs", files=files, data=FAST).json()["jobs"][0]
        t0 = time.monotonic()
        while httpx.get(f"{url}/api/jobs/{slow['id']}").json()["progress"] <= 0:
            assert time.monotonic() - t0 < 120
            time.sleep(0.2)
        workers = _children(proc.pid)
        assert workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        time.sleep(1.0)
        assert not [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text()
                    .split(")")[-1][:3]], "a worker outlived its server"
        proc = start_server(data, port, "--workers", "1")
        wait_up(port, proc)
        assert httpx.get(f"{url}/api/health").json()["requeued_at_start"] == 1
        for j in (slow, fast):
            t0 = time.monotonic()
            while (row := httpx.get(f"{url}/api/jobs/{j['id']}").json())["status"] not in ("done", "failed"):
                assert time.monotonic() - t0 < 240
                time.sleep(0.2)
            assert row["status"] == "done", row["error"]
            ivc = httpx.get(f"{url}{row['links']['ivc']}").content
            assert len(ivc) == row["result"]["bytes"]
        assert httpx.get(f"{url}/api/jobs").json()["jobs"].__len__() == 2
    finally:
        stop(proc)


def test_the_page_the_web_compare_and_the_cli_compare_give_one_identity(live: Any, tmp_path: Path) -> None:
    """For the same files, the identity distance is one number: the encode job's page, the web compare (with and
    without the bitstream), `invcomp compare` (with and without it) and `invcomp encode --json`."""
    from invcomp import identity

    if identity.unavailable():
        pytest.skip(str(identity.unavailable()))
    job = wait(live, upload(live, [("face.png", face_bytes())], **FAST).json()["jobs"][0]["id"])
    assert job["status"] == "done", job["error"]
    ivc, png = live.get(job["links"]["ivc"]).content, live.get(job["links"]["png"]).content
    (tmp_path / "face.ivc").write_bytes(ivc)
    (tmp_path / "dec.png").write_bytes(png)
    page = job["result"]["identity"]
    assert page is not None and f"{page:.3f}" in _page_text(live, job["id"])
    got = {"page": page}
    for with_ivc in (False, True):
        files = [("original", ("face.png", face_bytes(), "image/png")),
                 ("reconstruction", ("dec.png", png, "image/png"))]
        files += [("bitstream", ("face.ivc", ivc, "application/octet-stream"))] if with_ivc else []
        cmp = wait(live, live.post("/api/compare", files=files).json()["jobs"][0]["id"])
        assert cmp["status"] == "done", cmp["error"]
        got[f"web compare{' --bitstream' * with_ivc}"] = cmp["result"]["identity"]
        bitstream = ["--bitstream", tmp_path / "face.ivc"] if with_ivc else []
        r = _cli("compare", DEMO_IMAGE, tmp_path / "dec.png", *bitstream, "--json")
        assert r.exit_code == 0, r.stderr
        got[f"cli compare{' --bitstream' * with_ivc}"] = json.loads(r.stdout)["identity"]
    r = _cli("encode", DEMO_IMAGE, "--model", "vaegan-utkface64-c4", "-o", tmp_path / "cli.ivc", "--json")
    got["cli encode"] = json.loads(r.stdout)["identity"]
    assert max(got.values()) - min(got.values()) < 1e-9, got


def _page_text(c: Any, job_id: str) -> str:
    return page(c, f"/jobs/{job_id}").text
