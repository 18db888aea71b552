"""Tests of the bench's newer anchors and metric: CompressAI peers, JPEG XL, ThumbHash, BlurHash, identity.

A tiny CompressAI model trained here for a few steps (no ../shared) codes through the bench; the identity metric
runs on the two committed portraits (different people). Each part skips cleanly when its extra is missing.
"""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from invcomp.classic import placeholders as tiny
from invcomp.errors import InvcompError

from .conftest import cli_runner

ROOT = Path(__file__).resolve().parents[1]
PORTRAITS = ROOT / "experiments" / "data" / "portraits"


def smooth(seed: int, w: int = 64, h: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    a = np.stack([x * 255 / w, y * 255 / h, 128 + 60 * np.sin(x / 7.0)], -1) + rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB")


# --- ThumbHash and BlurHash ------------------------------------------------------------------------------------

def test_thumbhash_decoder_matches_the_reference_port() -> None:
    # thumbhash-python (a port of the reference Rust crate) decoded these hashes; ours must give the same pixels.
    for e in json.loads((ROOT / "tests" / "data" / "thumbhash_reference.json").read_text()):
        ours = tiny.thumbhash_rgba(bytes.fromhex(e["hash"]))
        ref = np.frombuffer(bytes.fromhex(e["rgba"]), np.uint8).reshape(e["h"], e["w"], 4)
        assert ours.shape == ref.shape
        assert np.abs(ours.astype(int) - ref).max() <= 1


def test_thumbhash_round_trip() -> None:
    pytest.importorskip("thumbhash")
    img = Image.new("RGB", (64, 64), (200, 40, 90))
    data = tiny.thumbhash_encode(img)
    assert 20 <= len(data) <= 30
    out = np.asarray(tiny.thumbhash_decode(data), dtype=float)
    assert max(out.shape[:2]) == 32
    assert np.abs(out.reshape(-1, 3).mean(0) - [200, 40, 90]).max() < 6  # a flat image keeps its colour
    big = tiny.scale_to(tiny.thumbhash_decode(data), (64, 64))
    assert big.size == (64, 64)
    with pytest.raises(InvcompError, match="at least 5 bytes"):
        tiny.thumbhash_decode(b"\x01\x02")


@pytest.mark.parametrize("n", [1, 3, 4, 9])
def test_blurhash_round_trip(n: int) -> None:
    pytest.importorskip("blurhash")
    img = Image.new("RGB", (64, 64), (30, 160, 220))
    data = tiny.blurhash_encode(img, n)
    assert len(data) == tiny.blurhash_length(n) == 6 + 2 * (n * n - 1)
    out = np.asarray(tiny.blurhash_decode(data), dtype=float)
    assert np.abs(out.reshape(-1, 3).mean(0) - [30, 160, 220]).max() < 4


def test_blurhash_bad_input() -> None:
    pytest.importorskip("blurhash")
    with pytest.raises(InvcompError):
        tiny.blurhash_decode("é".encode())
    with pytest.raises(InvcompError, match="1..9"):
        tiny.blurhash_encode(smooth(0), 10)


def test_more_components_cost_more_bytes_and_fit_better() -> None:
    pytest.importorskip("blurhash")
    from invcomp import metrics
    from invcomp.imageio import from_image

    img = smooth(1)
    scores = []
    for n in (1, 4, 9):
        out = tiny.scale_to(tiny.blurhash_decode(tiny.blurhash_encode(img, n)), img.size)
        scores.append(float(metrics.psnr(from_image(out)[None], from_image(img)[None])[0]))
    assert scores[0] < scores[1] < scores[2]


# --- JPEG XL ---------------------------------------------------------------------------------------------------

def test_jpegxl_sizes_follow_quality_and_decode() -> None:
    from invcomp.classic.codecs import build_codecs, check_available

    codec = build_codecs()["jpegxl"]
    if check_available(codec):
        pytest.skip(str(check_available(codec)))
    img = smooth(2)
    sizes = [len(codec.encode(img, q)) for q in (0, 50, 90)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert codec.decode(codec.encode(img, 90)).size == (64, 64)
    assert codec.encode(img, 50)[:2] == b"\xff\x0a"  # a bare JPEG XL codestream, no container


# --- CompressAI peers ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_peers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny hyperprior models (2 λ) trained for a few steps and packed as a family in ROOT/peers."""
    pytest.importorskip("compressai")
    from invcomp.nets import peers as learned
    from invcomp.files import load_state_dict, sha256_file
    from invcomp.train.peer import PeerTrainConfig, build_model, train_peer

    tmp = tmp_path_factory.mktemp("peers")
    data = tmp / "faces"
    data.mkdir()
    for i in range(12):
        smooth(i).save(data / f"face{i}.png")
    root = tmp / "pretrained"
    (root / "peers").mkdir(parents=True)
    entries = []
    for lam in (0.0005, 0.01):
        cfg = PeerTrainConfig(data=str(data), out=str(tmp / f"run{lam}"), architecture="bmshj2018-hyperprior",
                              lmbda=lam, N=8, M=8, batch_size=4, steps=6, snapshot_every=3, eval_faces=0)
        pt = train_peer(cfg, progress=False)
        model = build_model("bmshj2018-hyperprior", 8, 8)
        model.load_state_dict(load_state_dict(pt))
        name = f"tiny-{lam}.pt"
        torch.save(learned.pack_state(model), root / "peers" / name)
        entries.append({"lmbda": lam, "file": name, "sha256": sha256_file(root / "peers" / name)})
        assert (tmp / f"run{lam}" / "checkpoint.pt").exists() and (tmp / f"run{lam}" / "train.log").exists()
    doc = {"families": {"compressai-tiny": {"architecture": "bmshj2018-hyperprior", "metric": "mse", "N": 8, "M": 8,
                                            "resolution": 64, "models": entries}}}
    (root / "peers" / "peers.json").write_text(json.dumps(doc))
    return root


def test_peer_file_is_a_real_bitstream(tiny_peers: Path) -> None:
    from invcomp.nets import peers as learned

    fam = learned.read_manifest(tiny_peers / "peers")["compressai-tiny"]
    for w, h in ((64, 64), (70, 33)):
        img = smooth(5, w, h)
        data = learned.encode(fam, img, 1)
        assert data[0] == 1 and data[1:3] == bytes([h, w]) if w < 128 and h < 128 else True
        out = learned.decode(fam, data)
        assert out.size == (w, h)
        assert learned.encode(fam, img, 1) == data  # deterministic
    data = learned.encode(fam, smooth(6), 0)
    for bad in (b"", data[:2], bytes([9]) + data[1:], data[:4] + b"\xff\xff\xff\xff\xff\xff"):
        with pytest.raises(InvcompError):
            learned.decode(fam, bad)


def test_tampered_peer_weights_are_refused(tiny_peers: Path, tmp_path: Path) -> None:
    import shutil

    from invcomp.nets import peers as learned

    root = tmp_path / "peers"
    shutil.copytree(tiny_peers / "peers", root)
    f = next(root.glob("*.pt"))
    f.write_bytes(f.read_bytes()[:-1] + bytes([f.read_bytes()[-1] ^ 1]))
    learned.clear_cache()
    fam = learned.read_manifest(root)["compressai-tiny"]
    idx = [m["file"] for m in fam.models].index(f.name)
    with pytest.raises(InvcompError, match="sha256"):
        learned.encode(fam, smooth(0), idx)


def test_peer_codes_through_the_bench_with_bytes_equal_to_its_file(tiny_peers: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from invcomp.nets import peers as learned
    from invcomp.cli.bench import bench

    monkeypatch.setenv("INVCOMP_PRETRAINED", str(tiny_peers))
    learned.clear_cache()
    images = tmp_path / "in"
    images.mkdir()
    for i in range(2):
        smooth(20 + i).save(images / f"f{i}.png")
    out = tmp_path / "out"
    r = cli_runner().invoke(bench, [str(images), "--codecs", "compressai-tiny,webp", "--size", "64", "--out", str(out),
                                    "--no-plots", "--no-lpips", "--no-identity", "--json"])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    with open(out / "per_image.csv", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["codec"] == "compressai-tiny"]
    assert len(rows) == 2 * 2 and {row["setting"] for row in rows} == {"lambda=0.0005", "lambda=0.01"}
    fam = learned.read_manifest(tiny_peers / "peers")["compressai-tiny"]
    from invcomp.bench.run import load_inputs

    inputs = load_inputs(images, 64)
    for row in rows:
        i, q = inputs.names.index(row["image"]), [m["lmbda"] for m in fam.models].index(float(row["setting"].split("=")[1]))
        assert int(row["bytes"]) == len(learned.encode(fam, inputs.images[i], q))
    doc = json.loads((out / "compressai-tiny.json").read_text())
    assert doc["results"]["bpp"] == sorted(doc["results"]["bpp"]) and len(doc["results"]["bpp"]) == 2


# --- identity ---------------------------------------------------------------------------------------------------

def _portraits() -> tuple[torch.Tensor, torch.Tensor]:
    from invcomp.imageio import fit_image, from_image, load_image

    a = fit_image(load_image(PORTRAITS / "astronaut-face.png"), 64, "crop")
    b = fit_image(load_image(PORTRAITS / "grace-hopper.png"), 64, "crop")
    return from_image(a)[None], from_image(b)[None]


def test_identity_is_zero_against_itself_and_large_against_another_person() -> None:
    pytest.importorskip("dlib")
    from invcomp import identity

    if identity.unavailable():
        pytest.skip(str(identity.unavailable()))
    a, b = _portraits()
    assert float(identity.identity_distance(a, a)[0]) == pytest.approx(0.0, abs=1e-6)
    d = float(identity.identity_distance(a, b)[0])
    assert d > identity.SAME_PERSON  # Eileen Collins and Grace Hopper are different people
    noisy = (a + 0.02 * torch.randn_like(a, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    assert float(identity.identity_distance(a, noisy)[0]) < identity.SAME_PERSON  # mild noise keeps the person
    assert identity.same_person_share([0.1, 0.7, None, 0.59]) == pytest.approx(2 / 3)
    assert identity.same_person_share([None]) is None


def test_identity_is_null_with_one_warning_when_missing(monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    from invcomp import identity, metrics

    monkeypatch.setattr(identity, "_MODELS", {"error": "the identity metric needs dlib, which is not installed (x)"})
    monkeypatch.setattr(identity, "_warned", False)
    a, _ = _portraits()
    with caplog.at_level(logging.WARNING):
        rows = metrics.quality(a, a, with_lpips=False, with_identity=True)
        rows += metrics.quality(a, a, with_lpips=False, with_identity=True)
    assert [r["identity"] for r in rows] == [None, None]
    assert sum("dlib" in rec.getMessage() for rec in caplog.records) == 1


def test_model_files_are_found_without_importing_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    import sys

    from invcomp import identity

    if importlib.util.find_spec("face_recognition_models") is None:
        with pytest.raises(InvcompError, match="face_recognition_models"):
            identity.model_dir()
        return
    monkeypatch.delitem(sys.modules, "face_recognition_models", raising=False)
    d = identity.model_dir()
    assert (d / "dlib_face_recognition_resnet_model_v1.dat").is_file()
    assert "face_recognition_models" not in sys.modules  # its __init__ (which imports pkg_resources) never ran


def test_compare_reports_identity(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    from invcomp import identity
    from invcomp.cli.compare import compare

    if identity.unavailable():
        pytest.skip(str(identity.unavailable()))
    a = PORTRAITS / "astronaut-face.png"
    r = cli_runner().invoke(compare, [str(a), str(a), "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["identity"] == pytest.approx(0.0, abs=1e-6)
    r = cli_runner().invoke(compare, [str(a), str(a)])
    assert "identity 0.000 (same person" in r.stdout


def test_bench_report_counts_the_same_person_share() -> None:
    from invcomp.bench.report import equal_bytes_markdown, points

    rows = [{"codec": "webp", "mode": "fixed", "setting": "quality=0", "quality": 0, "bytes": 100, "bpp": 0.2, "psnr": 20.0,
             "mse": 0.01, "ssim": 0.7, "ms_ssim": 0.8, "lpips": None, "identity": d, "encode_seconds": 0.0,
             "decode_seconds": 0.0} for d in (0.3, 0.5, 0.7, 0.9)]
    p = points(rows, "webp")[0]
    assert p["same_person"] == pytest.approx(0.5) and p["identity"] == pytest.approx(0.6)
    inv = [dict(r, codec="invcomp", bits=6) for r in rows]
    eq = [dict(r, mode="equal_bytes", bits=6, reference="invcomp", cannot_reach=False) for r in rows]
    md = equal_bytes_markdown(inv + eq, [("invcomp", 6)], ["webp"], title="t", unavailable={})
    assert "| 0.600 | 50% |" in md


def test_bench_measures_identity_per_row(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    from invcomp import identity
    from invcomp.cli.bench import bench

    if identity.unavailable():
        pytest.skip(str(identity.unavailable()))
    out = tmp_path / "out"
    r = cli_runner().invoke(bench, [str(PORTRAITS), "--codecs", "webp,thumbhash", "--size", "64", "--out", str(out),
                                    "--no-plots", "--no-lpips", "--json"])
    assert r.exit_code == 0, r.stderr
    with open(out / "per_image.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(0 <= float(row["identity"]) < 2 for row in rows)
    webp = [float(row["identity"]) for row in rows if row["codec"] == "webp" and row["setting"] == "quality=90"]
    thumb = [float(row["identity"]) for row in rows if row["codec"] == "thumbhash"]
    assert max(webp) < identity.SAME_PERSON < min(thumb)  # a good WebP keeps the person; a 25-byte blur does not
    summary = {json.loads(line)["codec"]: json.loads(line) for line in r.stdout.splitlines() if line.strip()}
    assert summary["webp"]["points"][-1]["same_person"] == 1.0
    assert json.loads((out / "webp.json").read_text())["results"]["same-person"][-1] == 1.0


def test_a_fine_tune_resumes_from_its_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("compressai")
    from invcomp.train.peer import PeerTrainConfig, train_peer

    data = tmp_path / "faces"
    data.mkdir()
    for i in range(6):
        smooth(30 + i).save(data / f"face{i}.png")
    base = train_peer(PeerTrainConfig(data=str(data), out=str(tmp_path / "base"), N=8, M=8, batch_size=2, steps=4,
                                      snapshot_every=2, eval_faces=0), progress=False)
    cfg = PeerTrainConfig(data=str(data), out=str(tmp_path / "ft"), N=8, M=8, batch_size=2, steps=2, snapshot_every=2,
                          eval_faces=0, lmbda=0.05, init=str(base))
    train_peer(cfg, progress=False)
    # make the checkpoint's entropy tables longer than those of the --init model, as longer training does
    from invcomp.train.peer import build_model

    ckpt = tmp_path / "ft" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    model = build_model(cfg.architecture, 8, 8)
    model.load_state_dict(state["model"])
    with torch.no_grad():
        q = model.entropy_bottleneck.quantiles
        q.copy_(q[..., 1:2] + 4.0 * (q - q[..., 1:2]))
    model.update(force=True)
    assert model.state_dict()["entropy_bottleneck._quantized_cdf"].shape != state["model"]["entropy_bottleneck._quantized_cdf"].shape
    state["model"] = model.state_dict()
    torch.save(state, ckpt)
    with caplog.at_level(logging.INFO):
        train_peer(PeerTrainConfig(**{**cfg.__dict__, "steps": 4}), progress=False)  # entropy tables differ in length
    assert "resumed from" in caplog.text and "done at step 4" in caplog.text
    with pytest.raises(InvcompError, match="lmbda"):
        train_peer(PeerTrainConfig(**{**cfg.__dict__, "steps": 6, "lmbda": 0.5}), progress=False)


def test_shipped_peers_load_and_code_a_face() -> None:
    pytest.importorskip("compressai")
    from invcomp.nets import peers as learned
    from invcomp.imageio import fit_image, load_image

    fams = learned.read_manifest()
    if not fams:
        pytest.skip("no learned peers shipped in this checkout")
    assert {"compressai-mbt-mean", "compressai-mbt-mean-msssim"} <= set(fams)  # the two the README's figures need
    face = fit_image(load_image(PORTRAITS / "astronaut-face.png"), 64, "crop")
    for fam in fams.values():
        assert len(fam.models) >= 5 and fam.resolution == 64
        sizes = []
        for i in range(len(fam.models)):
            data = learned.encode(fam, face, i)  # loads the file: sha256 and weights_only checked
            assert learned.decode(fam, data).size == (64, 64)
            sizes.append(len(data))
        assert sizes[0] < sizes[-1] and sizes[0] < 80  # λ orders the rate; the lowest reaches invcomp's sizes
