"""The web app in a real headless Chromium (Debian's chromium + chromium-driver, through Selenium), against a
real ``invcomp serve`` started with a token: log in, drop a face, watch its progress, read the result page,
download the ``.ivc`` and check that the CLI decodes it to the same PNG, then decompress and compare through
the pages, and cancel a running job."""
from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from .browser import chrome, downloaded, drop_file, loaded, until, why_not
from .conftest import DEMO_IMAGE, REPO
from .webutil import free_port, start_server, stop, wait_up

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REASON = why_not()
TOKEN = "browser-test-token"
if REASON is None:
    try:
        import fastapi  # noqa: F401
    except ImportError:
        REASON = "the web extra is not installed (pip install 'invcomp[web]')"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if REASON is not None:
        pytest.skip(REASON)
    root = tmp_path_factory.mktemp("browser")
    port = free_port()
    proc = start_server(root / "data", port, "--workers", "1", "--token", TOKEN, "--bench",
                        str(REPO / "experiments" / "results"))
    driver = None
    try:
        wait_up(port, proc)
        driver = chrome(root / "downloads")
        yield {"url": f"http://127.0.0.1:{port}", "driver": driver, "root": root, "downloads": root / "downloads"}
    finally:
        if driver is not None:
            driver.quit()
        stop(proc)


def _select(driver: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def _text(driver: Any, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def _cli(*args: Any) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invcomp.cli", "--threads", "1", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


def _api(site: dict, path: str) -> Any:
    import httpx

    return httpx.get(site["url"] + path, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30)


def test_login_then_compress_a_dropped_face_and_read_its_result(site: dict) -> None:
    d, url = site["driver"], site["url"]
    d.get(url + "/")
    assert "/login" in d.current_url  # the token guards the pages
    d.find_element("id", "token").send_keys(TOKEN)
    d.find_element("id", "login").click()
    until(lambda: d.current_url.rstrip("/") == url, 30, "the redirect home")
    _select(d, "mode", "vaegan")
    _select(d, "model", "vaegan-utkface64-c4")
    drop_file(d, "#drop", DEMO_IMAGE)
    assert "astronaut-face.png" in _text(d, "chosen")
    d.find_element("id", "submit").click()
    row = until(lambda: d.find_element("css selector", "#jobs tbody tr"), 30, "the job's row")
    until(lambda: row.find_element("css selector", ".status").text == "done", 180, "the job to finish")
    assert d.execute_script("return document.querySelector('#jobs tbody tr progress').value") == 1
    assert row.find_element("css selector", ".a").text.endswith(" B")
    row.find_element("link text", "result").click()
    until(lambda: loaded(d, "img-left") and loaded(d, "img-right"), 30, "both images")
    assert loaded(d, "img-left") == loaded(d, "img-right") == 124  # the original and the decode, same scale
    ssim = float(_text(d, "m-ssim"))
    assert 0.5 < ssim < 1 and _text(d, "m-bytes").isdigit() and "dB" in _text(d, "m-psnr")
    assert _text(d, "m-model") == "vaegan, vaegan-utkface64-c4" and _text(d, "m-ms-ssim") != "n/a"
    _select(d, "zoom", "4")
    until(lambda: d.execute_script("return document.getElementById('img-left').getBoundingClientRect().width") == 496,
          10, "the 4x zoom")
    _select(d, "view", "slider")
    d.execute_script("const s = document.getElementById('slider'); s.value = 30; s.dispatchEvent(new Event('input'));")
    clip = d.execute_script("return document.getElementById('slider-left').style.clipPath")
    assert clip == "inset(0px 70% 0px 0px)" and d.find_element("id", "slider-view").is_displayed()
    assert not d.find_element("id", "side").is_displayed()  # one view at a time
    site["job_page"] = d.current_url
    site["ssim"] = ssim

    # the .ivc, downloaded by the browser, is what the CLI decodes to the PNG the page shows
    d.find_element("id", "dl-ivc").click()
    ivc = downloaded(site["downloads"], "astronaut-face.ivc")
    d.find_element("id", "dl-png").click()
    png = downloaded(site["downloads"], "astronaut-face.decoded.png")
    out = site["root"] / "cli.png"
    r = _cli("decode", ivc, "-o", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == png.read_bytes()
    job_id = site["job_page"].rstrip("/").rsplit("/", 1)[1]
    assert _api(site, f"/api/jobs/{job_id}/ivc").content == ivc.read_bytes()
    site["ivc"], site["png"] = ivc, out


def test_decompress_through_the_page(site: dict) -> None:
    if "ivc" not in site:
        pytest.skip("needs the .ivc of the compress test")
    d = site["driver"]
    d.get(site["url"] + "/decompress")
    d.find_element("id", "files").send_keys(str(site["ivc"]))
    d.find_element("id", "submit").click()
    row = until(lambda: d.find_element("css selector", "#jobs tbody tr"), 30, "the job's row")
    until(lambda: row.find_element("css selector", ".status").text == "done", 120, "the decode")
    assert row.find_element("css selector", ".a").text == "124×124"
    thumb = until(lambda: row.find_element("css selector", "img.thumb"), 10, "the decoded picture")
    src = thumb.get_attribute("src")
    until(lambda: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", thumb), 20, "it to load")
    assert _api(site, src.replace(site["url"], "")).content == site["png"].read_bytes()


def test_compare_through_the_page(site: dict) -> None:
    if "png" not in site:
        pytest.skip("needs the files of the compress test")
    d = site["driver"]
    d.get(site["url"] + "/compare")
    d.find_element("id", "original").send_keys(str(DEMO_IMAGE))
    d.find_element("id", "reconstruction").send_keys(str(site["png"]))
    d.find_element("id", "bitstream").send_keys(str(site["ivc"]))
    d.find_element("id", "submit").click()
    until(lambda: "/jobs/" in d.current_url, 30, "the compare job's page")
    until(lambda: d.find_elements("id", "m-ssim"), 120, "the metrics")
    ssim = float(_text(d, "m-ssim"))
    want = _cli("compare", DEMO_IMAGE, site["png"], "--bitstream", site["ivc"], "--json")
    assert want.returncode == 0, want.stderr
    import json

    assert abs(ssim - json.loads(want.stdout)["ssim"]) < 1e-4
    assert abs(ssim - site["ssim"]) < 0.02  # encode measured the same thing on the same pixels
    until(lambda: loaded(d, "img-left") and loaded(d, "img-right"), 30, "both images")


def test_cancel_a_running_job_from_the_page(site: dict) -> None:
    d = site["driver"]
    d.get(site["url"] + "/")
    _select(d, "mode", "inversion")
    d.find_element("id", "iters").send_keys("2000")
    d.find_element("id", "files").send_keys(str(DEMO_IMAGE))
    d.find_element("id", "submit").click()
    row = until(lambda: d.find_element("css selector", "#jobs tbody tr"), 30, "the job's row")
    until(lambda: row.find_element("css selector", ".status").text == "running" and
          float(row.find_element("css selector", "progress").get_attribute("value")) > 0, 120, "the search to start")
    row.find_element("css selector", "button.cancel").click()
    until(lambda: row.find_element("css selector", ".status").text == "cancelled", 30, "the cancel")
    assert "cancelled while running" in row.find_element("css selector", ".a").text
    time.sleep(0.1)
    assert not d.find_element("id", "error").is_displayed()
