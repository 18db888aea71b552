"""Mode 3, layered coding: the container, the residual layer, the codec, the CLI, rate control, auto, bench, fuzzing."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.formats import layered as layers
from invcomp.errors import BitstreamError, InvcompError
from tests.conftest import DEMO_IMAGE, REPO, cli_runner

pytest.importorskip("compressai")

KEY = b"\x12\x34"
PORTRAITS = sorted((REPO / "experiments" / "data" / "portraits").glob("*.png"))


# --- the container (pure) ---------------------------------------------------------------------------------
def _base(mode: int = layers.MODE_LAYERED) -> bytes:
    header = bitstream.Header(model_id=b"\xab\xcd", latent_dim=0, resolution=0, width=200, height=150, bits=6,
                              coder="prior", norm=None, mode=mode, version=2)
    return bitstream.pack_v2(header, 77, bytes(range(40)))


def _stack() -> list[layers.Layer]:
    return [layers.Layer(layers.KIND_TONE, bytes(8)), layers.Layer(layers.KIND_RESIDUAL, b"abc" * 50, 3, 128),
            layers.Layer(layers.KIND_RESIDUAL, b"z", 7, 128)]


def test_container_round_trips_byte_exactly_and_every_prefix_is_a_file() -> None:
    data = layers.join(_base(), _stack(), KEY)
    plain, recs = layers.split(data)
    assert [layer for layer, _ in recs] == _stack()
    assert layers.join(_base(), [layer for layer, _ in recs], KEY) == data  # the byte-exact round trip
    for layer, rec in recs:
        layers.check(layer, rec, KEY, 1)
    # the base record holds the mode-0 file of the same latent, byte for byte
    assert plain == _base(mode=0)
    assert bitstream.unpack(data)[0].mode == layers.MODE_LAYERED and bitstream.unpack(plain)[0].mode == 0
    sizes = [len(layers.truncate(data, k)) for k in range(1, 5)]
    assert sizes == sorted(sizes) and sizes[-1] == len(data)
    for k in range(1, 5):
        cut = layers.truncate(data, k)
        assert layers.count(cut) == k and data.startswith(cut)
        assert [layer for layer, _ in layers.split(cut)[1]] == _stack()[:k - 1]


@pytest.mark.parametrize("keep", [0, -1, 5])
def test_bad_layer_counts_are_refused(keep: int) -> None:
    data = layers.join(_base(), _stack(), KEY)
    with pytest.raises(BitstreamError, match="--layers"):
        layers.truncate(data, keep)


def test_a_cut_inside_a_record_or_a_wrong_key_is_refused() -> None:
    data = layers.join(_base(), _stack(), KEY)
    ends = {len(layers.truncate(data, k)) for k in range(1, 5)}
    for cut in range(1, len(data)):
        if cut in ends:
            continue
        with pytest.raises(BitstreamError):
            plain, recs = layers.split(data[:cut])
            for i, (layer, rec) in enumerate(recs, 1):
                layers.check(layer, rec, KEY, i)
    layer, rec = layers.split(data)[1][1]
    with pytest.raises(BitstreamError, match="another residual network"):
        layers.check(layer, rec, b"\x00\x00", 2)


@pytest.mark.parametrize("stack, why", [
    ([layers.Layer(layers.KIND_RESIDUAL, b"a", 1, 64), layers.Layer(layers.KIND_TONE, bytes(8))], "only be layer 1"),
    ([layers.Layer(layers.KIND_RESIDUAL, b"a", 1, 128), layers.Layer(layers.KIND_RESIDUAL, b"a", 1, 64)], "below"),
])
def test_layer_order_is_checked(stack: list, why: str) -> None:
    with pytest.raises(BitstreamError, match=why):
        layers.join(_base(), stack, KEY)


def test_unknown_kinds_and_empty_layers_are_refused() -> None:
    body = layers.join(_base(), [], KEY)
    for record in (bytes([7 << 5]), bytes([layers.KIND_RESIDUAL << 5 | 1, 4, 0]), bytes([layers.KIND_TONE << 5 | 3])):
        rec = record + bytes(10)
        with pytest.raises(BitstreamError, match="invalid"):
            layers.split(body + rec)


# --- the tone layer -----------------------------------------------------------------------------------------
def _smooth(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(64, 64), mode="bilinear",
                                        align_corners=False)
    return (x * 2 - 1)[0]


def test_tone_variants_start_with_the_identity_and_the_fit_and_keep_each_channels_mean() -> None:
    from invcomp.search import tone

    x = _smooth(0) * 0.4  # well inside [-1, 1]: no variant is clamped
    fit = tone.fit(x[None], (0.7 * x + 0.1)[None])[0]
    out = tone.variants(x, fit)
    assert torch.equal(out[0], tone.IDENTITY) and torch.equal(out[1], fit) and len(out) == 2 + len(tone.CONTRASTS)
    means = [tone.apply(x[None], p[None]).reshape(3, -1).mean(1) for p in out[1:]]
    for m in means[1:]:  # inside [-1, 1] no clamping happens here, so the means are kept exactly up to rounding
        assert torch.allclose(m, means[0], atol=1e-5)


def test_a_last_tone_layer_never_lowers_ssim_and_under_a_residual_it_is_the_plain_fit() -> None:
    from invcomp.search import tone
    from invcomp.codecs.modes.layered import apply_tone, tone_layer
    from invcomp.imageio import quantize_pixels
    from invcomp.metrics import ssim

    lowered = 0
    for seed in range(12):
        base, structure = _smooth(seed), _smooth(100 + seed)
        target = 0.3 * base + 0.7 * structure  # mostly another picture's structure: the fit's gain shrinks
        floor = float(ssim(quantize_pixels(base[None]), target[None]))
        plain, pic = tone_layer(base, target)
        assert plain == tone.pack(tone.fit(base[None], target[None])[0]) and torch.equal(pic, apply_tone(base[None], plain))
        lowered += float(ssim(quantize_pixels(pic), target[None])) < floor
        kept, pic = tone_layer(base, target, keep_ssim=True)
        assert float(ssim(quantize_pixels(pic), target[None])) >= floor
        assert torch.equal(pic, apply_tone(base[None], kept))  # what the decoder gets from the record
    assert lowered > 0  # the plain fit does lower SSIM on such faces: the choice is not idle


# --- the residual network ---------------------------------------------------------------------------------
def _blurred(x: torch.Tensor) -> torch.Tensor:
    small = torch.nn.functional.interpolate(x, scale_factor=0.25, mode="area")
    return torch.nn.functional.interpolate(small, size=x.shape[-2:], mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def tiny() -> Any:
    """A tiny residual coder trained for a few seconds to restore blurred textures (its base)."""
    from invcomp.nets.residual import ResidualCoder, rate_lambdas
    from invcomp.train.residual import chained, rd_terms

    torch.manual_seed(0)
    model = ResidualCoder(N=8, M=8, rates=2)
    g = torch.Generator().manual_seed(0)
    data = torch.rand(64, 3, 8, 8, generator=g)
    data = torch.nn.functional.interpolate(data, size=(32, 32), mode="bilinear", align_corners=False)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    lambdas = torch.tensor(rate_lambdas(2, 0.02, 0.2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for step in range(200):
        x = data[torch.randint(0, 64, (16,), generator=g)]
        rate, base = torch.randint(0, 2, (16,), generator=g), _blurred(x)
        stage = torch.zeros_like(rate)
        if step % 2:  # as the trainer does: also learn to refine a first layer's picture
            base, stage = chained(model, x, base, rate, torch.rand(16, generator=g))
        terms = rd_terms(model, x, base, rate, lambdas, stage)
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
    torch.set_num_threads(threads)
    model.update()
    model.eval()
    return model, data


def test_each_residual_layer_lowers_the_distortion_on_a_tiny_model(tiny: Any) -> None:
    model, data = tiny
    per_image = []
    for x in data[:8]:
        x = x[None]
        pic = _blurred(x)
        errors = [float((pic - x).pow(2).mean())]
        for rate in (0, 1):  # the second layer refines the first one's picture (stage 1)
            with torch.no_grad():
                payload, rec = model.compress(x, pic, rate, stage=rate)
                again = model.decompress(payload, pic, rate, stage=rate)
            assert torch.equal(rec, again)  # the decoder gets exactly the encoder's picture
            pic = again
            errors.append(float((pic - x).pow(2).mean()))
        assert errors[1] < errors[0], errors  # the first layer, on every image
        per_image.append(errors)
    mean = torch.tensor(per_image).mean(0)
    assert mean[0] > mean[1] > mean[2], mean  # each layer, on average over the images


def test_the_residual_layer_pads_sizes_that_are_not_multiples_of_16(tiny: Any) -> None:
    model, data = tiny
    x = data[:1, :, :27, :21]
    with torch.no_grad():
        payload, rec = model.compress(x, _blurred(x), 1)
        assert rec.shape == x.shape and torch.equal(model.decompress(payload, _blurred(x), 1), rec)


# --- the codec (shipped models) ------------------------------------------------------------------------------
def _fast(codec: Any, iters: int = 20) -> Any:
    from dataclasses import replace

    codec.settings = replace(codec.settings, iters=iters)
    return codec


@pytest.fixture(scope="module")
def portraits() -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in PORTRAITS]


@pytest.mark.parametrize("resolution", [64, 128])
def test_layered_files_decode_at_every_prefix_and_each_layer_helps(portraits: list, resolution: int) -> None:
    from invcomp.codecs import load_codec
    from invcomp.imageio import quantize_pixels
    from invcomp.metrics import mse

    codec = _fast(load_codec(mode="layered", resolution=resolution, layer_rates="tone,2.5,5"))
    for enc in codec.encode(portraits):
        assert layers.count(enc.data) == 4
        header, x = codec.decode(enc.data)
        assert header.mode == 3 and x.shape == (3, resolution, resolution)
        assert torch.equal(x, enc.recon)  # decode gives what encode reported
        errors = []
        for k in range(1, 5):
            cut = layers.truncate(enc.data, k)
            assert len(cut) == enc.extra["layers"][k - 1]["bytes"]
            pic = codec.decode(cut)[1]
            assert pic.shape == (3, resolution, resolution)
            errors.append(float(mse(quantize_pixels(pic[None]), enc.target[None])))
        assert errors[0] > errors[1] > errors[2] > errors[3], errors


def test_layer_zero_is_the_plain_inversion_file(portraits: list) -> None:
    from invcomp.codecs import load_codec

    plain = _fast(load_codec("dcgan-utkface64", mode="inversion"))
    lay = _fast(load_codec(mode="layered", layer_rates="tone,3"))
    for a, b in zip(plain.encode(portraits), lay.encode(portraits)):
        assert layers.base_file(b.data) == a.data  # the same latent, byte for byte
        assert torch.equal(plain.decode(a.data)[1], lay.decode(layers.truncate(b.data, 1))[1])


def test_residual_work_runs_on_one_thread_whatever_the_callers_setting(portraits: list) -> None:
    from invcomp.codecs import load_codec

    codec = _fast(load_codec(mode="layered", resolution=128, layer_rates="tone,2"), iters=5)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        enc = codec.encode(portraits[:1])[0]
        assert torch.get_num_threads() == 2  # restored
        pics = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            pics.append(codec.decode(enc.data)[1])
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert torch.equal(pics[0], pics[1]) and torch.equal(pics[0], enc.recon)


def test_rate_control_picks_a_plan_within_the_budget(portraits: list) -> None:
    from invcomp.codecs import load_codec
    from invcomp.codecs.rate import RateTarget, encode_images

    codec = _fast(load_codec(mode="layered", resolution=64))
    small, big = (encode_images(codec, portraits[:1], RateTarget(max_bytes=n))[0] for n in (90, 400))
    assert len(small.data) <= 90 and len(big.data) <= 400 and len(big.data) > len(small.data)
    none = encode_images(codec, portraits[:1], RateTarget(max_bytes=20))[0]
    assert isinstance(none, InvcompError) and "base alone" in str(none)
    from invcomp.imageio import quantize_pixels
    from invcomp.metrics import ssim

    reach = encode_images(codec, portraits[:1], RateTarget(min_ssim=0.75))[0]
    got = float(ssim(quantize_pixels(reach.recon[None]), reach.target[None]))
    assert reach.extra["reached"] and got >= 0.75
    assert len(reach.data) < len(big.data)  # the smallest that reaches it, not the best there is
    never = encode_images(codec, portraits[:1], RateTarget(min_ssim=0.999))[0]  # none reaches: the best, flagged
    assert not never.extra["reached"] and float(ssim(quantize_pixels(never.recon[None]), never.target[None])) > got


def test_auto_with_a_target_can_choose_the_layered_file(portraits: list) -> None:
    from invcomp.codecs import load_codec
    from invcomp.codecs.rate import RateTarget, encode_images

    auto = load_codec()
    assert "layered:dcgan-utkface64" in auto.describe()["candidates"]
    for c in auto.candidates:
        if getattr(c, "searches", False):
            _fast(c)
    out = encode_images(auto, portraits[:1], RateTarget(max_bytes=300))[0]
    assert len(out.data) <= 300 and out.extra["auto"]["chosen"].startswith("layered")


def test_bad_plans_are_refused() -> None:
    from invcomp.codecs import load_codec

    for plan, why in [("tone,9", "out of range"), ("tone,2.3", "steps of 0.25"), ("3,tone", "only be layer 1"),
                      ("2@128,2@64", "below"), ("x", "bad layer"), ("2@100", "multiple of 16")]:
        with pytest.raises(InvcompError, match=why):
            load_codec(mode="layered", layer_rates=plan)


# --- CLI ---------------------------------------------------------------------------------------------------
class _Result:
    def __init__(self, r: Any) -> None:
        self.returncode, self.stdout, self.stderr = r.exit_code, r.stdout, r.stderr


def _cli(*args: str) -> _Result:
    from invcomp.cli import cli

    return _Result(cli_runner().invoke(cli, list(args)))


def test_cli_encodes_at_128_and_decodes_any_number_of_layers(tmp_path: Path) -> None:
    out = tmp_path / "f.ivc"
    r = _cli("encode", str(DEMO_IMAGE), "--mode", "layered", "--resolution", "128", "--layer-rates", "tone,2",
             "--iters", "10", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)
    assert row["mode"] == "layered" and row["resolution"] == 128 and len(row["layers"]) == 3
    assert row["bytes"] == out.stat().st_size == row["layers"][-1]["bytes"]
    for k in (1, 2, 3):
        png = tmp_path / f"k{k}.png"
        r = _cli("decode", str(out), "--layers", str(k), "-o", str(png), "--json", "--native")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["layers"] == k
        assert Image.open(png).size == ((64, 64) if k < 3 else (128, 128))
    bad = tmp_path / "bad.png"
    r = _cli("decode", str(out), "--layers", "4", "-o", str(bad))
    assert r.returncode == 1 and "this file has 3 layers" in r.stderr and "Traceback" not in r.stderr
    assert not bad.exists()
    r = _cli("decode", str(out), "--layers", "0", "-o", str(bad))
    assert r.returncode == 2 and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def layered128(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A 128-px layered file of the demo face (tone, then a residual layer), and its ``encode --json`` row."""
    out = tmp_path_factory.mktemp("layered128") / "f.ivc"
    r = _cli("encode", str(DEMO_IMAGE), "--mode", "layered", "--resolution", "128", "--layer-rates", "tone,4",
             "--iters", "10", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


def test_encode_and_info_describe_a_layered_file_the_same_way(layered128: tuple) -> None:
    out, row = layered128
    r = _cli("info", str(out), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["layers"] == row["layers"]  # one description: numbering, rates, sizes
    assert [s["layer"] for s in row["layers"]] == [0, 1, 2]
    assert [s["kind"] for s in row["layers"]] == ["base", "tone", "residual"]
    assert row["layers"][2]["rate"] == 4.0 and row["layers"][2]["resolution"] == 128
    data = out.read_bytes()
    for k, step in enumerate(row["layers"], start=1):  # `decode --layers k` keeps layers 0..k-1: that many bytes
        assert step["bytes"] == len(layers.truncate(data, k))
    assert sum(s["record_bytes"] for s in row["layers"]) == len(data) == row["bytes"]
    assert "base_bytes" not in info  # no second, different size of the base
    human = _cli("info", str(out)).stdout
    assert "rate: 4.0" in human and "layer: 0" in human


def test_compare_measures_a_128_px_layered_file_at_its_own_size(layered128: tuple, tmp_path: Path) -> None:
    out, row = layered128
    for flag in ([], ["--native"]):
        png = tmp_path / f"d{len(flag)}.png"
        assert _cli("decode", str(out), "-o", str(png), *flag).returncode == 0
        r = _cli("compare", str(DEMO_IMAGE), str(png), "--bitstream", str(out), "--json")
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert got["resolution"] == [128, 128] and got["bytes"] == row["bytes"] == out.stat().st_size
        assert got["bpp"] == pytest.approx(row["bpp"]) == pytest.approx(8 * row["bytes"] / 128 ** 2)
    assert got["ssim"] == pytest.approx(row["ssim"], abs=1e-6)  # --native: the very pixels encode measured


def test_cli_refuses_a_plan_with_a_target_and_a_cut_file_in_a_batch(tmp_path: Path) -> None:
    r = _cli("encode", str(DEMO_IMAGE), "--mode", "layered", "--layer-rates", "tone,1", "--target-bytes", "200",
             "-o", str(tmp_path / "x.ivc"))
    assert r.returncode != 0 and "drop --layer-rates" in r.stderr and "Traceback" not in r.stderr
    good = tmp_path / "good.ivc"
    assert _cli("encode", str(DEMO_IMAGE), "--mode", "layered", "--iters", "5", "-o", str(good)).returncode == 0
    data = good.read_bytes()
    (tmp_path / "cut.ivc").write_bytes(data[:len(layers.truncate(data, 2)) + 3])  # inside the residual record
    r = _cli("decode", str(good), str(tmp_path / "cut.ivc"), "-o", str(tmp_path / "out"))
    assert r.returncode == 1 and "1 ok, 1 failed" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "out" / "good.decoded.png").exists() and not (tmp_path / "out" / "cut.decoded.png").exists()


# --- fuzzing and the bench -----------------------------------------------------------------------------------
def test_fuzzed_layered_files_never_crash() -> None:
    from invcomp.codecs import load_codec
    from invcomp.fuzz import codec_seeds, run_fuzz

    codec = load_codec(mode="layered", resolution=64, for_decode=True)
    rng = random.Random(0)
    seeds = codec_seeds(codec, rng, 3)
    assert all(layers.count(s) == 3 for s in seeds)
    stats = run_fuzz(300, seed=1, seeds=seeds, codec=codec, time_limit=5.0)
    assert stats.counts["crash"] == 0 and stats.counts["hang"] == 0, stats.crashes[:2]
    # garbage residual payloads under a valid CRC: a picture or a clean error, never a crash
    for s in seeds:
        plain, recs = layers.split(s)
        keep = [layer for layer, _ in recs]
        for _ in range(20):
            junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 60)))
            keep[-1] = layers.Layer(layers.KIND_RESIDUAL, junk, rng.randrange(8), 64)
            data = layers.join(plain[:3] + bytes([plain[3] | 0x60]) + plain[4:-2] + bitstream.crc16(
                plain[:3] + bytes([plain[3] | 0x60]) + plain[4:-2]), keep, codec.residual.key)
            try:
                x = codec.decode(data)[1]
                assert x.shape == (3, 64, 64) and torch.isfinite(x).all()
            except InvcompError:
                pass


def test_bench_runs_the_layered_mode_at_128(tmp_path: Path) -> None:
    folder = tmp_path / "faces"
    folder.mkdir()
    for p in PORTRAITS:
        (folder / p.name).write_bytes(p.read_bytes())
    r = _cli("bench", str(folder), "--codecs", "webp,invcomp:layered:dcgan-utkface64", "--size", "128", "--iters", "5",
             "--out", str(tmp_path / "b"), "--no-plots", "--no-lpips", "--no-identity", "--json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert any("layered" in json.dumps(row) for row in rows)


# --- the trainer -------------------------------------------------------------------------------------------
def test_the_residual_trainer_checkpoints_and_resumes(tmp_path: Path) -> None:
    from invcomp.train.residual import ResidualTrainConfig, train_residual

    g = torch.Generator().manual_seed(0)
    x128 = (torch.nn.functional.interpolate(torch.rand(6, 3, 16, 16, generator=g), size=(128, 128), mode="bilinear",
                                            align_corners=False) * 255).round().to(torch.uint8)
    x64 = torch.nn.functional.interpolate(x128.float(), size=(64, 64), mode="area").round().to(torch.uint8)
    base = torch.nn.functional.interpolate(x64.float(), scale_factor=0.25, mode="area")
    base = torch.nn.functional.interpolate(base, size=(64, 64), mode="bilinear", align_corners=False).round().to(torch.uint8)
    data = tmp_path / "bases.pt"
    torch.save({"x64": x64, "x128": x128, "base": base, "names": [str(i) for i in range(6)]}, data)
    cfg = ResidualTrainConfig(data=str(data), out=str(tmp_path / "run"), steps=2, batch_size=4, N=8, M=8, rates=2,
                              eval_faces=2, snapshot_every=2, peer=None, threads=1)
    train_residual(cfg, progress=False)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    assert torch.load(ckpt, weights_only=True)["step"] == 2
    from dataclasses import replace

    train_residual(replace(cfg, steps=4, lr=5e-5), progress=False)  # resumes (the entropy tables are rebuilt)
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 4 and all(group["lr"] == 5e-5 for group in state["opt"]["param_groups"])
    assert "resumed from" in (tmp_path / "run" / "train.log").read_text()
    with pytest.raises(InvcompError, match="other N"):
        train_residual(replace(cfg, steps=6, N=16), progress=False)
