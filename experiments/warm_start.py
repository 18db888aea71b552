"""SSIM against search iterations for each start: the warm-start encoder, the prior's mean and a random draw.

    python experiments/warm_start.py --model dcgan-utkface64 --encoder runs/enc-dcgan64/encoder.pt \\
        --data ../shared/data/utkface --split holdout --limit 128

For every start and every budget in ``--iters`` (each budget is its own run, since the learning-rate schedule
spans the budget) it codes the faces at ``--bits`` with the codec's other defaults and measures the decoded
files. Writes ``OUT/warm_start_<model>_<tag>.{md,json,png}``: the table, every image's row, the curve, the
iterations the encoder start needs to reach the SSIM of random starts at the largest budget, and the seconds
per image at that point.
"""
from __future__ import annotations

import logging
import shlex
import statistics
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import click
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from invcomp.bench.report import json_bytes  # noqa: E402
from invcomp.bench.run import load_inputs, run_invcomp, warm_up  # noqa: E402
from invcomp.codecs import EncodeSettings, InversionCodec  # noqa: E402
from invcomp.codecs.settings import DEFAULT_LR, resolve_search  # noqa: E402
from invcomp.nets.warmstart import load_warm_start
from invcomp.zoo.warmstart import check_warm_start, shipped_warm_start  # noqa: E402
from invcomp.zoo.registry import DEFAULT_MODEL, load_generator  # noqa: E402
from invcomp.files import atomic_write
from invcomp.nets import resolve_device  # noqa: E402

log = logging.getLogger("warm_start")


def run(gen, inputs, enc, init: str, iters: int, bits: int, lr: float, batch_size: int, bar: tqdm) -> list[dict]:  # type: ignore[no-untyped-def]
    codec = InversionCodec(gen, EncodeSettings(bits=bits, iters=iters, init=init, lr=lr),
                           enc if init == "encoder" else None)
    return run_invcomp(codec, inputs, batch_size=batch_size, with_lpips=False, tick=bar.update)[0]


def mean(rows: list[dict], k: str) -> float:
    return statistics.fmean(r[k] for r in rows)


def plot(curves: dict[str, dict[int, float]], title: str) -> bytes:
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for init, pts in curves.items():
        xs = sorted(pts)
        ax.plot([max(x, 1) for x in xs], [pts[x] for x in xs], "o-", label=f"--init {init}")
    ax.set_xscale("log")
    ax.set_xlabel("search iterations (0 plotted at 1)")
    ax.set_ylabel("mean SSIM of the decoded file")
    ax.set_title(title, fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@click.command()
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@click.option("--encoder", "encoder_path", default=None, help="Encoder .pt [default: the one the registry ships].")
@click.option("--data", default="../shared/data/utkface", show_default=True, type=click.Path(exists=True, file_okay=False))
@click.option("--split", default="holdout", show_default=True, type=click.Choice(["all", "train", "val", "holdout"]))
@click.option("--limit", default=0, show_default=True, help="The first N images by name (0: all).")
@click.option("--iters", "budgets", default="0,25,50,100,200,500,1000", show_default=True)
@click.option("--inits", default="encoder,mean,random", show_default=True)
@click.option("--bits", default=6, show_default=True)
@click.option("--lr", default=DEFAULT_LR, show_default=True, help="Peak Adam learning rate of the search.")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--tag", default="heldout", show_default=True)
@click.option("--out", default="experiments/results", show_default=True, type=click.Path(file_okay=False))
def main(model: str, encoder_path: Optional[str], data: str, split: str, limit: int, budgets: str, inits: str, bits: int,
         lr: float, batch_size: int, device: str, tag: str, out: str) -> None:
    """Measure the warm start: SSIM against iterations for each --init."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    dev = resolve_device(device)
    gen = load_generator(model, dev)
    enc = load_warm_start(encoder_path, dev) if encoder_path else shipped_warm_start(gen, dev)
    init_list = [i for i in inits.split(",") if i]
    if "encoder" in init_list:
        if enc is None:
            raise click.ClickException(f"model {gen.name} has no encoder; pass --encoder or drop it from --inits")
        check_warm_start(enc, gen)
    iters_list = sorted({int(b) for b in budgets.split(",")})
    # the centre-cropped pixels are coded, as the figures were measured (the header holds R x R, not the original size)
    inputs = replace(load_inputs(data, gen.config.resolution, limit or None, split),  # type: ignore[arg-type]
                     originals=None)
    warm_up(InversionCodec(gen, EncodeSettings(init="random", iters=1)), inputs.images[0])  # untimed start-up costs
    bar = tqdm(total=len(inputs.names) * len(iters_list) * len(init_list), desc="warm start", file=sys.stderr)
    rows: dict[str, dict[int, list[dict]]] = {i: {} for i in init_list}
    for init in init_list:
        for it in iters_list:
            rows[init][it] = run(gen, inputs, enc, init, it, bits, lr, batch_size, bar)
    bar.close()
    curves = {i: {it: mean(r, "ssim") for it, r in per.items()} for i, per in rows.items()}
    top = iters_list[-1]
    goal = curves["random"][top] if "random" in curves else None
    reach = None
    if goal is not None and "encoder" in curves:
        reach = next((it for it in iters_list if curves["encoder"][it] >= goal), None)
    lines = [f"### Warm start: {gen.name}, {len(inputs.names)} faces ({split} of {data}), {bits} bits, lr {lr}", "",
             "Mean SSIM (mean PSNR dB) of the decoded files; seconds per image at batch "
             f"{batch_size} on {dev}.", "",
             "| iterations | " + " | ".join(f"--init {i}" for i in init_list) + " | seconds/img (" + init_list[0] + ") |",
             "|---" * (len(init_list) + 2) + "|"]
    for it in iters_list:
        cells = [f"{curves[i][it]:.4f} ({mean(rows[i][it], 'psnr'):.2f})" for i in init_list]
        lines.append(f"| {it} | " + " | ".join(cells) + f" | {mean(rows[init_list[0]][it], 'encode_seconds'):.3f} |")
    if goal is not None and "encoder" in curves:
        lines += ["", f"Random starts reach SSIM {goal:.4f} at {top} iterations. " + (
            f"The encoder start reaches it at **{reach}** iterations ({top / max(reach, 1):.0f}× fewer), "
            f"{mean(rows['encoder'][reach], 'encode_seconds'):.3f} s per image against "
            f"{mean(rows['random'][top], 'encode_seconds'):.3f} s." if reach is not None else
            "The encoder start does not reach it within the budgets tried.")]
    md = "\n".join(lines) + "\n"
    command = shlex.join(["python", "experiments/warm_start.py", *sys.argv[1:]])
    # The settings the runs share (each run sets its own init and iters), resolved for a random start as they
    # were always recorded (init random, iters 300).
    shared = resolve_search(EncodeSettings(bits=bits, lr=lr, init="random"), has_warm_start=False)
    doc = {"command": command, "model": gen.name, "model_sha256": gen.sha256,
           "warm_start_sha256": enc.sha256 if enc else None, "data": data, "split": split, "n": len(inputs.names),
           "settings": asdict(shared), "device": dev, "curves": curves,
           "goal_ssim": goal, "encoder_iters_to_goal": reach,
           "rows": {i: {str(it): r for it, r in per.items()} for i, per in rows.items()}}
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    stem = f"warm_start_{gen.name}_{tag}"
    atomic_write(outdir / f"{stem}.md", md.encode(), force=True)
    atomic_write(outdir / f"{stem}.json", json_bytes(doc), force=True)
    atomic_write(outdir / f"{stem}.png", plot(curves, f"{gen.name}: {len(inputs.names)} faces, {bits} bits, lr {lr}"), force=True)
    click.echo(md)


if __name__ == "__main__":
    main()
