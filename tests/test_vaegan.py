"""The VAE-GAN mode: model shapes, training, save/load, the mode-1 bitstream and the `vaegan` training command.

Everything is tiny (16 px faces, 8-channel convs) so the file runs in seconds on a CPU.
"""
from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from invcomp.formats import ivc as bitstream
from invcomp.coding import elias
from invcomp.codecs.entropy import parse
from invcomp.data import split_of
from invcomp.errors import BitstreamError, InvcompError, UnknownModelError
from invcomp.train.vaegan import VAEGANTrainConfig, make_nets, train_step, train_vaegan
from invcomp.nets.vaegan import (
    Analysis, LoadedVAEGAN, PairDiscriminator, Synthesis, VAEGANConfig, build_vaegan, load_vaegan, reconstruct,
    save_vaegan,
)
from invcomp.cli.train import vaegan as vaegan_cmd
from invcomp.codecs import EncodeSettings, VAEGANCodec, mode_name


def encode_vaegan(m, images, *, bits=None, coder="auto", fit="crop"):  # type: ignore[no-untyped-def]
    return VAEGANCodec(m, EncodeSettings(bits=bits, coder=coder, fit=fit)).encode(images)


def decode_vaegan(data, m):  # type: ignore[no-untyped-def]
    return VAEGANCodec(m).decode(data)


def read_mode(data: bytes) -> int:
    from invcomp.formats.ivc import unpack

    return unpack(data)[0].mode

TINY = VAEGANConfig(resolution=16, channels=4, downsample=8, widths=(8, 8, 8), bits=4)


def _picture(rng: np.random.Generator, w: int = 24, h: int = 24) -> np.ndarray:
    """A flat background with a flat square: easy to learn, not trivial."""
    arr = np.zeros((h, w, 3), np.uint8) + rng.integers(0, 255, 3, dtype=np.uint8)
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    arr[y:y + h // 2, x:x + w // 2] = rng.integers(0, 255, 3, dtype=np.uint8)
    return arr


def _faces(folder: Path, n_train: int = 24, n_val: int = 4) -> Path:
    """Synthetic images named so that ``n_train`` fall in the train split and ``n_val`` in the val split."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    counts = {"train": 0, "val": 0}
    want = {"train": n_train, "val": n_val}
    i = 0
    while counts != want:
        name = f"face{i:05d}.png"
        split = split_of(name)
        if split in want and counts[split] < want[split]:
            Image.fromarray(_picture(rng)).save(folder / name)
            counts[split] += 1
        i += 1
    return folder


def _model(tmp_path: Path, cfg: VAEGANConfig = TINY, seed: int = 0) -> LoadedVAEGAN:
    torch.manual_seed(seed)
    path = save_vaegan(build_vaegan(cfg), cfg, tmp_path / f"tiny{seed}.pt")
    return load_vaegan(path)


def _pils(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(_picture(rng, 20 + 7 * i, 18 + 3 * i)) for i in range(n)]


# ---------------------------------------------------------------- model


@pytest.mark.parametrize(("f", "widths"), [(8, (8, 8, 8)), (16, (4, 8, 8, 8))])
def test_code_map_shapes(f: int, widths: tuple[int, ...]) -> None:
    cfg = VAEGANConfig(resolution=32, channels=5, downsample=f, widths=widths)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    mean, logvar = Analysis(cfg)(x)
    assert mean.shape == logvar.shape == (2, 5, 32 // f, 32 // f)
    assert cfg.symbols == 5 * (32 // f) ** 2
    y = Synthesis(cfg)(mean)
    assert y.shape == (2, 3, 32, 32) and y.abs().max() <= 1.0
    assert PairDiscriminator(cfg, ndf=4)(x, mean).shape == (2,)


def test_default_widths_and_bad_configs() -> None:
    assert VAEGANConfig(downsample=8).widths == (64, 128, 256)
    assert VAEGANConfig(downsample=16).widths == (64, 128, 256, 256)
    for kw in ({"downsample": 4}, {"resolution": 60}, {"channels": 0}, {"widths": (8, 8)}, {"bits": 1},
               {"resolution": 2048, "channels": 28}, {"architecture": "dcgan"}):
        with pytest.raises(InvcompError):
            VAEGANConfig(**kw)


def test_config_json_round_trip() -> None:
    cfg = VAEGANConfig(resolution=32, channels=2, downsample=16, widths=(4, 4, 8, 8), bits=5, training={"step": 3})
    d = json.loads(json.dumps(cfg.to_json_dict()))
    assert d["widths"] == [4, 4, 8, 8] and d["architecture"] == "vaegan"
    assert VAEGANConfig.from_json_dict(d) == cfg


def test_training_reduces_reconstruction_loss() -> None:
    cfg = VAEGANTrainConfig(data="", out="", resolution=16, channels=4, widths=(8, 8, 8), ndf=8, bits=4, lr=4e-3, beta1=0.9,
                            batch_size=8, adv_warmup=20, adv_weight=0.01)
    nets = make_nets(cfg, torch.device("cpu"))
    rng = np.random.default_rng(3)
    x = torch.stack([torch.from_numpy(_picture(rng, 16, 16)).permute(2, 0, 1) for _ in range(8)]).float() / 127.5 - 1
    gen = torch.Generator().manual_seed(0)
    logs = [train_step(nets, x, cfg, step, gen) for step in range(40)]
    first = np.mean([r["rec"] for r in logs[:5]])
    last = np.mean([r["rec"] for r in logs[-5:]])
    assert last < 0.8 * first, (first, last)
    assert all(r["d"] == 0.0 for r in logs[:20]) and all(r["d"] > 0.0 for r in logs[20:])  # D starts after warm-up


# ---------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    parts = build_vaegan(TINY)
    parts["discriminator"] = PairDiscriminator(TINY, ndf=4)  # not shipped
    path = save_vaegan(parts, TINY, tmp_path / "m.pt")
    state = torch.load(path, weights_only=True)
    assert state and all(k.startswith(("analysis.", "synthesis.")) for k in state)
    assert any(k.startswith("analysis.") for k in state) and any(k.startswith("synthesis.") for k in state)
    assert json.loads((tmp_path / "m.json").read_text())["channels"] == 4

    m = load_vaegan(path)
    assert m.name == "m" and m.config == TINY
    assert m.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert m.model_id == hashlib.sha256(path.read_bytes()).digest()[:4]
    assert not m.analysis.training and not m.synthesis.training
    assert not any(p.requires_grad for p in m.synthesis.parameters())
    for k, v in parts["synthesis"].state_dict().items():
        assert torch.equal(v, m.synthesis.state_dict()[k]), k


def test_load_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvcompError, match="not found"):
        load_vaegan(tmp_path / "absent.pt")
    torch.manual_seed(0)
    path = save_vaegan(build_vaegan(TINY), TINY, tmp_path / "m.pt")
    other = VAEGANConfig(resolution=16, channels=6, downsample=8, widths=(8, 8, 8))
    (tmp_path / "m.json").write_text(json.dumps(other.to_json_dict()))
    with pytest.raises(InvcompError, match="do not match") as e:
        load_vaegan(path)
    assert "\n" not in str(e.value)
    (tmp_path / "m.json").unlink()
    with pytest.raises(InvcompError, match="config not found"):
        load_vaegan(path)


# ---------------------------------------------------------------- the mode-1 bitstream


def test_encode_decode_round_trip(tmp_path: Path) -> None:
    m = _model(tmp_path)
    images = _pils(3)
    encoded = encode_vaegan(m, images, coder="auto")
    assert len(encoded) == 3
    s = 2 ** (TINY.bits - 1) - 1
    for im, enc in zip(images, encoded):
        h = enc.header
        assert (h.mode, h.latent_dim, h.resolution, h.bits, h.model_id) == (1, 4 * 2 * 2, 16, 4, m.model_id)
        assert (h.width, h.height) == im.size
        assert enc.data[8] >> 5 == 1  # the mode bits of the flags byte
        assert read_mode(enc.data) == 1
        # the byte count, from the layout table: 10 fixed bytes, 4 one-byte varints, float16 norm, nbits varint,
        # payload, CRC
        nbits = sum(elias.code_length(abs(int(q)) + 1, h.coder) + (q != 0) for q in enc.levels.tolist())
        nbits_varint = 1 if nbits < 128 else 2
        assert len(enc.data) == 10 + 4 + 2 + nbits_varint + (nbits + 7) // 8 + 4
        assert int.from_bytes(enc.data[-4:], "big") == zlib.crc32(enc.data[:-4])
        # max scaling: the largest coordinate takes the top level; error at most half a step
        assert int(enc.levels.abs().max()) == s
        assert (enc.levels.float() * h.norm / s - enc.z).abs().max() <= h.norm / (2 * s) + 1e-6
        header, recon = decode_vaegan(enc.data, m)
        assert header == h
        assert recon.shape == (3, 16, 16)
        torch.testing.assert_close(recon, enc.recon, atol=1e-5, rtol=0)
        direct = reconstruct(m.analysis, m.synthesis, enc.target[None], TINY.bits)[0]
        torch.testing.assert_close(recon, direct, atol=1e-5, rtol=0)


def test_bits_override_and_fixed_coder(tmp_path: Path) -> None:
    m = _model(tmp_path)
    (enc,) = encode_vaegan(m, _pils(1), bits=7, coder="omega", fit="squash")
    assert (enc.header.bits, enc.header.coder, enc.header.fit) == (7, "omega", "squash")
    assert int(enc.levels.abs().max()) == 63
    assert decode_vaegan(enc.data, m)[0].bits == 7
    with pytest.raises(InvcompError):
        encode_vaegan(m, _pils(1), coder="rice")
    assert encode_vaegan(m, []) == []


def test_batch_and_single_give_the_same_file(tmp_path: Path) -> None:
    m = _model(tmp_path)
    images = _pils(3)
    batch = [e.data for e in encode_vaegan(m, images)]
    alone = [encode_vaegan(m, [im])[0].data for im in images]
    assert batch == alone


def _levels_file(m: LoadedVAEGAN, **kw) -> bytes:
    fields = dict(model_id=m.model_id, latent_dim=m.config.symbols, resolution=16, width=20, height=20, bits=4,
                  coder="gamma", norm=1.5, scaling="max", mode=1)
    fields.update(kw)
    payload, nbits = elias.encode_levels([1, -2, 0, 3] * (fields["latent_dim"] // 4), "gamma")
    return bitstream.pack(bitstream.Header(**fields), payload, nbits)


def test_mode0_file_is_refused_naming_the_mode(tmp_path: Path) -> None:
    m = _model(tmp_path)
    data = _levels_file(m, mode=0)
    assert read_mode(data) == 0
    with pytest.raises(BitstreamError, match=r"GAN-inversion \(mode 0\) file, not VAE-GAN"):
        decode_vaegan(data, m)
    assert mode_name(0) == "GAN-inversion (mode 0)" and mode_name(1) == "VAE-GAN (mode 1)"
    # the inversion side sees mode 1 in the header, so a CLI can dispatch on it
    assert parse(_levels_file(m))[0].mode == 1
    # a hand-built mode-1 file decodes to the hand-placed levels
    header, recon = decode_vaegan(_levels_file(m), m)
    z = torch.tensor([1, -2, 0, 3] * 4, dtype=torch.float32).view(1, 4, 2, 2) * 1.5 / 7
    torch.testing.assert_close(recon, m.synthesis(z).clamp(-1, 1)[0], atol=1e-6, rtol=0)


def test_wrong_model_and_wrong_size_are_refused(tmp_path: Path) -> None:
    m = _model(tmp_path)
    with pytest.raises(UnknownModelError, match="model id"):
        decode_vaegan(_levels_file(m, model_id=b"\x00\x01\x02\x03"), m)
    other = _model(tmp_path, seed=1)
    (enc,) = encode_vaegan(other, _pils(1))
    with pytest.raises(UnknownModelError):
        decode_vaegan(enc.data, m)
    with pytest.raises(BitstreamError, match="20 symbols"):
        decode_vaegan(_levels_file(m, latent_dim=20), m)
    with pytest.raises(BitstreamError, match="resolution"):
        decode_vaegan(_levels_file(m, resolution=32), m)
    with pytest.raises(BitstreamError, match="no norm"):
        decode_vaegan(_levels_file(m, norm=None), m)
    with pytest.raises(BitstreamError, match="CRC"):
        data = bytearray(_levels_file(m))
        data[-6] ^= 1
        decode_vaegan(bytes(data), m)


# ---------------------------------------------------------------- the training command


def _train(data: Path, out: Path, steps: int, *extra: str):
    args = ["--data", str(data), "--out", str(out), "--resolution", "16", "--channels", "4", "--downsample", "8",
            "--widths", "8,8,8", "--ndf", "4", "--batch-size", "4", "--steps", str(steps), "--snapshot-every", "2",
            "--eval-faces", "4", "--adv-warmup", "2", "--lr", "1e-3", "--seed", "0", "--device", "cpu", *extra]
    return CliRunner().invoke(vaegan_cmd, args)


def test_cli_trains_and_resumes_exactly(tmp_path: Path) -> None:
    data = _faces(tmp_path / "faces")
    r = _train(data, tmp_path / "run", 4)
    assert r.exit_code == 0, r.output
    out = tmp_path / "run"
    for name in ("checkpoint.pt", "vaegan.pt", "vaegan.json", "train.log", "samples.png"):
        assert (out / name).exists(), name
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4
    cfg = json.loads((out / "vaegan.json").read_text())
    assert (cfg["channels"], cfg["downsample"], cfg["resolution"], cfg["widths"]) == (4, 8, 16, [8, 8, 8])
    assert 0.0 < cfg["training"]["val_ssim"] <= 1.0
    m = load_vaegan(out / "vaegan.pt")
    (enc,) = encode_vaegan(m, _pils(1))
    assert decode_vaegan(enc.data, m)[0].mode == 1

    r = _train(data, out, 6)
    assert r.exit_code == 0, r.output
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 6
    assert "resumed from" in (out / "train.log").read_text()

    r = _train(data, tmp_path / "straight", 6)  # 6 steps in one go == 4, stop, resume, 2 more
    assert r.exit_code == 0, r.output
    a = torch.load(out / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    for part in ("parts", "D"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)


def test_training_without_validation_faces_keeps_the_latest_unscored(tmp_path: Path) -> None:
    data, out = _faces(tmp_path / "faces", 8, 0), tmp_path / "run"
    cfg = VAEGANTrainConfig(data=str(data), out=str(out), resolution=16, channels=4, downsample=8, widths=(8, 8, 8),
                            ndf=4, batch_size=4, steps=3, snapshot_every=2, adv_warmup=2)
    assert train_vaegan(cfg, progress=False) == out / "vaegan.pt"
    text = (out / "train.log").read_text()
    assert "no validation images" in text and text.count("not scored (no validation faces)") == 2
    assert "2.0000" not in text and "3.0000" not in text  # not the step number printed as a val SSIM
    assert load_vaegan(out / "vaegan.pt").config.training["val_ssim"] is None
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3
    assert not (out / "samples.png").exists()


def test_cli_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _train(empty, tmp_path / "run", 2)
    assert r.exit_code == 1 and "no train images" in r.output and "Traceback" not in r.output
    data = _faces(tmp_path / "faces", 4, 0)
    r = _train(data, tmp_path / "run2", 2, "--widths", "8,8")
    assert r.exit_code == 1 and "widths" in r.output and "Traceback" not in r.output


def test_mode1_header_bytes_by_hand() -> None:
    h = bitstream.Header(model_id=bytes.fromhex("52c46b11"), latent_dim=100, resolution=64, width=124, height=124,
                         bits=6, coder="gamma", norm=9.5, scaling="l2", mode=bitstream.MODE_VAEGAN)
    body = (b"IVC\x01" + bytes.fromhex("52c46b11")
            + b"\x28"  # flags: scaling l2 (0x08) | mode 1 << 5 (0x20)
            + b"\x18\x64\x40\x7c\x7c" + b"\x48\xc0" + b"\x09" + b"\xa3\x80")
    data = bitstream.pack(h, b"\xa3\x80", 9)
    assert data == body + zlib.crc32(body).to_bytes(4, "big")
    assert bitstream.unpack(data) == (h, b"\xa3\x80", 9)
    assert (bitstream.MODE_INVERSION, bitstream.MODE_VAEGAN) == (0, 1)
    with pytest.raises(BitstreamError, match="mode"):  # three bits: 0..7
        bitstream.pack(bitstream.Header(**{**h.__dict__, "mode": 8}), b"\xa3\x80", 9)
    # the container carries modes 2..7; the codec table refuses one it does not know, in one line
    from invcomp.codecs import codec_for_header
    from invcomp.errors import InvcompError

    with pytest.raises(InvcompError, match="mode 6, which this invcomp does not know"):  # 4 and 5 are GC and SC
        codec_for_header(bitstream.Header(**{**h.__dict__, "mode": 6}))
