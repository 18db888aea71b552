"""``invcomp bench``: invcomp codecs (any mode) against PNG, JPEG, WebP, AVIF, JPEG 2000, HEIF, JPEG XL, a K=4
palette, ThumbHash, BlurHash and CompressAI models trained on the same faces, on the same pixels.

The work is in :mod:`invcomp.bench`; this module parses options, loads the codecs with the same loader and
defaults as ``invcomp encode`` (:func:`invcomp.codecs.load_codec`), runs the phases with progress bars and
writes the files.
"""
from __future__ import annotations

import logging
import shlex
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Optional

import click

from invcomp.codecs.settings import DEFAULT_MODEL, INITS, EncodeSettings
from invcomp.errors import InvcompError
from invcomp.cli.outputs import guard
from invcomp.files import atomic_write, dumps
from invcomp.nets import resolve_device as _device

log = logging.getLogger("invcomp.bench")


def _parse_bits(spec: Optional[str]) -> list[Optional[int]]:
    if spec is None:
        return [None]
    try:
        bits = [int(b) for b in spec.split(",") if b.strip()]
    except ValueError:
        raise InvcompError(f"--bits must be a comma list of integers, got {spec!r}") from None
    if not bits:
        raise InvcompError("--bits is empty")
    for b in bits:
        if not 2 <= b <= 16:
            raise InvcompError(f"bits must be 2..16, got {b}")
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


def _bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=None, file=sys.stderr, leave=False)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("folder", metavar="DIR", type=click.Path(path_type=Path))
@click.option("--codecs", default="all", show_default=True,
              help="Comma list: png, jpeg, webp, avif, jpeg2000, heif, jpegxl, kmeans, thumbhash, blurhash, the learned "
                   "peers (compressai-mbt-mean, compressai-mbt-mean-msssim, and any rebuilt with experiments/train_peers.py), invcomp (the default model, as "
                   "`invcomp encode` codes), invcomp:MODEL (any model or MODE:MODEL, e.g. invcomp:vaegan-utkface64-c4), "
                   "or all.")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder for the results (created).")
@click.option("--limit", default=None, type=click.IntRange(1), help="Use the first N images (sorted by name).")
@click.option("--split", default="all", show_default=True, type=click.Choice(["all", "train", "val", "holdout"]),
              help="Only the images of this split (invcomp.data's rule by file name; holdout: never trained on).")
@click.option("--size", default=None, type=click.IntRange(8), help="Side R of the coded pixels.  [default: the model resolution]")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="The model of the plain `invcomp` entry of --codecs.")
@click.option("--bits", default=None, help="Quantiser bits to sweep for every invcomp codec (comma list, e.g. 2,3,4,6,8).  "
              "[default: each codec's own, as `invcomp encode`]")
@click.option("--iters", default=None, type=click.IntRange(0), help="Inversion iterations.  [default: as `invcomp encode`]")
@click.option("--init", default=None, type=click.Choice(INITS), help="Start of the inversion search.  [default: auto, as `invcomp encode`]")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1), help="Images inverted together.")
@click.option("--max-steps", default=12, show_default=True, type=click.IntRange(1), help="Bisection steps of the equal-bytes search.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--no-lpips", is_flag=True, help="Skip LPIPS (it is left empty).")
@click.option("--no-identity", is_flag=True, help="Skip the identity distance (dlib's face recogniser; left empty).")
@click.option("--no-plots", is_flag=True, help="Do not draw the RD plots (matplotlib is then not needed).")
@click.option("--json", "as_json", is_flag=True, help="One JSON summary per codec per line on stdout.")
@guard
def bench(folder: Path, codecs: str, out: Path, limit: Optional[int], split: str, size: Optional[int], model: str,
          bits: Optional[str], iters: Optional[int], init: Optional[str], batch_size: int, max_steps: int, device: str, no_lpips: bool, no_identity: bool,
          no_plots: bool, as_json: bool) -> None:
    """Code the images in DIR with invcomp and classic codecs on the same R x R pixels; write RD results.

    Each classic codec runs a fixed quality sweep and, per image and per invcomp codec and bits setting, an
    equal-bytes search for the quality whose file is closest to that invcomp file. By default each invcomp
    codec codes exactly as `invcomp encode` does (same loader, same defaults, same bytes). OUT gets CODEC.json
    (CompressAI format), per_image.csv, equal_bytes.md and rd_{ssim,psnr,ms_ssim,identity}.png.

    \b
    Examples:
      invcomp bench ../shared/data/utkface --split holdout --limit 64 --out results/bench
      invcomp bench faces/ --codecs webp,invcomp,invcomp:vaegan-utkface64-c4 --out /tmp/b --json
      invcomp bench faces/ --codecs jpeg,webp,invcomp --bits 4,6 --iters 100 --out /tmp/b
    """
    from invcomp.bench import report
    from invcomp.classic.codecs import build_codecs, is_invcomp, parse_codecs
    from invcomp.bench.run import load_inputs

    ctx = click.get_current_context()
    names = parse_codecs(codecs)
    bit_list = _parse_bits(bits)
    if not no_plots:
        from invcomp.bench.plots import require_matplotlib

        require_matplotlib()
    if not folder.is_dir():
        raise InvcompError(f"{folder} is not a folder of images")
    settings = EncodeSettings(iters=iters, init=init)
    inv = _load_codecs([n for n in names if is_invcomp(n)], model, settings, bit_list, _device(device), size)
    res = _resolution(inv, size)
    inputs = load_inputs(folder, res, limit, split)  # type: ignore[arg-type]
    classic = build_codecs()
    unavailable = _unavailable([classic[c] for c in names if not is_invcomp(c)])
    first = next(iter(inv.values()), [None])[0]
    run = {"invcomp": asdict(first.settings) if first else None, "bits": bit_list if bits else None, "command": _command_line(ctx),
           "model": first.name if first else None, "model_sha256": getattr(getattr(first, "gen", None), "sha256", None),
           "invcomp_codecs": {label: [c.describe() for c in cs] for label, cs in inv.items()},
           "resolution": res, "images": len(inputs.names), "split": split, "device": _device(device), "codecs": names,
           "equal_bytes_max_steps": max_steps, "batch_size": batch_size}

    rows: list[dict] = []
    targets: dict[tuple[str, int], list[int]] = {}
    for label, cs in inv.items():
        r, t = _run_invcomp(label, cs, inputs, batch_size, not no_lpips, not no_identity)
        rows += r
        targets.update(t)
    for name in names:
        if not is_invcomp(name) and name not in unavailable:
            rows += _run_classic(classic[name], inputs, targets, max_steps, not no_lpips, not no_identity)
    run["lpips"] = any(r.get("lpips") is not None for r in rows)  # false when skipped or unavailable here
    run["identity"] = any(r.get("identity") is not None for r in rows)
    descriptions = {c.name: c.description for c in classic.values()}
    for label, cs in inv.items():
        d = cs[0].describe()
        descriptions[label] = (f"invcomp {d['mode']} ({d['model']}" + (f", {d['iters']} iters from {d['init']}"
                               if d.get("iters") else "") + "), whole .ivc file")
    title = f"{len(inputs.names)} images at {res}x{res}"
    summaries = _write_outputs(out, rows, names, descriptions, run, unavailable, title, list(targets),
                               plots=not no_plots)
    for s in summaries:
        if as_json:
            click.echo(dumps(s))
        else:
            for line in report.human_lines(s):
                click.echo(line)
    if not as_json:
        click.echo(f"wrote {len(names)} JSON files, per_image.csv, equal_bytes.md"
                   f"{'' if no_plots else ' and the RD plots'} to {out}")


def _load_codecs(labels: list[str], model: str, settings: EncodeSettings, bit_list: list[Optional[int]],
                 device: str, size: Optional[int] = None) -> dict[str, list[Any]]:
    """Each invcomp entry of --codecs -> its codec at each bits setting (``None``: the codec's own). A layered entry
    (``invcomp:layered:MODEL``) codes at ``--size`` (its output resolution is a setting)."""
    from invcomp.codecs import load_codec
    from invcomp.codecs.loader import mode_for_spec

    out: dict[str, list[Any]] = {}
    for label in labels:
        spec = model if label == "invcomp" else label.split(":", 1)[1]
        opts = {"resolution": size} if size and spec != "auto" and mode_for_spec(spec)[0].mode_key == "layered" else {}
        base = load_codec(spec, _settings_for(spec, settings), device=device, **opts)
        out[label] = [base if b is None or b == base.settings.bits else load_codec(
            spec, replace(_settings_for(spec, settings), bits=b), device=device, **opts) for b in bit_list]
    return out


def _settings_for(spec: str, settings: EncodeSettings) -> EncodeSettings:
    """The search settings apply to the modes that search; the others get their defaults."""
    from invcomp.codecs.settings import SEARCH_FIELDS
    from invcomp.codecs.loader import mode_for_spec

    if mode_for_spec(spec)[0].searches:
        return settings
    return replace(settings, **dict.fromkeys(SEARCH_FIELDS))


def _resolution(inv: dict[str, list[Any]], size: Optional[int]) -> int:
    """The side R of the coded pixels: the invcomp codecs' (all equal), else --size."""
    sides = {c.resolution for cs in inv.values() for c in cs} - {0}  # 0: a codec of any size (GC) takes --size
    if len(sides) > 1:
        raise InvcompError(f"the invcomp codecs code different sizes ({sorted(sides)}); bench them separately")
    if sides:
        res = sides.pop()
        if size is not None and size != res:
            raise InvcompError(f"--size {size} differs from the invcomp codecs' resolution {res}; they code only "
                               "that size (drop --size, or leave invcomp out of --codecs)")
        return res
    if size is None:
        raise InvcompError("--size is needed when no invcomp codec is benchmarked")
    return size


def _unavailable(codecs: list[Any]) -> dict[str, str]:
    """Codec name -> reason, for the requested codecs that cannot run here (each warned about once)."""
    from invcomp.classic.codecs import check_available

    out = {}
    for c in codecs:
        reason = check_available(c)
        if reason is not None:
            out[c.name] = reason
            log.warning("codec %s is unavailable (recorded in the outputs): %s", c.name, reason)
    return out


def _run_invcomp(label: str, codecs: list[Any], inputs: Any, batch_size: int,
                 with_lpips: bool, with_identity: bool) -> tuple[list[dict], dict[tuple[str, int], list[int]]]:
    """Rows of one invcomp entry at each of its bits settings, and its per-image sizes (the equal-bytes targets)."""
    from invcomp.bench.run import run_invcomp, warm_up

    rows: list[dict] = []
    targets: dict[tuple[str, int], list[int]] = {}
    warm_up(codecs[0], inputs.images[0])
    bar = _bar(len(inputs.names) * len(codecs), label)
    for c in codecs:
        r, files = run_invcomp(c, inputs, label=label, batch_size=batch_size, with_lpips=with_lpips,
                               with_identity=with_identity, tick=bar.update)
        rows += r
        targets[(label, c.settings.bits)] = [len(f) for f in files]
        log.info("%s %d bits: %d images, mean %.1f bytes, %.2f s encode per image", label, c.settings.bits, len(files),
                 sum(len(f) for f in files) / len(files), r[0]["encode_seconds"])
    bar.close()
    return rows, targets


def _run_classic(c: Any, inputs: Any, targets: dict[tuple[str, int], list[int]], max_steps: int,
                 with_lpips: bool, with_identity: bool) -> list[dict]:
    """A classic codec's fixed sweep, then (if it has a knob) its equal-bytes rows for each invcomp target."""
    from invcomp.bench.run import Coded, run_equal_bytes, run_fixed

    t0 = time.perf_counter()
    searches = targets if c.knob is not None else {}
    bar = _bar(len(inputs.names) * (len(c.fixed) + len(searches)), c.name)
    coded = Coded(c, inputs)
    rows = run_fixed(coded, with_lpips=with_lpips, with_identity=with_identity, tick=bar.update)
    for (ref, b), t in searches.items():
        rows += run_equal_bytes(coded, t, b, max_steps=max_steps, with_lpips=with_lpips,
                                with_identity=with_identity, tick=bar.update, reference=ref)
    bar.close()
    log.info("%s: %d rows in %.1f s", c.name, len(rows), time.perf_counter() - t0)
    return rows


def _write_outputs(out: Path, rows: list[dict], names: list[str], descriptions: dict[str, str], settings: dict,
                   unavailable: dict[str, str], title: str, refs: list[tuple[str, int]], *, plots: bool) -> list[dict]:
    """Write CODEC.json, per_image.csv, equal_bytes.md and the RD plots; return the per-codec summaries."""
    from invcomp.bench import report
    from invcomp.classic.codecs import is_invcomp

    out.mkdir(parents=True, exist_ok=True)
    curves, summaries = {}, []
    for name in names:
        pts = report.points(rows, name)
        doc = report.compressai_json(name, descriptions.get(name, name), pts, settings, unavailable.get(name))
        atomic_write(out / f"{_file_name(name)}.json", report.json_bytes(doc), force=True)
        if pts:
            curves[name] = pts
        summaries.append(report.summary(name, pts, rows, unavailable.get(name)))
    atomic_write(out / "per_image.csv", report.csv_bytes(rows), force=True)
    md = report.equal_bytes_markdown(rows, refs, [c for c in names if not is_invcomp(c)],
                                     title=f"Equal bytes: {title}", unavailable=unavailable)
    atomic_write(out / "equal_bytes.md", md.encode(), force=True)
    if plots:
        from invcomp.bench.plots import rd_plots

        for fname, png in rd_plots(curves, title).items():
            atomic_write(out / fname, png, force=True)
    return summaries


def _file_name(name: str) -> str:
    """A codec name as a file name: ``invcomp:vaegan-utkface64-c4`` -> ``invcomp_vaegan-utkface64-c4``."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
