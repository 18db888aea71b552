"""The layer order of the package (tools/import_graph.py): every arrow points down, and there are no cycles.

The graph counts every import (lazy ones inside functions too) and every string that names a module of the
package, as ``importlib`` would load it."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("import_graph", REPO / "tools" / "import_graph.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["import_graph"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_every_arrow_points_down_and_there_are_no_cycles() -> None:
    g = _tool().build(REPO / "invcomp")
    assert len(g.modules) > 100 and len(g.arrows) > 300  # the graph was read, not an empty folder
    assert g.upward() == []
    assert g.cycles() == []


def test_every_package_and_top_module_sits_in_a_layer() -> None:
    tool = _tool()
    layered = {u for layer in tool.LAYERS for u in layer}
    units = {p.stem if p.is_file() else p.name for p in (REPO / "invcomp").iterdir()
             if (p.suffix == ".py" and p.stem not in ("__init__", "__main__")) or (p / "__init__.py").is_file()}
    assert units - layered == set()


def _package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "invcomp"
    for name, text in files.items():
        f = pkg / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return pkg


@pytest.mark.parametrize("how", [
    "from invcomp.codecs import base\n",
    "def f():\n    from invcomp.codecs.base import Codec\n",
    "import importlib\nm = importlib.import_module('invcomp.codecs.base')\n",
    "import importlib\nm = importlib.import_module(f'invcomp.codecs.{1}')\n",
])
def test_an_upward_import_is_caught_however_it_is_written(tmp_path: Path, how: str) -> None:
    pkg = _package(tmp_path, {"__init__.py": "", "errors.py": how, "codecs/__init__.py": "", "codecs/base.py": ""})
    up = _tool().build(pkg).upward()
    assert [(a, b) for a, b, _ in up] in ([("errors", "codecs.base")], [("errors", "codecs")])


def test_front_ends_may_not_import_each_other_and_cycles_are_found(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "__init__.py": "", "web/__init__.py": "from invcomp.batch import job\n", "batch/__init__.py": "",
        "batch/job.py": "", "coding/__init__.py": "", "coding/a.py": "from invcomp.coding import b\n",
        "coding/b.py": "from invcomp.coding import a\n"})
    g = _tool().build(pkg)
    assert [(a, b) for a, b, _ in g.upward()] == [("web", "batch.job")]
    assert g.cycles() == [["coding.a", "coding.b"]]


def test_an_import_for_annotations_only_is_no_cycle_but_keeps_the_layer_order(tmp_path: Path) -> None:
    pkg = _package(tmp_path, {
        "__init__.py": "", "codecs/__init__.py": "",
        "codecs/a.py": "from invcomp.codecs import b\n",
        "codecs/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from invcomp.codecs import a\n",
        "errors.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from invcomp.codecs import a\n"})
    g = _tool().build(pkg)
    assert g.cycles() == []
    assert [(a, b) for a, b, _ in g.upward()] == [("errors", "codecs.a")]


def test_the_readme_layout_names_every_layer_of_the_tree() -> None:
    text = (REPO / "README.md").read_text()
    block = text.split("**Layout.**", 1)[1].split("```", 2)[1]
    units = [u for layer in _tool().LAYERS for u in layer]
    missing = [u for u in units if not re.search(rf"(?<![\w/]){u}(/|\b)", block)]
    assert missing == []
