"""Entropy coding on held-out faces: version 1 (Elias) against version 2 (range coding under the model's prior).

    python experiments/entropy_coding.py --latents /tmp/latents

For the DCGAN and PGAN inversion codecs, the latents are those that the default search found for held-out faces
(``experiments/collect_latents.py --split holdout``; 520 faces for the DCGAN, the first 128 for the PGAN); for the
VAE-GAN codecs, the analysis means of the same 520 faces. Each latent is quantised at 3..8 bits (VAE-GAN: 2..8)
and written both ways. The levels are the same except for the norm's precision (float16 in v1, one byte in v2),
so the two files decode to the same picture up to that. Per model and bit depth:

- mean bytes of v1 and v2 files, and their ratio; header bytes of v2;
- v2 payload bits against the ideal code length of its levels under the prior, and against the pooled empirical
  entropy (N x H of all the images' symbols together, the bound of a coder that knew this very set);
- SSIM, MS-SSIM and PSNR of both decodes, on the 8-bit pixels a decoder writes.

Also the coders compared on the default DCGAN files (bytes and microseconds per file), and the whole decode
time per file. Writes OUT/entropy_coding.json, OUT/entropy_coding.png (the RD curves), and prints the tables.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from invcomp.coding import tables as priors  # noqa: E402
from invcomp.codecs import entropy, load_codec, stored_pixels  # noqa: E402
from invcomp.codecs.base import prepare  # noqa: E402
from invcomp.data import list_images  # noqa: E402
from invcomp.metrics import quality  # noqa: E402
from invcomp.files import atomic_write  # noqa: E402
from invcomp.coding.quantize import dequantize  # noqa: E402


def _with(codec, **kw):
    c = copy.copy(codec)
    c.settings = replace(codec.settings, rounding="nearest", **kw)
    return c


def _metrics(codec, q, targets: torch.Tensor) -> dict:
    zq = dequantize(q)
    recon = torch.cat([codec.synthesise(zq[i:i + 64]) for i in range(0, zq.shape[0], 64)])
    rows = quality(stored_pixels(recon), targets, with_lpips=False)
    return {k: float(np.mean([r[k] for r in rows])) for k in ("ssim", "ms_ssim", "psnr")}


def study(codec, z: torch.Tensor, targets: torch.Tensor, bits_list: list[int]) -> list[dict]:
    out = []
    sizes = [(64, 64)] * z.shape[0]
    for b in bits_list:
        c1, c2 = _with(codec, bits=b, coder="elias"), _with(codec, bits=b, coder="auto")
        q1 = entropy.quantise_rows(z, c1.settings, norm_free=codec.norm_free)
        q2 = entropy.quantise_rows(z, c2.settings, norm_free=codec.norm_free, prior=codec.tables)
        f1 = [d for d, _ in entropy.pack_rows(c1, q1, sizes)]
        f2 = [d for d, _ in entropy.pack_rows(c2, q2, sizes)]
        p = codec.tables
        header = 9 if codec.norm_free else 10
        payload_bits = 8 * (sum(map(len, f2)) / len(f2) - header)
        ideal = float(priors.code_length_bits(q2.levels, b, p).mean())
        s = priors.levels_for_bits(b)
        hist = np.bincount((q2.levels + s).flatten().numpy(), minlength=2 * s + 1).astype(float)
        pr = hist[hist > 0] / hist.sum()
        pooled = float(-(pr * np.log2(pr)).sum()) * codec.latent_dim
        row = {"bits": b, "v1_bytes": sum(map(len, f1)) / len(f1), "v2_bytes": sum(map(len, f2)) / len(f2),
               "v2_header_bytes": header, "v2_payload_bits": payload_bits, "ideal_bits": ideal, "pooled_entropy_bits": pooled,
               "v1": _metrics(codec, q1, targets), "v2": _metrics(codec, q2, targets)}
        row["ratio"] = row["v2_bytes"] / row["v1_bytes"]
        out.append(row)
        click.echo(f"{codec.name} {b} bits: v1 {row['v1_bytes']:.1f} B, v2 {row['v2_bytes']:.1f} B "
                   f"(x{row['ratio']:.3f}), SSIM {row['v1']['ssim']:.4f} / {row['v2']['ssim']:.4f}", err=True)
    return out


def equal_ssim_ratio(rows: list[dict]) -> list[float]:
    """v2 bytes over the v1 bytes (interpolated along v1's curve) at each v2 point's SSIM."""
    xs = [r["v1"]["ssim"] for r in rows]
    ys = [r["v1_bytes"] for r in rows]
    out = []
    for r in rows:
        s = r["v2"]["ssim"]
        if not min(xs) <= s <= max(xs):
            out.append(r["v2_bytes"] / r["v1_bytes"])
            continue
        order = np.argsort(xs)
        out.append(r["v2_bytes"] / float(np.interp(s, np.array(xs)[order], np.array(ys)[order])))
    return out


def coder_table(codec, z: torch.Tensor) -> list[dict]:
    """Bytes and time per file of each coder for the default DCGAN levels."""
    import constriction

    p, b = codec.tables, codec.settings.bits
    q = entropy.quantise_rows(z, codec.settings, norm_free=codec.norm_free, prior=p)
    s = priors.levels_for_bits(b)
    idx = (q.levels + s).numpy().astype(np.int32)
    model = constriction.stream.model.Categorical(p.tables[b][0].astype(np.float64) / priors.TOTAL, perfect=False)
    ideal = float(priors.code_length_bits(q.levels, b, p).mean()) / 8
    rows = []

    def timed(fn, n=len(idx)):
        t0 = time.perf_counter()
        outs = [fn(i) for i in range(n)]
        return outs, (time.perf_counter() - t0) / n * 1e6

    from invcomp.coding import elias
    el, us = timed(lambda i: elias.encode_levels([int(v) for v in q.levels[i]], elias.best_coder([int(v) for v in q.levels[i]]))[0])
    rows.append({"coder": "Elias (best of gamma/delta/omega, v1)", "bytes": np.mean([len(x) for x in el]), "encode_us": us})

    def raw_words(cls, method: str):  # one constriction coder's own output, whole 32-bit words
        def run(i):
            e = cls()
            getattr(e, method)(idx[i], model)
            return e.get_compressed().tobytes()
        return timed(run)

    for cls, method, label in ((constriction.stream.queue.RangeEncoder, "encode", "constriction range coder, 32-bit words"),
                               (constriction.stream.stack.AnsCoder, "encode_reverse", "constriction ANS, 32-bit words")):
        out, us = raw_words(cls, method)
        rows.append({"coder": label, "bytes": np.mean([len(x) for x in out]), "encode_us": us})
    ours, us = timed(lambda i: priors.encode_levels(q.levels[i], b, p))
    _, dus = timed(lambda i: priors.decode_levels(ours[i], b, p))
    rows.append({"coder": "constriction range coder, big-endian, trimmed (invcomp v2)", "bytes": np.mean([len(x) for x in ours]),
                 "encode_us": us, "decode_us": dus})
    try:
        from compressai.ans import RansEncoder

        cdf = np.concatenate([[0], np.cumsum(p.tables[b][0])]).astype(np.int32)
        cdf = (cdf >> 0).tolist()
        enc = RansEncoder()

        def rans(i):
            return enc.encode_with_indexes(idx[i].tolist(), [0] * len(idx[i]), [cdf], [len(cdf)], [0])
        rs, us = timed(rans)
        rows.append({"coder": "CompressAI rANS (16-bit CDF)", "bytes": np.mean([len(x) for x in rs]), "encode_us": us})
    except Exception as e:  # noqa: BLE001
        rows.append({"coder": f"CompressAI rANS: not measured ({type(e).__name__}: {e})", "bytes": None, "encode_us": None})
    for r in rows:
        r["over_ideal"] = None if r["bytes"] is None else r["bytes"] / ideal
    rows.append({"coder": "ideal code length under the prior", "bytes": ideal, "encode_us": None, "over_ideal": 1.0})
    return rows


@click.command()
@click.option("--latents", default="/tmp/latents", show_default=True)
@click.option("--data", default="../shared/data/utkface", show_default=True)
@click.option("--split", default="holdout", show_default=True, help="The split the latents were collected on "
              "(`all` for another face set, e.g. --data /tmp/lfw100).")
@click.option("--gans", default="dcgan-utkface64,pgan-utkface64", show_default=True)
@click.option("--no-vaegan", is_flag=True, help="Skip the VAE-GAN codecs.")
@click.option("--out", default="experiments/results", show_default=True)
def main(latents: str, data: str, split: str, gans: str, no_vaegan: bool, out: str) -> None:
    results: dict = {"models": {}, "command": " ".join(["python", *sys.argv])}
    names_all = list_images(data, split)  # type: ignore[arg-type]
    by_name = {p.name: p for p in names_all}
    for name in [g for g in gans.split(",") if g]:
        doc = torch.load(Path(latents) / f"{name}-{split}.pt", weights_only=True)
        codec = load_codec(name, for_decode=True)
        targets = torch.stack([prepare(Image.open(by_name[n]).convert("RGB"), 64, "crop") for n in doc["names"]])
        rows = study(codec, doc["z"], targets, list(range(3, 9)))
        results["models"][name] = {"faces": len(doc["names"]), "rows": rows, "equal_ssim_ratio": equal_ssim_ratio(rows)}
        if name == "dcgan-utkface64":
            results["coders"] = coder_table(load_codec(name, for_decode=True), doc["z"])
            t0 = time.perf_counter()
            files = [entropy.pack_rows(codec, entropy.quantise_rows(doc["z"][i:i + 1], codec.settings, norm_free=False,
                                                                    prior=codec.tables), [(64, 64)])[0][0]
                     for i in range(min(64, len(doc["z"])))]
            t0 = time.perf_counter()
            for f in files:
                codec.decode(f)
            results["decode_ms_per_file"] = (time.perf_counter() - t0) / len(files) * 1000
    targets = torch.stack([prepare(Image.open(p).convert("RGB"), 64, "crop") for p in names_all])
    for c in () if no_vaegan else (2, 4, 8):
        codec = load_codec(f"vaegan-utkface64-c{c}", for_decode=True)
        with torch.no_grad():
            z = torch.cat([codec.model.analysis(targets[i:i + 1])[0].flatten(1) for i in range(len(targets))])
        rows = study(codec, z, targets, list(range(2, 9)))
        results["models"][codec.name] = {"faces": len(targets), "rows": rows, "equal_ssim_ratio": equal_ssim_ratio(rows)}
    Path(out).mkdir(parents=True, exist_ok=True)
    atomic_write(Path(out, "entropy_coding.json"), (json.dumps(results, indent=1, default=float) + "\n").encode(), force=True)
    _plot(results, Path(out, "entropy_coding.png"))
    for name, m in results["models"].items():
        click.echo(f"\n{name} ({m['faces']} held-out faces)\n")
        click.echo("| bits | v1 bytes | v2 bytes | v2 / v1 | v2/v1 at equal SSIM | v2 header | payload / ideal | "
                   "payload / pooled entropy | SSIM v1 / v2 | MS-SSIM v2 | PSNR v2 |\n|---|---|---|---|---|---|---|---|---|---|---|")
        for r, e in zip(m["rows"], m["equal_ssim_ratio"]):
            click.echo(f"| {r['bits']} | {r['v1_bytes']:.1f} | {r['v2_bytes']:.1f} | {r['ratio']:.3f} | {e:.3f} | "
                       f"{r['v2_header_bytes']} | {r['v2_payload_bits'] / r['ideal_bits']:.3f} | "
                       f"{r['v2_payload_bits'] / r['pooled_entropy_bits']:.3f} | {r['v1']['ssim']:.4f} / {r['v2']['ssim']:.4f} | "
                       f"{r['v2']['ms_ssim']:.4f} | {r['v2']['psnr']:.2f} |")
    n = results["models"]["dcgan-utkface64"]["faces"]
    click.echo(f"\n| coder (DCGAN, 6 bits, {n} files) | payload bytes | / ideal | encode us | decode us |\n|---|---|---|---|---|")
    for r in results["coders"]:
        def fmt(v, f):
            return ("" if v is None else format(v, f))
        click.echo(f"| {r['coder']} | {fmt(r['bytes'], '.2f')} | {fmt(r['over_ideal'], '.3f')} | {fmt(r['encode_us'], '.0f')} | "
                   f"{fmt(r.get('decode_us'), '.0f')} |")
    click.echo(f"\nwhole decode (parse, range decode, generator pass): {results['decode_ms_per_file']:.1f} ms per file")


def _plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for name, m in results["models"].items():
        for ax, key in zip(axes, ("ssim", "ms_ssim", "psnr")):
            line, = ax.plot([r["v2_bytes"] for r in m["rows"]], [r["v2"][key] for r in m["rows"]], "o-", ms=3, label=f"{name} v2")
            ax.plot([r["v1_bytes"] for r in m["rows"]], [r["v1"][key] for r in m["rows"]], "x--", ms=3, color=line.get_color(),
                    alpha=0.6, label=f"{name} v1")
            ax.set_xscale("log")
            ax.set_xlabel("bytes per 64x64 face")
            ax.set_ylabel(key.upper().replace("_", "-"))
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


if __name__ == "__main__":
    main()
