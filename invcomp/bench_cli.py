"""``invcomp bench``: invcomp against PNG, JPEG, WebP, AVIF, JPEG 2000, HEIF and a K=4 palette, on the same pixels.

Registered in the CLI group with ``cli.add_command(bench)``. The work is in :mod:`invcomp.bench`;
this module parses options, runs the phases with progress bars and writes the files.
"""
from __future__ import annotations

import logging
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import click
from tqdm import tqdm

from . import codec as ivc
from .bench import report
from .bench.codecs import INVCOMP, ClassicCodec, build_codecs, check_available, parse_codecs
from .bench.run import Coded, Inputs, load_inputs, run_equal_bytes, run_fixed, run_invcomp, warm_up
from .errors import InvcompError
from .generators.registry import DEFAULT_MODEL, LoadedGenerator, load_generator
from .outputs import atomic_write, dumps, guard, resolve_device as _device
from .quantize import levels_for_bits

log = logging.getLogger("invcomp.bench")


def _parse_bits(spec: str) -> list[int]:
    try:
        bits = [int(b) for b in spec.split(",") if b.strip()]
    except ValueError:
        raise InvcompError(f"--bits must be a comma list of integers, got {spec!r}") from None
    if not bits:
        raise InvcompError("--bits is empty")
    for b in bits:
        levels_for_bits(b)
    return list(dict.fromkeys(bits))


def _command_line(ctx: click.Context) -> str:
    """The command as it could be retyped (arguments and the options that were given a value)."""
    words = ["invcomp", "bench"]
    for p in ctx.command.params:
        value = ctx.params.get(p.name or "")
        if isinstance(p, click.Argument):
            words.append(str(value))
        elif isinstance(p, click.Option) and value is not None and value is not False:
            words += [p.opts[0]] if p.is_flag else [p.opts[0], str(value)]
    return shlex.join(words)


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="img", disable=None, file=sys.stderr, leave=False)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--codecs", default="all", show_default=True,
              help="Comma list: png, jpeg, webp, avif, jpeg2000, heif, kmeans, invcomp (or all).")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder for the results (created).")
@click.option("--limit", default=None, type=click.IntRange(1), help="Use the first N images (sorted by name).")
@click.option("--split", default="all", show_default=True, type=click.Choice(["all", "train", "val", "holdout"]),
              help="Only the images of this split (invcomp.data's rule by file name; holdout: never trained on).")
@click.option("--size", default=None, type=click.IntRange(8), help="Side R of the coded pixels.  [default: the model resolution]")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Registered model name or .pt path (for invcomp).")
@click.option("--bits", default="2,3,4,6,8", show_default=True, help="invcomp quantiser bits to sweep (comma list).")
@click.option("--iters", default=None, type=click.IntRange(0), help=f"Inversion iterations.  [default: the codec's, {ivc.EncodeSettings().iters}]")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="Images inverted together.")
@click.option("--max-steps", default=12, show_default=True, type=click.IntRange(1), help="Bisection steps of the equal-bytes search.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--no-lpips", is_flag=True, help="Skip LPIPS (it is left empty).")
@click.option("--no-plots", is_flag=True, help="Do not draw the RD plots (matplotlib is then not needed).")
@click.option("--json", "as_json", is_flag=True, help="One JSON summary per codec per line on stdout.")
@guard
def bench(folder: Path, codecs: str, out: Path, limit: Optional[int], split: str, size: Optional[int], model: str, bits: str,
          iters: Optional[int], batch_size: int, max_steps: int, device: str, no_lpips: bool, no_plots: bool,
          as_json: bool) -> None:
    """Code the images in DIR with invcomp and classic codecs on the same R x R pixels; write RD results.

    Each classic codec runs a fixed quality sweep and, per image and per invcomp bits setting, an
    equal-bytes search for the quality whose file is closest to invcomp's. OUT gets CODEC.json
    (CompressAI format), per_image.csv, equal_bytes.md and rd_{ssim,psnr,ms_ssim}.png.

    \b
    Examples:
      invcomp bench ../shared/data/utkface --split holdout --limit 64 --out results/bench
      invcomp bench faces/ --codecs jpeg,webp,invcomp --bits 4,6 --iters 100 --out /tmp/b --json
    """
    ctx = click.get_current_context()
    names = parse_codecs(codecs)
    bit_list = _parse_bits(bits)
    with_lpips = not no_lpips
    if not no_plots:
        from .bench.plots import require_matplotlib

        require_matplotlib()
    if not folder.is_dir():
        raise InvcompError(f"{folder} is not a folder of images")
    gen, res = _generator(model, _device(device), size, INVCOMP in names)
    inputs = load_inputs(folder, res, limit, split)  # type: ignore[arg-type]
    base = ivc.EncodeSettings() if iters is None else ivc.EncodeSettings(iters=iters)
    classic = build_codecs()
    unavailable = _unavailable([classic[c] for c in names if c != INVCOMP])
    settings = {"invcomp": asdict(base), "bits": bit_list, "command": _command_line(ctx),
                "model": gen.name if gen else None, "model_sha256": gen.sha256 if gen else None, "resolution": res,
                "images": len(inputs.names), "split": split, "device": _device(device), "codecs": names,
                "equal_bytes_max_steps": max_steps, "lpips": with_lpips, "batch_size": batch_size}

    rows: list[dict] = []
    targets: dict[int, list[int]] = {}
    if gen is not None and INVCOMP in names:
        inv_rows, targets = _run_invcomp(gen, inputs, base, bit_list, batch_size, with_lpips)
        rows += inv_rows
    for name in names:
        if name != INVCOMP and name not in unavailable:
            rows += _run_classic(classic[name], inputs, targets, max_steps, with_lpips)

    descriptions = {c.name: c.description for c in classic.values()}
    if gen is not None:
        descriptions[INVCOMP] = f"invcomp ({gen.name}, {base.iters} iters, loss {base.loss}), whole .ivc file"
    title = f"{len(inputs.names)} images at {res}x{res}" + (f", invcomp {gen.name}, {base.iters} iters" if gen else "")
    summaries = _write_outputs(out, rows, names, descriptions, settings, unavailable, title,
                               bit_list if INVCOMP in names else [], plots=not no_plots)
    for s in summaries:
        if as_json:
            click.echo(dumps(s))
        else:
            for line in report.human_lines(s):
                click.echo(line)
    if not as_json:
        click.echo(f"wrote {len(names)} JSON files, per_image.csv, equal_bytes.md"
                   f"{'' if no_plots else ' and 3 RD plots'} to {out}")


def _generator(model: str, device: str, size: Optional[int], with_invcomp: bool) -> tuple[Optional[LoadedGenerator], int]:
    """The generator (``None`` when neither invcomp nor the resolution needs it) and the side R of the coded pixels."""
    if size is not None and not with_invcomp:
        return None, size
    gen = load_generator(model, device)
    res = gen.config.resolution
    if size is not None and size != res:
        raise InvcompError(f"--size {size} differs from model {gen.name!r}'s resolution {res}; invcomp codes only "
                           "that size (drop --size, or leave invcomp out of --codecs)")
    return gen, res


def _unavailable(codecs: list[ClassicCodec]) -> dict[str, str]:
    """Codec name -> reason, for the requested codecs that cannot run here (each warned about once)."""
    out = {}
    for c in codecs:
        reason = check_available(c)
        if reason is not None:
            out[c.name] = reason
            log.warning("codec %s is unavailable (recorded in the outputs): %s", c.name, reason)
    return out


def _run_invcomp(gen: LoadedGenerator, inputs: Inputs, base: ivc.EncodeSettings, bit_list: list[int],
                 batch_size: int, with_lpips: bool) -> tuple[list[dict], dict[int, list[int]]]:
    """invcomp rows for every bits setting, and the per-image ``.ivc`` sizes (the equal-bytes targets)."""
    rows: list[dict] = []
    targets: dict[int, list[int]] = {}
    warm_up(gen, inputs.images[0], base)
    bar = _bar(len(inputs.names) * len(bit_list), INVCOMP)
    for b in bit_list:
        inv_rows, files = run_invcomp(gen, inputs, base, b, batch_size=batch_size, with_lpips=with_lpips,
                                      tick=bar.update)
        rows += inv_rows
        targets[b] = [len(f) for f in files]
        log.info("invcomp %d bits: %d images, mean %.1f bytes, %.2f s encode per image", b, len(files),
                 sum(targets[b]) / len(files), inv_rows[0]["encode_seconds"])
    bar.close()
    return rows, targets


def _run_classic(c: ClassicCodec, inputs: Inputs, targets: dict[int, list[int]], max_steps: int,
                 with_lpips: bool) -> list[dict]:
    """A classic codec's fixed sweep, then (if it has a knob) its equal-bytes rows for each invcomp bits setting."""
    t0 = time.perf_counter()
    searches = targets if c.knob is not None else {}
    bar = _bar(len(inputs.names) * (len(c.fixed) + len(searches)), c.name)
    coded = Coded(c, inputs)
    rows = run_fixed(coded, with_lpips=with_lpips, tick=bar.update)
    for b, t in searches.items():
        rows += run_equal_bytes(coded, t, b, max_steps=max_steps, with_lpips=with_lpips, tick=bar.update)
    bar.close()
    log.info("%s: %d rows in %.1f s", c.name, len(rows), time.perf_counter() - t0)
    return rows


def _write_outputs(out: Path, rows: list[dict], names: list[str], descriptions: dict[str, str], settings: dict,
                   unavailable: dict[str, str], title: str, bit_list: list[int], *, plots: bool) -> list[dict]:
    """Write CODEC.json, per_image.csv, equal_bytes.md and the RD plots; return the per-codec summaries."""
    out.mkdir(parents=True, exist_ok=True)
    curves, summaries = {}, []
    for name in names:
        pts = report.points(rows, name)
        doc = report.compressai_json(name, descriptions.get(name, name), pts, settings, unavailable.get(name))
        atomic_write(out / f"{name}.json", report.json_bytes(doc), force=True)
        if pts:
            curves[name] = pts
        summaries.append(report.summary(name, pts, rows, unavailable.get(name)))
    atomic_write(out / "per_image.csv", report.csv_bytes(rows), force=True)
    md = report.equal_bytes_markdown(rows, bit_list, [c for c in names if c != INVCOMP],
                                     title=f"Equal bytes: {title}", unavailable=unavailable)
    atomic_write(out / "equal_bytes.md", md.encode(), force=True)
    if plots:
        from .bench.plots import rd_plots

        for fname, png in rd_plots(curves, title).items():
            atomic_write(out / fname, png, force=True)
    return summaries
