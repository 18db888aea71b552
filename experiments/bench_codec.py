"""Quality and rate of the invcomp codec on held-out faces, beside JPEG q1 and WebP q0 on the same pixels.

Writes ``OUT/codec_<model>_<tag>.json`` (every image, every setting) and
``OUT/codec_<model>_<tag>.md`` (the tables), and prints the tables.

    python experiments/bench_codec.py --data ../shared/data/utkface --limit 0 --bits 4,6,8 --ablate

``--limit 0`` means the whole held-out split (520 faces by the rule in
invcomp.data). Per image, bytes are the whole ``.ivc`` file; metrics are
computed at the model resolution on the 8-bit pixels a PNG would store.
"""
from __future__ import annotations

import io
import json
import logging
import math
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import click
import torch
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.files import atomic_write  # noqa: E402
from invcomp import metrics  # noqa: E402
from invcomp.bench.entropy import entropy_row, payload_bits, markdown as entropy_markdown  # noqa: E402
from invcomp.codecs import EncodeSettings, InversionCodec, stored_pixels  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.zoo.registry import DEFAULT_MODEL, load_generator  # noqa: E402
from invcomp.imageio import fit_image, from_image, load_image  # noqa: E402

log = logging.getLogger("bench")


def summarise(rows: list[dict], keys=("bytes", "bpp", "ssim", "psnr", "ms_ssim")) -> dict:
    out = {"n": len(rows)}
    for k in keys:
        vals = [r[k] for r in rows if r.get(k) is not None and math.isfinite(r[k])]
        if vals:
            out[k] = {"mean": statistics.fmean(vals), "median": statistics.median(vals)}
    return out


def classic(fitted: list[Image.Image], fmt: str, quality: int) -> list[dict]:
    rows = []
    for im in fitted:
        buf = io.BytesIO()
        im.save(buf, fmt, quality=quality)
        data = buf.getvalue()
        rec = Image.open(io.BytesIO(data)).convert("RGB")
        m = metrics.quality(from_image(rec)[None], from_image(im)[None], with_lpips=False)[0]
        rows.append({"bytes": len(data), "bpp": metrics.bpp(len(data), *im.size), **m})
    return rows


def run_invcomp(codec: InversionCodec, images, batch_size, desc) -> list[dict]:
    rows = []
    bar = tqdm(total=len(images), desc=desc, file=sys.stderr)
    for s in range(0, len(images), batch_size):
        chunk = images[s:s + batch_size]
        t0 = time.perf_counter()
        enc = codec.encode(chunk)
        dt = (time.perf_counter() - t0) / len(chunk)
        q = metrics.quality(stored_pixels(torch.stack([e.recon for e in enc])),
                            torch.stack([e.target for e in enc]), with_lpips=False)
        for e, m in zip(enc, q):
            levels = [int(v) for v in e.levels]
            rows.append({"bytes": len(e.data), "bpp": metrics.bpp(len(e.data), e.target.shape[-1], e.target.shape[-1]),
                         **m, "seconds": dt, "coder": e.header.coder, "payload_bits": payload_bits(levels, e.header.coder),
                         "levels": levels, "float_loss": e.extra["float_loss"], "loss": e.extra["loss"]})
        bar.update(len(chunk))
    bar.close()
    return rows


def fmt_table(title: str, rows: list[tuple[str, dict]]) -> str:
    lines = [f"### {title}", "", "| setting | n | mean bytes | mean bpp | SSIM mean (median) | PSNR mean (median) | MS-SSIM mean |",
             "|---|---|---|---|---|---|---|"]
    for name, s in rows:
        lines.append(f"| {name} | {s['n']} | {s['bytes']['mean']:.1f} | {s['bpp']['mean']:.3f} | "
                     f"{s['ssim']['mean']:.4f} ({s['ssim']['median']:.4f}) | {s['psnr']['mean']:.2f} ({s['psnr']['median']:.2f}) | "
                     f"{s['ms_ssim']['mean']:.4f} |")
    return "\n".join(lines) + "\n"


@click.command()
@click.option("--data", default="../shared/data/utkface", show_default=True, type=click.Path(exists=True))
@click.option("--split", default="holdout", show_default=True)
@click.option("--limit", default=64, show_default=True, help="Number of faces (0 = the whole split).")
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@click.option("--bits", default="4,6,8", show_default=True)
@click.option("--iters", default=None, type=int,
              help="Inversion iterations, from a random start [default: 300].")
@click.option("--lr", default=None, type=float)
@click.option("--loss", default=None)
@click.option("--restarts", default=None, type=int)
@click.option("--ablate", is_flag=True, help="Also run without quantiser-aware search, and with l2 scaling.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--tag", default="default", show_default=True)
@click.option("--out", default="experiments/results", show_default=True, type=click.Path())
def main(data, split, limit, model, bits, iters, lr, loss, restarts, ablate, batch_size, device, tag, out) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    gen = load_generator(model, device)
    files = list_images(data, split) if Path(data).is_dir() else []
    files = files[:limit] if limit else files
    images = [load_image(p) for p in files]
    res = gen.config.resolution
    fitted = [fit_image(im, res, "crop") for im in images]
    # A random start, as the figures were measured (EncodeSettings' own default is now the warm start).
    overrides = {k: v for k, v in {"iters": iters, "lr": lr, "loss": loss, "restarts": restarts}.items() if v is not None}
    base = InversionCodec(gen, EncodeSettings(init="random", **overrides)).settings  # every field resolved
    results: dict = {"model": model, "data": str(data), "split": split, "n": len(files), "device": device,
                     "torch": torch.__version__, "settings": asdict(base), "runs": {}}
    table = []
    entropy = []
    for b in [int(x) for x in bits.split(",")]:
        variants = [("default", replace(base, bits=b))]
        if ablate:
            other = "max" if base.scaling == "l2" else "l2"
            variants += [("no-quant-aware", replace(base, bits=b, quant_aware=False)),
                         (f"{other}-scaling", replace(base, bits=b, scaling=other))]
        for name, st in variants:
            inv = InversionCodec(gen, st)
            rows = run_invcomp(inv, images, batch_size, f"{b} bits {name}")
            key = f"invcomp {b} bits" + ("" if name == "default" else f" {name}")
            results["runs"][key] = {"settings": asdict(inv.settings), "summary": summarise(rows), "images": rows}
            table.append((key, summarise(rows)))
            if name == "default":
                entropy.append(entropy_row([r["levels"] for r in rows], [r["coder"] for r in rows], b))
            for r in rows:
                r.pop("levels")
    for fmt, q, label in (("JPEG", 1, "JPEG q1"), ("WEBP", 0, "WebP q0")):
        rows = classic(fitted, fmt, q)
        results["runs"][label] = {"summary": summarise(rows), "images": rows}
        table.append((label, summarise(rows)))
    results["entropy"] = entropy
    results["command"] = " ".join(["python", *sys.argv])
    md = fmt_table(f"{model} on {len(files)} {split} faces at {res}x{res} ({device}, iters {base.iters}, loss {base.loss})", table)
    md += "\n### Elias payload vs entropy (mean bits per image)\n\n" + entropy_markdown(entropy)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = f"codec_{model}_{tag}"
    atomic_write((outdir / f"{stem}.json"), (json.dumps(results) + "\n").encode(), force=True)
    atomic_write((outdir / f"{stem}.md"), (md).encode(), force=True)
    click.echo(md)


if __name__ == "__main__":
    main()
