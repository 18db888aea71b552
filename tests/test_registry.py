"""Tests for :mod:`invcomp.zoo.registry`: the shipped model, INVCOMP_PRETRAINED, path loading, safety."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from invcomp import files

from .conftest import REPO, tiny_dcgan
from invcomp.errors import InvcompError, UnknownModelError
from invcomp.zoo import registry
from invcomp.nets.generators.config import GeneratorConfig

NAME = "dcgan-utkface64"
SHIPPED = json.loads((REPO / "pretrained" / "models.json").read_text())[NAME]
WEIGHTS = REPO / "pretrained" / SHIPPED["weights"]


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INVCOMP_PRETRAINED", raising=False)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the shipped model ----------------------------------------------------------------------------


def test_list_models_has_shipped_model() -> None:
    entries = {e.name: e for e in registry.list_models()}
    assert NAME in entries
    e = entries[NAME]
    assert e.weights.is_absolute() and e.weights.is_file()
    assert e.config.is_file()
    assert e.card is not None and e.card.suffix == ".md"
    assert e.sha256 == SHIPPED["sha256"]
    assert e.description
    # the registry's digest is the digest of the file it points at
    assert sha256_of(e.weights) == e.sha256
    # the weights file name carries the id, as in models.json
    assert e.sha256[:8] in e.weights.name


def test_list_models_sorted_by_name(tmp_path: Path) -> None:
    (tmp_path / "models.json").write_text(json.dumps({
        "zeta": {"weights": "z.pt", "config": "z.json", "sha256": "00" * 32},
        "alpha": {"weights": "a.pt", "config": "a.json", "sha256": "11" * 32, "card": "a.md"},
    }))
    entries = registry.list_models(tmp_path)
    assert [e.name for e in entries] == ["alpha", "zeta"]
    assert entries[0].weights == tmp_path / "a.pt"
    assert entries[0].card == tmp_path / "a.md"
    assert entries[1].card is None


def test_load_shipped_generator() -> None:
    gen = registry.load_generator(NAME)
    assert gen.name == NAME
    assert not gen.module.training
    assert all(not m.training for m in gen.module.modules())
    params = list(gen.module.parameters())
    assert params and not any(p.requires_grad for p in params)
    assert gen.sha256 == SHIPPED["sha256"]
    assert gen.model_id == bytes.fromhex(SHIPPED["sha256"][:8])
    assert len(gen.model_id) == 4
    cfg = json.loads((REPO / "pretrained" / SHIPPED["config"]).read_text())
    assert (gen.config.latent_dim, gen.config.resolution) == (cfg["latent_dim"], cfg["resolution"]) == (100, 64)
    assert tuple(gen.module.arch.widths) == tuple(cfg["widths"])
    with torch.no_grad():
        x = gen.module(torch.randn(2, 100, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (2, 3, 64, 64)
    assert x.min() >= -1 and x.max() <= 1
    assert x.flatten(1).std(1).min() > 0.1


def test_find_by_id() -> None:
    e = registry.find_by_id(bytes.fromhex(SHIPPED["sha256"][:8]))
    assert e is not None and e.name == NAME
    assert registry.find_by_id(b"\x00\x00\x00\x00") is None
    # a one-bit difference is another model
    wrong = bytearray.fromhex(SHIPPED["sha256"][:8])
    wrong[3] ^= 1
    assert registry.find_by_id(bytes(wrong)) is None


def test_unknown_name() -> None:
    with pytest.raises(UnknownModelError, match="invcomp models") as info:
        registry.load_generator("nosuchmodel")
    assert "nosuchmodel" in str(info.value)
    assert isinstance(info.value, InvcompError)


# --- INVCOMP_PRETRAINED ---------------------------------------------------------------------------


def _copy_registry(dst: Path, sha256: str) -> None:
    shutil.copy(WEIGHTS, dst / SHIPPED["weights"])
    shutil.copy(REPO / "pretrained" / SHIPPED["config"], dst / SHIPPED["config"])
    (dst / "models.json").write_text(json.dumps({NAME: {**SHIPPED, "sha256": sha256}}))


def test_env_registry_with_wrong_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    _copy_registry(good, SHIPPED["sha256"])
    _copy_registry(bad, "ab" * 32)

    monkeypatch.setenv("INVCOMP_PRETRAINED", str(good))
    assert registry.pretrained_dir() == good
    assert registry.load_generator(NAME).sha256 == SHIPPED["sha256"]  # control: the copy itself is fine

    monkeypatch.setenv("INVCOMP_PRETRAINED", str(bad))
    assert [e.weights.parent for e in registry.list_models()] == [bad]
    with pytest.raises(InvcompError, match="sha256"):
        registry.load_generator(NAME)


def test_env_registry_replaced_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _copy_registry(tmp_path, SHIPPED["sha256"])
    w = tmp_path / SHIPPED["weights"]
    data = bytearray(w.read_bytes())
    data[-100] ^= 0xFF
    w.write_bytes(bytes(data))
    monkeypatch.setenv("INVCOMP_PRETRAINED", str(tmp_path))
    with pytest.raises(InvcompError, match="sha256"):
        registry.load_generator(NAME)


def test_env_registry_missing_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models.json").write_text(json.dumps({NAME: SHIPPED}))
    monkeypatch.setenv("INVCOMP_PRETRAINED", str(tmp_path))
    with pytest.raises(InvcompError, match="missing"):
        registry.load_generator(NAME)


def test_env_registry_corrupt_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models.json").write_text("{not json")
    monkeypatch.setenv("INVCOMP_PRETRAINED", str(tmp_path))
    with pytest.raises(InvcompError, match="registry"):
        registry.list_models()


def test_env_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVCOMP_PRETRAINED", str(tmp_path))
    assert registry.list_models() == []
    assert registry.find_by_id(bytes.fromhex(SHIPPED["sha256"][:8])) is None
    with pytest.raises(UnknownModelError, match="invcomp models"):
        registry.load_generator(NAME)


# --- loading a .pt path ---------------------------------------------------------------------------


def test_path_without_json_infers_config(tmp_path: Path) -> None:
    g = tiny_dcgan(latent_dim=8, widths=(8, 4, 2), seed=7)
    p = tmp_path / "tiny.pt"
    torch.save(g.state_dict(), p)
    gen = registry.load_generator(str(p))
    assert gen.name == "tiny"
    assert gen.config == GeneratorConfig("dcgan", 8, 32, "normal", [8, 4, 2])
    assert gen.sha256 == sha256_of(p)
    assert gen.model_id == bytes.fromhex(sha256_of(p)[:8])
    assert not gen.module.training
    assert not any(q.requires_grad for q in gen.module.parameters())
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(gen.module(z), g(z))


def test_path_with_wrapped_state_dict(tmp_path: Path) -> None:
    g = tiny_dcgan(latent_dim=4, widths=(4,), seed=1)
    p = tmp_path / "wrapped.pt"
    torch.save({"state_dict": g.state_dict(), "step": torch.tensor(3)}, p)
    assert registry.load_generator(str(p)).config.resolution == 8


def test_path_with_matching_json_uses_it(tmp_path: Path) -> None:
    g = tiny_dcgan(latent_dim=8, widths=(8, 4, 2), seed=7)
    p = tmp_path / "tiny.pt"
    torch.save(g.state_dict(), p)
    p.with_suffix(".json").write_text(json.dumps({"architecture": "dcgan", "latent_dim": 8, "resolution": 32,
                                                  "prior": "uniform"}))
    assert registry.load_generator(str(p)).config.prior == "uniform"  # read from the json, not inferred


@pytest.mark.parametrize("cfg", [
    {"architecture": "dcgan", "latent_dim": 8, "resolution": 64},
    {"architecture": "dcgan", "latent_dim": 100, "resolution": 32},
])
def test_path_with_contradicting_json(tmp_path: Path, cfg: dict) -> None:
    p = tmp_path / "tiny.pt"
    torch.save(tiny_dcgan(latent_dim=8, widths=(8, 4, 2)).state_dict(), p)
    p.with_suffix(".json").write_text(json.dumps(cfg))
    with pytest.raises(InvcompError, match="config says"):
        registry.load_generator(str(p))


def test_path_with_broken_json(tmp_path: Path) -> None:
    p = tmp_path / "tiny.pt"
    torch.save(tiny_dcgan().state_dict(), p)
    p.with_suffix(".json").write_text('{"architecture": "stylegan", "latent_dim": 8, "resolution": 32}')
    with pytest.raises(InvcompError, match="architecture"):
        registry.load_generator(str(p))


@pytest.mark.parametrize("content", [
    b"",
    b"hello, not a checkpoint\n",
    b"PK\x03\x04garbage",
    b"\x80\x02}q\x00.",  # a pickled empty dict: loads, but is no generator
])
def test_path_not_a_checkpoint(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "junk.pt"
    p.write_bytes(content)
    with pytest.raises(InvcompError):
        registry.load_generator(str(p))


def test_path_not_a_state_dict(tmp_path: Path) -> None:
    p = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], p)
    with pytest.raises(InvcompError, match="state_dict"):
        files.load_state_dict(p)
    p2 = tmp_path / "foreign.pt"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, p2)
    with pytest.raises(InvcompError):
        registry.load_generator(str(p2))


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(InvcompError, match="not found"):
        files.load_state_dict(tmp_path / "absent.pt")


def test_path_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InvcompError):
        registry.load_generator(str(tmp_path))


# --- code-carrying pickles are refused and not run -------------------------------------------------


class _Payload:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def _touch(path: Path) -> str:
    return f"touch '{path}'"


def test_payload_is_live(tmp_path: Path) -> None:
    """Control: unpickling the payload with plain pickle really runs it (so the tests below can fail)."""
    flag = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(_touch(flag))))  # noqa: S301 (deliberate)
    assert flag.exists()


@pytest.mark.parametrize("how", ["torch-zip", "torch-legacy", "pickle", "nested"])
def test_malicious_pickle_is_refused_and_not_run(tmp_path: Path, how: str) -> None:
    flag = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    payload = _Payload(_touch(flag))
    if how == "torch-zip":
        torch.save(payload, p, _use_new_zipfile_serialization=True)
    elif how == "torch-legacy":
        torch.save(payload, p, _use_new_zipfile_serialization=False)
    elif how == "pickle":
        p.write_bytes(pickle.dumps(payload, protocol=2))
    else:  # hidden inside an otherwise valid state_dict
        sd = dict(tiny_dcgan().state_dict())
        sd["main.0.weight"] = payload  # type: ignore[assignment]
        torch.save(sd, p)
    assert not flag.exists()
    with pytest.raises(InvcompError, match="weights_only"):
        files.load_state_dict(p)
    assert not flag.exists()
    with pytest.raises(InvcompError):
        registry.load_generator(str(p))
    assert not flag.exists()


# --- the shipped PGAN -----------------------------------------------------------------------------


def test_shipped_pgan_is_norm_free_and_matches_its_registry_entry() -> None:
    entry = json.loads((REPO / "pretrained" / "models.json").read_text())["pgan-utkface64"]
    path = REPO / "pretrained" / entry["weights"]
    assert sha256_of(path) == entry["sha256"] and entry["sha256"][:8] in path.name
    assert (REPO / "pretrained" / entry["card"]).is_file()
    gen = registry.load_generator("pgan-utkface64")
    assert (gen.config.architecture, gen.config.latent_dim, gen.config.resolution) == ("pgan", 512, 64)
    assert gen.config.norm_free and gen.model_id == bytes.fromhex(entry["sha256"][:8])
    z = torch.randn(3, 512, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x, x_scaled = gen.module(z), gen.module(z * 3.7)
    assert x.shape == (3, 3, 64, 64) and x.abs().max() <= 1.0
    assert torch.allclose(x, x_scaled, atol=1e-5)  # pixel-norm first: the latent's scale is invisible


def test_shipped_pgan_bitstreams_store_no_norm() -> None:
    from PIL import Image

    from invcomp.formats.ivc import unpack
    from invcomp.codecs import EncodeSettings, InversionCodec

    gen = registry.load_generator("pgan-utkface64")
    img = Image.open(REPO / "experiments" / "data" / "portraits" / "astronaut-face.png").convert("RGB")
    from invcomp.codecs.entropy import parse

    for coder in ("elias", "auto"):  # version 1 and version 2
        c = InversionCodec(gen, EncodeSettings(iters=2, coder=coder))
        enc = c.encode([img])[0]
        assert unpack(enc.data)[0].version == (1 if coder == "elias" else 2)
        header = parse(enc.data, c)[0]
        assert header.norm is None and header.latent_dim == 512
        _, recon = c.decode(enc.data)
        assert torch.allclose(recon, enc.recon, atol=1e-6)


def test_prior_mean_is_a_dead_point_of_the_shipped_dcgan() -> None:
    # The --init help and README say so: at z = 0 every first-layer ReLU of dcgan-utkface64 is off, so the
    # gradient of any image loss is exactly zero and a search started there never moves. A random z is not dead.
    g = registry.load_generator("dcgan-utkface64", "cpu")
    w = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for z0, dead in ((torch.zeros(1, 100), True), (torch.randn(1, 100, generator=torch.Generator().manual_seed(1)), False)):
        z = z0.clone().requires_grad_(True)
        (g.module(z) * w).sum().backward()
        assert bool(z.grad.abs().max() == 0) is dead
