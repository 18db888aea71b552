"""``invcomp batch``: the manifest, resumability, retries, and the same bytes as ``invcomp encode``/``decode``,
on local processes and on a real local Ray cluster (the Ray tests skip when the ``ray`` extra is absent).

The expectations are independent of the batch code: files are compared with what the ordinary
``invcomp encode`` / ``decode`` commands write, and the manifest is read back as plain JSON lines.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from .conftest import REPO, cli_runner
from invcomp.batch import JobOptions, run
from invcomp.batch import manifest as mf
from invcomp.batch.runner import JobReport, run_job
from invcomp.cli import cli
from invcomp.service.decode import decode_defaults
from invcomp.service.encode import codec_defaults

FAST = ["--model", "dcgan-utkface64", "--iters", "5"]  # a real search, short enough for CI
FAST_OPTS = codec_defaults(model="dcgan-utkface64", iters=5)


def _cli(*args: Any) -> Any:
    return cli_runner().invoke(cli, [str(a) for a in args])


def _images(folder: Path, n: int, start: int = 0) -> list[Path]:
    """``n`` small distinct pictures (seeded gradients and noise, various sizes), PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(start, start + n):
        rng = np.random.default_rng(k)
        w, h = 40 + k % 5 * 6, 40 + k % 3 * 8
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), k * 6 % 255)], -1)
        img = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        p = folder / f"img{k:03d}.png"
        Image.fromarray(img).save(p)
        out.append(p)
    return out


def _copy(images: list[Path], folder: Path) -> Path:
    """``folder`` holding copies of ``images``."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in images:
        (folder / p.name).write_bytes(p.read_bytes())
    return folder


def _rows(manifest: Path) -> list[dict]:
    """The manifest's lines as JSON; a torn last line (being appended while we read) is left out."""
    text = manifest.read_text()
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if lines and not text.endswith("\n"):
        lines.pop()
    return [json.loads(line) for line in lines]


def _state(manifest: Path) -> dict[str, dict]:
    state: dict[str, dict] = {}
    for r in _rows(manifest):
        state[r["id"]] = {**state.get(r["id"], {}), **r}
    return state


def _reference(images: list[Path], out: Path, *args: str) -> dict[str, bytes]:
    """What plain ``invcomp encode`` writes for each image, by file name stem."""
    r = _cli("encode", *images, "-o", f"{out}/", *args)
    assert r.exit_code == 0, r.stderr
    return {p.stem: (out / f"{p.stem}.ivc").read_bytes() for p in images}


def _no_temporaries(folder: Path) -> None:
    assert not [p for p in folder.rglob(".*.tmp")], "a half-written temporary file was left"


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict[str, bytes]]:
    """40 small images and their single-process ``invcomp encode`` files (fast settings)."""
    root = tmp_path_factory.mktemp("faces")
    images = _images(root / "src", 40)
    return images, _reference(images, root / "ref", *FAST)


# --- without Ray: local processes ------------------------------------------------------------------------


def test_local_processes_write_what_encode_writes_and_a_rerun_skips_them(faces: Any, tmp_path: Path) -> None:
    images, ref = faces
    src = _copy(images[:8], tmp_path / "src")
    r = _cli("batch", "encode", src, "--out", tmp_path / "out", "--ray", "none", "--workers", "2", "--batch-size", 3,
             "--json", *FAST)
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["done"], report["failed"], report["engine"], report["workers"]) == (8, 0, "local", 2)
    for p in images[:8]:
        assert (tmp_path / "out" / f"{p.stem}.ivc").read_bytes() == ref[p.stem]
    rows = _rows(tmp_path / "out" / "manifest.jsonl")  # compacted: one line per item
    assert sorted(r["id"] for r in rows) == sorted(p.name for p in images[:8])
    for row in rows:
        assert row["status"] == "done" and row["attempts"] == 1 and row["error"] is None
        assert row["bytes"] == len(ref[Path(row["id"]).stem]) and 0 < row["metrics"]["ssim"] <= 1
    stats = {p.name: os.stat(p) for p in (tmp_path / "out").glob("*.ivc")}
    (tmp_path / "out" / "img003.ivc").unlink()  # a done item whose file is gone is done again
    r = _cli("batch", "encode", src, "--out", tmp_path / "out", "--ray", "none", "--json", *FAST)
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["done"], report["skipped"]) == (1, 7)
    assert (tmp_path / "out" / "img003.ivc").read_bytes() == ref["img003"]
    for name, st in stats.items():
        if name != "img003.ivc":
            now = os.stat(tmp_path / "out" / name)
            assert (now.st_ino, now.st_mtime_ns) == (st.st_ino, st.st_mtime_ns), f"{name} was written again"
    assert _state(tmp_path / "out" / "manifest.jsonl")["img003.png"]["attempts"] == 2
    _no_temporaries(tmp_path / "out")


def test_a_corrupt_input_is_recorded_as_failed_and_the_rest_succeed(faces: Any, tmp_path: Path) -> None:
    images, ref = faces
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for p in images[:3]:
        (src / "sub" / p.name).write_bytes(p.read_bytes())
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    r = _cli("batch", "encode", src, "--out", tmp_path / "out", "--ray", "none", "--batch-size", 4, *FAST)
    assert r.exit_code == 1
    assert "broken.png" in r.stderr and "Traceback" not in r.stderr
    state = _state(tmp_path / "out" / "manifest.jsonl")
    assert state["broken.png"]["status"] == "failed" and state["broken.png"]["attempts"] == 1  # bad input: no retry
    assert "\n" not in state["broken.png"]["error"] and state["broken.png"]["error"]
    assert not (tmp_path / "out" / "broken.ivc").exists()
    for p in images[:3]:  # the folder's layout is mirrored
        assert state[f"sub/{p.name}"]["status"] == "done"
        assert (tmp_path / "out" / "sub" / f"{p.stem}.ivc").read_bytes() == ref[p.stem]


def test_a_glob_and_jsonl_and_parquet_manifests_are_sources(faces: Any, tmp_path: Path) -> None:
    images, ref = faces
    r = _cli("batch", "encode", str(images[0].parent / "img00[0-2].png"), "--out", tmp_path / "g", "--ray", "none",
             "--json", *FAST)
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "g").glob("*.ivc")) == ["img000.ivc", "img001.ivc", "img002.ivc"]
    _copy(images[3:5], tmp_path / "src")
    listing = tmp_path / "inputs.jsonl"
    listing.write_text("".join(json.dumps({"path": f"src/{p.name}"}) + "\n" for p in images[3:5]))
    r = _cli("batch", "encode", listing, "--out", tmp_path / "j", "--ray", "none", *FAST)
    assert r.exit_code == 0, r.stderr
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ["a/first", "b/second"], "path": [str(images[5]), str(images[6])]}),
                   tmp_path / "inputs.parquet")
    r = _cli("batch", "encode", tmp_path / "inputs.parquet", "--out", tmp_path / "p", "--ray", "none",
             "--manifest", tmp_path / "state.parquet", *FAST)
    assert r.exit_code == 0, r.stderr
    assert (tmp_path / "p" / "a" / "first.ivc").read_bytes() == ref["img005"]
    assert (tmp_path / "p" / "b" / "second.ivc").read_bytes() == ref["img006"]
    state = {r["id"]: r for r in pq.read_table(tmp_path / "state.parquet").to_pylist()}
    assert set(state) == {"a/first", "b/second"} and {r["status"] for r in state.values()} == {"done"}
    for p in images[3:5]:
        assert (tmp_path / "j" / "src" / f"{p.stem}.ivc").read_bytes() == ref[p.stem]


def test_bad_usage_is_one_line_and_exit_2(faces: Any, tmp_path: Path) -> None:
    images, _ = faces
    src = tmp_path / "src"
    src.mkdir()
    Image.open(images[0]).save(src / "a.png")
    Image.open(images[1]).save(src / "a.jpg")  # both would write a.ivc
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "x.png"}\nnot json\n{"path": "y.png"}\n')
    for args in ([src], [tmp_path / "missing"], [bad], [str(tmp_path / "nothing-*.png")]):
        r = _cli("batch", "encode", *args, "--out", tmp_path / "out", "--ray", "none", *FAST)
        assert r.exit_code == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "would both write" in _cli("batch", "encode", src, "--out", tmp_path / "out", "--ray", "none", *FAST).stderr
    assert not (tmp_path / "out" / "manifest.jsonl").exists()
    r = _cli("batch", "encode", images[0].parent, "--out", tmp_path / "o", "--ray", "none", "--gpus-per-worker", 1, *FAST)
    assert r.exit_code == 2 and "--gpus-per-worker" in r.stderr


def test_a_rerun_with_other_settings_is_refused(faces: Any, tmp_path: Path) -> None:
    images, _ = faces
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(images[0].read_bytes())
    assert _cli("batch", "encode", src, "--out", tmp_path / "out", "--ray", "none", *FAST).exit_code == 0
    r = _cli("batch", "encode", src, "--out", tmp_path / "out", "--ray", "none", "--model", "dcgan-utkface64",
             "--iters", "6")
    assert r.exit_code == 2 and "iters" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_an_output_that_is_not_the_jobs_is_not_overwritten(faces: Any, tmp_path: Path) -> None:
    images, ref = faces
    src = _copy(images[:2], tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "img000.ivc").write_bytes(b"someone else's file")
    r = _cli("batch", "encode", src, "--out", tmp_path / "out", "--ray", "none", *FAST)
    assert r.exit_code == 1 and "exists (use --force to overwrite)" in r.stderr
    assert (tmp_path / "out" / "img000.ivc").read_bytes() == b"someone else's file"
    assert (tmp_path / "out" / "img001.ivc").read_bytes() == ref["img001"]
    r = _cli("batch", "encode", src, "--out", tmp_path / "out", "--ray", "none", "--force", *FAST)
    assert r.exit_code == 0 and (tmp_path / "out" / "img000.ivc").read_bytes() == ref["img000"]


def test_ray_flags_without_ray_are_one_line_and_the_default_runs_local_processes(
        faces: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, ref = faces
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(images[0].read_bytes())
    for flag in ("local", "auto-but-an-address:6379"):
        r = _cli("batch", "encode", src, "--out", tmp_path / "out", "--ray", flag, *FAST)
        assert r.exit_code == 2 and "needs Ray" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = _cli("batch", "encode", src, "--out", tmp_path / "out", "--json", *FAST)
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["engine"] == "local"
    assert (tmp_path / "out" / "a.ivc").read_bytes() == ref["img000"]


class _FlakyEngine:
    """An in-process engine whose batches are lost (as a dead worker's) the first ``lose`` times."""

    name, workers = "flaky", 1

    def __init__(self, lose: int) -> None:
        self.lose, self.calls, self._next = lose, 0, 0

    def submit(self, batch: list) -> int:
        self._next += 1
        setattr(self, f"b{self._next}", batch)
        return self._next

    def wait(self, handles: list, timeout: float) -> list:
        h = handles[0]
        batch, self.calls = getattr(self, f"b{h}"), self.calls + 1
        if self.calls <= self.lose:
            return [(h, RuntimeError("worker died"))]
        for it in batch:
            Path(it.output).write_bytes(b"x")
        return [(h, {"results": [{"id": it.id, "ok": True, "row": {"bytes": 1}} for it in batch],
                     "load_seconds": 0.0, "busy_seconds": 0.0})]

    def close(self) -> None:
        pass


@pytest.mark.parametrize("lose, status, attempts", [(2, "done", 3), (3, "failed", 3)])
def test_lost_batches_are_retried_up_to_the_limit(tmp_path: Path, lose: int, status: str, attempts: int) -> None:
    state = {"a": mf.new_row("a", str(tmp_path / "a.png"), str(tmp_path / "a.ivc"))}
    store = mf.Store(tmp_path / "m.jsonl", state)
    report = run_job(store, list(state.values()), _FlakyEngine(lose), batch_size=4, max_attempts=3, report=JobReport(),
                     progress=False)
    row = _state(tmp_path / "m.jsonl")["a"]
    assert (row["status"], row["attempts"]) == (status, attempts)
    assert report.worker_losses == min(lose, 3) and (report.done, report.failed) == ((1, 0) if status == "done" else (0, 1))
    if status == "failed":
        assert "worker lost: RuntimeError: worker died" == row["error"]


def test_a_torn_last_journal_line_is_ignored_and_other_bad_lines_are_refused(tmp_path: Path) -> None:
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps(mf.new_row("a", "a.png", "a.ivc")) + "\n" + '{"id": "a", "status": "do')
    assert mf.Store.open(m)[0]["a"]["status"] == "pending"
    m.write_text('{"id": "a"}\n{"id": \n{"id": "b"}\n')
    with pytest.raises(mf.UsageError, match="line 2"):
        mf.Store.open(m)


def test_a_second_run_on_a_manifest_in_use_is_refused(faces: Any, tmp_path: Path) -> None:
    images, _ = faces
    src = _copy(images[:1], tmp_path / "src")
    held = mf.lock(tmp_path / "out" / "manifest.jsonl")  # as a running driver holds it
    try:
        r = _cli("batch", "encode", src, "--out", tmp_path / "out", "--ray", "none", *FAST)
    finally:
        held.close()
    assert r.exit_code == 2 and "in use by another run" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "manifest.jsonl").exists() and not list((tmp_path / "out").glob("*.ivc"))


def test_an_image_as_src_and_an_output_outside_out_are_refused(faces: Any, tmp_path: Path) -> None:
    images, _ = faces
    r = _cli("batch", "encode", images[0], "--out", tmp_path / "out", "--ray", "none", *FAST)
    assert r.exit_code == 2 and "is a file, not a folder" in r.stderr, r.stderr
    listing = tmp_path / "inputs.jsonl"
    listing.write_text(json.dumps({"path": str(images[0]), "output": "../escaped.ivc"}) + "\n")
    r = _cli("batch", "encode", listing, "--out", tmp_path / "out", "--ray", "none", *FAST)
    assert r.exit_code == 2 and "outside --out" in r.stderr, r.stderr
    assert not (tmp_path / "escaped.ivc").exists() and not (tmp_path / "out").exists()


def test_an_unreachable_ray_address_fails_fast_and_writes_nothing(faces: Any, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    images, _ = faces
    t0 = time.time()
    r = _cli("batch", "encode", images[0].parent, "--out", tmp_path / "out", "--ray", "127.0.0.1:1", *FAST)
    assert r.exit_code == 2 and "cannot reach Ray at 127.0.0.1:1" in r.stderr, r.stderr
    assert time.time() - t0 < 60 and not (tmp_path / "out").exists()


def _wait_for(manifest: Path, done: int, proc: subprocess.Popen, limit: float = 360) -> None:  # a loaded machine is slow
    t0 = time.time()
    while time.time() - t0 < limit:
        if manifest.exists() and sum(r.get("status") == "done" for r in _state(manifest).values()) >= done:
            return
        assert proc.poll() is None, "the driver ended before it could be killed"
        time.sleep(0.05)
    raise AssertionError("the driver did not get far enough")


def _kill_driver_and_rerun(tmp_path: Path, images: list[Path], ray_flag: str) -> None:
    """Start the driver as a process, SIGKILL it (and its workers) after some items, rerun: only what was not
    done runs again, and every file is the one a single uninterrupted run writes."""
    src, out = _copy(images, tmp_path / "src"), tmp_path / "out"
    args = ["--model", "dcgan-utkface64", "--iters", "30"]  # slow enough to be killed mid-job
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "invcomp.cli", "batch", "encode", str(src), "--out", str(out),
                             "--ray", ray_flag, "--workers", "1", "--batch-size", "1", *args],
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(out / "manifest.jsonl", 2, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _state(out / "manifest.jsonl")
    done = {i for i, r in before.items() if r["status"] == "done"}
    assert 2 <= len(done) < len(images)
    stats = {i: os.stat(before[i]["output"]) for i in done}
    report, _ = run("encode", str(src), out, options=codec_defaults(model="dcgan-utkface64", iters=30),
                    job=JobOptions(ray=ray_flag, workers=2, batch_size=2, progress=False))
    assert (report.skipped, report.done, report.failed) == (len(done), len(images) - len(done), 0)
    after = _rows(out / "manifest.jsonl")
    assert len(after) == len(images) and {r["status"] for r in after} == {"done"}
    for r in after:
        if r["id"] in done:  # finished before the kill: not run again
            st = os.stat(r["output"])
            assert (st.st_ino, st.st_mtime_ns) == (stats[r["id"]].st_ino, stats[r["id"]].st_mtime_ns)
            assert r["attempts"] == 1
        else:
            assert r["attempts"] == before[r["id"]]["attempts"] + 1
    ref = _reference(images, tmp_path / "ref", *args)
    for p in images:
        assert (out / f"{p.stem}.ivc").read_bytes() == ref[p.stem]
    _no_temporaries(out)


def test_a_local_worker_killed_mid_job_is_replaced_and_its_items_redone(faces: Any, tmp_path: Path) -> None:
    images, _ = faces
    src = _copy(images[:6], tmp_path / "src")
    killed: list[int] = []

    def kill_a_worker(engine: Any, n_results: int) -> None:
        if n_results == 1:
            killed.append(engine.pids()[0])
            os.kill(killed[0], signal.SIGKILL)

    report, _ = run("encode", str(src), tmp_path / "out", options=codec_defaults(model="dcgan-utkface64", iters=30),
                    on_result=kill_a_worker, job=JobOptions(ray="none", workers=2, batch_size=1, progress=False))
    assert killed and report.worker_losses >= 1 and (report.done, report.failed) == (6, 0)
    rows = _rows(tmp_path / "out" / "manifest.jsonl")
    assert len(rows) == 6 and {r["status"] for r in rows} == {"done"} and max(r["attempts"] for r in rows) == 2
    ref = _reference(images[:6], tmp_path / "ref", "--model", "dcgan-utkface64", "--iters", "30")
    for p in images[:6]:
        assert (tmp_path / "out" / f"{p.stem}.ivc").read_bytes() == ref[p.stem], p.name
    _no_temporaries(tmp_path / "out")


def test_killing_the_driver_then_rerunning_redoes_only_the_unfinished_items(faces: Any, tmp_path: Path) -> None:
    _kill_driver_and_rerun(tmp_path, faces[0][:6], "none")


# --- on a real local Ray cluster ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Any:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_encodes_40_images_to_the_bytes_of_single_process_encodes(ray_cluster: Any, faces: Any,
                                                                       tmp_path: Path) -> None:
    images, ref = faces
    r = _cli("batch", "encode", images[0].parent, "--out", tmp_path / "out", "--ray", "auto", "--workers", "2",
             "--batch-size", "4", "--json", *FAST)
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["engine"], report["done"], report["failed"], report["worker_losses"]) == ("ray", 40, 0, 0)
    written = sorted((tmp_path / "out").glob("*.ivc"))
    assert len(written) == 40
    for p in images:
        assert (tmp_path / "out" / f"{p.stem}.ivc").read_bytes() == ref[p.stem], p.name
    assert len(_rows(tmp_path / "out" / "manifest.jsonl")) == 40


def test_killing_a_ray_worker_mid_job_loses_and_duplicates_nothing(ray_cluster: Any, faces: Any, tmp_path: Path) -> None:
    images, _ = faces
    images = images[:10]
    src = _copy(images, tmp_path / "src")
    opts = codec_defaults(model="dcgan-utkface64", iters=20)
    killed: list[Any] = []

    def kill_a_busy_worker(engine: Any, n_results: int) -> None:
        if n_results == 1:
            victim = engine.busy_actors()[0]
            ray_cluster.kill(victim)
            killed.append(victim)

    report, store = run("encode", str(src), tmp_path / "out", options=opts, on_result=kill_a_busy_worker,
                        job=JobOptions(ray="auto", workers=2, batch_size=1, progress=False))
    assert killed and report.worker_losses >= 1 and report.retried >= 1
    assert (report.done, report.failed) == (10, 0)
    rows = _rows(tmp_path / "out" / "manifest.jsonl")
    assert sorted(r["id"] for r in rows) == sorted(p.name for p in images)  # each item once
    assert {r["status"] for r in rows} == {"done"} and max(r["attempts"] for r in rows) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".ivc") == sorted(
        f"{p.stem}.ivc" for p in images)
    _no_temporaries(tmp_path / "out")
    ref = _reference(images, tmp_path / "ref", "--model", "dcgan-utkface64", "--iters", "20")
    for p in images:
        assert (tmp_path / "out" / f"{p.stem}.ivc").read_bytes() == ref[p.stem], p.name


def test_killing_a_ray_driver_then_rerunning_redoes_only_the_unfinished_items(ray_cluster: Any, faces: Any,
                                                                               tmp_path: Path) -> None:
    address = ray_cluster.get_runtime_context().gcs_address
    _kill_driver_and_rerun(tmp_path, faces[0][10:15], address)


def test_ray_decode_of_a_mixed_folder_with_a_truncated_file(ray_cluster: Any, faces: Any, tmp_path: Path) -> None:
    images, ref = faces
    src = tmp_path / "coded"
    (src / "vae").mkdir(parents=True)
    for p in images[:3]:
        (src / f"{p.stem}.ivc").write_bytes(ref[p.stem])
    r = _cli("encode", images[3], "--mode", "vaegan", "--channels", "4", "-o", src / "vae" / "v.ivc")
    assert r.exit_code == 0, r.stderr
    (src / "cut.ivc").write_bytes(ref[images[4].stem][:9])
    (src / "notes.txt").write_text("not a coded file: not an input")
    r = _cli("batch", "decode", src, "--out", tmp_path / "out", "--ray", "auto", "--workers", "2", "--json")
    assert r.exit_code == 1
    report = json.loads(r.stdout)
    assert (report["done"], report["failed"]) == (4, 1)
    state = _state(tmp_path / "out" / "manifest.jsonl")
    assert state["cut.ivc"]["status"] == "failed" and state["cut.ivc"]["attempts"] == 1
    assert "\n" not in state["cut.ivc"]["error"] and not (tmp_path / "out" / "cut.png").exists()
    for name in ("img000", "img001", "img002", "vae/v"):
        single = tmp_path / "single" / f"{name}.png"
        single.parent.mkdir(parents=True, exist_ok=True)
        assert _cli("decode", src / f"{name}.ivc", "-o", single).exit_code == 0
        assert (tmp_path / "out" / f"{name}.png").read_bytes() == single.read_bytes(), name
    assert decode_defaults()["native"] is False


def test_gpus_the_cluster_lacks_are_refused_before_any_manifest(ray_cluster: Any, faces: Any, tmp_path: Path) -> None:
    if ray_cluster.cluster_resources().get("GPU", 0):
        pytest.skip("this Ray cluster has a GPU")
    images, _ = faces
    r = _cli("batch", "encode", images[0].parent, "--out", tmp_path / "out", "--gpus-per-worker", 1, *FAST)
    assert r.exit_code == 2 and "no GPU to give" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ray_with_the_default_settings_writes_what_encode_writes(ray_cluster: Any, faces: Any, tmp_path: Path) -> None:
    images, _ = faces
    src = _copy(images[20:22], tmp_path / "src")
    r = _cli("batch", "encode", src, "--out", tmp_path / "out", "--workers", "2", "--batch-size", "1")
    assert r.exit_code == 0, r.stderr
    ref = _reference(images[20:22], tmp_path / "ref")
    for p in images[20:22]:
        assert (tmp_path / "out" / f"{p.stem}.ivc").read_bytes() == ref[p.stem], p.name


# --- refusals and shortcuts that need no worker ------------------------------------------------------------


def test_other_settings_name_only_the_options_that_differ(tmp_path: Path) -> None:
    m = tmp_path / "out" / "manifest.jsonl"
    job = {"kind": "encode", "options": FAST_OPTS}  # preserve_box is () in memory, [] once stored as JSON
    assert FAST_OPTS["preserve_box"] == ()
    mf.check_job(m, job, existed=False)
    mf.check_job(m, job, existed=True)  # the same settings: accepted
    with pytest.raises(mf.UsageError, match=r"other settings \(iters\);"):
        mf.check_job(m, {"kind": "encode", "options": {**FAST_OPTS, "iters": 6}}, existed=True)
    with pytest.raises(mf.UsageError, match=r"other settings \(preserve_box\);"):  # a true difference is named
        mf.check_job(m, {"kind": "encode", "options": {**FAST_OPTS, "preserve_box": ("0,0,8,8",)}}, existed=True)
    with pytest.raises(mf.UsageError, match=r"other settings \(kind\);"):
        mf.check_job(m, {"kind": "decode", "options": FAST_OPTS}, existed=True)


@pytest.mark.parametrize("kind", ["encode", "decode"])
@pytest.mark.parametrize("where", ["out", "manifest"])
def test_an_out_or_manifest_that_cannot_be_written_is_one_line(tmp_path: Path, kind: str, where: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    if kind == "encode":
        _images(src, 1)
    else:
        (src / "a.ivc").write_bytes(b"IVC not really")
    blocker = tmp_path / "file.txt"  # a regular file: nothing can be created under it, even by root
    blocker.write_text("not a folder")
    out, extra = (blocker / "sub", []) if where == "out" else (tmp_path / "out", ["--manifest", blocker / "m.jsonl"])
    r = _cli("batch", kind, src, "--out", out, *extra, "--ray", "none", *(FAST if kind == "encode" else []))
    assert r.exit_code == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "internal error" not in r.stderr, r.stderr
    assert f"{blocker} is a file, not a folder" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()


def test_a_resume_with_nothing_left_to_do_starts_no_worker_and_loads_no_codec(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from invcomp.batch import job as batch_job
    from invcomp.batch import ray_engine
    from invcomp.service import encode as cli_encode

    src, out = tmp_path / "src", tmp_path / "out"
    _images(src, 2)
    r = _cli("batch", "encode", src, "--out", out, "--ray", "none", *FAST)
    assert r.exit_code == 0, r.stderr
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("called on a job with nothing left to do")

    monkeypatch.setattr(ray_engine, "have_ray", lambda: True)  # --ray auto would start a local Ray
    monkeypatch.setattr(ray_engine, "connect", forbidden)
    monkeypatch.setattr(batch_job, "LocalEngine", forbidden)
    monkeypatch.setattr(cli_encode, "build_encoder", forbidden)
    for ray_flag in ("auto", "none"):
        r = _cli("batch", "encode", src, "--out", out, "--ray", ray_flag, "--json", *FAST)
        assert r.exit_code == 0, r.stderr
        report = json.loads(r.stdout)
        assert (report["done"], report["skipped"], report["failed"], report["total"]) == (0, 2, 0, 2)
        assert "2 already done" in r.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing was written
    r = _cli("batch", "encode", src, "--out", out, "--ray", "none", "--model", "dcgan-utkface64", "--iters", 6)
    assert r.exit_code == 2 and "other settings (iters)" in r.stderr  # other settings are still refused
