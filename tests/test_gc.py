"""GC (mode 4): training, any-size round trips, tiles, the context coder, and refusals between modes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from invcomp.formats import ivc as bitstream
from invcomp.codecs import load_codec
from invcomp.codecs.modes.gc import GCCodec, image_array, pixels_of, symbols_of
from invcomp.errors import BitstreamError, InvcompError, UnknownModelError
from invcomp.coding import gridcode
from invcomp.nets.generative import tiles
from invcomp.nets.generative.model import GCConfig, GCNet
from invcomp.zoo.registry import list_models
from invcomp.train.gc import GCTrainConfig, GCTrainer

from .gc_fixtures import TINY, image, make_gc, smooth_images

SHIPPED = {e.name for e in list_models() if e.kind == "gc"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gc(tmp_path_factory.mktemp("gc"))


def test_tiny_gc_trains_and_its_loss_falls(tmp_path: Path) -> None:
    from PIL import Image

    data = tmp_path / "faces"
    data.mkdir()
    for i, x in enumerate(smooth_images(24, 48)):
        Image.fromarray(x.permute(1, 2, 0).numpy()).save(data / f"img{i:02d}.png")
    cfg = GCTrainConfig(data=str(data), out=str(tmp_path / "run"), channels=4, resolution=48, crop=32, batch_size=4,
                        lr=2e-3, adv_warmup=30, eval_faces=0, ndf=4, **TINY)  # type: ignore[arg-type]
    torch.manual_seed(0)
    trainer = GCTrainer(cfg, tmp_path)
    trainer.real = smooth_images(4, 32, seed=5)  # four whole 32-px pictures: each step sees some of them, flipped or not
    fixed = trainer.real.float() / 127.5 - 1

    def mse() -> float:
        with torch.no_grad():
            return float((trainer.net(fixed)[0] - fixed).pow(2).mean())

    before = mse()
    losses = [trainer.train_step(step)["dist"] for step in range(30)]
    assert mse() < 0.85 * before, (before, mse(), losses)
    assert "g" in trainer.train_step(30)  # the adversarial terms run after the warm-up


@pytest.mark.parametrize("size", [(1, 1), (17, 33), (1000, 7), (16, 16)])
def test_round_trip_at_odd_sizes(tiny: Path, size: tuple[int, int]) -> None:
    codec = load_codec(str(tiny), mode="gc")
    im = image(*size)
    enc = codec.encode([im])[0]
    header, x = codec.decode(enc.data)
    assert (header.width, header.height, header.mode) == (*size, 4)
    assert x.shape == (3, size[1], size[0]) and torch.equal(x, enc.recon)
    cells = np.prod(tiles.grid_shape(size[1], size[0]))
    assert enc.levels.numel() == 2 * cells
    assert bitstream.unpack(enc.data)[0].mode == 4
    assert codec.encode([im])[0].data == enc.data  # deterministic


def test_file_costs_less_than_the_upper_bound(tiny: Path) -> None:
    codec = load_codec(str(tiny))
    enc = codec.encode([image(320, 240, seed=3)])[0]
    payload = len(enc.data) - 9  # magic, id, flags, size, crc
    assert 8 * payload < 2 * 20 * 15 * np.log2(5)


def test_tiled_encode_and_decode_match_a_whole_pass(tiny: Path) -> None:
    """Tiles of 4 cells (many seams) against one pass: the encoder's symbols equal, the pixels within 1/255."""
    codec = load_codec(str(tiny))
    img = image_array(image(300, 200, seed=1))
    net = codec.model.net
    whole = net.Q.symbols(net.E(tiles.pad16(torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1)))[0]
    tiled = net.Q.symbols(tiles.encode_tiled(lambda x: net.E(x), img, tile=4))
    assert torch.equal(whole, tiled)
    values = net.Q.values(whole)
    a = pixels_of(codec.model, values, 200, 300, tile=4).astype(int)
    b = pixels_of(codec.model, values, 200, 300, tile=0).astype(int)
    assert np.abs(a - b).max() <= 1


@pytest.mark.skipif(not SHIPPED, reason="no GC model is registered")
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_tiled_decode_within_tolerance(name: str) -> None:
    """The shipped generators at the default halo: tiles of 8 cells (128 px) against one pass of a 400x272 picture:
    mean error under 0.5/255, every pixel within 8/255 (README: measured per halo by experiments/gc_speed.py)."""
    codec = load_codec(name)
    img = image_array(image(400, 272, seed=2))
    _, sym = symbols_of(codec.model, img)
    values = codec.model.net.Q.values(sym)
    a = pixels_of(codec.model, values, 272, 400, tile=8).astype(int)
    b = pixels_of(codec.model, values, 272, 400, tile=0).astype(int)
    assert np.abs(a - b).mean() < 0.5 and np.abs(a - b).max() <= 8


def test_grid_coder_round_trip_and_canonical() -> None:
    rng = np.random.default_rng(0)
    grids = [rng.integers(0, 5, (3, 6, 7)) for _ in range(20)]
    t = gridcode.fit_tables(grids, [np.ones(g.shape, bool) for g in grids], 5, 3)
    g, pres = rng.integers(0, 5, (3, 9, 4)), rng.random((3, 9, 4)) < 0.5
    data = gridcode.encode_grid(g, pres, t)
    out = gridcode.decode_grid(data, pres, t)
    assert np.array_equal(out[pres], g[pres]) and (out[~pres] == -1).all()
    assert abs(8 * len(data) - gridcode.code_length_bits(g, pres, t)) < 40
    with pytest.raises(BitstreamError):
        gridcode.decode_grid(data + b"\x00", pres, t)
    for k in range(len(data)):  # a flipped byte never crashes: refused, or (rarely) other symbols
        bad = bytearray(data)
        bad[k] ^= 0x5A
        try:
            gridcode.decode_grid(bytes(bad), pres, t)
        except BitstreamError:
            pass


def test_settings_that_do_not_apply_are_refused(tiny: Path) -> None:
    from invcomp.codecs import EncodeSettings

    with pytest.raises(InvcompError, match="rate is set by its model"):
        load_codec(str(tiny), EncodeSettings(bits=4), mode="gc")
    with pytest.raises(InvcompError, match="do not apply"):
        load_codec(str(tiny), mode="gc", channels=8)
    with pytest.raises(InvcompError, match="coder"):
        load_codec(str(tiny), EncodeSettings(coder="elias"), mode="gc")


def test_gc_files_and_other_modes_refuse_each_other(tiny: Path, tmp_path: Path) -> None:
    gc = load_codec(str(tiny))
    assert isinstance(gc, GCCodec)
    gc_file = gc.encode([image(64, 64)])[0].data
    other = make_gc(tmp_path / "other", seed=1)
    with pytest.raises(UnknownModelError):
        load_codec(str(other)).decode(gc_file)
    face = image(64, 64, seed=5)
    for name, mode in (("vaegan-utkface64-c8", "vaegan"), ("dcgan-utkface64", "inversion")):
        codec = load_codec(name, mode=mode)
        with pytest.raises(BitstreamError, match="GC"):
            codec.decode(gc_file)
        if mode == "vaegan":
            with pytest.raises(BitstreamError, match="not GC"):
                gc.decode(codec.encode([face])[0].data)
    layered = load_codec("dcgan-utkface64", mode="layered")
    with pytest.raises(BitstreamError):
        layered.decode(gc_file)
    with pytest.raises(BitstreamError):
        gc.decode(gc_file[:-1])


def test_config_validation() -> None:
    with pytest.raises(InvcompError):
        GCConfig(channels=0)
    with pytest.raises(InvcompError):
        GCConfig(up_widths=(8, 8))
    with pytest.raises(ValueError):
        from invcomp.nets.generative.model import check_size

        check_size(torch.zeros(1, 3, 20, 16))
    assert GCNet(GCConfig(channels=2, **TINY))(torch.zeros(1, 3, 32, 48))[0].shape == (1, 3, 32, 48)  # type: ignore[arg-type]


def test_train_gc_command_checkpoints_and_resumes(tmp_path: Path) -> None:
    from PIL import Image

    from invcomp.cli import cli

    from .conftest import cli_runner

    data = tmp_path / "faces"
    data.mkdir()
    for i, x in enumerate(smooth_images(6, 48)):
        Image.fromarray(x.permute(1, 2, 0).numpy()).save(data / f"img{i}.png")
    args = ["train", "gc", "--data", str(data), "--out", str(tmp_path / "run"), "--channels", "2", "--crop", "32",
            "--resolution", "48", "--batch-size", "2", "--snapshot-every", "2", "--eval-faces", "2", "--device", "cpu"]
    runner = cli_runner()
    r = runner.invoke(cli, args + ["--steps", "2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "gc.pt").exists() and (tmp_path / "run" / "checkpoint.pt").exists()
    r = runner.invoke(cli, args + ["--steps", "4"])
    assert r.exit_code == 0, r.output
    log = (tmp_path / "run" / "train.log").read_text()
    assert "resumed from" in log and "at step 2" in log and "done at step 4" in log


def test_photo_wrapper_passes_whole_images_to_gc(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``invcomp encode`` wraps every codec in the photo codec; for GC (a whole-image codec) it must not look for
    faces, nor warp a crop: the file is GC's own, byte for byte, and ``--fit align|squash`` is refused."""
    from invcomp.landmarks import detect
    from invcomp.faces.photo import PhotoCodec, PhotoOptions

    def no_detector(*a: object, **k: object) -> None:
        raise AssertionError("the face detector ran for a whole-image codec")

    monkeypatch.setattr(detect, "detect", no_detector)
    gc = load_codec(str(tiny), mode="gc")
    im = image(70, 45, seed=5)
    wrapped = PhotoCodec(gc, PhotoOptions(framing="auto")).encode([im])[0]
    assert wrapped.data == gc.encode([im])[0].data
    gray = im.convert("L").convert("RGB")
    assert PhotoCodec(gc, PhotoOptions(framing="auto")).encode([gray])[0].data == gc.encode([gray])[0].data
    for fit in ("align", "squash"):
        with pytest.raises(InvcompError, match="whole image"):
            PhotoCodec(gc, PhotoOptions(framing=fit)).plan(im)


def _skewed_tables(values: int, planes: int) -> gridcode.GridTables:
    """Tables sure that every symbol is 0 (value 0 gets all but K-1 of 2**16 in every context)."""
    row = np.ones(values, dtype=np.int64)
    row[0] = 2 ** 16 - (values - 1)
    return gridcode.GridTables(values, planes, np.tile(row, (planes * (values + 1) ** 3, 1)))


def test_escape_keeps_the_payload_near_log2_l_bits_a_symbol() -> None:
    """Under tables that expect the wrong symbols the context coding costs ~16 bits a symbol; the escape codes the
    same grid at about log2(5) = 2.32 bits a symbol, decodes it exactly, and a forged escape flag is refused."""
    t = _skewed_tables(5, 2)
    g, pres = np.full((2, 10, 12), 4), np.ones((2, 10, 12), bool)
    payload, escaped = gridcode.encode_bounded(g, pres, t)
    assert escaped and 8 * len(payload) <= g.size * np.log2(5) + 40
    assert len(gridcode.encode_grid(g, pres, t)) > 4 * len(payload)
    assert np.array_equal(gridcode.decode_bounded(payload, pres, t, True), g)
    zeros = np.zeros_like(g)  # what the tables expect: the context coding wins, and an escaped copy is not canonical
    ctx, escaped = gridcode.encode_bounded(zeros, pres, t)
    assert not escaped and np.array_equal(gridcode.decode_bounded(ctx, pres, t, False), zeros)
    uni = gridcode.encode_grid(zeros, pres, gridcode.uniform_tables(5, 2))
    with pytest.raises(BitstreamError, match="escaped"):
        gridcode.decode_bounded(uni, pres, t, True)


def test_gc_file_escapes_when_its_tables_do_not_fit(tiny: Path) -> None:
    """A GC model whose tables expect the wrong symbols writes the escape (bit-depth field 1) and stays under the
    C log2 L bound; the file decodes to the codec's own reconstruction."""
    from dataclasses import replace

    codec = load_codec(str(tiny))
    cfg = codec.model.config
    codec.model = replace(codec.model, prior=replace(codec.model.prior, code=_skewed_tables(cfg.centres, cfg.channels)))
    im = image(160, 96, seed=4)
    enc = codec.encode([im])[0]
    assert bitstream.unpack(enc.data)[0].bits == 3
    cells = 10 * 6
    assert 8 * (len(enc.data) - 9) <= cells * cfg.channels * np.log2(cfg.centres) + 40
    assert torch.equal(codec.decode(enc.data)[1], enc.recon)


def test_report_metrics_of_large_pictures_are_measured_downscaled() -> None:
    """The encode report measures pictures over 4 MP on area-downscaled copies (one factor for both, at most 4 MP)
    and leaves smaller ones as they are; a flat picture keeps its PSNR either way."""
    from invcomp.service.report import METRICS_MAX_PIXELS, metrics_view
    from invcomp.metrics import psnr

    small = torch.zeros(1, 3, 40, 60)
    assert metrics_view(small, small)[1] is small
    y = torch.full((1, 3, 2100, 2000), 0.2)
    x = y + 0.1
    a, b = metrics_view(x, y)
    assert a.shape == b.shape and a.shape[-2] * a.shape[-1] <= METRICS_MAX_PIXELS < 2100 * 2000
    assert abs(float(psnr(a, b)) - float(psnr(x, y))) < 1e-3
