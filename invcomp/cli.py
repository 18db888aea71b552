"""The ``invcomp`` command line: a thin click layer over :mod:`invcomp.codec` and friends.

Errors a user can cause print one line on stderr and exit non-zero (1 for a
failed item or bad input, 2 for bad usage); ``--debug`` shows tracebacks.
"""
from __future__ import annotations

import io
import logging
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import click
import torch
from tqdm import tqdm

from .bitstream import MODE_VAEGAN
from .warmstart import LoadedWarmStart, load_warm_start, shipped_warm_start
from .vaegan import LoadedVAEGAN
from .vaegan_codec import decode_vaegan, encode_vaegan
from . import __version__, codec, metrics
from .errors import InvcompError
from .generators import registry
from .imageio import DEFAULT_MAX_PIXELS, fit_image, from_image, load_image, to_pil
from .outputs import Report, atomic_write, dumps, guard as _guard, output_paths, resolve_device as _device

log = logging.getLogger("invcomp")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="invcomp")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
def cli(debug: bool, verbose: bool) -> None:
    """GAN-inversion image compression: images to ~100-byte .ivc files and back.

    \b
    Examples:
      invcomp encode face.png -o face.ivc
      invcomp decode face.ivc -o face.decoded.png
      invcomp compare face.png face.decoded.png --bitstream face.ivc
    """
    logging.basicConfig(level=logging.INFO if verbose or debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    torch.set_num_threads(max(1, torch.get_num_threads()))


def _png_bytes(img: Any) -> int:
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return buf.tell()


def _rates(n_bytes: int, target: torch.Tensor) -> dict:
    r = target.shape[-1]
    return {
        "bytes": n_bytes,
        "bpp": metrics.bpp(n_bytes, r, r),
        "cr_raw": metrics.compression_ratio(n_bytes, 3 * r * r),
        "cr_png": metrics.compression_ratio(n_bytes, _png_bytes(to_pil(target))),
    }


@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", help="Output .ivc file (one input) or folder.  [default: beside each input]")
@click.option("--model", default=registry.DEFAULT_MODEL, show_default=True, help="Registered model name, a .pt state_dict, a TorchScript file, or a user model file.py:factory / package.module:factory (WARNING: that runs the file's code, by design).")
@click.option("--weights", "weights_path", default=None, help="State_dict loaded (weights_only=True) into a user model.")
@click.option("--iters", default=None, type=click.IntRange(0),
              help=f"Inversion iterations (0: code the start as it is).  [default: {codec.ENCODER_ITERS} from an encoder start, "
                   f"{codec.EncodeSettings.iters} otherwise]")
@click.option("--bits", default=None, type=click.IntRange(2, 16), help="Quantiser bits per coordinate (sign included).  [default: 6; with --mode vaegan, the model's]")
@click.option("--loss", default="ssim", show_default=True, help="ssim, ms-ssim, mse, lpips, or a mix like 0.8*ssim+0.2*mse.")
@click.option("--restarts", default=1, show_default=True, type=click.IntRange(1), help="Best-of-N random restarts (batched).")
@click.option("--lr", default=0.5, show_default=True, type=click.FloatRange(min=0, min_open=True), help="Peak Adam learning rate.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--batch-size", default=8, show_default=True, type=click.IntRange(1), help="Images inverted together.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--fit", default="crop", show_default=True, type=click.Choice(["crop", "squash"]), help="Centre-crop or squash to a square.")
@click.option("--scaling", default="l2", show_default=True, type=click.Choice(["max", "l2"]), help="Quantiser norm.")
@click.option("--rounding", default="nearest", show_default=True, type=click.Choice(["nearest", "stochastic"]))
@click.option("--coder", default="auto", show_default=True, type=click.Choice(["auto", "gamma", "delta", "omega"]), help="Elias code; auto takes the shortest.")
@click.option("--no-quant-aware", is_flag=True, help="Do not optimise through the quantiser at the end.")
@click.option("--mode", default="inversion", show_default=True, type=click.Choice(["inversion", "vaegan"]),
              help="inversion: search G's latent; vaegan: one pass of a VAE-GAN codec (no search).")
@click.option("--channels", default=None, type=click.IntRange(1), help="With --mode vaegan: the code's channel count C, which sets the rate; picks the registered vaegan-utkface64-cC model unless --model names one.")
@click.option("--init", "init", default="auto", show_default=True, type=click.Choice(["auto", "encoder", "mean", "random"]),
              help="Start of the search: the model's encoder (auto: when it has one, else random), the prior's mean "
                   "(a dead point of the shipped DCGAN: its gradient there is exactly 0, so the search never moves), "
                   "or a seeded random draw.")
@click.option("--encoder", "encoder_path", default=None, type=click.Path(dir_okay=False), help="A warm-start encoder .pt (from `invcomp train encoder`) for --model.")
@click.option("--max-pixels", default=DEFAULT_MAX_PIXELS, show_default=True, type=click.IntRange(1), help="Refuse larger images.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image per line on stdout.")
@_guard
def encode(images: Sequence[Path], output: Optional[str], model: str, weights_path: Optional[str], iters: Optional[int],
           bits: Optional[int], loss: str, restarts: int,
           lr: float, seed: int, batch_size: int, device: str, fit: str, scaling: str, rounding: str, coder: str,
           no_quant_aware: bool, mode: str, channels: Optional[int], init: str, encoder_path: Optional[str],
           max_pixels: int, force: bool, as_json: bool) -> None:
    """Compress IMAGES to .ivc bitstreams by inverting the generator.

    Metrics (SSIM, PSNR, ...) are measured at the model resolution, against the
    cropped/resized original that was coded.
    """
    from .losses import parse_loss

    parse_loss(loss)
    if mode == "vaegan":
        vg = _vaegan_for_encode(model, channels, _device(device))
        bits = vg.config.bits if bits is None else bits
        name, resolution, iters, init = vg.name, vg.config.resolution, 0, "none"

        def run(ims: list, tick: Any) -> list:
            return encode_vaegan(vg, ims, bits=bits, coder=coder, fit=fit)
    else:
        if channels is not None:
            raise InvcompError("--channels applies only to --mode vaegan")
        bits = 6 if bits is None else bits
        gen = registry.load_generator(model, _device(device), weights_path)
        enc, init = _encoder_for(gen, init, encoder_path, _device(device))
        iters = codec.default_iters(init) if iters is None else iters
        settings = codec.EncodeSettings(iters=iters, bits=bits, loss=loss, restarts=restarts, lr=lr, seed=seed, fit=fit,
                                        scaling=scaling, rounding=rounding, coder=coder, quant_aware=not no_quant_aware,
                                        init=init)
        name, resolution = gen.name, gen.config.resolution

        def run(ims: list, tick: Any) -> list:
            return codec.encode_batch(gen, ims, settings, callback=tick, encoder=enc)
    outs = output_paths(list(images), output, ".ivc")
    report = Report(as_json)
    bar = tqdm(total=len(images) * max(iters, 1), desc="encode", unit="it", disable=None, file=sys.stderr, leave=False)
    for start in range(0, len(images), batch_size):
        chunk = list(zip(images, outs))[start:start + batch_size]
        loaded = []
        for src, dst in chunk:
            try:
                if dst.exists() and not force:
                    raise InvcompError(f"{dst} exists (use --force to overwrite)")
                loaded.append((src, dst, load_image(src, max_pixels=max_pixels)))
            except InvcompError as e:
                report.failure(str(src), str(e))
                bar.update(max(iters, 1))
        if not loaded:
            continue
        t0 = time.perf_counter()
        n_loaded = len(loaded)
        done = run([im for _, _, im in loaded], lambda *_, k=n_loaded: bar.update(k))
        if iters == 0:
            bar.update(n_loaded)
        seconds = (time.perf_counter() - t0) / len(loaded)
        q = metrics.quality(codec.stored_pixels(torch.stack([e.recon for e in done])), torch.stack([e.target for e in done]))
        for (src, dst, _), e, m in zip(loaded, done, q):
            try:
                atomic_write(dst, e.data, force=force)
            except (InvcompError, OSError) as e:
                report.failure(str(src), str(e))
                continue
            row = {"input": str(src), "output": str(dst), **_rates(len(e.data), e.target), **m,
                   "mode": mode, "iters": iters, "init": init, "seconds": round(seconds, 3), "model": name, "bits": bits,
                   "coder": e.header.coder, "resolution": resolution}
            report.success(row, f"{src} -> {dst}: {row['bytes']} B, {row['bpp']:.3f} bpp, SSIM {m['ssim']:.4f}, "
                                f"PSNR {m['psnr']:.2f} dB (at {resolution}x{resolution}), {seconds:.2f} s")
    bar.close()
    sys.exit(report.finish())


def _vaegan_for_encode(model: str, channels: Optional[int], device: str) -> LoadedVAEGAN:
    """The VAE-GAN codec for ``--mode vaegan``: ``--model`` if it names one, else the registered one for ``--channels``."""
    if model == registry.DEFAULT_MODEL:
        if channels is None:
            raise InvcompError("--mode vaegan needs --channels C (or --model naming a VAE-GAN model)")
        model = f"vaegan-utkface64-c{channels}"
    vg = registry.load_vaegan_model(model, device)
    if channels is not None and vg.config.channels != channels:
        raise InvcompError(f"model {vg.name!r} codes {vg.config.channels} channels, not --channels {channels}")
    return vg


def _encoder_for(gen: registry.LoadedGenerator, init: str, encoder_path: Optional[str],
                 device: str) -> tuple[Optional[LoadedWarmStart], str]:
    """The warm-start encoder to use (``--encoder``, else the registry's for this model) and the resolved init."""
    enc = None
    if encoder_path is not None:
        enc = codec.require_warm_start(gen, load_warm_start(encoder_path, device))  # a wrong --encoder is refused whatever --init
    elif init in ("auto", "encoder"):
        enc = shipped_warm_start(gen, device)
    if init == "auto":
        init = "encoder" if enc is not None else "random"
    if init != "encoder":
        return None, init
    return codec.require_warm_start(gen, enc), init


def _generator_for(header: Any, model: Optional[str], weights_path: Optional[str], cache: dict,
                   device: str) -> registry.LoadedGenerator:
    if model is not None:
        if model not in cache:
            cache[model] = registry.load_generator(model, device, weights_path)
        return cache[model]
    name = registry.name_for_id(header.model_id)
    if name is None:
        raise InvcompError(f"bitstream needs model id {header.model_id.hex()}, which is not installed; "
                           "see `invcomp models`, or pass --model")
    if name not in cache:
        cache[name] = registry.load_generator(name, device)
    return cache[name]


def _vaegan_for_decode(header: Any, model: Optional[str], cache: dict, device: str) -> LoadedVAEGAN:
    if model is None:
        model = registry.name_for_id(header.model_id)
        if model is None:
            raise InvcompError(f"bitstream needs VAE-GAN model id {header.model_id.hex()}, which is not installed; "
                               "see `invcomp models`, or pass --model")
    if model not in cache:
        cache[model] = registry.load_vaegan_model(model, device)
    return cache[model]


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", help="Output .png file (one input) or folder.  [default: NAME.decoded.png beside each input]")
@click.option("--model", default=None, help="Model to decode with (as for encode; a user model runs its file's code).  [default: the registered model the bitstream names]")
@click.option("--weights", "weights_path", default=None, help="State_dict for a user model.")
@click.option("--native", is_flag=True, help="Write the model resolution instead of the original size.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file per line on stdout.")
@_guard
def decode(files: Sequence[Path], output: Optional[str], model: Optional[str], weights_path: Optional[str], native: bool,
           device: str, force: bool, as_json: bool) -> None:
    """Decode .ivc FILES to PNG (one generator forward pass each)."""
    dev = _device(device)
    outs = output_paths(list(files), output, ".decoded.png")
    report, cache = Report(as_json), {}
    for src, dst in tqdm(list(zip(files, outs)), desc="decode", disable=None, file=sys.stderr, leave=False):
        try:
            if dst.exists() and not force:
                raise InvcompError(f"{dst} exists (use --force to overwrite)")
            try:
                data = Path(src).read_bytes()
            except OSError as e:
                raise InvcompError(f"cannot read {src}: {e.strerror or e}") from None
            t0 = time.perf_counter()
            header, _ = codec.parse(data)
            if header.mode == MODE_VAEGAN:
                gen = _vaegan_for_decode(header, model, cache, dev)
                header, recon = decode_vaegan(data, gen)
            else:
                gen = _generator_for(header, model, weights_path, cache, dev)
                header, recon = codec.decode(data, gen)
            img = codec.to_output_image(recon, header, native)
            seconds = time.perf_counter() - t0
            buf = io.BytesIO()
            img.save(buf, "PNG")
            atomic_write(dst, buf.getvalue(), force=force)
        except InvcompError as e:
            report.failure(str(src), str(e))
            continue
        row = {"input": str(src), "output": str(dst), "width": img.width, "height": img.height, "model": gen.name,
               "seconds": round(seconds, 4)}
        report.success(row, f"{src} -> {dst}: {img.width}x{img.height}, {seconds * 1000:.0f} ms")
    sys.exit(report.finish())


@cli.command()
@click.argument("original", type=click.Path(path_type=Path))
@click.argument("reconstruction", type=click.Path(path_type=Path))
@click.option("--bitstream", type=click.Path(path_type=Path), help="The .ivc file, for bytes, bpp and compression ratios.")
@click.option("--json", "as_json", is_flag=True)
@_guard
def compare(original: Path, reconstruction: Path, bitstream: Optional[Path], as_json: bool) -> None:
    """Distortion between ORIGINAL and RECONSTRUCTION (PSNR, MSE, SSIM, MS-SSIM, LPIPS).

    With --bitstream both images are brought to the model resolution with the
    bitstream's fit (as the encoder measured); without it they must be the same size.
    """
    a, b = load_image(original), load_image(reconstruction)
    row: dict = {"original": str(original), "reconstruction": str(reconstruction)}
    if bitstream is not None:
        try:
            data = bitstream.read_bytes()
        except OSError as e:
            raise InvcompError(f"cannot read {bitstream}: {e.strerror or e}") from None
        header, _ = codec.parse(data)
        a, b = fit_image(a, header.resolution, header.fit), fit_image(b, header.resolution, header.fit)  # type: ignore[arg-type]
    elif a.size != b.size:
        raise InvcompError(f"image sizes differ ({a.width}x{a.height} vs {b.width}x{b.height}); pass --bitstream "
                           "to compare at the model resolution")
    x, y = from_image(a)[None], from_image(b)[None]
    m = metrics.quality(y, x)[0]
    row.update(m)
    row["resolution"] = [a.width, a.height]
    if bitstream is not None:
        rates = _rates(len(data), x[0])
        row.update({"bytes": rates["bytes"], "bpp": rates["bpp"],
                    "cr": {"raw_rgb24": rates["cr_raw"], "png": rates["cr_png"]}})
    if as_json:
        click.echo(dumps(row))
        return
    lp = "n/a (unavailable)" if m["lpips"] is None else f"{m['lpips']:.4f}"
    click.echo(f"at {a.width}x{a.height}: PSNR {m['psnr']:.2f} dB, MSE {m['mse']:.6f}, SSIM {m['ssim']:.4f}, "
               f"MS-SSIM {m['ms_ssim']:.4f} ({metrics.ms_ssim_levels(min(a.size))} scales), LPIPS {lp}")
    if bitstream is not None:
        click.echo(f"{row['bytes']} B, {row['bpp']:.3f} bpp, compression ratio {row['cr']['raw_rgb24']:.1f}x vs raw "
                   f"24-bit RGB, {row['cr']['png']:.1f}x vs PNG")


from .bench_cli import bench  # noqa: E402
from .models_cli import convert, models  # noqa: E402
from .train_cli import train  # noqa: E402

for _command in (models, convert, train, bench):
    cli.add_command(_command)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point usable from tests: returns the exit code instead of exiting."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="invcomp", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
