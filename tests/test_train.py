"""`invcomp train dcgan`: a tiny run on synthetic images writes a loadable generator, and resumes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from PIL import Image

from invcomp.cli import cli
from invcomp.data import split_of
from invcomp.zoo.registry import load_generator


def _images(folder: Path, n: int = 40) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):
        arr = np.zeros((40, 40, 3), np.uint8) + rng.integers(0, 255, 3, dtype=np.uint8)
        arr[10:30, 10:30] = rng.integers(0, 255, 3, dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"face{i:03d}.png")


def _train(data: Path, out: Path, steps: int):
    args = ["train", "dcgan", "--data", str(data), "--out", str(out), "--resolution", "16", "--ngf", "8", "--ndf", "8",
            "--batch-size", "4", "--steps", str(steps), "--snapshot-every", "2", "--eval-faces", "4",
            "--eval-iters", "2", "--device", "cpu"]
    return CliRunner().invoke(cli, args)


def test_train_writes_loadable_generator_and_resumes(tmp_path: Path) -> None:
    data, out = tmp_path / "faces", tmp_path / "run"
    _images(data)
    splits = {split_of(p.name) for p in data.iterdir()}
    assert "train" in splits
    r = _train(data, out, 4)
    assert r.exit_code == 0, r.output
    for name in ("checkpoint.pt", "generator.pt", "generator.json", "train.log", "samples.png"):
        assert (out / name).exists(), name
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 4
    cfg = json.loads((out / "generator.json").read_text())
    assert (cfg["architecture"], cfg["latent_dim"], cfg["resolution"]) == ("dcgan", 100, 16)

    g = load_generator(str(out / "generator.pt"))
    with torch.no_grad():
        x = g.module(torch.randn(2, 100))
    assert x.shape == (2, 3, 16, 16) and x.abs().max() <= 1.0
    assert not g.module.training

    r = _train(data, out, 6)
    assert r.exit_code == 0, r.output
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 6
    assert "resumed from" in (out / "train.log").read_text()


def test_train_reports_missing_data_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    r = _train(empty, tmp_path / "run", 2)
    assert r.exit_code == 1
    assert "no train images" in r.output and "Traceback" not in r.output
