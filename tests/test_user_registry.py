"""`invcomp models --register`: user models by name, found again by their id, refused when changed."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from invcomp.cli import cli
from invcomp.zoo import registry

from .conftest import DEMO_IMAGE

GEN = """
import torch
from torch import nn

class G(nn.Module):
    latent_dim = 8
    resolution = 16
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.lin = nn.Linear(8, 3 * 16 * 16)
    def forward(self, z):
        return torch.tanh(self.lin(z)).view(-1, 3, 16, 16)

def make():
    return G(SEED)
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("INVCOMP_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _gen_file(tmp_path: Path, seed: int) -> Path:
    p = tmp_path / "gen.py"
    p.write_text(GEN.replace("SEED", str(seed)))
    return p


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_register_list_encode_decode_by_id(tmp_path: Path, home: Path, monkeypatch) -> None:
    gen = _gen_file(tmp_path, 1)
    r = run("models", "--register", "mine", "--model", f"{gen}:make")
    assert r.exit_code == 0, r.output + r.stderr
    entry = json.loads((home / "models.json").read_text())["mine"]
    assert entry["model"] == f"{gen.resolve()}:make" and len(entry["sha256"]) == 64
    rows = [json.loads(line) for line in run("models", "--json").output.splitlines()]
    user = [r for r in rows if r["source"] == "user"]
    assert [u["name"] for u in user] == ["mine"] and user[0]["id"] == entry["sha256"][:8]
    monkeypatch.chdir(tmp_path.parent)  # the entry works from another folder
    out = tmp_path / "f.ivc"
    assert run("encode", DEMO_IMAGE, "--model", "mine", "--iters", 2, "-o", out).exit_code == 0
    assert out.read_bytes()[4:8] == bytes.fromhex(entry["sha256"][:8])
    r = run("decode", out, "-o", tmp_path / "f.png")  # no --model: found by id in the user registry
    assert r.exit_code == 0, r.stderr
    assert registry.name_for_id(bytes.fromhex(entry["sha256"][:8])) == "mine"


def test_changed_model_is_refused(tmp_path: Path, home: Path) -> None:
    gen = _gen_file(tmp_path, 1)
    assert run("models", "--register", "mine", "--model", f"{gen}:make").exit_code == 0
    _gen_file(tmp_path, 2)  # same file, other weights
    r = run("encode", DEMO_IMAGE, "--model", "mine", "--iters", 1, "-o", tmp_path / "x.ivc")
    assert r.exit_code == 1 and "no longer matches its registered sha256" in r.stderr
    assert not (tmp_path / "x.ivc").exists()


def test_register_errors(tmp_path: Path, home: Path) -> None:
    gen = _gen_file(tmp_path, 1)
    assert "shipped model" in run("models", "--register", "dcgan-utkface64", "--model", f"{gen}:make").stderr
    assert "needs --model" in run("models", "--register", "x").stderr
    assert run("models", "--register", "mine", "--model", f"{gen}:make").exit_code == 0
    r = run("models", "--register", "mine", "--model", f"{gen}:make")
    assert r.exit_code == 1 and "--force" in r.stderr
    assert run("models", "--register", "mine", "--model", f"{gen}:make", "--force").exit_code == 0
    assert "bad model name" in run("models", "--register", "a/b", "--model", f"{gen}:make").stderr
    assert "go with --register" in run("models", "--model", f"{gen}:make").stderr
    (home / "models.json").write_text("{not json")
    r = run("models")
    assert r.exit_code == 1 and "bad user model registry" in r.stderr
