"""The web app's API without workers: every endpoint's answer, every limit and refusal (status + one line)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed (pip install 'invcomp[web]')")

from invcomp.web.config import Limits  # noqa: E402

from .conftest import REPO  # noqa: E402
from .webutil import FAST, client, face_bytes, make_app, png_bytes, upload  # noqa: E402


@pytest.fixture
def api(tmp_path: Path) -> Any:
    with client(make_app(tmp_path / "data", bench_dirs=(REPO / "experiments" / "results",))) as c:
        yield c


def _one_line(r: Any) -> str:
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail, r.json()
    return detail


def test_a_job_is_queued_with_its_upload_under_a_generated_name(api: Any, tmp_path: Path) -> None:
    r = upload(api, [("../../evil name.png", face_bytes())], **FAST)
    assert r.status_code == 202, r.text
    job = r.json()["jobs"][0]
    assert job["status"] == "queued" and job["kind"] == "encode" and job["name"] == "evil name.png"
    assert job["options"] == {"mode": "vaegan", "model": "vaegan-utkface64-c4"}
    assert job["links"]["page"] == f"/jobs/{job['id']}"
    folder = tmp_path / "data" / "jobs" / job["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["input"]
    assert (folder / "input").read_bytes() == face_bytes()
    assert not list((tmp_path / "data").rglob("*evil*")) and not (tmp_path / "evil name.png").exists()
    assert api.get(f"/api/jobs/{job['id']}").json()["status"] == "queued"
    assert [j["id"] for j in api.get("/api/jobs").json()["jobs"]] == [job["id"]]
    # files of an unfinished job: 409; of no job, or no such file: 404; never a path
    assert api.get(f"/api/jobs/{job['id']}/ivc").status_code == 409
    assert api.get(f"/api/jobs/{job['id']}/..%2f..%2fjobs.sqlite").status_code == 404
    assert api.get(f"/api/jobs/{job['id']}/input").status_code == 404
    assert api.get("/api/jobs/" + "0" * 32).status_code == 404
    assert api.get("/api/jobs/..%2f..%2fetc").status_code == 404


def test_one_job_per_image_and_content_not_extension_decides(api: Any) -> None:
    r = upload(api, [("a.txt", png_bytes()), ("b.jpg", png_bytes(seed=1))], iters=0)  # a PNG named .txt is an image
    assert r.status_code == 202, r.text
    assert [j["name"] for j in r.json()["jobs"]] == ["a.txt", "b.jpg"]
    r = upload(api, [("fake.png", b"GIF89a not really an image")])
    assert r.status_code == 422 and "fake.png" in _one_line(r) and "image" in _one_line(r)
    trunc = png_bytes((64, 64))[:120]
    r = upload(api, [("cut.png", trunc)])
    assert r.status_code == 422 and "cut.png" in _one_line(r)
    assert upload(api, []).status_code == 422
    assert upload(api, [("e.png", b"")]).status_code == 422


@pytest.mark.parametrize(("fields", "says"), [
    ({"model": "pretrained/dcgan-utkface64-52c46b11.pt"}, "model"),
    ({"model": "gen.py:make"}, "model"),
    ({"model": "vaegan:vaegan-utkface64-c4"}, "model"),
    ({"mode": "nonsense"}, "mode"),
    ({"bits": "1"}, "bits must be between 2 and 16"),
    ({"bits": "six"}, "bits must be an integer"),
    ({"iters": "999999"}, "iters must be between 0 and 2000"),
    ({"bits": "4", "target_bytes": "60"}, "rate control chooses the bits"),
    ({"target_bytes": "60", "target_ssim": "0.8"}, "give one of"),
    ({"fit": "stretch"}, "fit"),
    ({"faces": "some"}, "faces"),
    ({"background": "../../etc/x"}, "background must be"),
    ({"max_faces": "100"}, "max_faces must be between 1 and 64"),
    ({"layer_rates": "../../x"}, "layer_rates"),
    ({"weights_path": "/etc/passwd"}, "unknown option"),
    ({"warm_start": "x.pt"}, "unknown option"),
    ({"mode": "sc", "preserve": "/etc/mask.png"}, "preserve"),  # a server path: only "faces" is offered
    ({"mode": "sc", "preserve_box": "1,2,3"}, "preserve_box must be x,y,w,h"),
    ({"mode": "sc", "preserve_box": "0,0,10,10", "preserve_halo": "99"}, "preserve_halo must be between 0 and 16"),
])
def test_options_are_checked_before_a_job_exists(api: Any, fields: dict, says: str) -> None:
    r = upload(api, [("f.png", png_bytes())], **fields)
    assert r.status_code == 422 and says in _one_line(r), r.json()
    assert api.get("/api/jobs").json()["jobs"] == []


def test_limits_each_give_a_clear_status(tmp_path: Path) -> None:
    lim = Limits(max_upload_bytes=20_000, max_files=2, max_pixels=50 * 50, max_queue=2, max_iters=10)
    with client(make_app(tmp_path / "d", limits=lim)) as c:
        r = upload(c, [("big.png", png_bytes((90, 90)))])  # ~24 kB of noise
        assert r.status_code == 413 and "big.png is over the limit of 20,000 bytes per file" in _one_line(r)
        r = upload(c, [("wide.png", png_bytes((60, 50)))])
        assert r.status_code == 413 and "60x50 = 3,000 pixels, over this server's limit of 2,500" in _one_line(r)
        r = upload(c, [(f"{i}.png", png_bytes(seed=i)) for i in range(3)])
        assert r.status_code == 413 and "3 files in one request; the limit is 2" in _one_line(r)
        r = c.post("/api/jobs", content=b"x" * 10, headers={"content-length": str(lim.max_request_bytes + 1),
                                                           "content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413 and "request body over the limit" in _one_line(r)
        assert upload(c, [("a.png", png_bytes())]).status_code == 202
        assert upload(c, [("b.png", png_bytes())]).status_code == 202
        r = upload(c, [("c.png", png_bytes())])
        assert r.status_code == 503 and "the queue is full (2 jobs waiting)" in _one_line(r)
        assert r.headers["retry-after"] == "10"
        assert len(list((tmp_path / "d" / "jobs").iterdir())) == 2  # the refused upload left no folder
        r = c.get("/api/options").json()
        assert r["limits"]["max_files"] == 2 and r["limits"]["max_queue"] == 2 and "vaegan" in r["modes"]


def test_a_streamed_body_is_cut_off_at_the_limit(tmp_path: Path) -> None:
    lim = Limits(max_upload_bytes=1000, max_files=1)
    with client(make_app(tmp_path / "d", limits=lim)) as c:
        def chunks() -> Any:  # no content-length: the guard counts what arrives
            yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.ivc"\r\n\r\n'
            for _ in range(2000):
                yield b"y" * 1000

        r = c.post("/api/decode", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413 and "request body over the limit" in _one_line(r)


def test_uploads_at_once_are_limited(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from invcomp.web.config import WebConfig
    from invcomp.web.security import Guard

    gate = asyncio.Event()

    async def slow(scope: dict, receive: Any, send: Any) -> None:
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = Guard(slow, WebConfig(data=tmp_path, limits=Limits(max_active_uploads=1), allowed_hosts=("testserver",)))

    async def go() -> tuple[int, int, str]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guard), base_url="http://testserver") as h:
            ct = {"content-type": "multipart/form-data; boundary=b"}
            first = asyncio.create_task(h.post("/api/jobs", content=b"--b--", headers=ct))
            await asyncio.sleep(0.2)
            second = await h.post("/api/jobs", content=b"--b--", headers=ct)
            gate.set()
            return (await first).status_code, second.status_code, second.json()["detail"]

    a, b, detail = asyncio.run(go())
    assert (a, b) == (200, 503) and "1 uploads are being checked at once" in detail


def test_decode_and_compare_check_their_files(api: Any) -> None:
    r = upload(api, [("x.ivc", png_bytes())], url="/api/decode")
    assert r.status_code == 422 and "x.ivc" in _one_line(r) and "ivc" in _one_line(r)
    r = upload(api, [("t.ivc", b"IV")], url="/api/decode")
    assert r.status_code == 422 and "truncated" in _one_line(r)
    r = upload(api, [("a.ivc", b"\x00" * 40)], url="/api/decode", layers="0")
    assert r.status_code == 422 and "layers" in _one_line(r)
    r = api.post("/api/compare", files=[("original", ("a.png", png_bytes(), "image/png"))])
    assert r.status_code == 422 and "two images" in _one_line(r)
    r = api.post("/api/compare", files=[("original", ("a.png", png_bytes(), "image/png")),
                                        ("reconstruction", ("b.png", b"nope", "image/png"))])
    assert r.status_code == 422 and "b.png" in _one_line(r)
    r = api.post("/api/compare", files=[("original", ("a.png", png_bytes(), "image/png")),
                                        ("reconstruction", ("b.png", png_bytes(seed=2), "image/png"))])
    assert r.status_code == 202 and r.json()["jobs"][0]["kind"] == "compare"


def test_an_ivc_that_declares_too_many_pixels_is_refused_from_its_header(tmp_path: Path) -> None:
    from invcomp.codecs import load_codec
    from PIL import Image

    data = load_codec("vaegan-utkface64-c4").encode([Image.new("RGB", (300, 200))])[0].data
    with client(make_app(tmp_path / "d", limits=Limits(max_pixels=300 * 199))) as c:
        r = upload(c, [("big.ivc", data)], url="/api/decode")
        assert r.status_code == 413 and "declares a 300x200 image" in _one_line(r)
    with client(make_app(tmp_path / "e")) as c:
        assert upload(c, [("ok.ivc", data)], url="/api/decode").status_code == 202


def test_cancel_and_delete_of_a_queued_job(api: Any) -> None:
    job = upload(api, [("f.png", png_bytes())]).json()["jobs"][0]
    assert api.delete(f"/api/jobs/{job['id']}").status_code == 409  # not finished: cancel first
    r = api.post(f"/api/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["error"] == "cancelled before it started"
    r = api.post(f"/api/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and "already cancelled" in _one_line(r)
    assert api.delete(f"/api/jobs/{job['id']}").json() == {"deleted": job["id"]}
    assert api.get(f"/api/jobs/{job['id']}").status_code == 404
    assert api.post("/api/jobs/" + "a" * 32 + "/cancel").status_code == 404


def test_other_rates_need_an_encode_job_and_one_list(api: Any) -> None:
    job = upload(api, [("f.png", png_bytes())], mode="inversion", iters=0).json()["jobs"][0]
    url = f"/api/jobs/{job['id']}/rates"
    assert api.post(url, json={"bits": [3, 4], "target_bytes": [60]}).status_code == 422
    assert api.post(url, json={"bits": list(range(2, 12))}).status_code == 422
    assert api.post(url, json={"bits": [1]}).status_code == 422
    r = api.post(url, json={"bits": [3, 8]})
    assert r.status_code == 202, r.text
    kids = r.json()["jobs"]
    assert [k["options"] for k in kids] == [{"mode": "inversion", "iters": 0, "bits": b} for b in (3, 8)]
    assert all(k["parent"] == job["id"] for k in kids)
    assert [k["id"] for k in api.get(f"/api/jobs/{job['id']}/children").json()["jobs"]] == [k["id"] for k in kids]
    cmp = api.post("/api/compare", files=[("original", ("a.png", png_bytes(), "image/png")),
                                          ("reconstruction", ("b.png", png_bytes(), "image/png"))]).json()["jobs"][0]
    assert api.post(f"/api/jobs/{cmp['id']}/rates", json={"bits": [3]}).status_code == 409


def test_models_benchmarks_and_docs(api: Any) -> None:
    models = {m["name"]: m for m in api.get("/api/models").json()}
    assert {"dcgan-utkface64", "vaegan-utkface64-c4"} <= set(models)
    assert "UTKFace" in models["dcgan-utkface64"]["card"] and "weights" not in models["dcgan-utkface64"]
    assert api.get("/api/models/nope").status_code == 404
    names = [b["name"] for b in api.get("/api/benchmarks").json()]
    assert "bench_utkface_first4" in names
    b = api.get("/api/benchmarks/bench_utkface_first4").json()
    assert b["plots"] == ["rd_ms_ssim.png", "rd_psnr.png", "rd_ssim.png"]
    table = b["equal_bytes"][1]["tables"][0]
    assert b["equal_bytes"][1]["title"] == "invcomp 4 bits" and table["header"][:3] == ["codec", "n", "bytes mean"]
    assert table["rows"][0][:3] == ["invcomp 4 bits", "4", "53.8"]
    png = api.get(b["plot_links"][0])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert api.get("/api/benchmarks/bench_utkface_first4/plots/per_image.csv").status_code == 404
    assert api.get("/api/benchmarks/..%2f..%2f/plots/rd_ssim.png").status_code == 404
    spec = api.get("/openapi.json").json()
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/{job_id}/{file}", "/api/decode", "/api/compare",
            "/api/jobs/{job_id}/cancel", "/api/events", "/api/models"} <= set(spec["paths"])
    assert api.get("/docs").status_code == 200
    assert api.get("/api/health").json()["jobs"]["queued"] == 0


def test_pages_render_and_escape_what_they_show(api: Any) -> None:
    evil = "<img src=x onerror=alert(1)>.png"
    job = upload(api, [(evil, png_bytes())]).json()["jobs"][0]
    for path in ("/", "/jobs", f"/jobs/{job['id']}", "/decompress", "/compare", "/models", "/models/dcgan-utkface64",
                 "/benchmarks", "/benchmarks/bench_utkface_first4"):
        r = api.get(path)
        assert r.status_code == 200, path
        assert "<img src=x" not in r.text, path
        assert 'content="' in r.text and "default-src 'self'" in r.headers["content-security-policy"]
    page = api.get(f"/jobs/{job['id']}").text
    assert "&lt;img src=x onerror=alert(1)&gt;.png" in page
    r = api.get("/jobs/" + "b" * 32)
    assert r.status_code == 404 and "text/html" in r.headers["content-type"] and "no job" in r.text
    r = api.get("/nowhere/<b>x</b>")
    assert r.status_code == 404 and "<b>x</b>" not in r.text


def test_security_headers(api: Any) -> None:
    h = api.get("/api/health").headers
    assert "set-cookie" not in h  # API clients get no cookie, so they need no CSRF token
    h = api.get("/").headers
    assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "same-origin" and "frame-ancestors 'none'" in h["content-security-policy"]
    assert "script-src 'self';" in h["content-security-policy"] and h["cache-control"] == "no-store"
    assert "unsafe-inline" not in h["content-security-policy"]
    assert "HttpOnly" in h["set-cookie"] and "SameSite=Strict" in h["set-cookie"]


def test_host_header_and_cross_site_posts_are_refused(api: Any) -> None:
    r = api.get("/api/health", headers={"host": "attacker.example"})
    assert r.status_code == 400 and "attacker.example" in _one_line(r)
    for headers in ({"origin": "http://attacker.example"}, {"sec-fetch-site": "cross-site"},
                    {"sec-fetch-site": "same-site"}, {"origin": "null"}):
        r = api.post("/api/jobs", files=[("files", ("f.png", png_bytes(), "image/png"))], headers=headers)
        assert r.status_code == 403 and "refused" in _one_line(r), headers
    api.get("/")  # a browser that has loaded a page holds the CSRF cookie: its posts need the header
    token = api.cookies.get("invcomp_csrf")
    r = api.post("/api/jobs", files=[("files", ("f.png", png_bytes(), "image/png"))])
    assert r.status_code == 403 and "CSRF" in _one_line(r)
    r = api.post("/api/jobs", files=[("files", ("f.png", png_bytes(), "image/png"))], headers={"x-csrf-token": "0" * 64})
    assert r.status_code == 403
    r = api.post("/api/jobs", files=[("files", ("f.png", png_bytes(), "image/png"))], headers={"x-csrf-token": token,
                                                                                             "origin": "http://testserver"})
    assert r.status_code == 202, r.text


def test_a_token_guards_everything_but_login(tmp_path: Path) -> None:
    with client(make_app(tmp_path / "d", token="s3cret-token")) as c:
        r = c.get("/api/jobs")
        assert r.status_code == 401 and "token" in _one_line(r) and r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/api/jobs", headers={"authorization": "Bearer wrong-token"}).status_code == 401
        r = c.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login?next=/"
        assert c.get("/static/app.js").status_code == 200 and c.get("/api/health").status_code == 200
        bearer = {"authorization": "Bearer s3cret-token"}
        assert c.get("/api/jobs", headers=bearer).status_code == 200
        r = c.post("/api/jobs", files=[("files", ("f.png", png_bytes(), "image/png"))], headers=bearer)
        assert r.status_code == 202  # the bearer header: no CSRF token needed (no other site can send it)
        login = c.get("/login?next=//evil.example/")
        assert 'value="/"' in login.text  # an open redirect is not kept
        csrf = c.cookies.get("invcomp_csrf")
        r = c.post("/login", data={"token": "s3cret-token", "csrf_token": "x" * 64, "next": "/jobs"}, follow_redirects=False)
        assert r.status_code == 403
        r = c.post("/login", data={"token": "nope", "csrf_token": csrf, "next": "/jobs"}, follow_redirects=False)
        assert r.status_code == 401 and "wrong token" in r.text
        r = c.post("/login", data={"token": "s3cret-token", "csrf_token": csrf, "next": "/jobs"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/jobs"
        assert "s3cret-token" not in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
        assert c.get("/api/jobs").status_code == 200  # the session cookie
        r = c.post("/api/jobs", files=[("files", ("f.png", png_bytes(), "image/png"))])
        assert r.status_code == 403 and "CSRF" in _one_line(r)
        r = c.post("/api/jobs", files=[("files", ("f.png", png_bytes(), "image/png"))], headers={"x-csrf-token": csrf})
        assert r.status_code == 202


def test_binding_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    from invcomp.cli import cli
    from invcomp.errors import InvcompError

    from .conftest import cli_runner

    with pytest.raises(InvcompError, match="--token"):
        make_app(tmp_path / "d", host="0.0.0.0")
    make_app(tmp_path / "d", host="0.0.0.0", token="long-enough-token")
    r = cli_runner().invoke(cli, ["serve", "--host", "0.0.0.0", "--data", str(tmp_path / "d")])
    assert r.exit_code == 1 and "--token" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr



def test_sc_options_reach_the_encoder() -> None:
    """An SC job's preserve options become EncodeRequest fields (a box as a one-item tuple)."""
    from invcomp.web.uploads import encode_options

    class Catalog:
        def modes(self) -> list[str]:
            return ["auto", "gc", "sc"]

        def model_names(self) -> list[str]:
            return ["sc-utkface-c8"]

    opts = encode_options({"mode": "sc", "preserve_box": "40,30,120,150", "preserve_halo": "2"}, Catalog(), Limits())
    assert opts == {"mode": "sc", "preserve_box": ("40,30,120,150",), "preserve_halo": 2}
    assert encode_options({"mode": "sc", "preserve": "faces"}, Catalog(), Limits())["preserve"] == "faces"


@pytest.mark.parametrize("background, says", [("none", "this file carries no background"),
                                               ("thumb", "the background the file carries (thumb)")])
def test_a_photo_result_says_what_its_decoded_pane_shows(api: Any, background: str, says: str) -> None:
    store = api.app.state.store
    photo = {"fit": "align", "faces_found": 1, "faces_coded": 1, "faces_too_small": 0, "grayscale": False,
             "note": "", "background": background, "face_ssim": 0.7}
    result = {"bytes": 120, "bpp": 0.0023, "resolution": 64, "ssim": 0.7, "ms_ssim": 0.8, "psnr": 20.0,
              "identity": None, "lpips": None, "mode": "inversion", "model": "dcgan-utkface64", "bits": 6,
              "coder": "prior", "format": 2, "cr_raw": 900.0, "cr_png": 400.0, "seconds": 1.0, "photo": photo,
              "decoded": {"seconds": 0.1, "width": 512, "height": 512, "coded_box": None,
                          "photo": {"faces": 1, "background": background}}}
    for kind, res in (("encode", result), ("decode", {**result["decoded"], "mode": "inversion", "model": "m",
                                                       "layers": 1, "layers_in_file": 1})):
        job_id = f"{'e' if kind == 'encode' else 'd'}{'0' if background == 'none' else '1'}".ljust(32, "0")  # hex ids
        store.create(job_id, kind, "photo.jpg", {})
        assert store.claim("test")["id"] == job_id
        store.finish(job_id, "test", "done", result=res)
        text = " ".join(api.get(f"/jobs/{job_id}").text.split())
        assert 'id="decoded-note"' in text and "face is redrawn from the file" in text and says in text, kind
