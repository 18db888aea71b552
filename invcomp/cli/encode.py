"""``invcomp encode``: images to ``.ivc`` files, with whatever codec the model and settings name."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import click

from invcomp.cli.outputs import Report, guard
from invcomp.codecs.settings import (CODERS, DEFAULT_BITS, DEFAULT_LOSS, DEFAULT_LR, DEFAULT_MODEL, DEFAULT_RATE_WEIGHT,
                                     DEFAULT_PATIENCE, DEFAULT_RESTARTS, DEFAULT_SCALING, INITS, ITERS_FROM_PRIOR,
                                     ITERS_FROM_WARM_START, LR_FROM_WARM_START,
                                     ROUNDINGS, SCALINGS)
from invcomp.service.encode import DEFAULT_AUTO_SLOPE, DEFAULT_DETAIL, DEFAULT_DETAIL_SLOPE, PHOTO_FITS, EncodeRequest, Encoder, build_encoder, encode_items
from invcomp.cli.common import device_option, exit_refused
from invcomp.service.items import IMAGE_SUFFIXES, ItemError, check_jobs, expand_inputs, output_paths

_D = EncodeRequest()  # the defaults: the options below show them


CODEC_OPTIONS = [  # what codes an image: shared by `invcomp encode` and `invcomp batch encode`
    click.option("--model", default=None, help=f"Registered model name, a .pt state_dict, a TorchScript file, MODE:MODEL, or "
                  "a user model file.py:factory / package.module:factory (WARNING: that runs the file's code, by design).  "
                  f"[default: GAN inversion of {DEFAULT_MODEL} under a whole-frame detail layer; with --mode inversion "
                  f"or auto, {DEFAULT_MODEL}; with --mode vaegan --channels C, vaegan-utkface64-cC]"),
    click.option("--mode", default=None, help="Codec mode: auto (per image, the file of the modes below worth its bytes: the "
                  "most SSIM - price x bytes, the price set by --quality; a search runs only where it can win), "
                  "inversion (search G's latent), inversion-tone (the same plus an "
                  "8-byte colour and tone correction), vaegan (one pass of a VAE-GAN codec, no search), layered, gc (generative "
                  "compression of the whole image at its size) or sc (gc, keeping only --preserve'd regions).  "
                  "[default: without --mode and --model, the whole-frame codec: inversion, a ThumbHash background and "
                  "--detail; else the model's]"),
    click.option("--auto-tolerance", "auto_tolerance", default=None, type=click.FloatRange(0, 1),
                  help="With --mode auto, an expert's rule instead of --quality: keep the smallest file whose SSIM is "
                       "within this of the best one's (every search runs).  [default: off; the decision is by --quality]"),
    click.option("--resolution", default=None, type=click.IntRange(16, 4080),
                  help="With --mode layered: the output side R, a multiple of 16 (the base is the 64-px face, upsampled).  "
                       "[default: 64]"),
    click.option("--layer-rates", "layer_rates", default=None, metavar="PLAN",
                  help="With --mode layered: its layers after the base, e.g. tone,3 (the tone record, then one residual "
                       "layer at rate index 3 of 0..7), tone,1,4 (two residual layers), 2@64,5@128, or none.  "
                       "A --target-* chooses it per image instead.  [default: tone,3]"),
    click.option("--preserve", default=None, metavar="MASK.png|faces", help="With --mode sc: keep the code where this mask "
                  "(the image's size; nonzero or opaque = keep) is set, or around the detected faces; synthesise the rest."),
    click.option("--preserve-box", "preserve_box", multiple=True, metavar="x,y,w,h", help="With --mode sc: keep this box "
                  "(pixels; repeatable)."),
    click.option("--preserve-halo", "preserve_halo", default=None, type=click.IntRange(0, 16), metavar="CELLS",
                  help="With --mode sc: also keep this many 16-px cells around the preserved pixels. 1 (the model's) "
                       "saves the most; from 6 the preserved pixels are GC's to 1/255.  [default: the model's, 1]"),
    click.option("--semantic", default=None, metavar="MAP.png", help="With --mode sc: a class-index PNG (0 background, 1 face, "
                  "2 brows, 3 eyes, 4 nose, 5 mouth) that the synthesis follows; coded losslessly in the file."),
    click.option("--channels", default=None, type=click.IntRange(1), help="With --mode vaegan: the code's channel count C; "
                  "picks the registered vaegan-utkface64-cC unless --model names one."),
    click.option("--weights", "weights_path", default=None, help="State_dict loaded (weights_only=True) into a user model."),
    click.option("--iters", default=None, type=click.IntRange(0), help=f"Inversion iterations (0: code the start as it is).  "
                  f"[default: {ITERS_FROM_WARM_START} from a warm start, {ITERS_FROM_PRIOR} otherwise]"),
    click.option("--patience", default=None, type=click.IntRange(0), help="Early stopping: a search whose loss has not "
                  "improved for this many steps skips to its last phase, and stops when it stalls there (0: off).  "
                  f"[default: {DEFAULT_PATIENCE} from a warm start, off otherwise]"),
    click.option("--bits", default=None, type=click.IntRange(2, 16),
                  help=f"Quantiser bits per symbol (sign included).  [default: {DEFAULT_BITS}; VAE-GAN: the model's]"),
    click.option("--loss", default=None, help=f"Search loss: ssim, ms-ssim, mse, lpips, or a mix like 0.8*ssim+0.2*mse.  "
                  f"[default: {DEFAULT_LOSS}]"),
    click.option("--restarts", default=None, type=click.IntRange(1), help=f"Best-of-N starts (batched).  [default: {DEFAULT_RESTARTS}]"),
    click.option("--lr", default=None, type=click.FloatRange(min=0, min_open=True),
                  help=f"Peak Adam learning rate.  [default: {LR_FROM_WARM_START} from a warm start, {DEFAULT_LR} otherwise]"),
    click.option("--seed", default=_D.seed, show_default=True, type=int),
    device_option(_D.device),
    click.option("--fit", default=_D.fit, show_default=True, type=click.Choice(PHOTO_FITS),
                  help="align: find the faces, code each in the generator's framing, and put it back in the frame on "
                       "decode; crop: code the centre square; squash: the whole frame; auto: align, except for an input "
                       "that already is an aligned face crop (or has no face found): crop."),
    click.option("--faces", "faces", default=_D.faces, show_default=True, type=click.Choice(["largest", "all"]),
                  help="With align: code the largest face, or every face found (largest first, up to --max-faces)."),
    click.option("--max-faces", default=_D.max_faces, show_default=True, type=click.IntRange(1, 64),
                  help="With --faces all: the most faces one file holds."),
    click.option("--on-no-face", default=_D.on_no_face, show_default=True, type=click.Choice(["crop", "error"]),
                  help="With --fit align, when no face is found: code the centre crop (with a warning), or refuse."),
    click.option("--background", default=None, metavar="SPEC",
                  help="With align: the rest of the frame. none (the faces alone), thumb (a ~25-byte ThumbHash of the "
                       "frame), or CODEC:QUALITY with CODEC webp, avif, jpeg or jpegxl (the whole frame, a second layer).  "
                       "[default: thumb with a detail layer, else none]"),
    click.option("--detail", default=None, metavar="auto|RATE|none",
                  help="The whole-frame detail layer: a residual layer over the decoded frame at the input's size, so the "
                       f"picture is complete. auto: per picture, the rate (from {DEFAULT_DETAIL:g}, in half steps) that "
                       f"maximises whole-picture SSIM - {DEFAULT_DETAIL_SLOPE:g} x bytes; RATE: that rate (0 the "
                       "smallest; quarter steps); none.  "
                       "[default: auto without --mode/--model, else none]"),
    click.option("--quality", default=None, metavar="low|medium|high|Q",
                  help="How much a byte is worth. With the detail layer (the default), medium (3) keeps the rate that "
                       f"maximises whole-picture SSIM - {DEFAULT_DETAIL_SLOPE:g} x bytes; with --mode auto, the file that "
                       f"maximises SSIM - {DEFAULT_AUTO_SLOPE:g} x bytes. Each step of Q (1 to 5) halves (up) or doubles "
                       "(down) that price, so the files grow with Q.  [default: medium]"),
    click.option("--detail-network", default=None, metavar="NAME",
                  help="The detail layer's residual network: one in pretrained/layered/ whose JSON says \"frame\": true "
                       "(the decoder finds it there by its key).  [default: the shipped one]"),
    click.option("--detail-side", default=_D.detail_side, show_default=True, type=click.IntRange(16, 4096),
                  help="The detail layer's long side at most; a larger frame gets its correction resized."),
    click.option("--scaling", default=None, type=click.Choice(SCALINGS), help=f"Quantiser norm.  [default: {DEFAULT_SCALING}; VAE-GAN: the model's]"),
    click.option("--rounding", default=_D.rounding, show_default=True, type=click.Choice(ROUNDINGS)),
    click.option("--coder", default=_D.coder, show_default=True, type=click.Choice(CODERS),
                  help="auto: range coding under the model's prior (a version-2 file) where the model ships one, else the "
                       "shortest Elias code (version 1); prior: insist on the former; elias: the shortest Elias code (version 1); "
                       "gamma, delta, omega: that Elias code."),
    click.option("--lambda", "rate_weight", default=None, type=click.FloatRange(min=0),
                  help="Rate weight of the search's last phase: minimise distortion + LAMBDA x bits under the prior.  "
                       f"[default: {DEFAULT_RATE_WEIGHT} with a prior]"),
    click.option("--target-bytes", default=None, type=click.IntRange(1),
                  help="Rate control: for each image, the best SSIM whose file is at most N bytes (bits and trims chosen)."),
    click.option("--target-bpp", default=None, type=click.FloatRange(min=0, min_open=True),
                  help="Rate control: the same, for X bits per pixel at the model resolution."),
    click.option("--target-ssim", default=None, type=click.FloatRange(-1, 1),
                  help="Rate control: the smallest file that reaches SSIM S, or the best reachable one, flagged."),
    click.option("--no-quant-aware", is_flag=True, help="Do not optimise through the quantiser at the end of the search."),
    click.option("--init", "init", default=None, type=click.Choice(INITS),
                  help="Start of the search: the model's warm-start network (auto: when it has one, else random), the "
                       "prior's mean (a dead point of the shipped DCGAN), or a seeded random draw.  [default: auto]"),
    click.option("--encoder", "--warm-start", "warm_start", default=None, type=click.Path(dir_okay=False),
                  help="A warm-start network .pt (from `invcomp train warm-start`) for --model."),
    click.option("--max-pixels", default=_D.max_pixels, show_default=True, type=click.IntRange(1), help="Refuse larger images."),
]


def codec_options(fn: Any) -> Any:
    """Apply :data:`CODEC_OPTIONS` to a click command (in their order, first on top)."""
    for option in reversed(CODEC_OPTIONS):
        fn = option(fn)
    return fn


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", help="Output .ivc file (one input), a folder, or - for stdout.  "
              "[default: beside each input]")
@codec_options
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1),
              help="Images coded together (speed only: an image's file does not depend on its batch).")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line on stdout, in input order.")
@guard
def encode(images: Sequence[Path], output: Optional[str], batch_size: int, force: bool, as_json: bool,
           **options: Any) -> None:
    """Compress IMAGES (files, folders of images, or - for stdin) to .ivc files.

    Metrics (SSIM, PSNR, ...) are measured on the pixels the decoder writes: for
    a file with a detail layer (the default), over the whole picture at the
    input's size; otherwise at the model resolution, against the cropped/resized
    original that was coded. The identity distance (--json) is measured on the
    picture decode writes, at the original's size, as compare measures it.
    """
    request = EncodeRequest(**options)
    inputs = expand_inputs(images, IMAGE_SUFFIXES)
    outs = output_paths(inputs, output, ".ivc")
    report = Report(as_json, to_stderr=any(str(o) == "-" for o in outs))
    jobs = list(zip(inputs, outs))
    refused = check_jobs(jobs, force)  # missing inputs, unwritable outputs: before torch, before any search
    if all(refused):
        exit_refused(report, jobs, refused)
    _run(build_encoder(request), jobs, batch_size, force, report, refused)
    sys.exit(report.finish())


def _run(encoder: Encoder, jobs: list[tuple[Path, Path]], batch_size: int, force: bool, report: Report,
         refused: Optional[Sequence[Optional[ItemError]]] = None) -> None:
    """Encode ``jobs`` (input, output) in batches, but those ``refused`` already (:func:`check_jobs`: they are
    never coded); report every item in input order."""
    from tqdm import tqdm

    debug = click.get_current_context().find_root().params.get("debug", False)
    refused = refused or [None] * len(jobs)
    todo = [k for k, err in enumerate(refused) if err is None]
    bar = tqdm(total=encoder.codec.work(len(todo)), desc="encode", unit="it", disable=None, file=sys.stderr, leave=False)
    results: dict[int, Any] = {k: err for k, err in enumerate(refused) if err is not None}
    reported = 0
    for start in range(0, len(todo), batch_size):
        chunk = todo[start:start + batch_size]
        done = encode_items(encoder, [jobs[k] for k in chunk], force=force, with_identity=report.as_json,
                            progress=bar.update, debug=debug)
        results.update(zip(chunk, done))
        reported = _report_ready(jobs, results, reported, report)
    _report_ready(jobs, results, reported, report)
    bar.close()


def _report_ready(jobs: Sequence[tuple[Path, Path]], results: dict[int, Any], first: int, report: Report) -> int:
    """Report the results from item ``first`` on, in input order, up to the first one not done yet; returns that
    item's index."""
    k = first
    while k < len(jobs) and k in results:
        res = results.pop(k)
        if isinstance(res, ItemError):
            report.failure(str(jobs[k][0]), res.reason)
        else:
            report.success(*res)
        k += 1
    return k


