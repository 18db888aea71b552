"""Store shipped float32 models in float16, measure what it costs, and keep their old files decodable by alias.

    python experiments/pack_fp16.py --limit 16            # measure only (needs ../shared for the held-out faces)
    python experiments/pack_fp16.py --limit 16 --write    # then replace the files in pretrained/

For each model it writes a float16 state_dict into a staging copy of ``pretrained/`` and measures, with the staged
registry against today's:

* the decoder's drift: the same symbols (64 prior draws for a generator; the codes of the faces for a VAE-GAN)
  decoded by both, as the uint8 pixels a decoder writes: largest and mean difference, and PSNR between the two;
* the encoder's: ``invcomp encode``'s default for that mode on ``--limit`` held-out UTKFace faces with each, mean
  bytes, PSNR and SSIM against the faces.

With ``--write`` the float16 file becomes the model (a new sha256, so new files get a new id), and the old name
gains a row ``NAME@SHA8`` (``alias_of``) whose id is the float32 release's, so its files still decode, with the
float16 weights, within :data:`invcomp.zoo.registry.ALIAS_TOLERANCE` (tests/test_compat.py checks it). The
float32 file is removed. Results: ``experiments/results/fp16_models.json``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from pathlib import Path

import click
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.codecs import load_codec, stored_pixels  # noqa: E402
from invcomp.codecs.base import prepare  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.files import atomic_save, load_state_dict, sha256_file  # noqa: E402
from invcomp.zoo import registry  # noqa: E402
from invcomp.metrics import psnr, ssim  # noqa: E402

log = logging.getLogger("pack_fp16")
MODELS = ("dcgan-utkface64", "pgan-utkface64", "vaegan-utkface64-c2", "vaegan-utkface64-c4", "vaegan-utkface64-c8")
OUT = Path(__file__).parent / "results" / "fp16_models.json"


def _half(src: Path, dst_dir: Path, name: str) -> tuple[Path, str]:
    """Write ``src`` with its floating tensors in float16 as ``dst_dir/NAME-SHA8.pt``; return (path, sha256)."""
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in load_state_dict(src).items()}
    tmp = dst_dir / f"{name}-fp16.tmp.pt"
    atomic_save(half, tmp)
    digest = sha256_file(tmp)
    out = dst_dir / f"{name}-{digest[:8]}.pt"
    tmp.rename(out)
    return out, digest


def stage(root: Path, stage_dir: Path, names: tuple[str, ...]) -> dict:
    """Copy ``root`` to ``stage_dir`` with ``names`` in float16 and their aliases added; return the new registry."""
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    shutil.copytree(root, stage_dir)
    reg = json.loads((root / registry.REGISTRY_FILE).read_text())
    for name in names:
        row = reg[name]
        old = stage_dir / row["weights"]
        new, digest = _half(old, stage_dir, name)
        cfg_old = stage_dir / row["config"]
        if cfg_old.stem == old.stem:  # configs named after the weights (VAE-GAN) follow them
            cfg_new = new.with_suffix(".json")
            shutil.copy(cfg_old, cfg_new)
            cfg_old.unlink()
            row["config"] = cfg_new.name
        old.unlink()
        alias = {**row, "weights": new.name, "file_sha256": digest, "alias_of": name,
                 "description": f"the float32 release of {name} (id of its files); decoded with the float16 weights"}
        alias.pop("encoder", None)  # an alias only decodes
        reg[f"{name}@{row['sha256'][:8]}"] = alias
        row.update(weights=new.name, sha256=digest)
    (stage_dir / registry.REGISTRY_FILE).write_text(json.dumps(reg, indent=2) + "\n")
    return reg


def _use(root: Path) -> None:
    os.environ["INVCOMP_PRETRAINED"] = str(root)


def decoder_drift(name: str, old_root: Path, new_root: Path, faces: list[Image.Image]) -> dict:
    """The same symbols decoded with the float32 and the float16 weights: uint8 pixel differences and PSNR."""
    outs = []
    _use(old_root)
    ref = load_codec(name)
    torch.manual_seed(0)
    if ref.mode_key == "vaegan":  # the codes of the faces, from the float32 analysis, as in an old file
        z = ref.find_symbols(torch.stack([prepare(im, ref.resolution, "crop") for im in faces]), None)[0]
    else:
        z = torch.randn(64, ref.latent_dim)
    for root in (old_root, new_root):
        _use(root)
        outs.append((stored_pixels(load_codec(name, for_decode=True).synthesise(z)) + 1) * 127.5)  # the 8-bit grid, 0..255
    d = (outs[0] - outs[1]).abs()
    return {"max_pixel_diff": int(d.max()), "mean_pixel_diff": float(d.mean()),
            "psnr_fp32_vs_fp16": float(10 * torch.log10(255.0 ** 2 / (d ** 2).mean().clamp_min(1e-12)))}


def encode_figures(name: str, root: Path, faces: list[Image.Image]) -> dict:
    """The mode's default encode of ``faces`` with the registry at ``root``: mean bytes, PSNR and SSIM."""
    _use(root)
    enc = load_codec(name).encode(faces)
    rec, tgt = stored_pixels(torch.stack([e.recon for e in enc])), torch.stack([e.target for e in enc])
    return {"bytes": sum(len(e.data) for e in enc) / len(enc), "psnr": float(psnr(rec, tgt).mean()),
            "ssim": float(ssim(rec, tgt).mean())}


@click.command()
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--limit", default=16, show_default=True, help="Held-out faces per model.")
@click.option("--stage-dir", default="/tmp/invcomp-fp16-stage", show_default=True)
@click.option("--write", is_flag=True, help="Replace the shipped float32 files with the float16 ones.")
@click.argument("names", nargs=-1)
def main(data: str, limit: int, stage_dir: str, write: bool, names: tuple[str, ...]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = names or MODELS
    root = registry.pretrained_dir()
    reg_old = json.loads((root / registry.REGISTRY_FILE).read_text())
    new_root = Path(stage_dir)
    reg_new = stage(root, new_root, names)
    faces = [Image.open(p).convert("RGB") for p in list_images(data, "holdout")[:limit]]
    rows = {}
    for name in names:
        before, after = encode_figures(name, root, faces), encode_figures(name, new_root, faces)
        row = {"fp32_file_bytes": (root / reg_old[name]["weights"]).stat().st_size,
               "fp16_file_bytes": (new_root / reg_new[name]["weights"]).stat().st_size,
               "decode": decoder_drift(name, root, new_root, faces), "encode_fp32": before, "encode_fp16": after,
               "faces": len(faces), "old_sha256": reg_old[name]["sha256"], "new_sha256": reg_new[name]["sha256"]}
        rows[name] = row
        log.info("%s: %.1f -> %.1f MB; decode drift max %d/255 mean %.3f (PSNR %.1f dB); encode %.1f B %.2f dB %.4f "
                 "-> %.1f B %.2f dB %.4f", name, row["fp32_file_bytes"] / 1e6, row["fp16_file_bytes"] / 1e6,
                 row["decode"]["max_pixel_diff"], row["decode"]["mean_pixel_diff"], row["decode"]["psnr_fp32_vs_fp16"],
                 before["bytes"], before["psnr"], before["ssim"], after["bytes"], after["psnr"], after["ssim"])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"name": "fp16_models", "command": "python experiments/pack_fp16.py --limit "
                               f"{limit}", "results": rows}, indent=2) + "\n")
    if write:
        for name in names:
            for key in ("weights", "config"):
                old = root / reg_old[name][key]
                if reg_old[name][key] != reg_new[name][key] and old.exists():
                    old.unlink()
            for key in ("weights", "config"):
                shutil.copy(new_root / reg_new[name][key], root / reg_new[name][key])
        (root / registry.REGISTRY_FILE).write_text(json.dumps(reg_new, indent=2) + "\n")
        log.info("wrote the float16 models and their aliases into %s", root)


if __name__ == "__main__":
    main()
