"""Can invcomp recover images that the generator itself drew? (The check that inversion, not G, is the limit.)

    python experiments/self_recovery.py --model dcgan-utkface64 --model ../shared/models/dcgan-anime32/generator.pt

For each model: draw ``--n`` latents from its prior (seeded apart from the search's seed), render G(z) to 8-bit
RGB, encode those images with the codec at ``--bits`` (from a random start, default settings otherwise) and
measure the decoded files against them. Writes ``OUT/self_recovery_<tag>.{md,json}``: mean, median and minimum
SSIM, the share at or above 0.95, PSNR, bytes, and every image's row.
"""
from __future__ import annotations

import logging
import shlex
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import click
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.bench.run import Inputs, run_invcomp  # noqa: E402
from invcomp.bench.report import json_bytes  # noqa: E402
from invcomp.codecs import EncodeSettings, InversionCodec  # noqa: E402
from invcomp.codecs.settings import resolve_search  # noqa: E402
from invcomp.zoo.registry import LoadedGenerator, load_generator  # noqa: E402
from invcomp.imageio import from_image, to_pil  # noqa: E402
from invcomp.search.inversion import initial_latents  # noqa: E402
from invcomp.files import atomic_write
from invcomp.nets import resolve_device  # noqa: E402

log = logging.getLogger("self_recovery")
GOAL = 0.95


def generated_images(gen: LoadedGenerator, n: int, seed: int) -> list:
    """``n`` images G(z), z from the prior (row i seeded with ``seed + i``), as 8-bit RGB PIL images."""
    z = torch.cat([initial_latents(1, gen.config.latent_dim, prior=gen.config.prior, seed=seed + i) for i in range(n)])
    device = next(gen.module.parameters()).device
    with torch.no_grad():
        x = gen.module(z.to(device)).cpu().clamp(-1, 1)
    return [to_pil(xi) for xi in x]


def recover(codec: InversionCodec, n: int, seed: int, batch_size: int) -> list[dict]:
    gen = codec.gen
    images = generated_images(gen, n, seed)
    inputs = Inputs([f"drawn-{i}" for i in range(n)], images, torch.stack([from_image(im) for im in images]))
    bar = tqdm(total=n, desc=gen.name, file=sys.stderr)
    rows = run_invcomp(codec, inputs, batch_size=batch_size, with_lpips=False, tick=bar.update)[0]
    bar.close()
    return rows


def summary(rows: list[dict]) -> dict:
    ssim = [r["ssim"] for r in rows]
    return {"n": len(rows), "ssim_mean": statistics.fmean(ssim), "ssim_median": statistics.median(ssim),
            "ssim_min": min(ssim), "share_at_goal": sum(v >= GOAL for v in ssim) / len(ssim),
            "psnr_mean": statistics.fmean(r["psnr"] for r in rows), "bytes_mean": statistics.fmean(r["bytes"] for r in rows)}


@click.command()
@click.option("--model", "models", multiple=True, required=True, help="Registered name or weights path (repeatable).")
@click.option("--n", default=64, show_default=True, help="Generated images per model.")
@click.option("--bits", default=8, show_default=True)
@click.option("--iters", default=None, type=int, help="From a random start [default: 300].")
@click.option("--restarts", default=None, type=int, help="[default: the codec's]")
@click.option("--seed", default=1000, show_default=True, help="Seed of the drawn latents (the search uses its own, 0).")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--tag", default="bits8", show_default=True)
@click.option("--out", default="experiments/results", show_default=True, type=click.Path(file_okay=False))
def main(models: tuple[str, ...], n: int, bits: int, iters: Optional[int], restarts: Optional[int], seed: int,
         batch_size: int, device: str, tag: str, out: str) -> None:
    """Encode images that each generator drew, and report how well they come back."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # A random start, as the figures were measured (EncodeSettings' own default is now the warm start).
    st = resolve_search(EncodeSettings(bits=bits, init="random", iters=iters, restarts=restarts), has_warm_start=False)
    dev = resolve_device(device)
    results, lines = {}, []
    for spec in models:
        gen = load_generator(spec, dev)
        if Path(spec).is_file():  # a weights file: name it by its folder too (generator.pt says little)
            gen.name = f"{Path(spec).parent.name}/{Path(spec).name}"
        rows = recover(InversionCodec(gen, st), n, seed, batch_size)
        s = summary(rows)
        results[gen.name] = {"spec": spec, "sha256": gen.sha256, "latent_dim": gen.config.latent_dim,
                             "resolution": gen.config.resolution, "summary": s, "rows": rows}
        lines.append(f"| {gen.name} | {gen.config.latent_dim}-d, {gen.config.resolution}×{gen.config.resolution} | "
                     f"{s['n']} | {s['bytes_mean']:.1f} | {s['ssim_mean']:.3f} | {s['ssim_median']:.3f} | "
                     f"{s['ssim_min']:.3f} | {100 * s['share_at_goal']:.0f}% | {s['psnr_mean']:.2f} |")
    command = shlex.join(["python", "experiments/self_recovery.py", *sys.argv[1:]])
    md = (f"### Images the generator drew, coded at {bits} bits ({st.iters} iterations, {st.restarts} restart(s))\n\n"
          f"`{command}`\n\n| model | latent, output | images | mean bytes | SSIM mean | SSIM median | SSIM min | "
          f"SSIM ≥ {GOAL} | PSNR dB |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
    doc = {"command": command, "settings": asdict(st), "latent_seed": seed, "device": dev, "torch": torch.__version__,
           "models": results}
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    atomic_write(outdir / f"self_recovery_{tag}.md", md.encode(), force=True)
    atomic_write(outdir / f"self_recovery_{tag}.json", json_bytes(doc), force=True)
    click.echo(md)


if __name__ == "__main__":
    main()
