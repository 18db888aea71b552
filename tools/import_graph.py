"""The import graph of the ``invcomp`` package, read from its source, and the layer order it must keep.

Every ``import`` and ``from ... import`` counts, at any depth (lazy imports inside functions too), and so does
every string that names a module of the package (``"invcomp.faces.detect"``, ``"invcomp.train." + name``, a
``module:attr`` entry): what ``importlib`` loads is an arrow like any other.

The layers, from the bottom (:data:`LAYERS`): a module may import from its own package and from any package in a
lower layer. Packages that share a layer may not import each other, except in the ground layer, whose flat modules
are ordered by :data:`GROUND`.

    python tools/import_graph.py            # modules, arrows, upward arrows, cycles
    python tools/import_graph.py --json     # the same, for machines, with every upward arrow
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

PACKAGE = "invcomp"

# Bottom to top. Each entry is a layer: the units (top-level modules or packages of invcomp) that live on it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "files", "imageio", "identity", "metrics", "data"),
    ("landmarks",),
    ("coding",),
    ("formats",),
    ("nets",),
    ("zoo",),
    ("search",),
    ("codecs",),
    ("classic",),
    ("faces",),
    ("service",),
    ("bench", "train", "fuzz"),
    ("web", "batch"),
    ("cli",),
)
# The ground layer's own order, bottom first: a ground module may import only those before it.
GROUND: tuple[str, ...] = ("errors", "files", "imageio", "identity", "metrics", "data")
# The package's face (invcomp/__init__.py, __main__) re-exports; it may import anything.
FACE = ("", "__main__")


@dataclass
class Graph:
    """Modules (dotted names without the package prefix, ``""`` for the package itself) and arrows between them."""

    modules: list[str]
    arrows: set[tuple[str, str]] = field(default_factory=set)
    typing_only: set[tuple[str, str]] = field(default_factory=set)  # arrows made only under ``if TYPE_CHECKING:``

    def unit(self, module: str) -> str:
        return module.split(".")[0]

    def layer(self, module: str) -> Optional[int]:
        unit = self.unit(module)
        for i, units in enumerate(LAYERS):
            if unit in units:
                return i
        return None

    def upward(self) -> list[tuple[str, str, str]]:
        """Arrows that break the layer order: ``(importer, imported, why)``."""
        bad = []
        for src, dst in sorted(self.arrows):
            us, ud = self.unit(src), self.unit(dst)
            if us == ud or src in FACE or dst == "":  # the package's face holds only its version
                continue
            ls, ld = self.layer(src), self.layer(dst)
            if ls is None or ld is None:
                bad.append((src, dst, f"'{us if ls is None else ud}' is in no layer"))
            elif ld > ls:
                bad.append((src, dst, "imports a higher layer"))
            elif ld == ls:
                if ls == 0 and GROUND.index(ud) < GROUND.index(us):
                    continue
                bad.append((src, dst, "imports a package of its own layer"))
        return bad

    def cycles(self) -> list[list[str]]:
        """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
        succ: dict[str, list[str]] = {m: [] for m in self.modules}
        for a, b in self.arrows - self.typing_only:  # an import for annotations only runs nothing: no cycle
            succ.setdefault(a, []).append(b)
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on: set[str] = set()
        out: list[list[str]] = []
        counter = 0
        for root in sorted(succ):
            if root in index:
                continue
            work = [(root, iter(sorted(succ.get(root, []))))]
            index[root] = low[root] = counter
            counter += 1
            stack.append(root)
            on.add(root)
            while work:
                node, it = work[-1]
                child = next(it, None)
                if child is None:
                    work.pop()
                    if work:
                        low[work[-1][0]] = min(low[work[-1][0]], low[node])
                    if low[node] == index[node]:
                        comp = []
                        while True:
                            m = stack.pop()
                            on.discard(m)
                            comp.append(m)
                            if m == node:
                                break
                        if len(comp) > 1:
                            out.append(sorted(comp))
                elif child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(succ.get(child, [])))))
                elif child in on:
                    low[node] = min(low[node], index[child])
        return out


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _strings(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value
        elif isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
            yield str(node.values[0].value)
        elif isinstance(node, ast.BinOp) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
            yield node.left.value


def _typing_only_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                out |= {id(n) for n in ast.walk(sub) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return out


def build(root: Path) -> Graph:
    """The graph of the package at ``root`` (the folder that holds ``__init__.py``)."""
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    modules = [module_name(root, p) for p in files]
    known = set(modules)
    graph = Graph(modules=modules)

    def resolve(dotted: str) -> Optional[str]:
        """The longest module of the package that ``dotted`` (without the prefix) names or lies in."""
        parts = dotted.split(".") if dotted else []
        while parts:
            name = ".".join(parts)
            if name in known:
                return name
            parts.pop()
        return "" if "" in known else None

    for path, mod in zip(files, modules):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_pkg = path.name == "__init__.py"
        here = mod.split(".") if mod else []
        targets: set[str] = set()
        typing_targets: set[str] = set()
        typing_nodes = _typing_only_nodes(tree)
        for node in ast.walk(tree):
            found = typing_targets if id(node) in typing_nodes else targets
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                        found.add(alias.name[len(PACKAGE) + 1:])
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here if is_pkg else here[:-1]
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    prefix = ".".join(base + ([node.module] if node.module else []))
                elif node.module and (node.module == PACKAGE or node.module.startswith(PACKAGE + ".")):
                    prefix = node.module[len(PACKAGE) + 1:]
                else:
                    continue
                for alias in node.names:
                    sub = f"{prefix}.{alias.name}" if prefix else alias.name
                    found.add(sub if sub in known else prefix)
        for s in _strings(tree):
            head = s.split(":")[0].rstrip(".")
            if head.startswith(PACKAGE + ".") and all(p.isidentifier() for p in head.split(".")):
                targets.add(head[len(PACKAGE) + 1:])
        for t in targets | typing_targets:
            r = resolve(t)
            if r is not None and r != mod:
                graph.arrows.add((mod, r))
                if t not in targets:
                    graph.typing_only.add((mod, r))
    return graph


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1] / PACKAGE)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--layers", action="store_true", help="print the layers, top first, with their modules")
    args = parser.parse_args(argv)
    g = build(args.root)
    if args.layers:
        for i in reversed(range(len(LAYERS))):
            units = [f"{u}/ ({sum(1 for m in g.modules if g.unit(m) == u)})" if any(m.startswith(u + ".") for m in g.modules)
                     else u for u in LAYERS[i]]
            print(f"{i:2d}  {'  '.join(units)}")
        return 0
    up, cyc = g.upward(), g.cycles()
    if args.json:
        print(json.dumps({"modules": len(g.modules), "arrows": len(g.arrows), "upward": len(up), "cycles": len(cyc),
                          "upward_arrows": [list(a) for a in up], "cycle_members": cyc}, indent=1))
    else:
        print(f"modules {len(g.modules)}, arrows {len(g.arrows)}, upward {len(up)}, cycles {len(cyc)}")
        for src, dst, why in up:
            print(f"  upward: {PACKAGE}.{src} -> {PACKAGE}.{dst} ({why})")
        for c in cyc:
            print(f"  cycle: {' '.join(c)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
