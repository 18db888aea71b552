"""``invcomp encode``: images to ``.ivc`` files, with whatever codec the model and settings name."""
from __future__ import annotations

import io
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import click

from ..codecs.settings import (CODERS, DEFAULT_BITS, DEFAULT_LOSS, DEFAULT_LR, DEFAULT_MAX_PIXELS, DEFAULT_MODEL,
                               DEFAULT_RESTARTS, DEFAULT_SCALING, FITS, INITS, ITERS_FROM_PRIOR, ITERS_FROM_WARM_START,
                               ROUNDINGS, SCALINGS, EncodeSettings)
from ..errors import InvcompError
from ..outputs import Report, guard, resolve_device
from .common import IMAGE_SUFFIXES, check_writable, device_option, expand_inputs, output_paths, read_bytes, write_bytes


def _png_bytes(img: Any) -> int:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.tell()


def rates(n_bytes: int, target: Any) -> dict:
    """Bytes, bpp and compression ratios (vs raw 24-bit RGB and an optimised PNG) of a file for ``target`` ``(3, R, R)``."""
    from .. import metrics
    from ..imageio import to_pil

    r = target.shape[-1]
    return {"bytes": n_bytes, "bpp": metrics.bpp(n_bytes, r, r), "cr_raw": metrics.compression_ratio(n_bytes, 3 * r * r),
            "cr_png": metrics.compression_ratio(n_bytes, _png_bytes(to_pil(target)))}


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", help="Output .ivc file (one input), a folder, or - for stdout.  "
              "[default: beside each input]")
@click.option("--model", default=None, help=f"Registered model name, a .pt state_dict, a TorchScript file, MODE:MODEL, or "
              "a user model file.py:factory / package.module:factory (WARNING: that runs the file's code, by design).  "
              f"[default: {DEFAULT_MODEL}; with --mode vaegan --channels C, vaegan-utkface64-cC]")
@click.option("--mode", default=None, help="Codec mode: inversion (search G's latent) or vaegan (one pass of a VAE-GAN "
              "codec, no search).  [default: the model's]")
@click.option("--channels", default=None, type=click.IntRange(1), help="With --mode vaegan: the code's channel count C; "
              "picks the registered vaegan-utkface64-cC unless --model names one.")
@click.option("--weights", "weights_path", default=None, help="State_dict loaded (weights_only=True) into a user model.")
@click.option("--iters", default=None, type=click.IntRange(0), help=f"Inversion iterations (0: code the start as it is).  "
              f"[default: {ITERS_FROM_WARM_START} from a warm start, {ITERS_FROM_PRIOR} otherwise]")
@click.option("--bits", default=None, type=click.IntRange(2, 16),
              help=f"Quantiser bits per symbol (sign included).  [default: {DEFAULT_BITS}; VAE-GAN: the model's]")
@click.option("--loss", default=None, help=f"Search loss: ssim, ms-ssim, mse, lpips, or a mix like 0.8*ssim+0.2*mse.  "
              f"[default: {DEFAULT_LOSS}]")
@click.option("--restarts", default=None, type=click.IntRange(1), help=f"Best-of-N starts (batched).  [default: {DEFAULT_RESTARTS}]")
@click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True), help=f"Peak Adam learning rate.  [default: {DEFAULT_LR}]")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1),
              help="Images coded together (speed only: an image's file does not depend on its batch).")
@device_option()
@click.option("--fit", default="crop", show_default=True, type=click.Choice(FITS),
              help="crop: code the centre square (decode puts it back in place); squash: the whole frame.")
@click.option("--scaling", default=None, type=click.Choice(SCALINGS), help=f"Quantiser norm.  [default: {DEFAULT_SCALING}; VAE-GAN: the model's]")
@click.option("--rounding", default="nearest", show_default=True, type=click.Choice(ROUNDINGS))
@click.option("--coder", default="auto", show_default=True, type=click.Choice(CODERS), help="Elias code; auto takes the shortest.")
@click.option("--no-quant-aware", is_flag=True, help="Do not optimise through the quantiser at the end of the search.")
@click.option("--init", "init", default=None, type=click.Choice(INITS),
              help="Start of the search: the model's warm-start network (auto: when it has one, else random), the "
                   "prior's mean (a dead point of the shipped DCGAN), or a seeded random draw.  [default: auto]")
@click.option("--encoder", "--warm-start", "warm_start", default=None, type=click.Path(dir_okay=False),
              help="A warm-start network .pt (from `invcomp train warm-start`) for --model.")
@click.option("--max-pixels", default=DEFAULT_MAX_PIXELS, show_default=True, type=click.IntRange(1), help="Refuse larger images.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line on stdout, in input order.")
@guard
def encode(images: Sequence[Path], output: Optional[str], model: Optional[str], mode: Optional[str],
           channels: Optional[int], weights_path: Optional[str], iters: Optional[int], bits: Optional[int],
           loss: Optional[str], restarts: Optional[int], lr: Optional[float], seed: int, batch_size: int, device: str,
           fit: str, scaling: Optional[str], rounding: str, coder: str, no_quant_aware: bool, init: Optional[str],
           warm_start: Optional[str], max_pixels: int, force: bool, as_json: bool) -> None:
    """Compress IMAGES (files, folders of images, or - for stdin) to .ivc files.

    Metrics (SSIM, PSNR, ...) are measured at the model resolution, against the
    cropped/resized original that was coded, on the pixels the decoder writes.
    """
    from ..codecs import load_codec
    from ..losses import parse_loss

    if loss is not None:
        parse_loss(loss)
    settings = EncodeSettings(bits=bits, coder=coder, fit=fit, scaling=scaling, rounding=rounding, seed=seed,
                              iters=iters, init=init, loss=loss, restarts=restarts, lr=lr,
                              quant_aware=False if no_quant_aware else None)
    codec = load_codec(model, settings, mode=mode, device=resolve_device(device), weights=weights_path,
                       warm_start=warm_start, channels=channels)
    inputs = expand_inputs(images, IMAGE_SUFFIXES)
    outs = output_paths(inputs, output, ".ivc")
    report = Report(as_json, to_stderr=any(str(o) == "-" for o in outs))
    _run(codec, list(zip(inputs, outs)), batch_size, max_pixels, force, report)
    sys.exit(report.finish())


def _run(codec: Any, jobs: list[tuple[Path, Path]], batch_size: int, max_pixels: int, force: bool,
         report: Report) -> None:
    """Encode ``jobs`` (input, output) in batches; report every item in input order."""
    import torch
    from tqdm import tqdm

    from .. import metrics
    from ..codecs import stored_pixels
    from ..imageio import decode_image_bytes

    debug = click.get_current_context().find_root().params.get("debug", False)
    bar = tqdm(total=codec.work(len(jobs)), desc="encode", unit="it", disable=None, file=sys.stderr, leave=False)
    desc = codec.describe()
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start:start + batch_size]
        results: list[Any] = [None] * len(chunk)
        loaded = []
        for k, (src, dst) in enumerate(chunk):
            try:
                check_writable(dst, force)
                loaded.append((k, decode_image_bytes(read_bytes(src), name=str(src), max_pixels=max_pixels)))
            except InvcompError as e:
                results[k] = str(e)
                bar.update(codec.work(1))
            except Exception as e:  # noqa: BLE001  (MemoryError, a bug: that item's error, not the batch's)
                if debug:
                    raise
                results[k] = f"internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)"
                bar.update(codec.work(1))
        if loaded:
            t0 = time.perf_counter()
            try:
                done = codec.encode([im for _, im in loaded], progress=bar.update)
            except InvcompError as e:
                done = None
                for k, _ in loaded:
                    results[k] = str(e)
            if done is not None:
                seconds = (time.perf_counter() - t0) / len(loaded)
                q = metrics.quality(stored_pixels(torch.stack([e.recon for e in done])), torch.stack([e.target for e in done]))
                for (k, _), e, m in zip(loaded, done, q):
                    results[k] = (e, m, seconds)
        for (src, dst), res in zip(chunk, results):
            if isinstance(res, str):
                report.failure(str(src), res)
                continue
            e, m, seconds = res
            try:
                write_bytes(dst, e.data, force)
            except InvcompError as err:
                report.failure(str(src), str(err))
                continue
            row = {"input": str(src), "output": str(dst), **rates(len(e.data), e.target), **m, **desc,
                   "seconds": round(seconds, 3), "coder": e.header.coder}
            report.success(row, f"{src} -> {dst}: {row['bytes']} B, {row['bpp']:.3f} bpp, SSIM {m['ssim']:.4f}, "
                                f"PSNR {m['psnr']:.2f} dB (at {codec.resolution}x{codec.resolution}), {seconds:.2f} s")
    bar.close()
