"""Ship a trained GC or SC model: weights (GC: float16 where measured lossless), config, tables, registry row.

    python experiments/gc_pack.py gc --run runs/gc-c8 --name gc-utkface-c8 --data ../shared/data/utkface
    python experiments/gc_pack.py sc --run runs/sc --name sc-utkface-c8

GC: reads ``RUN/gc.pt``, codes ``--check`` validation faces with the float32 and the float16 weights and records
how many symbols differ and the largest pixel difference; float16 is shipped when
the validation PSNR moves by at most 0.02 dB and the SSIM by at most 0.001 (the shipped model *is* the
float16 one: its tables are fitted on it, and encoder and decoder both run it), else float32.
Fits the entropy tables on ``--fit`` training faces (never held-out ones), writes ``pretrained/NAME-SHA8.pt`` +
``.json``, ``NAME-SHA8-prior.json``, the training log, and adds ``NAME``
(kind ``gc``) to ``pretrained/models.json``. SC: ships ``RUN/sc.pt`` (float32: 1.0 MB), its config with ``base``
naming the registered GC model, and ``RUN/sc-prior.json``. The check goes to ``experiments/results/gc/pack_NAME.json``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

import click
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.data import load_faces  # noqa: E402
from invcomp.files import sha256_file  # noqa: E402
from invcomp.train.generative_tables import fit_gc_prior  # noqa: E402
from invcomp.nets.generative.model import load_gc, save_gc  # noqa: E402
from invcomp.coding.tables import save_prior  # noqa: E402
from invcomp.nets.generative.tiles import pad16  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402

log = logging.getLogger("gc_pack")
PRE = Path(os.environ.get("INVCOMP_PRETRAINED", ROOT / "pretrained"))  # as the registry finds it
RESULTS = ROOT / "experiments" / "results" / "gc"


def _register(name: str, row: dict) -> None:
    reg_path = PRE / "models.json"
    reg = json.loads(reg_path.read_text())
    reg[name] = row
    atomic_write(reg_path, (json.dumps(reg, indent=2) + "\n").encode(), force=True)


@torch.no_grad()
def _code(net, x: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:  # type: ignore[no-untyped-def]
    sym = net.Q.symbols(net.E(pad16(x)))
    pic = net.G(net.Q.values(sym))[..., :x.shape[-2], :x.shape[-1]]
    return sym, ((pic.clamp(-1, 1) + 1) * 127.5).round().numpy()


def _quality(pic: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Mean PSNR (dB) and SSIM of uint8-valued ``(N, 3, H, W)`` reconstructions ``pic`` against ``ref``."""
    from invcomp.metrics import psnr, ssim

    a, b = torch.from_numpy(pic / 127.5 - 1).float(), torch.from_numpy(ref / 127.5 - 1).float()  # metrics take [-1, 1]
    return float(psnr(a, b).mean()), float(ssim(a, b).mean())


@click.group()
def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")


@main.command()
@click.option("--run", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True)
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--check", default=32, show_default=True, help="Validation faces for the float16 check.")
@click.option("--fit", "n_fit", default=4000, show_default=True, help="Training faces the tables are fitted on.")
def gc(run: Path, name: str, data: str, check: int, n_fit: int) -> None:
    full = load_gc(run / "gc.pt")
    tmp = run / "gc-f16.pt"
    save_gc(full, full.cfg, tmp, half=True)
    half = load_gc(tmp)
    val = load_faces(data, 200, split="val", limit=check)[0].float() / 127.5 - 1
    s32, p32 = _code(full, val)
    s16, p16 = _code(half, val)
    diff_sym, diff_px = int((s32 != s16).sum()), float(np.abs(p32 - p16).max())
    ref = ((val + 1) * 127.5).round().numpy()
    q32, q16 = _quality(p32, ref), _quality(p16, ref)
    fp16 = abs(q32[0] - q16[0]) <= 0.02 and abs(q32[1] - q16[1]) <= 0.001
    log.info("%d validation faces: %d of %d symbols differ in float16, largest pixel difference %.0f/255; PSNR %.3f -> "
             "%.3f dB, SSIM %.4f -> %.4f: shipping %s", len(val), diff_sym, s32.numel(), diff_px, q32[0], q16[0], q32[1],
             q16[1], "float16" if fp16 else "float32")
    src = tmp if fp16 else run / "gc.pt"
    digest = sha256_file(src)
    stem = f"{name}-{digest[:8]}"
    weights, cfg = PRE / f"{stem}.pt", PRE / f"{stem}.json"
    shutil.copyfile(src, weights)
    shutil.copyfile(run / "gc.json", cfg)
    train = load_faces(data, 200, split="train", limit=n_fit)[0]
    prior = fit_gc_prior(load_gc(weights), train, info={"data": "UTKFace train split, first %d faces at 200 px" % len(train)})
    pri = PRE / f"{stem}-prior.json"
    save_prior(prior, pri)
    shutil.copyfile(run / "train.log", PRE / f"{name}-train.log")
    c = full.cfg
    _register(name, {"weights": weights.name, "config": cfg.name, "sha256": digest, "card": "gc-utkface.md", "kind": "gc",
                     "description": f"GC (Agustsson et al. 2019): C={c.channels} channels at /16, L={c.centres} learned "
                                    "centres, any image size; trained on UTKFace 200-px faces on 2 CPU cores "
                                    "(non-commercial research use)",
                     "config_sha256": sha256_file(cfg), "prior": {"file": pri.name, "sha256": sha256_file(pri)}})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"pack_{name}.json").write_text(json.dumps(
        {"name": name, "check_faces": len(val), "symbols": s32.numel(), "symbols_differing_fp16": diff_sym,
         "max_pixel_difference_fp16": diff_px, "psnr_fp32": round(q32[0], 3), "psnr_fp16": round(q16[0], 3),
         "ssim_fp32": round(q32[1], 4), "ssim_fp16": round(q16[1], 4), "shipped": "float16" if fp16 else "float32",
         "weights_bytes": weights.stat().st_size, "fit_faces": len(train)}, indent=2) + "\n")
    log.info("wrote %s (%d bytes), %s, %s; registered %s", weights.name, weights.stat().st_size, cfg.name, pri.name, name)


@main.command()
@click.option("--run", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True)
def sc(run: Path, name: str) -> None:
    digest = sha256_file(run / "sc.pt")
    stem = f"{name}-{digest[:8]}"
    weights, cfg, pri = PRE / f"{stem}.pt", PRE / f"{stem}.json", PRE / f"{stem}-prior.json"
    shutil.copyfile(run / "sc.pt", weights)
    shutil.copyfile(run / "sc.json", cfg)
    shutil.copyfile(run / "sc-prior.json", pri)
    shutil.copyfile(run / "train.log", PRE / f"{name}-train.log")
    base = json.loads(cfg.read_text())["base"]
    _register(name, {"weights": weights.name, "config": cfg.name, "sha256": digest, "card": "gc-utkface.md", "kind": "sc",
                     "description": f"SC (selective compression) over {base}: keeps the code in preserved regions, "
                                    "synthesises the rest from landmark label maps; UTKFace (non-commercial research use)",
                     "config_sha256": sha256_file(cfg), "prior": {"file": pri.name, "sha256": sha256_file(pri)}})
    log.info("wrote %s, %s, %s; registered %s over %s", weights.name, cfg.name, pri.name, name, base)


if __name__ == "__main__":
    main()
