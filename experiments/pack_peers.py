"""Store the trained learned peers compactly for ``invcomp bench``, and show that float16 costs nothing.

Reads the runs of ``experiments/train_peers.py`` (``RUNS/ARCH-METRIC-LAMBDA/model.pt`` + ``model.json``), stores
each with :func:`invcomp.nets.peers.pack_state` (parameters in float16, entropy tables rebuilt from them) in
``OUT`` (default ``pretrained/peers``) and writes ``OUT/peers.json``. For every model it codes ``--limit`` held-out
faces before and after, through real ``compress()`` files, and prints bytes and PSNR of both.

    python experiments/pack_peers.py --runs runs/peers --data ../shared/data/utkface --limit 64
"""
from __future__ import annotations

import json
import logging
import statistics
import sys
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from invcomp.nets import peers as learned  # noqa: E402
from invcomp.files import atomic_save, load_state_dict, sha256_file  # noqa: E402

log = logging.getLogger("invcomp.experiments.pack_peers")
FAMILY = {"bmshj2018-factorized": "compressai-factorized", "bmshj2018-hyperprior": "compressai-hyperprior",
          "mbt2018-mean": "compressai-mbt-mean"}


def family_name(arch: str, metric: str) -> str:
    return FAMILY[arch] + ("" if metric == "mse" else "-msssim")


def _measure(fam: learned.Family, index: int, images: list) -> tuple[float, float]:
    import numpy as np

    sizes, psnrs = [], []
    for im in images:
        data = learned.encode(fam, im, index)
        out = np.asarray(learned.decode(fam, data), dtype=np.float64)
        mse = float(np.mean((out - np.asarray(im, dtype=np.float64)) ** 2))
        sizes.append(len(data))
        psnrs.append(10 * np.log10(255.0**2 / mse))
    return statistics.fmean(sizes), statistics.fmean(psnrs)


@click.command()
@click.option("--runs", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", default=Path("pretrained/peers"), type=click.Path(path_type=Path), show_default=True)
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--limit", default=64, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def main(runs: Path, out: Path, data: str, limit: int, as_json: bool) -> None:
    import torch

    from invcomp.data import list_images
    from invcomp.imageio import fit_image, load_image
    from invcomp.train.peer import build_model

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    images = [fit_image(load_image(p), 64, "crop") for p in list_images(data, "holdout")[:limit]]
    found: dict[str, list[tuple[dict, Path]]] = {}
    for cfg_path in sorted(runs.glob("*/model.json")):
        cfg = json.loads(cfg_path.read_text())
        found.setdefault(family_name(cfg["architecture"], cfg["metric"]), []).append((cfg, cfg_path.parent / "model.pt"))
    out.mkdir(parents=True, exist_ok=True)
    families, report = {}, []
    for name, runs_ in sorted(found.items()):
        runs_.sort(key=lambda t: t[0]["lmbda"])
        c0 = runs_[0][0]
        entries = []
        for cfg, pt in runs_:
            model = build_model(cfg["architecture"], cfg["N"], cfg["M"])
            model.load_state_dict(load_state_dict(pt))
            model.eval()
            f32 = out / f"_fp32_{name}.pt"
            model.update(force=True, update_quantiles=True)
            atomic_save(model.state_dict(), f32)
            tmp = learned.Family(name, cfg["architecture"], cfg["metric"], cfg["N"], cfg["M"], cfg["resolution"],
                                 ({"lmbda": cfg["lmbda"], "file": f32.name, "sha256": sha256_file(f32)},), out)
            before = _measure(tmp, 0, images)
            learned.clear_cache()
            fname = f"{name}-{cfg['resolution']}-l{cfg['lmbda']:g}.pt"
            atomic_save(learned.pack_state(model), out / fname)
            f32.unlink()
            entries.append({"lmbda": cfg["lmbda"], "file": fname, "sha256": sha256_file(out / fname),
                            "steps": cfg["training"]["step"], "seconds": cfg["training"]["seconds"]})
            tmp = learned.Family(name, cfg["architecture"], cfg["metric"], cfg["N"], cfg["M"], cfg["resolution"],
                                 (entries[-1],), out)
            after = _measure(tmp, 0, images)
            learned.clear_cache()
            row = {"family": name, "lmbda": cfg["lmbda"], "fp32_bytes": before[0], "fp32_psnr": before[1],
                   "fp16_bytes": after[0], "fp16_psnr": after[1], "file_bytes": (out / fname).stat().st_size}
            report.append(row)
            click.echo(json.dumps(row) if as_json else
                       f"{name} λ={cfg['lmbda']:g}: fp32 {before[0]:.1f} B {before[1]:.2f} dB -> fp16 {after[0]:.1f} B "
                       f"{after[1]:.2f} dB, file {row['file_bytes'] / 1024:.0f} KiB")
        families[name] = {"architecture": c0["architecture"], "metric": c0["metric"], "N": c0["N"], "M": c0["M"],
                          "resolution": c0["resolution"], "models": entries}
    (out / learned.MANIFEST).write_text(json.dumps({"families": families}, indent=2) + "\n")
    click.echo(f"wrote {sum(len(f['models']) for f in families.values())} models and {out / learned.MANIFEST}")


if __name__ == "__main__":
    main()
