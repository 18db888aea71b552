"""The install a user gets from a wheel: built from the checkout's files, installed without ``-e`` into a venv of its
own, and run from a folder that is not the checkout, so nothing can be borrowed from the source tree.

It fails when a subpackage, a template, or a shipped model file is left out of the wheel, and when any shipped mode
cannot encode and decode through the installed ``invcomp`` command.
"""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import DEMO_IMAGE, REPO

pytestmark = pytest.mark.slow


def _checkout_files() -> list[str]:
    """The files a clone would hold: tracked, plus new ones not ignored (so work in progress is tested too)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (no build isolation: offline, with this venv's setuptools)."""
    src = tmp_path_factory.mktemp("src")
    for f in _checkout_files():
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, src / f)
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = out.glob("invcomp-*.whl")
    return whl


def test_the_wheel_holds_every_package_and_shipped_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = sorted(str(p.parent.relative_to(REPO)) for p in (REPO / "invcomp").rglob("__init__.py")
                      if "__pycache__" not in p.parts)
    assert "invcomp/nets/generative" in packages  # the package (then invcomp/gc) an earlier hand-written list left out
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"packages left out of the wheel: {missing}"
    shipped = [str(p.relative_to(REPO / "pretrained")) for p in (REPO / "pretrained").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts]
    missing = [f for f in shipped if f"invcomp/pretrained/{f}" not in names]
    assert not missing, f"shipped files left out of the wheel: {missing}"
    registry = json.loads((REPO / "pretrained" / "models.json").read_text())
    for row in registry.values():
        for f in (row["weights"], row["config"], row.get("prior", {}).get("file"), row.get("card")):
            assert f is None or f"invcomp/pretrained/{f}" in names, f
    web = [str(p.relative_to(REPO)) for p in (REPO / "invcomp" / "web").rglob("*") if p.suffix in (".html", ".js", ".css")]
    assert web and not [f for f in web if f not in names]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (not editable). Its dependencies (torch, ...) are borrowed from this
    environment through a path entry, which, unlike a site dir, does not run this environment's editable hook."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(purelib) / "zz_borrowed_deps.pth").write_text("\n".join(ours) + "\n")
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                        "--no-index", str(wheel)], capture_output=True, text=True)
    if r.returncode != 0 and "no such option: --python" in r.stderr:  # pip < 22.3
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                            purelib, str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return venv


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "INVCOMP_PRETRAINED")}
    return subprocess.run([str(venv / "bin" / "python"), "-m", "invcomp.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Path, tmp_path: Path) -> None:
    r = subprocess.run([str(installed / "bin" / "python"), "-c",
                        "import invcomp, invcomp.nets.generative, invcomp.zoo.registry as r; "
                        "print(invcomp.__file__); print(r.pretrained_dir())"],
                       cwd=tmp_path, capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
    assert r.returncode == 0, r.stderr
    pkg, pretrained = r.stdout.split()
    assert Path(pkg).is_relative_to(installed) and not Path(pkg).is_relative_to(REPO)
    assert Path(pretrained).is_relative_to(installed)


# Every shipped mode, with options that keep the test short; the inversion searches are cut to a few steps.
MODES = [
    ("inversion", ["--mode", "inversion", "--iters", "3"]),
    ("inversion-tone", ["--mode", "inversion-tone", "--iters", "3"]),
    ("vaegan", ["--mode", "vaegan", "--channels", "4"]),
    ("layered", ["--mode", "layered", "--iters", "3", "--resolution", "128"]),
    ("gc", ["--mode", "gc", "--model", "gc-utkface-c2"]),
    ("sc", ["--mode", "sc", "--model", "sc-utkface-c8", "--preserve-box", "8,8,32,32"]),
    ("auto", ["--mode", "auto", "--iters", "3"]),
    ("default", ["--iters", "3"]),  # the whole-frame codec: inversion and the detail layer
]


@pytest.mark.parametrize(("name", "opts"), MODES, ids=[m for m, _ in MODES])
def test_every_shipped_mode_encodes_and_decodes_from_the_wheel(installed: Path, tmp_path: Path, name: str,
                                                               opts: list[str]) -> None:
    if name == "layered":
        pytest.importorskip("compressai")
    face = tmp_path / "face.png"
    shutil.copy(DEMO_IMAGE, face)
    r = _run(installed, "encode", str(face), "-o", str(tmp_path / "f.ivc"), "--fit", "crop", *opts, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = _run(installed, "decode", str(tmp_path / "f.ivc"), "-o", str(tmp_path / "f.png"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    from PIL import Image

    with Image.open(tmp_path / "f.png") as im:
        assert im.size == Image.open(face).size
