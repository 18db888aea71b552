"""Screenshots of ``invcomp serve`` for the README, taken with the headless Chromium the browser tests drive.

    python experiments/web_screenshots.py --out experiments/results/web

Starts a server on a fresh data folder (one worker, the repo's bench results), drops the demo face on the
Compress page with the default settings (``--mode auto``), and saves 256-colour PNGs of: the Compress page
with the job's live progress, the result page (side by side, 4x zoom), its before/after slider, and a
Benchmarks page.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "experiments" / "results" / "web")
    ap.add_argument("--mode", default="auto")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from selenium.webdriver.support.ui import Select

    from tests.browser import chrome, drop_file, loaded, screenshot, until, why_not
    from tests.webutil import free_port, start_server, stop, wait_up

    reason = why_not()
    if reason:
        raise SystemExit(reason)
    args.out.mkdir(parents=True, exist_ok=True)
    face = REPO / "experiments" / "data" / "portraits" / "astronaut-face.png"
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = start_server(Path(tmp) / "data", port, "--workers", "1", "--bench", str(REPO / "experiments" / "results"))
        d = None
        try:
            wait_up(port, proc)
            d = chrome(Path(tmp) / "downloads", 1200, 860)
            url = f"http://127.0.0.1:{port}"
            d.get(url + "/")
            Select(d.find_element("id", "mode")).select_by_value(args.mode)
            drop_file(d, "#drop", face)
            d.find_element("id", "submit").click()
            row = until(lambda: d.find_element("css selector", "#jobs tbody tr"), 30, "the job's row")
            until(lambda: float(row.find_element("css selector", "progress").get_attribute("value")) > 0.3, 600,
                  "progress")
            screenshot(d, args.out / "compress.png")
            until(lambda: row.find_element("css selector", ".status").text == "done", 900, "the job")
            row.find_element("link text", "result").click()
            until(lambda: loaded(d, "img-left") and loaded(d, "img-right"), 30, "the images")
            Select(d.find_element("id", "zoom")).select_by_value("2")
            screenshot(d, args.out / "result.png")
            Select(d.find_element("id", "view")).select_by_value("slider")
            d.execute_script("const s = document.getElementById('slider'); s.value = 50; s.dispatchEvent(new Event('input'));")
            d.execute_script("window.scrollTo(0, 0)")
            screenshot(d, args.out / "slider.png")
            d.get(url + "/benchmarks/bench_modes_holdout16")
            screenshot(d, args.out / "benchmarks.png")
        finally:
            if d is not None:
                d.quit()
            stop(proc)
    for f in sorted(args.out.glob("*.png")):
        print(f"{f}: {f.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
