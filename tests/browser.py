"""Headless Chromium for the web app's browser tests and screenshots: Debian's ``chromium`` and ``chromium-driver``
through Selenium. :func:`why_not` says why no browser can run here (then the tests skip with that reason)."""
from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _first(paths: tuple[str, ...], name: str) -> Optional[str]:
    return next((p for p in paths if os.access(p, os.X_OK)), None) or shutil.which(name)


def why_not() -> Optional[str]:
    """``None`` when a headless Chromium can be driven here, else the reason."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install 'invcomp[test]')"
    if _first(CHROMIUM, "chromium") is None:
        return "no Chromium here: apt-get install -y chromium chromium-driver (.ci/run does it where apt works)"
    if _first(DRIVER, "chromedriver") is None:
        return "no chromedriver here: apt-get install -y chromium-driver"
    return None


def chrome(downloads: Path, width: int = 1280, height: int = 1000) -> Any:
    """A headless Chromium that saves downloads to ``downloads``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = _first(CHROMIUM, "chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", f"--window-size={width},{height}",
                "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(_first(DRIVER, "chromedriver")), options=opts)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.set_page_load_timeout(60)
    return driver


def until(fn: Callable[[], Any], timeout: float = 120.0, what: str = "condition") -> Any:
    """Poll ``fn`` until it returns something truthy (errors count as not yet)."""
    t0, last = time.monotonic(), None
    while time.monotonic() - t0 < timeout:
        try:
            got = fn()
            if got:
                return got
        except Exception as e:  # noqa: BLE001  (a stale element, a page mid-load)
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


def drop_file(driver: Any, selector: str, path: Path, mime: str = "image/png") -> None:
    """Drop ``path`` on the element, as a user dragging it from a file manager would (a DataTransfer drop)."""
    data = base64.b64encode(path.read_bytes()).decode()
    driver.execute_script("""
        const [sel, b64, name, mime] = arguments;
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: mime}));
        const target = document.querySelector(sel);
        for (const type of ["dragenter", "dragover", "drop"])
            target.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
    """, selector, data, path.name, mime)


def downloaded(folder: Path, name: str, timeout: float = 60.0) -> Path:
    """Wait for a finished download (no ``.crdownload`` beside it)."""
    target = folder / name
    until(lambda: target.is_file() and not list(folder.glob("*.crdownload")), timeout, f"the download of {name}")
    return target


def loaded(driver: Any, img_id: str) -> int:
    """The natural width of an ``<img>`` once it has loaded (0 while it has not)."""
    return driver.execute_script("const i = document.getElementById(arguments[0]); "
                                 "return i && i.complete ? i.naturalWidth : 0;", img_id)


def screenshot(driver: Any, path: Path, colours: int = 256) -> None:
    """The page as a 256-colour PNG (a few tens of kB: the repo stays small)."""
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    img.quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
