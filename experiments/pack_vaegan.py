"""Ship a trained VAE-GAN codec: float16 weights, its config, a registry entry, and proof that float16 costs nothing.

    python experiments/pack_vaegan.py --run runs/vaegan-aug-c4 --name vaegan-utkface64aug-c4 \
        --description "..." --card vaegan-utkface64.md --data ../shared/data/utkface
    python experiments/fit_priors.py --models vaegan-utkface64aug-c4 --augment 0.5

Reads ``RUN/vaegan.pt`` (the best snapshot) and ``RUN/vaegan.json``, writes ``pretrained/NAME-SHA8.pt`` (every
tensor in float16; the loader casts back to float32) and ``.json``, and adds ``NAME`` to
``pretrained/models.json`` (without a prior: ``fit_priors.py`` adds it). Before writing, it codes ``--limit``
validation faces with the float32 and the float16 weights (analysis, 4-bit quantisation of the mean, synthesis)
and prints both mean SSIMs and the largest code-level difference.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.files import atomic_save, load_state_dict, sha256_file  # noqa: E402
from invcomp.metrics import ssim  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402
from invcomp.train.loop import load_val  # noqa: E402
from invcomp.nets.vaegan import load_vaegan, quantize_code  # noqa: E402

log = logging.getLogger("pack_vaegan")


def _code_and_ssim(model, val: torch.Tensor) -> tuple[torch.Tensor, float]:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        mean, _ = model.analysis(val)
        q, zq = quantize_code(mean, model.config.bits, model.config.scaling)
        x = model.synthesis(zq).clamp(-1, 1)
    return q.levels, float(ssim(x, val).mean())


@click.command()
@click.option("--run", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True)
@click.option("--description", required=True)
@click.option("--card", required=True, help="The model card's file name in pretrained/.")
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--limit", default=128, show_default=True)
def main(run: Path, name: str, description: str, card: str, data: str, limit: int) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    src = run / "vaegan.pt"
    full = load_vaegan(src)
    state = {k: v.half() if v.is_floating_point() else v for k, v in load_state_dict(src).items()}
    tmp = run / "vaegan-f16.pt"
    atomic_save(state, tmp)
    tmp.with_suffix(".json").write_bytes((run / "vaegan.json").read_bytes())
    half = load_vaegan(tmp)
    val = load_val(data, full.config.resolution, limit)
    if val is not None:
        val = val.float().div(127.5).sub(1)
        l32, s32 = _code_and_ssim(full, val)
        l16, s16 = _code_and_ssim(half, val)
        log.info("%d validation faces: SSIM %.4f (float32) vs %.4f (float16); levels differ in %d of %d symbols",
                 len(val), s32, s16, int((l32 != l16).sum()), l32.numel())
    digest = sha256_file(tmp)
    root = ROOT / "pretrained"
    weights = root / f"{name}-{digest[:8]}.pt"
    weights.write_bytes(tmp.read_bytes())
    cfg = root / f"{name}-{digest[:8]}.json"
    cfg.write_bytes((run / "vaegan.json").read_bytes())
    reg_path = root / "models.json"
    reg = json.loads(reg_path.read_text())
    reg[name] = {"weights": weights.name, "config": cfg.name, "sha256": digest, "card": card, "kind": "vaegan",
                 "description": description, "config_sha256": sha256_file(cfg)}
    atomic_write(reg_path, (json.dumps(reg, indent=2) + "\n").encode(), force=True)
    log.info("wrote %s (%d bytes) and %s; registered %s", weights.name, weights.stat().st_size, cfg.name, name)


if __name__ == "__main__":
    main()
