"""An image's bytes depend on nothing but the image and the options: not on its batch, its batch size (1 or 16) or
the torch thread count (1 or 2). Each run is a fresh ``invcomp`` process, as a user or a batch worker starts it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import REPO


def _faces(folder: Path, n: int) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        side = int(rng.integers(40, 90))
        a = rng.integers(0, 256, (side, side + int(rng.integers(0, 30)), 3), dtype=np.uint8)
        out.append(folder / f"{i:02d}.png")
        Image.fromarray(a, "RGB").save(out[-1])
    return out


def _encode(inputs: list[Path], out: Path, threads: int, batch_size: int, *extra: str) -> dict[str, bytes]:
    cmd = [sys.executable, "-m", "invcomp.cli", "--threads", str(threads), "encode", *map(str, inputs),
           "--batch-size", str(batch_size), "-o", f"{out}/", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    return {f.name: f.read_bytes() for f in sorted(out.iterdir())}


@pytest.mark.slow
@pytest.mark.parametrize("extra", [("--model", "dcgan-utkface64", "--iters", "8"),
                                   ("--mode", "vaegan", "--model", "vaegan-utkface64-c4")])
def test_bytes_do_not_depend_on_batch_size_or_threads(tmp_path: Path, extra: tuple[str, ...]) -> None:
    faces = _faces(tmp_path / "in", 16)
    one = _encode(faces, tmp_path / "b1t1", 1, 1, *extra)
    assert len(one) == 16 and len(set(one.values())) == 16  # 16 files, and they differ: a real comparison
    assert _encode(faces, tmp_path / "b16t2", 2, 16, *extra) == one
    assert _encode(faces[5:6], tmp_path / "alone", 2, 16, *extra) == {"05.ivc": one["05.ivc"]}
