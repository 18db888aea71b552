"""What the server offers to choose from, by name only: the modes, the registered models (with their cards),
and the results folders of ``invcomp bench`` found under ``--bench`` folders.

A request names a model or a results folder; the name is looked up here, and only what the lookup returns
(a path the server found itself) reaches the file system.
"""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any, Optional

PLOT = re.compile(r"^rd_[a-z0-9_]+\.(png|webp)$")
MAX_CARD = 200_000  # characters of a model card shown


class Catalog:
    """The modes and models (read once, on first use) and the benchmark folders (looked up on each call)."""

    def __init__(self, bench_dirs: tuple[Path, ...] = ()) -> None:
        self.bench_dirs = tuple(Path(d) for d in bench_dirs)
        self._lock = threading.Lock()
        self._models: Optional[list[dict]] = None
        self._modes: Optional[list[str]] = None

    # --- models ---------------------------------------------------------------------------------------------
    def models(self) -> list[dict]:
        """``invcomp models --json``'s rows, with each model's card text and no server paths."""
        with self._lock:
            if self._models is None:
                from invcomp.service.models import model_rows

                rows = []
                for r in model_rows():
                    card = r.get("card")
                    text = Path(card).read_text(errors="replace")[:MAX_CARD] if card and Path(card).is_file() else None
                    keep = {k: v for k, v in r.items() if k not in ("weights", "card", "entropy_prior", "encoder", "model")}
                    rows.append({**keep, "card": text, "warm_start": bool(r.get("encoder")),
                                 "codes": r.get("kind") in ("generator", "vaegan") or r.get("source") in ("user", "mode")})
                self._models = rows
            return self._models

    def model(self, name: str) -> Optional[dict]:
        return next((m for m in self.models() if m["name"] == name), None)

    def model_names(self) -> list[str]:
        """The names a request may give as ``model``: registered generators and VAE-GAN codecs."""
        return [m["name"] for m in self.models() if m["codes"]]

    def modes(self) -> list[str]:
        """``auto`` and every registered mode's key."""
        with self._lock:
            if self._modes is None:
                from invcomp.codecs.loader import AUTO, modes

                self._modes = [AUTO, *(cls.mode_key for _, cls in sorted(modes().items()))]
            return self._modes

    # --- benchmarks -----------------------------------------------------------------------------------------
    def benchmarks(self) -> dict[str, Path]:
        """Name -> folder of every ``invcomp bench`` results folder: a ``--bench`` folder that is one, or its
        subfolders that are (those with ``equal_bytes.md`` or ``per_image.csv``). Names are the folder names,
        made unique with a suffix."""
        found: dict[str, Path] = {}
        for root in self.bench_dirs:
            if not root.is_dir():
                continue
            cands = [root] if _is_results(root) else sorted(d for d in root.iterdir() if d.is_dir() and _is_results(d))
            for d in cands:
                name, k = d.name, 2
                while name in found:
                    name, k = f"{d.name}-{k}", k + 1
                found[name] = d
        return found

    def benchmark(self, name: str) -> Optional[dict]:
        """One results folder: its plots (file names), codecs (from the CompressAI-format JSON files) and the
        equal-bytes tables (parsed from ``equal_bytes.md``)."""
        folder = self.benchmarks().get(name)
        if folder is None:
            return None
        plots = sorted(f.name for f in folder.iterdir() if f.is_file() and PLOT.match(f.name))
        codecs = []
        for f in sorted(folder.glob("*.json")):
            try:
                doc = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(doc, dict) and isinstance(doc.get("results"), dict):
                res = doc["results"]
                codecs.append({"name": str(doc.get("name", f.stem)), "description": str(doc.get("description", "")),
                               "points": len(res.get("bpp") or []), "unavailable": doc.get("unavailable"),
                               "bpp": res.get("bpp"), "ssim": res.get("ssim-rgb"), "psnr": res.get("psnr-rgb")})
        md = folder / "equal_bytes.md"
        sections = parse_markdown(md.read_text(errors="replace")) if md.is_file() else []
        return {"name": name, "plots": plots, "codecs": codecs, "equal_bytes": sections}

    def plot(self, name: str, plot: str) -> Optional[Path]:
        """The file of one plot, when ``plot`` is one of the folder's plot names."""
        folder = self.benchmarks().get(name)
        if folder is None or not PLOT.match(plot) or not (folder / plot).is_file():
            return None
        return folder / plot


def _is_results(d: Path) -> bool:
    return (d / "equal_bytes.md").is_file() or (d / "per_image.csv").is_file()


def parse_markdown(text: str) -> list[dict[str, Any]]:
    """``equal_bytes.md`` -> sections ``{"title", "paragraphs": [...], "tables": [{"header", "rows"}]}`` (the
    first, untitled section holds the text before any heading). Plain text only: it is shown escaped."""
    sections: list[dict[str, Any]] = [{"title": "", "paragraphs": [], "tables": []}]
    table: Optional[dict] = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            title = s.lstrip("#").strip()
            if not sections[-1]["title"] and not sections[-1]["tables"] and len(sections) == 1 and s.startswith("# "):
                sections[0]["title"] = title
            else:
                sections.append({"title": title, "paragraphs": [], "tables": []})
            table = None
        elif s.startswith("|") and s.endswith("|"):
            cells = [c.strip() for c in s.strip("|").split("|")]
            if table is None:
                table = {"header": cells, "rows": []}
                sections[-1]["tables"].append(table)
            elif not all(set(c) <= set("-: ") for c in cells):
                table["rows"].append(cells)
        else:
            table = None
            if s:
                sections[-1]["paragraphs"].append(s.replace("*", ""))
    return [s for s in sections if s["title"] or s["paragraphs"] or s["tables"]]
