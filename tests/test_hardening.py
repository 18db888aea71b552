"""Hardening, second round (first part): colliding outputs, race-free writes, bounded reads, a decode pixel limit,
a validated user registry, and per-item failures that never abort a batch."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from invcomp.formats import ivc as bitstream
from invcomp.coding import elias
from invcomp.formats import layered as layers
from invcomp.cli import cli
from invcomp.errors import BitstreamError, InvcompError
from invcomp.formats import photo as container
from invcomp.files import atomic_write

from .conftest import DEMO_IMAGE, cli_runner


def _run(*args: object) -> Any:
    return cli_runner().invoke(cli, [str(a) for a in args])


def _one_line_error(r: Any) -> str:
    assert r.exit_code == 1, r.stdout
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr
    return lines[-1]


def test_two_inputs_with_one_default_output_are_refused_up_front(tmp_path: Path) -> None:
    from PIL import Image

    Image.open(DEMO_IMAGE).save(tmp_path / "face.png")
    Image.open(DEMO_IMAGE).convert("RGB").save(tmp_path / "face.jpg")
    for extra in ([], ["--force"]):
        r = _run("encode", tmp_path / "face.png", tmp_path / "face.jpg", "--iters", 0, *extra)
        assert "would both write" in _one_line_error(r)
        assert not (tmp_path / "face.ivc").exists()


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(DEMO_IMAGE.read_bytes())
    r = _run("encode", src, "--iters", 0, "-o", src, "--force")
    assert "is an input" in _one_line_error(r)
    assert src.read_bytes() == DEMO_IMAGE.read_bytes()


def _race(path: Path) -> list[str]:
    """Two threads write ``path`` (no --force) at the same moment; what each got."""
    results: list[str] = []
    start = threading.Barrier(2)

    def write(data: bytes) -> None:
        start.wait()
        try:
            atomic_write(path, data)
            results.append("ok")
        except InvcompError:
            results.append("exists")

    threads = [threading.Thread(target=write, args=(bytes([i]) * 1000,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_concurrent_writers_exactly_one_wins(tmp_path: Path) -> None:
    for trial in range(20):
        path = tmp_path / f"out{trial}.ivc"
        assert sorted(_race(path)) == ["exists", "ok"]
        assert path.read_bytes() in (b"\x01" * 1000, b"\x02" * 1000)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _header_prefix() -> bytes:
    return b"IVC\x01" + b"\x52\xc4\x6b\x11" + bytes([0x08, 6 << 2])


def test_a_long_run_of_varint_continuation_bytes_is_refused_at_once() -> None:
    data = _header_prefix() + b"\x80" * 2_000_000
    t0 = time.perf_counter()
    with pytest.raises(BitstreamError, match="longer than 3 bytes"):
        bitstream.unpack(data)
    assert time.perf_counter() - t0 < 0.5  # it stops after 3 bytes, whatever the file's length


def test_a_file_larger_than_any_legal_one_is_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.ivc"
    with open(big, "wb") as f:
        f.truncate(max(bitstream.max_file_bytes(), layers.MAX_FILE_BYTES, container.MAX_FILE_BYTES) + 1)  # sparse:
        # nothing to read; the largest legal file of any kind (a photo file's background outgrows every mode's file)
    r = _run("decode", big)
    assert "larger than the largest legal .ivc file" in _one_line_error(r)
    # the bound is the real largest file: every field at its limit
    levels = [65535 // 2 - 1] * bitstream.MAX_LATENT  # not the largest payload, just a large legal one
    payload, nbits = elias.encode_levels(levels[:100], "gamma")
    h = bitstream.Header(model_id=b"\x00" * 4, latent_dim=100, resolution=64, width=65535, height=65535, bits=16,
                         coder="gamma", norm=1.0)
    assert len(bitstream.pack(h, payload, nbits)) < bitstream.max_file_bytes()


def test_decode_checks_the_declared_size_against_a_pixel_limit(tmp_path: Path) -> None:
    r = _run("encode", DEMO_IMAGE, "--model", "dcgan-utkface64", "--iters", 0, "-o", tmp_path / "a.ivc", "--coder", "elias")
    assert r.exit_code == 0, r.stderr
    header, payload, nbits = bitstream.unpack((tmp_path / "a.ivc").read_bytes())
    huge = bitstream.Header(**{**header.__dict__, "width": 16384, "height": 16384})
    (tmp_path / "huge.ivc").write_bytes(bitstream.pack(huge, payload, nbits))
    r = _run("decode", tmp_path / "huge.ivc", "-o", tmp_path / "huge.png")
    assert "over the limit of 64,000,000" in _one_line_error(r) and not (tmp_path / "huge.png").exists()
    assert _run("decode", tmp_path / "huge.ivc", "--native", "-o", tmp_path / "n.png").exit_code == 0
    r = _run("decode", tmp_path / "a.ivc", "--max-pixels", 100, "-o", tmp_path / "b.png")
    assert "--max-pixels" in _one_line_error(r)


@pytest.mark.parametrize("entry", ["a string", {"model": "x.pt", "sha256": "zz"}, {"sha256": "0" * 64}, [1, 2]])
def test_a_malformed_user_registry_is_one_line_naming_the_file_and_entry(entry: object) -> None:
    home = Path(os.environ["INVCOMP_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    reg = home / "models.json"
    reg.write_text(json.dumps({"mine": entry}))
    try:
        r = _run("models")
        line = _one_line_error(r)
        assert str(reg) in line and "'mine'" in line
    finally:
        reg.unlink()


def test_a_memory_error_while_loading_one_image_does_not_stop_the_batch(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from invcomp import imageio

    real = imageio.decode_image_bytes

    def flaky(data: bytes, *, name: str = "", max_pixels: int = 0) -> Any:
        if name.endswith("bad.png"):
            raise MemoryError("simulated")
        return real(data, name=name, max_pixels=max_pixels)

    monkeypatch.setattr(imageio, "decode_image_bytes", flaky)
    (tmp_path / "bad.png").write_bytes(DEMO_IMAGE.read_bytes())
    (tmp_path / "good.png").write_bytes(DEMO_IMAGE.read_bytes())
    r = _run("encode", tmp_path / "bad.png", tmp_path / "good.png", "--iters", 0, "-o", f"{tmp_path}/out/", "--json")
    assert r.exit_code == 1
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert "MemoryError" in rows[0]["error"] and "bytes" in rows[1]
    assert (tmp_path / "out" / "good.ivc").exists() and not (tmp_path / "out" / "bad.ivc").exists()


def test_a_mode_that_disagrees_with_its_model_id_fails_alone_in_a_batch(tmp_path: Path) -> None:
    r = _run("encode", DEMO_IMAGE, "--model", "dcgan-utkface64", "--iters", 0, "-o", tmp_path / "a.ivc", "--coder", "elias")
    assert r.exit_code == 0, r.stderr
    header, payload, nbits = bitstream.unpack((tmp_path / "a.ivc").read_bytes())
    liar = bitstream.Header(**{**header.__dict__, "mode": bitstream.MODE_VAEGAN})  # CRC-valid, DCGAN id, mode 1
    (tmp_path / "b.ivc").write_bytes(bitstream.pack(liar, payload, nbits))
    (tmp_path / "c.ivc").write_bytes((tmp_path / "a.ivc").read_bytes())
    r = _run("decode", tmp_path / "a.ivc", tmp_path / "b.ivc", tmp_path / "c.ivc", "-o", f"{tmp_path}/out/", "--json")
    assert r.exit_code == 1 and "Traceback" not in r.stderr and "internal error" not in r.stderr
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert "width" in rows[0] and "not a VAE-GAN codec" in rows[1]["error"] and "width" in rows[2]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.decoded.png", "c.decoded.png"]


@pytest.mark.parametrize(("name", "field", "value"), [("pgan-utkface64", "options", {"alpha": 0.5}),
                                                      ("dcgan-utkface64", "prior", "uniform"),
                                                      ("vaegan-utkface64-c4", "bits", 6)])
def test_an_edited_shipped_config_is_refused_by_name(name: str, field: str, value: object, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from invcomp.codecs import load_codec
    from invcomp.zoo import registry

    src = registry.pretrained_dir()
    dst = tmp_path / "pretrained"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.png", "*-encoder-*"))
    entries = json.loads((dst / "models.json").read_text())
    assert all(e.get("config_sha256") for e in entries.values())  # every shipped model records its config
    cfg = dst / entries[name]["config"]
    doc = json.loads(cfg.read_text())
    doc[field] = value if not isinstance(value, dict) else {**doc.get(field, {}), **value}
    cfg.write_text(json.dumps(doc))
    monkeypatch.setenv("INVCOMP_PRETRAINED", str(dst))
    with pytest.raises(InvcompError, match=f"config for model '{name}' does not match the registry sha256"):
        load_codec(name, for_decode=True)


def test_an_edited_warm_start_config_is_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from invcomp.codecs import load_codec
    from invcomp.zoo import registry

    dst = tmp_path / "pretrained"
    shutil.copytree(registry.pretrained_dir(), dst, ignore=shutil.ignore_patterns("*.png", "pgan-*", "vaegan-*"))
    entry = json.loads((dst / "models.json").read_text())["dcgan-utkface64"]["encoder"]
    assert entry["config_sha256"]
    cfg = dst / (entry["weights"][:-3] + ".json")
    doc = json.loads(cfg.read_text())
    doc["training"] = {**doc.get("training", {}), "note": "edited"}
    cfg.write_text(json.dumps(doc))
    monkeypatch.setenv("INVCOMP_PRETRAINED", str(dst))
    with pytest.raises(InvcompError, match="warm-start config for model 'dcgan-utkface64' does not match the sha256 in the registry"):
        load_codec("dcgan-utkface64")


def test_a_temporary_file_left_by_a_killed_writer_is_swept_by_the_next_write(tmp_path: Path) -> None:
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its PID names no live process now
    stale = tmp_path / f".a.ivc.{dead.pid}.k3j2_x.tmp"
    live = tmp_path / f".b.ivc.{os.getpid()}.q9w8e7.tmp"  # a live writer's: must be kept
    other = tmp_path / ".notes.tmp"  # not ours: must be kept
    for p in (stale, live, other):
        p.write_bytes(b"partial")
    atomic_write(tmp_path / "c.ivc", b"data")
    assert (tmp_path / "c.ivc").read_bytes() == b"data"
    assert not stale.exists() and live.exists() and other.exists()


def test_a_killed_encode_leaves_a_temporary_file_that_the_next_encode_removes(tmp_path: Path) -> None:
    """SIGKILL inside the write window (between the temporary file and the link): the next run sweeps it."""
    import signal
    import subprocess
    import sys

    code = ("import os, sys, time\n"
            "from invcomp import files as outputs\n"
            "real = os.link\n"
            "def slow(a, b):\n"
            "    print('in window', flush=True); time.sleep(60)\n"
            "os.link = slow\n"
            f"outputs.atomic_write(outputs.Path({str(tmp_path / 'x.ivc')!r}), b'data')\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "in window"
    p.send_signal(signal.SIGKILL)
    p.wait()
    left = [q.name for q in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".x.ivc.") and left[0].endswith(".tmp")
    atomic_write(tmp_path / "x.ivc", b"data")
    assert sorted(q.name for q in tmp_path.iterdir()) == ["x.ivc"]


def test_an_edited_config_beside_a_registered_pt_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from invcomp.zoo import registry

    monkeypatch.setenv("INVCOMP_HOME", str(tmp_path / "home"))
    entry = {e.name: e for e in registry.list_models()}["dcgan-utkface64"]
    pt = tmp_path / "mine.pt"
    shutil.copy(entry.weights, pt)
    shutil.copy(entry.config, pt.with_suffix(".json"))
    r = _run("models", "--register", "mine", "--model", pt)
    assert r.exit_code == 0, r.output
    assert registry.load_generator("mine").config.prior == "normal"
    doc = json.loads(pt.with_suffix(".json").read_text())
    doc["prior"] = "uniform"  # the weights, and so the model id, are unchanged
    pt.with_suffix(".json").write_text(json.dumps(doc))
    with pytest.raises(InvcompError, match="config for user model 'mine' does not match the one registered"):
        registry.load_generator("mine")
    pt.with_suffix(".json").unlink()  # a removed config (the config then inferred) changes the decode too
    with pytest.raises(InvcompError, match="config for user model 'mine'"):
        registry.load_generator("mine")


def _shipped_files() -> list[tuple[str, str]]:
    from invcomp.zoo import registry

    out = []
    for name, e in json.loads((registry.pretrained_dir() / "models.json").read_text()).items():
        out += [(name, e["weights"]), (name, e["config"])]
        if e.get("encoder"):
            out += [(name, e["encoder"]["weights"]), (name, e["encoder"]["weights"][:-3] + ".json")]
        if e.get("prior"):
            out.append((name, e["prior"]["file"]))
    return out


@pytest.fixture(scope="module")
def pretrained_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import shutil

    from invcomp.zoo import registry

    dst = tmp_path_factory.mktemp("tamper") / "pretrained"
    shutil.copytree(registry.pretrained_dir(), dst, ignore=shutil.ignore_patterns("*.png", "*.log"))
    return dst


@pytest.mark.parametrize(("name", "file"), _shipped_files())
def test_a_changed_byte_in_any_shipped_file_is_refused_by_name(name: str, file: str, pretrained_copy: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """First, middle and last byte of every shipped weight, config and prior file:
    every change is refused, naming the model, before anything is unpickled."""
    import torch

    from invcomp.codecs import load_codec

    monkeypatch.setenv("INVCOMP_PRETRAINED", str(pretrained_copy))
    path = pretrained_copy / file
    original = path.read_bytes()
    # SC encodes only with something to preserve; an alias (NAME@SHA8, an earlier release) only decodes
    opts = {"for_decode": True} if name.startswith("sc-") or "@" in name else {}
    load_codec(name, **opts)  # the untouched copy loads

    real_load = torch.load

    def no_unpickling(f: object, *a: object, **k: object) -> object:
        if Path(str(f)) == path:
            raise AssertionError("a tampered file reached torch.load")
        return real_load(f, *a, **k)

    try:
        for i in (0, len(original) // 2, len(original) - 1):
            b = bytearray(original)
            b[i] ^= 0x01
            path.write_bytes(bytes(b))
            with monkeypatch.context() as m:
                m.setattr(torch, "load", no_unpickling)
                with pytest.raises(InvcompError, match=f"for model '{name}' do(es)? not match"):
                    load_codec(name, **opts)
    finally:
        path.write_bytes(original)
