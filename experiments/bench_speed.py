"""Encode and decode speed of the default codec: medians of repeated runs, measured in one process.

    python experiments/bench_speed.py --data ../shared/data/utkface --device cpu

Prints (and writes ``OUT/speed_<device>.json`` / ``.md``):
- ms per inversion iteration per image at batch 1, 8 and 32;
- wall seconds per image of a default encode (all iterations, quantisation, coding), batched: from a random
  start (300 iterations) and, for a model that ships a warm-start encoder, from the encoder's guess
  (``invcomp.codecs.settings.ITERS_FROM_WARM_START`` iterations, the warm-start pass included);
- decode time per file (parse + one generator pass + PNG-ready image), and the generator pass alone.
"""
from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import click
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.files import atomic_write  # noqa: E402
from invcomp.codecs import EncodeSettings, InversionCodec, prepare  # noqa: E402
from invcomp.codecs.entropy import parse  # noqa: E402
from invcomp.codecs.settings import ITERS_FROM_WARM_START  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.zoo.warmstart import shipped_warm_start  # noqa: E402
from invcomp.zoo.registry import DEFAULT_MODEL, load_generator  # noqa: E402
from invcomp.imageio import load_image, restore_size, to_pil  # noqa: E402
from invcomp.search.inversion import invert  # noqa: E402


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_time(fn, repeats: int, device: str) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def measure(model: str, data: str, device: str, repeats: int, encode_batch: int) -> dict:
    """The speed figures of one model (see the module doc)."""
    gen = load_generator(model, device)
    images = [load_image(p) for p in list_images(data, "holdout")[:32]]
    target = torch.stack([prepare(im, gen.config.resolution, "crop") for im in images]).to(device)
    # The random-start encode (300 iterations), as the figures were measured; the warm start is timed below.
    default = InversionCodec(gen, EncodeSettings(init="random"))
    st = default.settings
    rows = {"device": device, "model": model, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "repeats": repeats,
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None, "ms_per_iter_per_image": {}}
    iters = 20
    for b in (1, 8, 32):
        t = median_time(lambda b=b: invert(gen.module, target[:b], iters=iters, lr=st.lr), repeats, device)
        rows["ms_per_iter_per_image"][str(b)] = 1000 * t / iters / b
    batch = images[:encode_batch]
    t = median_time(lambda: default.encode(batch), max(1, repeats // 2), device)
    rows["encode_seconds_per_image"] = t / len(batch)
    rows["encode_batch"] = len(batch)
    rows["encode_iters"] = st.iters
    enc = shipped_warm_start(gen, device)
    rows["encoder_iters"] = ITERS_FROM_WARM_START if enc is not None else None
    rows["encoder_encode_seconds_per_image"] = None
    if enc is not None:
        warm = InversionCodec(gen, EncodeSettings(iters=ITERS_FROM_WARM_START, init="encoder"), warm_start=enc)
        t = median_time(lambda: warm.encode(batch), max(1, repeats // 2), device)
        rows["encoder_encode_seconds_per_image"] = t / len(batch)
    one_iter = InversionCodec(gen, EncodeSettings(init="random", iters=1))
    data_ivc = one_iter.encode(images[:1])[0].data

    def decode_to_image() -> None:  # decode (parse + one G pass), then the picture at its original size
        x = one_iter.decode(data_ivc)[1]
        header = parse(data_ivc)[0]  # parsed again, as the figures were measured
        restore_size(to_pil(x), header.width, header.height, header.fit)  # type: ignore[arg-type]

    rows["decode_ms"] = 1000 * median_time(decode_to_image, repeats * 4, device)
    z = torch.randn(1, gen.config.latent_dim, device=device)
    with torch.no_grad():
        rows["generator_forward_ms"] = 1000 * median_time(lambda: gen.module(z), repeats * 4, device)
    return rows


def lines(rows: dict) -> list[tuple[str, float, str]]:
    out = [(f"inversion ms / iteration / image, batch {b}", v, ".2f") for b, v in rows["ms_per_iter_per_image"].items()]
    return out + [(f"default encode ({rows['encode_iters']} iters), s / image, batch {rows['encode_batch']}",
                   rows["encode_seconds_per_image"], ".2f"),
                  (f"encoder-start encode ({ITERS_FROM_WARM_START} iters), s / image, batch {rows['encode_batch']}",
                   rows["encoder_encode_seconds_per_image"], ".2f"),
                  ("decode ms / file (parse + G + image)", rows["decode_ms"], ".1f"),
                  ("generator forward ms (1 latent)", rows["generator_forward_ms"], ".1f")]


def fmt(v: float | None, f: str) -> str:
    return "—" if v is None else f"{v:{f}}"


@click.command()
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--model", "models", default=[DEFAULT_MODEL], multiple=True, show_default=True,
              help="Repeatable: several models are measured in one process, with the ratios to the first.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--repeats", default=5, show_default=True)
@click.option("--encode-batch", default=8, show_default=True, help="Batch for the whole-encode timing.")
@click.option("--out", default="experiments/results", show_default=True)
def main(data, models, device, repeats, encode_batch, out) -> None:
    results = [measure(m, data, device, repeats, encode_batch) for m in models]
    first = results[0]
    head = f"on {device} ({first['gpu'] or first['cpu']}, {first['threads']} threads), medians of {repeats}"
    if len(models) == 1:
        md = (f"### Speed, {models[0]} {head}\n\n| measure | value |\n|---|---|\n"
              + "".join(f"| {k} | {fmt(v, f)} |\n" for k, v, f in lines(first)))
        stem = f"speed_{device}" if models[0] == DEFAULT_MODEL else f"speed_{models[0]}_{device}"
    else:
        md = (f"### Speed, {' and '.join(models)} {head}, in one process\n\n| measure | "
              + " | ".join(models) + " | " + " | ".join(f"{m} / {models[0]}" for m in models[1:]) + " |\n"
              + "|---" * (2 * len(models)) + "|\n")
        tables = [lines(r) for r in results]
        for i, (k, v0, f) in enumerate(tables[0]):
            vals = [t[i][1] for t in tables]
            md += f"| {k} | " + " | ".join(fmt(v, f) for v in vals) + " | " + " | ".join(
                f"{v / v0:.2f}×" if v is not None and v0 is not None else "—" for v in vals[1:]) + " |\n"
        stem = f"speed_compare_{device}"
    Path(out).mkdir(parents=True, exist_ok=True)
    doc = first if len(models) == 1 else {"models": results}
    atomic_write(Path(out, f"{stem}.json"), (json.dumps(doc, indent=1) + "\n").encode(), force=True)
    atomic_write(Path(out, f"{stem}.md"), (md).encode(), force=True)
    click.echo(md)


if __name__ == "__main__":
    main()
