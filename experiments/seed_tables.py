"""The seed papers' tables, one command each, on held-out faces (or any folder of faces).

    # Table S1 ("GAN Reversal"): PNG, K-means K=4, JPEG 10%, JPEG 1%, invcomp; bpp, CR vs PNG, PSNR, MSE, SSIM
    python experiments/seed_tables.py s1 --data ../shared/data/utkface --split holdout --limit 128
    # Table S3-1 (PGAN inversion): float latent, QSGD 8/6/4 bits, JPEG 1%; SSIM, PSNR, CR (+ the entropy table)
    python experiments/seed_tables.py s3 --data ../shared/data/utkface --split holdout --limit 128 --model NAME

Each writes ``OUT/table_<s1|s3>_<model>_<tag>.{md,json,png}``: the markdown table (mean and median over the
whole set), a JSON with every image's row, the settings and the command, and a plot. Every codec codes the same
centre-cropped, resized pixels; bytes are whole files (``.ivc`` for invcomp); metrics are measured on the 8-bit
pixels each decoder gives back, at the model resolution.
"""
from __future__ import annotations

import logging
import shlex
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import click
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp import metrics  # noqa: E402
from invcomp.bench import entropy  # noqa: E402
from invcomp.classic.codecs import build_codecs  # noqa: E402
from invcomp.bench.report import json_bytes  # noqa: E402
from invcomp.bench.run import Coded, Inputs, load_inputs, measure, run_invcomp, warm_up  # noqa: E402
from invcomp.codecs import EncodeSettings, InversionCodec, stored_pixels  # noqa: E402
from invcomp.codecs.entropy import parse  # noqa: E402
from invcomp.codecs.settings import DEFAULT_BITS, ITERS_FROM_PRIOR  # noqa: E402
from invcomp.zoo.registry import DEFAULT_MODEL, LoadedGenerator, load_generator  # noqa: E402
from invcomp.imageio import from_image  # noqa: E402
from invcomp.search.inversion import invert  # noqa: E402
from invcomp.files import atomic_write
from invcomp.nets import resolve_device  # noqa: E402

log = logging.getLogger("seed_tables")
STATS = ("bytes", "bpp", "psnr", "mse", "ssim", "ms_ssim", "encode_seconds")
# What the seeds printed, for reference beside our rows (their images, their models; not comparable one to one).
SEED_S1 = "The seed reported its inversion codec at 0.215 bpp with SSIM 0.707, against JPEG 1% at 0.218 bpp, SSIM 0.528."


def summarise(rows: list[dict]) -> dict:
    """Mean and median of each metric over every row (the whole set; nothing is dropped)."""
    out: dict = {"n": len(rows)}
    for k in STATS:
        vals = [float(r[k]) for r in rows if r.get(k) is not None]
        if vals:
            out[k] = {"mean": statistics.fmean(vals), "median": statistics.median(vals)}
    return out


def classic_rows(name: str, quality: Optional[float], inputs: Inputs) -> list[dict]:
    """One classic codec at one setting on every image: bytes of the whole file and its decoded quality."""
    codec = build_codecs()[name]
    coded = Coded(codec, inputs)
    files = [coded.get(i, quality) for i in range(len(inputs.names))]
    ms, dec = measure(lambda d: from_image(codec.decode(d)), [d for d, _ in files], inputs.targets, False)
    r = inputs.resolution
    return [{"image": n, "bytes": len(d), "bpp": metrics.bpp(len(d), r, r), **m, "encode_seconds": enc,
             "decode_seconds": dt} for n, (d, enc), m, dt in zip(inputs.names, files, ms, dec)]


def float_search(gen: LoadedGenerator, inputs: Inputs, st: EncodeSettings, batch_size: int,
                 bar: tqdm) -> tuple[torch.Tensor, list[float]]:
    """The unquantised search (no quantiser in the loop) with resolved settings ``st``: latents ``(N, D)`` and
    encode seconds per image."""
    zs, secs = [], []
    for s in range(0, len(inputs.names), batch_size):
        t0 = time.perf_counter()
        res = invert(gen.module, inputs.targets[s:s + batch_size], loss=st.loss, iters=st.iters, lr=st.lr,
                     restarts=st.restarts, prior=gen.config.prior, norm_weight=st.norm_weight, quant=None, seed=st.seed)
        n = len(res.z)
        zs.append(res.z.cpu())
        secs += [(time.perf_counter() - t0) / n] * n
        bar.update(n)
    return torch.cat(zs), secs


def latent_rows(gen: LoadedGenerator, inputs: Inputs, z: torch.Tensor, secs: list[float]) -> list[dict]:
    """The float latent as the 'code': 4 bytes (float32) per coordinate, decoded by one G pass."""
    device = next(gen.module.parameters()).device
    with torch.no_grad():
        recon = gen.module(z.to(device)).cpu().clamp(-1, 1)
    ms = metrics.quality(stored_pixels(recon), inputs.targets, with_lpips=False)
    n_bytes, r = 4 * gen.config.latent_dim, inputs.resolution
    return [{"image": n, "bytes": n_bytes, "bpp": metrics.bpp(n_bytes, r, r), **m, "encode_seconds": t}
            for n, m, t in zip(inputs.names, ms, secs)]


def post_hoc_rows(codec: InversionCodec, inputs: Inputs, z: torch.Tensor,
                  secs: list[float]) -> tuple[list[dict], list[bytes]]:
    """The seeds' QSGD: quantise the float latent after the search, code it with ``codec``'s settings, and
    decode the ``.ivc`` file."""
    enc = codec.encode_symbols(z, inputs.images, target=inputs.targets)
    files = [e.data for e in enc]
    ms, dec = measure(lambda d: stored_pixels(codec.decode(d)[1]), files, inputs.targets, False)
    r = inputs.resolution
    return ([{"image": n, "bytes": len(d), "bpp": metrics.bpp(len(d), r, r), **m, "encode_seconds": t,
              "decode_seconds": dt} for n, d, m, t, dt in zip(inputs.names, files, ms, secs, dec)], files)


def levels_and_coders(files: list[bytes]) -> tuple[list[list[int]], list[str]]:
    parsed = [parse(d) for d in files]
    return [[int(v) for v in q.levels[0]] for _, q in parsed], [h.coder for h, _ in parsed]


def ratios(rows: list[dict], png_mean: float, raw: int) -> tuple[float, float]:
    """Compression ratios of the mean file size: against the mean PNG and against raw 24-bit RGB."""
    mean = statistics.fmean(r["bytes"] for r in rows)
    return png_mean / mean, raw / mean


def cell(s: dict, k: str, spec: str) -> str:
    return f"{s[k]['mean']:{spec}} ({s[k]['median']:{spec}})"


def markdown_table(title: str, runs: dict[str, list[dict]], png_mean: float, raw: int) -> str:
    lines = [f"### {title}", "", "Mean (median) over every image. CR: mean PNG bytes (or raw 24-bit RGB) / mean bytes.", "",
             "| row | bytes | bpp | CR vs PNG | CR vs raw | PSNR dB | MSE | SSIM | encode s/img |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in runs.items():
        s = summarise(rows)
        cr_png, cr_raw = ratios(rows, png_mean, raw)
        lines.append(f"| {name} | {s['bytes']['mean']:.1f} | {cell(s, 'bpp', '.3f')} | {cr_png:.1f}× | {cr_raw:.1f}× | "
                     f"{cell(s, 'psnr', '.2f')} | {cell(s, 'mse', '.4f')} | {cell(s, 'ssim', '.3f')} | "
                     f"{s['encode_seconds']['mean']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(runs: dict[str, list[dict]], title: str, lines: dict[str, list[str]]) -> bytes:
    """SSIM against bpp (log): one marker per row (its mean), with ``lines`` joining named groups of rows."""
    import io
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.6), dpi=110)
    mean = {n: (summarise(r)["bpp"]["mean"], summarise(r)["ssim"]["mean"]) for n, r in runs.items()}
    for (label, names), style in zip(lines.items(), ("--", "-", ":")):
        pts = sorted(mean[n] for n in names)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color="0.5", lw=1, zorder=1, label=label)
    markers = "o^vsDP*Xh<>"
    for i, (name, (x, y)) in enumerate(mean.items()):
        ax.scatter(x, y, marker=markers[i % len(markers)], s=40, zorder=2, label=f"{name}: {x:.3f} bpp, SSIM {y:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("bits per pixel (log)")
    ax.set_ylabel("SSIM (mean)")
    ax.set_title(textwrap.fill(title, 90), fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write(out: Path, stem: str, md: str, doc: dict, png: bytes) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / f"{stem}.md", md.encode(), force=True)
    atomic_write(out / f"{stem}.json", json_bytes(doc), force=True)
    atomic_write(out / f"{stem}.png", png, force=True)
    log.info("wrote %s/%s.{md,json,png}", out, stem)


def setup(data: str, split: str, limit: int, model: str, device: str) -> tuple[LoadedGenerator, Inputs]:
    gen = load_generator(model, resolve_device(device))
    # invcomp codes the centre-cropped pixels, as every other row does (and as the tables were measured): without
    # the originals, run_invcomp codes the crops, so a header holds R x R and not the original size (2 B less on
    # 200x200 faces), and the post-hoc and quantiser-aware files compare byte for byte.
    inputs = replace(load_inputs(data, gen.config.resolution, limit or None, split),  # type: ignore[arg-type]
                     originals=None)
    # one untimed 1-iteration encode and decode, so one-off start-up costs stay out of the timings
    warm_up(InversionCodec(gen, EncodeSettings(init="random", iters=1)), inputs.images[0])
    log.info("%s: %d images from %s (split %s) at %dx%d", model, len(inputs.names), data, split,
             inputs.resolution, inputs.resolution)
    return gen, inputs


def invcomp_settings(iters: Optional[int], bits: Optional[int] = None) -> EncodeSettings:
    """The invcomp rows' settings: a random start (the tables were measured so; ``EncodeSettings``' own default
    is now the warm start), ``iters`` iterations (default 300) and ``bits``; the rest the codec's defaults."""
    return EncodeSettings(init="random", iters=iters, bits=bits)


def describe(gen: LoadedGenerator, inputs: Inputs, data: str, split: str, device: str,
             settings: EncodeSettings) -> dict:
    return {"command": shlex.join(["python", "experiments/seed_tables.py", *sys.argv[1:]]), "model": gen.name,
            "model_sha256": gen.sha256, "data": data, "split": split, "images": inputs.names, "n": len(inputs.names),
            "resolution": inputs.resolution, "device": resolve_device(device), "torch": torch.__version__,
            "invcomp_settings": asdict(settings)}


common = [
    click.option("--data", default="../shared/data/utkface", show_default=True, type=click.Path(exists=True, file_okay=False)),
    click.option("--split", default="holdout", show_default=True, type=click.Choice(["all", "train", "val", "holdout"]),
                 help="invcomp.data's split (use all for a folder that is not UTKFace)."),
    click.option("--limit", default=0, show_default=True, help="The first N images by name (0: the whole split)."),
    click.option("--model", default=DEFAULT_MODEL, show_default=True),
    click.option("--iters", default=None, type=int,
                 help=f"Inversion iterations, from a random start [default: {ITERS_FROM_PRIOR}]."),
    click.option("--batch-size", default=32, show_default=True),
    click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])),
    click.option("--tag", default="heldout", show_default=True, help="Suffix of the output names."),
    click.option("--out", default="experiments/results", show_default=True, type=click.Path(file_okay=False)),
]


def options(f):  # type: ignore[no-untyped-def]
    for opt in reversed(common):
        f = opt(f)
    return f


@click.group()
def main() -> None:
    """The seed papers' tables (S1 and S3-1), one command each."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")


@main.command("s1")
@options
@click.option("--bits", default=DEFAULT_BITS, show_default=True)
def s1(data: str, split: str, limit: int, model: str, iters: Optional[int], batch_size: int, device: str, tag: str,
       out: str, bits: int) -> None:
    """Table S1: PNG, K-means K=4, JPEG 10%, JPEG 1% and invcomp (a random start, its other settings the
    defaults) on the same faces."""
    gen, inputs = setup(data, split, limit, model, device)
    inv = InversionCodec(gen, invcomp_settings(iters, bits))
    st = inv.settings
    runs: dict[str, list[dict]] = {}
    for label, name, q in (("PNG", "png", None), ("K-means K=4", "kmeans", None), ("JPEG 10%", "jpeg", 10),
                           ("JPEG 1%", "jpeg", 1)):
        runs[label] = classic_rows(name, q, inputs)
    bar = tqdm(total=len(inputs.names), desc="invcomp", file=sys.stderr)
    runs[f"invcomp ({gen.name}, {bits} bits)"], _ = run_invcomp(inv, inputs, batch_size=batch_size, with_lpips=False,
                                                               tick=bar.update)
    bar.close()
    png_mean, raw = statistics.fmean(r["bytes"] for r in runs["PNG"]), 3 * inputs.resolution ** 2
    title = (f"Table S1: {gen.name}, {len(inputs.names)} faces ({split} of {data}) at "
             f"{inputs.resolution}x{inputs.resolution}, {st.iters} iterations")
    md = markdown_table(title, runs, png_mean, raw) + f"\n{SEED_S1}\n"
    doc = {**describe(gen, inputs, data, split, device, st),
           "summary": {k: summarise(v) for k, v in runs.items()}, "rows": runs}
    write(Path(out), f"table_s1_{gen.name}_{tag}", md, doc, plot(runs, title, {}))
    click.echo(md)


@main.command("s3")
@options
@click.option("--bits", default="8,6,4", show_default=True, help="QSGD bit depths (comma list).")
def s3(data: str, split: str, limit: int, model: str, iters: Optional[int], batch_size: int, device: str, tag: str,
       out: str, bits: str) -> None:
    """Table S3-1: the float latent, QSGD at each bit depth (post hoc, as in the seed, and invcomp's
    quantiser-aware search), and JPEG 1%; plus the entropy table of the quantiser-aware files."""
    gen, inputs = setup(data, split, limit, model, device)
    st = InversionCodec(gen, invcomp_settings(iters)).settings  # every field resolved (bits: the default, 6)
    bit_list = [int(b) for b in bits.split(",")]
    bar = tqdm(total=len(inputs.names) * (1 + len(bit_list)), desc="searches", file=sys.stderr)
    z, secs = float_search(gen, inputs, replace(st, quant_aware=False), batch_size, bar)
    runs: dict[str, list[dict]] = {"float latent (float32)": latent_rows(gen, inputs, z, secs)}
    ent = []
    for b in bit_list:
        post_hoc = InversionCodec(gen, replace(st, bits=b, quant_aware=False))
        runs[f"QSGD {b} bits, post hoc"] = post_hoc_rows(post_hoc, inputs, z, secs)[0]
    for b in bit_list:
        rows, files = run_invcomp(InversionCodec(gen, replace(st, bits=b)), inputs, batch_size=batch_size,
                                  with_lpips=False, tick=bar.update)
        runs[f"QSGD {b} bits, quantiser-aware (invcomp)"] = rows
        ent.append(entropy.entropy_row(*levels_and_coders(files), b))
    bar.close()
    runs["JPEG 1%"] = classic_rows("jpeg", 1, inputs)
    png_mean = statistics.fmean(r["bytes"] for r in classic_rows("png", None, inputs))
    raw = 3 * inputs.resolution ** 2
    title = (f"Table S3-1: {gen.name} ({gen.config.latent_dim}-d latent), {len(inputs.names)} faces ({split} of {data}) "
             f"at {inputs.resolution}x{inputs.resolution}, {st.iters} iterations")
    md = markdown_table(title, runs, png_mean, raw)
    md += f"\nMean PNG file: {png_mean:.1f} B; raw RGB: {raw} B. The float latent is {4 * gen.config.latent_dim} B of float32.\n"
    md += "\n#### Elias payload against entropy (quantiser-aware files; mean bits per image)\n\n" + entropy.markdown(ent)
    doc = {**describe(gen, inputs, data, split, device, st),
           "summary": {k: summarise(v) for k, v in runs.items()}, "entropy": ent, "rows": runs}
    groups = {"post hoc": [f"QSGD {b} bits, post hoc" for b in bit_list],
              "quantiser-aware": [f"QSGD {b} bits, quantiser-aware (invcomp)" for b in bit_list]}
    write(Path(out), f"table_s3_{gen.name}_{tag}", md, doc, plot(runs, title, groups))
    click.echo(md)


if __name__ == "__main__":
    main()
