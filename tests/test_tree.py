"""The tracked tree stays small enough to download, and to send to a GPU machine (which takes at most 64 MiB)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import REPO

BUDGET = 50 * 2**20  # bytes; `git ls-files | xargs du -cb` measures the same


def _tracked() -> list[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f]


def test_the_tracked_tree_is_within_50_mib() -> None:
    sizes = {f: (REPO / f).stat().st_size for f in _tracked() if (REPO / f).is_file()}
    total = sum(sizes.values())
    largest = ", ".join(f"{f} ({n / 2**20:.1f} MiB)" for f, n in sorted(sizes.items(), key=lambda kv: -kv[1])[:5])
    assert total <= BUDGET, f"the tracked tree is {total / 2**20:.1f} MiB, over {BUDGET / 2**20:.0f} MiB; largest: {largest}"


def test_nothing_tracked_comes_from_shared() -> None:
    assert not [f for f in _tracked() if f.startswith(("shared/", "../"))]
