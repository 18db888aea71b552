"""``invcomp train ...``: the trainers (DCGAN, PGAN, VAE-GAN codec, warm-start network, residual, GC, SC).

Each command parses options and calls its trainer in :mod:`invcomp.train`, imported only when it runs."""
from __future__ import annotations

import importlib
from typing import Any, Callable

import click

from invcomp.errors import InvcompError
from invcomp.cli.outputs import guard
from invcomp.nets import resolve_device


def _run_options(fn: Callable) -> Callable:
    """The options every trainer takes: a wall-time limit, the seed, the device and resuming."""
    for option in reversed([
        click.option("--minutes", default=None, type=float, help="Also stop (and checkpoint) after this much wall time."),
        click.option("--seed", default=0, show_default=True, type=int),
        click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])),
        click.option("--no-resume", is_flag=True, help="Start afresh even if --out has a checkpoint."),
    ]):
        fn = option(fn)
    return fn


def _run(module: str, function: str, label: str, device: str, no_resume: bool, **kw: Any) -> None:
    """Build the config of ``invcomp.train.<module>`` from the options, run ``function`` (training, or resuming),
    and say where the model is."""
    from invcomp.train.common import config_from_kwargs

    trainer = importlib.import_module(f"invcomp.train.{module}")
    cfg = config_from_kwargs(trainer.CONFIG, device=resolve_device(device), **kw)
    try:
        path = getattr(trainer, function)(cfg, resume=not no_resume)
    except FileNotFoundError as e:
        raise InvcompError(str(e)) from None
    click.echo(f"{label}: {path}")


@click.group()
def train() -> None:
    """Train generators (checkpoint/resume, progress bar, log file in --out)."""


@train.command("dcgan")
@click.option("--data", required=True, type=click.Path(exists=True), help="Folder, .zip or .tar of images (train split is used).")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoint.pt, generator.pt/.json, train.log, samples.")
@click.option("--resolution", default=64, show_default=True, type=int)
@click.option("--latent-dim", default=100, show_default=True, type=int)
@click.option("--ngf", default=64, show_default=True, type=int)
@click.option("--ndf", default=64, show_default=True, type=int)
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--lr", default=2e-4, show_default=True, type=float)
@click.option("--steps", default=20000, show_default=True, type=int, help="Stop after this many steps in total.")
@click.option("--snapshot-every", default=2000, show_default=True, type=int, help="Checkpoint and score the EMA generator this often.")
@click.option("--eval-faces", default=128, show_default=True, type=int, help="Validation faces inverted to score snapshots (0: keep the latest).")
@click.option("--eval-iters", default=200, show_default=True, type=int)
@_run_options
@guard
def dcgan(data: str, out: str, device: str, no_resume: bool, **kw: object) -> None:
    """Train a pytorch/examples DCGAN on DATA, e.g.

    \b
      invcomp train dcgan --data ../shared/data/utkface --out runs/dcgan64 --minutes 45
    """

    _run("dcgan", "train_dcgan", "best generator", device, no_resume, data=data, out=out, **kw)


def _channel_list(example: str):
    """A click callback parsing a comma list of positive channel counts (``example`` goes in the error)."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        try:
            widths = tuple(int(v) for v in value.split(","))
        except ValueError:
            raise click.BadParameter(f"expected comma-separated channel counts like {example}, got {value!r}") from None
        if not widths or min(widths) < 1:
            raise click.BadParameter("channel counts must be positive")
        return widths

    return parse


@train.command("pgan")
@click.option("--data", required=True, type=click.Path(exists=True), help="Folder, .zip or .tar of images (train split is used).")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoint.pt, generator.pt/.json, train.log, samples.")
@click.option("--resolution", default=64, show_default=True, type=int, help="Final side: a power of two; growing starts at 4.")
@click.option("--depths", default=None, callback=_channel_list("256,256,256,128,64"),
              help="Channels per scale, 4x4 first (default 256,256,256,128,64,... cut to the scales).")
@click.option("--latent-dim", default=512, show_default=True, type=int)
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Adam learning rate (betas 0, 0.99).")
@click.option("--steps-per-phase", default=8000, show_default=True, type=int, help="Steps at alpha 0 per scale.")
@click.option("--fade-steps", default=8000, show_default=True, type=int, help="Steps to fade each new scale in (alpha 1 -> 0).")
@click.option("--steps", default=None, type=int, help="Stop after this many steps in total [default: end of the schedule]; "
              "past the schedule training stays at the final resolution.")
@click.option("--snapshot-every", default=2000, show_default=True, type=int, help="Checkpoint and snapshot the EMA generator this often.")
@click.option("--eval-faces", default=128, show_default=True, type=int,
              help="Validation faces inverted to score final-resolution snapshots (0: keep the latest).")
@click.option("--eval-iters", default=200, show_default=True, type=int)
@_run_options
@guard
def pgan(data: str, out: str, device: str, no_resume: bool, **kw: object) -> None:
    """Train a progressive GAN (pytorch_GAN_zoo's PGAN, WGAN-GP) on DATA, growing from 4x4, e.g.

    \b
      invcomp train pgan --data ../shared/data/utkface --out runs/pgan64 --resolution 64 --minutes 45
      invcomp train pgan --data faces/ --out runs/tiny --resolution 16 --depths 8,8,4 --latent-dim 16 --device cpu
    """

    _run("pgan", "train_pgan", "generator", device, no_resume, data=data, out=out, **kw)


@train.command("vaegan")
@click.option("--data", required=True, type=click.Path(exists=True), help="Folder, .zip or .tar of images (train split is used).")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoint.pt, vaegan.pt/.json, train.log, samples.")
@click.option("--channels", default=8, show_default=True, type=click.IntRange(min=1),
              help="Code channels C (the seed's table uses 28, 16, 8, 4, 2); C*(R/f)^2 symbols per image.")
@click.option("--downsample", default="8", show_default=True, type=click.Choice(["8", "16"]), help="Code map is R/f x R/f.")
@click.option("--resolution", default=64, show_default=True, type=int)
@click.option("--widths", default=None, callback=_channel_list("64,128,256"),
              help="Encoder channels per stride-2 stage, one per factor of 2 in --downsample [default: 64,128,256(,256)].")
@click.option("--ndf", default=64, show_default=True, type=int, help="Pair discriminator base width.")
@click.option("--bits", default=4, show_default=True, type=click.IntRange(2, 16), help="QSGD bit depth in the loop and the codec default.")
@click.option("--steps", default=20000, show_default=True, type=int, help="Stop after this many steps in total.")
@click.option("--batch-size", default=32, show_default=True, type=int)
@click.option("--lr", default=2e-4, show_default=True, type=float, help="Adam learning rate (betas 0.5, 0.999), both nets.")
@click.option("--kl-weight", default=1e-3, show_default=True, type=float)
@click.option("--adv-weight", default=0.01, show_default=True, type=float, help="Weight of the pair-discriminator loss (0: plain VAE).")
@click.option("--adv-warmup", default=1000, show_default=True, type=int, help="Steps of pure autoencoding before the GAN terms start.")
@click.option("--snapshot-every", default=1000, show_default=True, type=int, help="Checkpoint and score the codec this often.")
@click.option("--eval-faces", default=128, show_default=True, type=int, help="Validation faces coded to score snapshots (0: keep the latest).")
@click.option("--augment", default=0.0, show_default=True, type=click.FloatRange(0, 1),
              help="Share of each batch zoomed out, shifted, recoloured, relit or made grayscale.")
@click.option("--init", default=None, type=click.Path(exists=True, dir_okay=False),
              help="A vaegan.pt of the same shape to start from (fine-tune).")
@_run_options
@guard
def vaegan(data: str, out: str, downsample: str, device: str, no_resume: bool, **kw: object) -> None:
    """Train a VAE-GAN codec (encoder, decoder, pair discriminator; QSGD in the loop) on DATA, e.g.

    \b
      invcomp train vaegan --data ../shared/data/utkface --out runs/vaegan-c8 --channels 8 --minutes 45
      invcomp train vaegan --data faces/ --out runs/tiny --resolution 16 --widths 8,8,8 --ndf 8 --device cpu
    """
    _run("vaegan", "train_vaegan", "best VAE-GAN", device, no_resume, data=data, out=out, downsample=int(downsample), **kw)


@train.command("warm-start")
@click.option("--generator", "generator", required=True,
              help="Registered model name, a .pt state_dict, or any model spec that `invcomp encode --model` accepts.")
@click.option("--data", required=True, type=click.Path(exists=True), help="Folder, .zip or .tar of images (train split is used).")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoint.pt, encoder.pt/.json, train.log.")
@click.option("--steps", default=20000, show_default=True, type=int, help="Stop after this many steps in total.")
@click.option("--batch-size", default=32, show_default=True, type=int, help="Generated pairs and real faces per step (each).")
@click.option("--lr", default=3e-4, show_default=True, type=float, help="Adam learning rate.")
@click.option("--widths", default=None, callback=_channel_list("32,64,128,256"),
              help="Channels of the stride-2 blocks, one per halving down to 4x4 [default: 32, 64, ... capped at 256].")
@click.option("--snapshot-every", default=1000, show_default=True, type=int, help="Checkpoint and score the encoder this often.")
@click.option("--eval-faces", default=128, show_default=True, type=int,
              help="Validation faces scored by the SSIM of G(E(x)) (0: keep the latest).")
@click.option("--latents", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Amortise the search: a file of searched faces' latents (experiments/collect_latents.py); E learns "
                   "to land where the search ended, through the codec's quantiser.")
@click.option("--init", default=None, help="Start E from an encoder .pt, or 'shipped' (the registry's encoder).")
@click.option("--w-search", default=1.0, show_default=True, type=float, help="Weight of MSE(E(x), searched z).")
@click.option("--quant-in-loop", is_flag=True, help="Real faces' image loss and the snapshot score through the quantiser.")
@_run_options
@guard
def warm_start(generator: str, data: str, out: str, device: str, no_resume: bool, **kw: object) -> None:
    """Train a warm-start network E(x) -> z for GENERATOR on DATA, to start inversion near the answer, e.g.

    \b
      invcomp train warm-start --generator dcgan-utkface64 --data ../shared/data/utkface --out runs/enc64 --minutes 30
      invcomp train warm-start --generator runs/pgan64/generator.pt --data faces/ --out runs/enc --steps 200 --device cpu
      invcomp train warm-start --generator dcgan-utkface64 --data ../shared/data/utkface --out runs/amort \
          --latents runs/latents/dcgan-utkface64-train.pt --init shipped --quant-in-loop --minutes 30
    """

    _run("warmstart", "train_warm_start", "best encoder", device, no_resume, generator=generator, data=data, out=out, **kw)


@train.command("residual")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Faces and their base pictures: the .pt that experiments/layered_bases.py writes.")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoint.pt, model.pt/.json, train.log.")
@click.option("--steps", default=12000, show_default=True, type=int, help="Stop after this many steps in total.")
@click.option("--batch-size", default=16, show_default=True, type=int, help="Half 64-px faces, half 64x64 crops of 128-px faces.")
@click.option("--N", "N", default=32, show_default=True, type=int, help="Channels inside the network.")
@click.option("--M", "M", default=48, show_default=True, type=int, help="Latent channels.")
@click.option("--peer", default="compressai-mbt-mean", show_default=True,
              help="Start the transforms from this shipped CompressAI peer's top-rate model (its N, M), or none.")
@click.option("--rates", default=8, show_default=True, type=int, help="Operating points (rate indices) of the one network.")
@click.option("--lambda-low", default=2.5e-4, show_default=True, type=float, help="Distortion weight of rate 0.")
@click.option("--lambda-high", default=1.6e-2, show_default=True, type=float, help="Distortion weight of the top rate.")
@click.option("--lr", default=1e-4, show_default=True, type=float, help="Adam learning rate.")
@click.option("--snapshot-every", default=1000, show_default=True, type=int, help="Checkpoint and score this often.")
@click.option("--eval-faces", default=64, show_default=True, type=int, help="The file's last faces, held out for scoring.")
@click.option("--threads", default=None, type=int, help="torch threads.  [default: torch's]")
@_run_options
@guard
def residual(data: str, out: str, device: str, no_resume: bool, peer: str, **kw: object) -> None:
    """Train the layered mode's residual layer (one network, several rates, 64 and 128 px) on the CPU, e.g.

    \b
      python experiments/layered_bases.py --data ../shared/data/utkface --out runs/layered --limit 1500
      invcomp train residual --data runs/layered/bases_train.pt --out runs/layered/residual --minutes 60
    """
    _run("residual", "train_residual", "best residual network", device, no_resume, data=data, out=out,
         peer=None if peer == "none" else peer, **kw)


@train.command("gc")
@click.option("--data", required=True, type=click.Path(exists=True), help="Folder, .zip or .tar of images (train split is used).")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoint.pt, gc.pt/.json, train.log, recon_*.png.")
@click.option("--channels", default=8, show_default=True, type=click.IntRange(1, 64), help="Code channels C at /16.")
@click.option("--centres", default=5, show_default=True, type=click.IntRange(2, 16), help="Learned quantiser centres L.")
@click.option("--resolution", default=200, show_default=True, type=int, help="Training images are fitted to this square side.")
@click.option("--crop", default=96, show_default=True, type=int, help="Random crops of this side (a multiple of 16).")
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--steps", default=8000, show_default=True, type=int, help="Stop after this many steps in total.")
@click.option("--adv-warmup", default=1500, show_default=True, type=int, help="Steps of pure autoencoding before D starts.")
@click.option("--lr", default=2e-4, show_default=True, type=float, help="Adam learning rate (betas 0.5, 0.999), both nets.")
@click.option("--mse-weight", default=20.0, show_default=True, type=float)
@click.option("--ssim-weight", default=2.0, show_default=True, type=float, help="(1 - SSIM) weight: the stand-in for VGG.")
@click.option("--adv-weight", default=1.0, show_default=True, type=float)
@click.option("--fm-weight", default=10.0, show_default=True, type=float, help="Discriminator feature matching.")
@click.option("--snapshot-every", default=500, show_default=True, type=int, help="Checkpoint, log val figures, keep the latest.")
@click.option("--eval-faces", default=16, show_default=True, type=int)
@click.option("--limit", default=None, type=int, help="Use only the first N training images.")
@click.option("--threads", default=None, type=int, help="torch threads.  [default: torch's]")
@_run_options
@guard
def gc(data: str, out: str, device: str, no_resume: bool, **kw: object) -> None:
    """Train a GC model (encoder, learned-centre quantiser, generator; multi-scale D) on DATA at full size, e.g.

    \b
      invcomp train gc --data ../shared/data/utkface --out runs/gc-c8 --channels 8 --minutes 80 --threads 1
      invcomp train gc --data faces/ --out runs/tiny --channels 2 --steps 20 --crop 32 --device cpu
    """
    crop = int(kw["crop"])  # type: ignore[call-overload]
    if crop % 16 or crop < 32:
        raise InvcompError(f"--crop must be a multiple of 16 and at least 32, got {crop}")
    _run("gc", "train_gc", "GC model", device, no_resume, data=data, out=out, **kw)


@train.command("sc")
@click.option("--gc", "gc_model", required=True, help="The GC model it completes (a registered name, or a gc.pt with its files).")
@click.option("--data", required=True, type=click.Path(exists=True), help="Folder, .zip or .tar of images (train split is used).")
@click.option("--maps", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Label maps of the first train images: the .npz of experiments/sc_semantic_maps.py.")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoint.pt, sc.pt/.json, sc-prior.json, train.log.")
@click.option("--resolution", default=200, show_default=True, type=int)
@click.option("--width", default=64, show_default=True, type=int, help="Synthesiser channels.")
@click.option("--halo", default=1, show_default=True, type=click.IntRange(0), help="Cells kept around the preserved pixels (the codec default).")
@click.option("--batch-size", default=16, show_default=True, type=int)
@click.option("--lr", default=1e-3, show_default=True, type=float)
@click.option("--drop-semantic", default=0.3, show_default=True, type=click.FloatRange(0, 1), help="Share of batches without a map.")
@click.option("--steps", default=3000, show_default=True, type=int)
@click.option("--snapshot-every", default=500, show_default=True, type=int)
@click.option("--eval-faces", default=256, show_default=True, type=int, help="The maps' last grids, held out for scoring.")
@click.option("--threads", default=None, type=int, help="torch threads.  [default: torch's]")
@_run_options
@guard
def sc(gc_model: str, data: str, maps: str, out: str, device: str, no_resume: bool, **kw: object) -> None:
    """Train SC's synthesiser over a GC model (random preserved regions; landmark label maps), e.g.

    \b
      python experiments/sc_semantic_maps.py --data ../shared/data/utkface --limit 6000 --out runs/sc/maps_train.npz
      invcomp train sc --gc gc-utkface-c8 --data ../shared/data/utkface --maps runs/sc/maps_train.npz --out runs/sc
    """
    if device == "cuda":
        raise InvcompError("invcomp train sc runs on the CPU (its synthesiser is small): drop --device cuda")
    _run("sc", "train_sc", "SC synthesiser", "cpu", no_resume, gc=gc_model, data=data, maps=maps, out=out, **kw)


_alias = click.Command("encoder", params=warm_start.params, callback=warm_start.callback, hidden=True,
                       help="Old name of warm-start.")
train.add_command(_alias)
