"""Tests for :mod:`invcomp.nets.generators.custom`: factory files, modules, weights, TorchScript, errors."""
from __future__ import annotations

import hashlib
import re
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from invcomp.errors import InvcompError
from invcomp.nets.generators.custom import LatentAdapter, is_custom_spec, load_custom

GEN = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, latent_dim=8, resolution=16):
        super().__init__()
        self.latent_dim = latent_dim
        self.resolution = resolution
        self.fc = nn.Linear(latent_dim, 3 * resolution * resolution)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, 3, self.resolution, self.resolution)


def make():
    torch.manual_seed({seed})
    return Tiny()
"""

CONV = """
import torch
from torch import nn


class Conv(nn.Module):
    latent_dim = 8
    resolution = 16
    prior = "uniform"
    norm_free = True

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.ConvTranspose2d(8, 4, 4, 1, 0), nn.ReLU(),        # 1 -> 4
                                 nn.ConvTranspose2d(4, 3, 4, 4, 0), nn.Tanh())       # 4 -> 16

    def forward(self, z):  # z: (N, 8, 1, 1) only
        assert z.dim() == 4, "wants (N, D, 1, 1)"
        return self.net(z)


def make():
    torch.manual_seed(0)
    return Conv()
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def gen(tmp_path: Path) -> Path:
    return write(tmp_path, "gen.py", GEN.replace("{seed}", "0"))


# --- factory files ---------------------------------------------------------------------------------


def test_factory_file_loads_and_generates(gen: Path) -> None:
    g, info, digest = load_custom(f"{gen}:make")
    assert isinstance(g, LatentAdapter) and not g.training
    assert all(not p.requires_grad for p in g.parameters())
    x = g(torch.randn(4, 8))
    assert x.shape == (4, 3, 16, 16)
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0
    assert info == {"latent_dim": 8, "resolution": 16, "prior": "normal", "norm_free": False,
                    "kind": "factory", "name": "make"}
    assert (g.latent_dim, g.resolution, g.prior, g.norm_free) == (8, 16, "normal", False)
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_sha256_stable_and_seed_sensitive(tmp_path: Path, gen: Path) -> None:
    _, _, a = load_custom(f"{gen}:make")
    _, _, b = load_custom(f"{gen}:make")
    assert a == b
    other = write(tmp_path, "gen1.py", GEN.replace("{seed}", "1"))
    _, _, c = load_custom(f"{other}:make")
    assert c != a


def test_spatial_latents_are_adapted(tmp_path: Path) -> None:
    path = write(tmp_path, "conv.py", CONV)
    g, info, _ = load_custom(f"{path}:make")
    assert g.spatial
    z = torch.rand(5, 8) * 2 - 1
    x = g(z)
    assert x.shape == (5, 3, 16, 16)
    assert torch.equal(x, g.inner(z[:, :, None, None]))
    assert torch.equal(g(z[:, :, None, None]), x)  # (N, D, 1, 1) is accepted too
    assert info["prior"] == "uniform" and info["norm_free"] is True
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        g(torch.zeros(2, 7))


def test_package_module_factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "mygens_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write(pkg, "tiny.py", GEN.replace("{seed}", "0"))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = "mygens_pkg.tiny:make"
    assert is_custom_spec(spec)
    g, info, digest = load_custom(spec)
    assert g(torch.zeros(1, 8)).shape == (1, 3, 16, 16)
    assert info["kind"] == "factory" and info["name"] == "make"
    # the same weights as the file form give the same id
    assert digest == load_custom(f"{pkg / 'tiny.py'}:make")[2]
    with pytest.raises(InvcompError, match="cannot import generator module mygens_pkg.nope"):
        load_custom("mygens_pkg.nope:make")


def test_factory_file_can_import_its_siblings(tmp_path: Path) -> None:
    write(tmp_path, "layers_sibling_xyz.py", GEN.replace("{seed}", "0"))
    path = write(tmp_path, "main_gen.py", "from layers_sibling_xyz import make\n")
    assert load_custom(f"{path}:make")[1]["resolution"] == 16


def test_factory_code_really_runs(tmp_path: Path) -> None:
    """Loading a ``file.py:factory`` executes that file: intended and documented (the module docstring says so)."""
    marker = tmp_path / "ran.txt"
    text = GEN.replace("{seed}", "0") + f"\nopen({str(marker)!r}, 'w').write('import ran')\n"
    path = write(tmp_path, "side_effect.py", text)
    assert not marker.exists()
    load_custom(f"{path}:make")
    assert marker.read_text() == "import ran"


# --- weights ---------------------------------------------------------------------------------------


def test_weights_are_loaded_and_hashed(tmp_path: Path, gen: Path) -> None:
    ref, _, _ = load_custom(f"{write(tmp_path, 'g7.py', GEN.replace('{seed}', '7'))}:make")
    state = ref.inner.state_dict()
    w = tmp_path / "w.pt"
    torch.save(state, w)
    g, _, digest = load_custom(f"{gen}:make", weights=str(w))
    bare, _, bare_digest = load_custom(f"{gen}:make")
    z = torch.randn(3, 8)
    assert torch.equal(g(z), ref(z))
    assert not torch.equal(g(z), bare(z))
    assert digest == hashlib.sha256(w.read_bytes()).hexdigest() != bare_digest


def test_mismatched_weights_are_an_invcomp_error(tmp_path: Path, gen: Path) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"fc.weight": torch.zeros(10, 8), "fc.bias": torch.zeros(10)}, bad)
    with pytest.raises(InvcompError, match="do not fit") as e:
        load_custom(f"{gen}:make", weights=str(bad))
    assert "\n" not in str(e.value)
    missing = tmp_path / "missing.pt"
    torch.save({"fc.weight": torch.zeros(768, 8)}, missing)
    with pytest.raises(InvcompError, match="fc.bias"):
        load_custom(f"{gen}:make", weights=str(missing))
    with pytest.raises(InvcompError, match="not found"):
        load_custom(f"{gen}:make", weights=str(tmp_path / "nope.pt"))


# --- TorchScript -----------------------------------------------------------------------------------


class Scripted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.latent_dim = 6
        self.resolution = 8
        self.prior = "uniform"
        self.fc = nn.Linear(6, 3 * 8 * 8)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(z)).view(-1, 3, 8, 8)


def save_scripted(module: nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
        torch.jit.save(torch.jit.script(module), str(path))


def test_torchscript(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ref = Scripted().eval()
    path = tmp_path / "ts_gen.pt"
    save_scripted(ref, path)
    assert is_custom_spec(str(path))
    g, info, digest = load_custom(str(path))
    z = torch.rand(2, 6)
    assert torch.allclose(g(z), ref(z))
    assert info == {"latent_dim": 6, "resolution": 8, "prior": "uniform", "norm_free": False,
                    "kind": "torchscript", "name": "ts_gen"}
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(InvcompError, match="TorchScript"):
        load_custom(str(path), weights=str(path))


def test_torchscript_without_attributes_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "plain.ts"
    save_scripted(nn.Sequential(nn.Linear(4, 4)), path)
    assert is_custom_spec(str(path))
    with pytest.raises(InvcompError, match="latent_dim"):
        load_custom(str(path))


@pytest.mark.parametrize("stem", ["sd", "code", "constants"])
def test_state_dict_files_are_not_custom(tmp_path: Path, stem: str) -> None:
    path = tmp_path / f"{stem}.pt"  # torch.save names its archive folder after the stem: "code/data.pkl"
    torch.save(Scripted().state_dict(), path)
    assert not is_custom_spec(str(path))
    with pytest.raises(InvcompError, match="not a custom generator spec"):
        load_custom(str(path))


@pytest.mark.parametrize("spec, want", [
    ("gen.py:make", True), ("a/b/gen.py:make_g", True), ("pkg.mod:factory", True), ("mod:f", True),
    ("dcgan-utkface64", False), ("gen.py", False), ("gen.py:", False), ("gen.py:1make", False),
    ("pkg-x.mod:f", False), ("dir/gen.txt:make", False), ("missing.pt", False), (":make", False),
])
def test_is_custom_spec_syntax(spec: str, want: bool) -> None:
    assert is_custom_spec(spec) is want


# --- errors ----------------------------------------------------------------------------------------


def _err(tmp_path: Path, body: str, factory: str = "make") -> str:
    path = write(tmp_path, "bad_gen.py", body)
    with pytest.raises(InvcompError) as e:
        load_custom(f"{path}:{factory}")
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvcompError, match="generator file not found"):
        load_custom(f"{tmp_path / 'nope.py'}:make")


LINEAR = "from torch import nn\ndef make():\n    m = nn.Linear(2, 2)\n"


@pytest.mark.parametrize("body, factory, want", [
    (GEN.replace("{seed}", "0"), "build", "factory 'build' not found"),
    ("make = 3\n", "make", "not callable"),
    ("def make():\n    return 42\n", "make", "must give a torch.nn.Module, got int"),
    (LINEAR + "    m.resolution = 16\n    return m\n", "make", "no integer attribute 'latent_dim'"),
    (LINEAR + "    m.latent_dim, m.resolution = 2.0, 16\n    return m\n", "make", "latent_dim must be an int"),
    (GEN.replace("{seed}", "0") + "\ndef cauchy():\n    m = make()\n    m.prior = 'cauchy'\n    return m\n",
     "cauchy", "unknown prior 'cauchy'"),
    (GEN.replace("{seed}", "0") + "\ndef nf():\n    m = make()\n    m.norm_free = 'yes'\n    return m\n",
     "nf", "norm_free must be a bool"),
    ("def make():\n    raise RuntimeError('boom\\nsecond line')\n", "make", "make\\(\\) .* failed: RuntimeError: boom"),
    ("import no_such_module_xyz\n", "make", "ModuleNotFoundError: No module named 'no_such_module_xyz'"),
    ("def make(:\n    pass\n", "make", "cannot import generator file .*bad_gen.py: SyntaxError"),
])
def test_errors_are_one_line(tmp_path: Path, body: str, factory: str, want: str) -> None:
    assert re.search(want, _err(tmp_path, body, factory))


def test_wrong_output_shape_names_both_probes(tmp_path: Path) -> None:
    body = GEN.replace("{seed}", "0").replace(".view(-1, 3, self.resolution, self.resolution)", ".view(-1, 3, 8, 32)")
    msg = _err(tmp_path, body)
    assert "(2, 3, 16, 16)" in msg and "(2, 3, 8, 32)" in msg and "(2, 8, 1, 1) ->" in msg
