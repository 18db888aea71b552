"""PGAN fidelity to pytorch_GAN_zoo: a hand-computed forward, their checkpoint layout, safe conversion,
latent invariance, and norm-free bitstreams."""
from __future__ import annotations

import math
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from invcomp.formats import ivc as bitstream
from invcomp.codecs import InversionCodec
from invcomp.codecs.entropy import parse
from invcomp.coding.quantize import dequantize
from invcomp.cli import cli
from invcomp.errors import InvcompError
from invcomp.nets.generators.pgan import PGANArch, PGANGenerator, load_pgan, normalise_keys
from invcomp.zoo.registry import load_generator
from invcomp.nets.generators.convert import convert_pgan_zoo

from .conftest import DEMO_IMAGE


def _random_pgan(depths=(4, 2), latent=3, alpha=0.0, seed=0) -> PGANGenerator:
    torch.manual_seed(seed)
    g = PGANGenerator(PGANArch(latent_dim=latent, depths=depths, alpha=alpha))
    with torch.no_grad():
        for p in g.parameters():
            p.normal_(0, 1)  # their init is N(0, 1) weights; random biases test the bias scaling too
    return g.eval()


# ---------------------------------------------------------------- hand-computed forward (numpy, from the equations)

def _pn(x):  # pixel norm over axis 1
    return x / np.sqrt((x ** 2).mean(axis=1, keepdims=True) + 1e-8)


def _lrelu(x):
    return np.where(x > 0, x, 0.2 * x)


def _conv(x, w, b, pad):  # x (N,C,H,W), w (O,C,k,k): plain loops, He-scaled output incl. bias
    n, c, h, wd = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((n, o, h, wd))
    for i in range(h):
        for j in range(wd):
            patch = xp[:, :, i:i + k, j:j + k]
            out[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w) + b
    return out * math.sqrt(2.0 / (c * k * k))


def _up(x):
    return x.repeat(2, axis=2).repeat(2, axis=3)


def hand_forward(sd: dict, z: np.ndarray, alpha: float) -> np.ndarray:
    p = {k: v.double().numpy() for k, v in sd.items()}
    z = _pn(z)
    w, b = p["formatLayer.module.weight"], p["formatLayer.module.bias"]
    x = _lrelu((z @ w.T + b) * math.sqrt(2.0 / w.shape[1]))
    x = _pn(x.reshape(z.shape[0], -1, 4, 4))
    x = _pn(_lrelu(_conv(x, p["groupScale0.0.module.weight"], p["groupScale0.0.module.bias"], 1)))
    low = _up(_conv(x, p["toRGBLayers.0.module.weight"], p["toRGBLayers.0.module.bias"], 0))
    x = _up(x)
    for j in (0, 1):
        x = _pn(_lrelu(_conv(x, p[f"scaleLayers.0.{j}.module.weight"], p[f"scaleLayers.0.{j}.module.bias"], 1)))
    high = _conv(x, p["toRGBLayers.1.module.weight"], p["toRGBLayers.1.module.bias"], 0)
    return np.clip(alpha * low + (1 - alpha) * high if alpha > 0 else high, -1, 1)


@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_forward_matches_hand_computation(alpha: float) -> None:
    g = _random_pgan(alpha=alpha)
    z = torch.randn(2, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = g(z).double().numpy()
    ref = hand_forward(g.state_dict(), z.double().numpy(), alpha)
    assert out.shape == (2, 3, 8, 8)
    assert np.allclose(out, ref, atol=1e-5), np.abs(out - ref).max()
    assert 0 < (np.abs(ref) < 1).mean() < 1  # neither saturated nor trivially inside


def test_scale_invariance_of_the_latent() -> None:
    g = _random_pgan(depths=(8, 4, 4), latent=16)
    z = torch.randn(3, 16)
    with torch.no_grad():
        for c in (0.25, 3.0):  # equal up to float rounding (pixel norm differs ~1e-7, amplified by the layers)
            assert torch.allclose(g(c * z), g(z), atol=1e-3)
        assert (g(z + 0.3 * torch.randn(3, 16)) - g(z)).abs().max() > 0.05  # the control: the image does depend on z
    assert g.norm_free and g.resolution == 16


def test_old_key_layout_is_accepted() -> None:
    g = _random_pgan()
    old = {k.replace(".module.", "."): v for k, v in g.state_dict().items()}
    assert "formatLayer.weight" in old
    g2 = load_pgan(old)
    z = torch.randn(2, 3)
    with torch.no_grad():
        assert torch.equal(g2(z), g(z))


# ---------------------------------------------------------------- their checkpoint, written as their code writes it

@pytest.fixture
def zoo_config_class(monkeypatch):
    """Register a module ``models.utils.config`` with a ``BaseConfig`` like theirs, so torch.save pickles it by that name."""
    mods = {}
    for name in ("models", "models.utils", "models.utils.config"):
        mods[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, mods[name])

    class BaseConfig:
        pass

    BaseConfig.__module__ = "models.utils.config"
    BaseConfig.__qualname__ = "BaseConfig"
    mods["models.utils.config"].BaseConfig = BaseConfig
    return BaseConfig


def _write_zoo_checkpoint(path: Path, BaseConfig, g: PGANGenerator, avg: PGANGenerator, alpha: float = 0.0) -> None:
    cfg = BaseConfig()
    cfg.depthScale0 = g.arch.depths[0]
    cfg.depthOtherScales = list(g.arch.depths[1:])
    cfg.initBiasToZero, cfg.leakyReluLeak, cfg.perChannelNormalization = True, 0.2, True
    cfg.alpha, cfg.miniBatchStdDev, cfg.equalizedlR = alpha, True, True
    cfg.latentVectorDim, cfg.dimOutput, cfg.lossMode, cfg.lambdaGP, cfg.epsilonD = g.latent_dim, 3, "WGANGP", 10.0, 0.001
    torch.save({"config": cfg, "netG": g.state_dict(), "netD": {"decisionLayer.module.weight": torch.randn(1, 4)},
                "avgG": avg.state_dict()}, path)


def test_convert_their_checkpoint_uses_avgG(tmp_path: Path, zoo_config_class, monkeypatch) -> None:
    g, avg = _random_pgan(seed=1, alpha=0.25), _random_pgan(seed=2, alpha=0.25)
    ck = tmp_path / "pgan.pth"
    _write_zoo_checkpoint(ck, zoo_config_class, g, avg, alpha=0.25)
    for name in ("models.utils.config", "models.utils", "models"):  # the user has no pytorch_GAN_zoo installed
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(ck, weights_only=True)  # why a converter is needed
    state, config = convert_pgan_zoo(ck)
    assert config.architecture == "pgan" and config.norm_free and config.options["alpha"] == 0.25
    assert (config.latent_dim, config.resolution, config.widths) == (3, 8, [4, 2])
    assert all(torch.equal(state[k], v) for k, v in avg.state_dict().items())
    r = CliRunner().invoke(cli, ["convert", "pgan-zoo", str(ck), "-o", str(tmp_path / "mine")])
    assert r.exit_code == 0, r.output + r.stderr
    loaded = load_generator(str(tmp_path / "mine.pt"))
    z = torch.randn(2, 3)
    with torch.no_grad():
        assert torch.allclose(loaded.module(z), avg(z), atol=1e-6)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_zoo_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ck = tmp_path / "evil.pth"
    torch.save({"config": _Evil(marker), "netG": _random_pgan().state_dict()}, ck)
    with pytest.raises(InvcompError, match="forbidden global"):
        convert_pgan_zoo(ck)
    r = CliRunner().invoke(cli, ["convert", "pgan-zoo", str(ck), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "Traceback" not in r.output + r.stderr
    assert not marker.exists()
    assert not (tmp_path / "x.pt").exists()


def test_not_a_zoo_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "junk.pth"
    p.write_bytes(b"nothing here")
    with pytest.raises(InvcompError):
        convert_pgan_zoo(p)
    torch.save({"state": torch.zeros(1)}, p)
    with pytest.raises(InvcompError, match="netG"):
        convert_pgan_zoo(p)


# ---------------------------------------------------------------- norm-free bitstreams

def test_norm_free_bitstream_round_trip(tmp_path: Path) -> None:
    g = _random_pgan(depths=(8, 8, 4), latent=16, seed=3)
    weights = tmp_path / "pg.pt"
    torch.save(g.state_dict(), weights)  # no .json: the loader infers a PGAN, norm-free
    gen = load_generator(str(weights))
    assert gen.config.architecture == "pgan" and gen.config.norm_free
    out = tmp_path / "face.ivc"
    r = CliRunner().invoke(cli, ["encode", str(DEMO_IMAGE), "--model", str(weights), "--iters", "3", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    data = out.read_bytes()
    header, payload, nbits = bitstream.unpack(data)
    assert header.norm is None and data[9] & 0x10  # the norm-free flag
    with_norm = bitstream.pack(bitstream.Header(**{**header.__dict__, "norm": 1.0}), payload, nbits)
    assert len(with_norm) - len(data) == 2  # the bytes saved
    _, x = InversionCodec(gen).decode(data)
    assert x.shape == (3, 16, 16)
    # decoding with the true-norm latent gives the same image: the stored norm really is irrelevant
    q = parse(data)[1]
    with torch.no_grad():
        a = gen.module(dequantize(q))
        b = gen.module(dequantize(q) * 7.0)
    assert torch.allclose(a, b, atol=1e-5)


def test_norm_free_bitstream_refused_by_a_norm_model(tmp_path: Path) -> None:
    dc = load_generator()  # the shipped DCGAN stores norms
    h = bitstream.Header(model_id=dc.model_id, latent_dim=100, resolution=64, width=64, height=64, bits=4,
                         coder="gamma", norm=None)
    from invcomp.coding import elias

    payload, nbits = elias.encode_levels([0] * 100, "gamma")
    with pytest.raises(InvcompError, match="not norm-free"):
        InversionCodec(dc).decode(bitstream.pack(h, payload, nbits))


def test_normalise_keys_maps_old_layout() -> None:
    assert normalise_keys({"module.toRGBLayers.2.weight": torch.zeros(1)}) == {"toRGBLayers.2.module.weight": torch.zeros(1)}
