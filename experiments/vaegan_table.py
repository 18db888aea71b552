"""The VAE-GAN seed's Table 2: channels against SSIM, PSNR, compression ratio, bytes and bpp, on held-out faces,
beside the inversion codec's rows at similar bytes.

    python experiments/vaegan_table.py --model runs/vaegan-c2/vaegan.pt --model runs/vaegan-c4/vaegan.pt \\
        --data ../shared/data/utkface --split holdout --limit 128 \\
        --inversion experiments/results/table_s3_dcgan-utkface64_heldout128.json.gz

Each ``--model`` is a VAE-GAN codec (a registered name or a ``vaegan.pt``); ``--inversion`` is a Table S3-1 JSON
of ``experiments/seed_tables.py`` on the same faces, whose quantiser-aware rows are merged in by bytes. Writes
``OUT/table2_vaegan_<tag>.{md,json}``.
"""
from __future__ import annotations

import gzip
import json
import logging
import shlex
import statistics
import sys
from pathlib import Path
from typing import Optional

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp import metrics  # noqa: E402
from invcomp.bench.report import json_bytes  # noqa: E402
from invcomp.bench.run import load_inputs, measure  # noqa: E402
from invcomp.codecs import VAEGANCodec, stored_pixels  # noqa: E402
from invcomp.zoo.registry import load_vaegan_model  # noqa: E402
from invcomp.files import atomic_write
from invcomp.nets import resolve_device  # noqa: E402

log = logging.getLogger("vaegan_table")
# The seed's Table 2 (its faces and models), for reference: channels -> (SSIM, compression ratio).
SEED = {28: (0.83, 1.74), 16: (0.80, 3.06), 8: (0.81, 6.12), 4: (0.79, 12.24), 2: (0.71, 24.49)}


def stats(rows: list[dict], k: str) -> tuple[float, float]:
    vals = [r[k] for r in rows]
    return statistics.fmean(vals), statistics.median(vals)


@click.command()
@click.option("--model", "models", multiple=True, required=True, help="VAE-GAN codec (name or vaegan.pt), repeatable.")
@click.option("--data", default="../shared/data/utkface", show_default=True, type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="holdout", show_default=True, type=click.Choice(["all", "train", "val", "holdout"]))
@click.option("--limit", default=0, show_default=True, help="The first N images by name (0: all).")
@click.option("--inversion", "inversion_json", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A seed_tables.py s3 JSON on the same faces, for the inversion rows.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--tag", default="heldout", show_default=True)
@click.option("--out", default="experiments/results", show_default=True, type=click.Path(file_okay=False))
def main(models: tuple[str, ...], data: str, split: str, limit: int, inversion_json: Optional[str], device: str,
         tag: str, out: str) -> None:
    """Code the faces with each VAE-GAN codec and tabulate channels against quality and rate."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dev = resolve_device(device)
    table, results = [], {}
    names: Optional[list[str]] = None
    for spec in models:
        m = load_vaegan_model(spec, dev)
        inputs = load_inputs(data, m.config.resolution, limit or None, split)  # type: ignore[arg-type]
        names = inputs.names
        codec = VAEGANCodec(m)  # the model's bits and scaling
        enc = codec.encode(inputs.images)
        ms, _ = measure(lambda d, c=codec: stored_pixels(c.decode(d)[1]), [e.data for e in enc], inputs.targets,
                        False)
        r = inputs.resolution
        rows = [{"image": n, "bytes": len(e.data), "bpp": metrics.bpp(len(e.data), r, r), **q}
                for n, e, q in zip(inputs.names, enc, ms)]
        results[spec] = {"name": m.name, "sha256": m.sha256, "config": m.config.to_json_dict(), "rows": rows}
        c = m.config
        b, ssim, psnr = stats(rows, "bytes"), stats(rows, "ssim"), stats(rows, "psnr")
        seed = SEED.get(c.channels)
        table.append((b[0], f"| VAE-GAN C={c.channels} ({c.code_side}×{c.code_side}, {c.bits} bits) | {b[0]:.1f} | "
                            f"{8 * b[0] / r ** 2:.3f} | {3 * r * r / b[0]:.1f}× | {ssim[0]:.3f} ({ssim[1]:.3f}) | "
                            f"{psnr[0]:.2f} ({psnr[1]:.2f}) | {f'{seed[0]:.2f} at {seed[1]:.2f}×' if seed else '—'} |"))
    if inversion_json:
        raw = Path(inversion_json).read_bytes()
        doc = json.loads(gzip.decompress(raw) if inversion_json.endswith(".gz") else raw)
        if names is not None and doc["images"] != names:
            raise click.ClickException(f"{inversion_json} was measured on other faces; run it on the same set")
        r = doc["resolution"]
        for label, s in doc["summary"].items():
            if "quantiser-aware" in label:
                table.append((s["bytes"]["mean"],
                              f"| inversion ({doc['model']}), {label.split(',')[0].replace('QSGD ', '')} | "
                              f"{s['bytes']['mean']:.1f} | {s['bpp']['mean']:.3f} | {3 * r * r / s['bytes']['mean']:.1f}× | "
                              f"{s['ssim']['mean']:.3f} ({s['ssim']['median']:.3f}) | "
                              f"{s['psnr']['mean']:.2f} ({s['psnr']['median']:.2f}) | — |"))
    table.sort()
    command = shlex.join(["python", "experiments/vaegan_table.py", *sys.argv[1:]])
    md = (f"### VAE-GAN against inversion ({len(names or [])} faces, {split} of {data}), sorted by bytes\n\n`{command}`\n\n"
          "| codec | mean bytes | bpp | CR vs raw RGB | SSIM mean (median) | PSNR dB mean (median) | seed's SSIM at its CR |\n"
          "|---|---|---|---|---|---|---|\n" + "\n".join(line for _, line in table) + "\n")
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    atomic_write(outdir / f"table2_vaegan_{tag}.md", md.encode(), force=True)
    atomic_write(outdir / f"table2_vaegan_{tag}.json",
                 json_bytes({"command": command, "device": dev, "torch": torch.__version__, "models": results}), force=True)
    click.echo(md)


if __name__ == "__main__":
    main()
