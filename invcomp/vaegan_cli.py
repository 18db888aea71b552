"""The ``vaegan`` training command (registered as ``invcomp train vaegan``)."""
from __future__ import annotations

import click

from .errors import InvcompError
from .outputs import guard, resolve_device


def _widths(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        widths = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated channel counts like 64,128,256, got {value!r}") from None
    if not widths or min(widths) < 1:
        raise click.BadParameter("channel counts must be positive")
    return widths


@click.command("vaegan")
@click.option("--data", required=True, type=click.Path(exists=True), help="Folder, .zip or .tar of images (train split is used).")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoint.pt, vaegan.pt/.json, train.log, samples.")
@click.option("--channels", default=8, show_default=True, type=click.IntRange(min=1),
              help="Code channels C (the seed's table uses 28, 16, 8, 4, 2); C*(R/f)^2 symbols per image.")
@click.option("--downsample", default="8", show_default=True, type=click.Choice(["8", "16"]), help="Code map is R/f x R/f.")
@click.option("--resolution", default=64, show_default=True, type=int)
@click.option("--widths", default=None, callback=_widths,
              help="Encoder channels per stride-2 stage, one per factor of 2 in --downsample [default: 64,128,256(,256)].")
@click.option("--ndf", default=64, show_default=True, type=int, help="Pair discriminator base width.")
@click.option("--bits", default=4, show_default=True, type=click.IntRange(2, 16), help="QSGD bit depth in the loop and the codec default.")
@click.option("--steps", default=20000, show_default=True, type=int, help="Stop after this many steps in total.")
@click.option("--minutes", default=None, type=float, help="Also stop (and checkpoint) after this much wall time.")
@click.option("--batch-size", default=32, show_default=True, type=int)
@click.option("--lr", default=2e-4, show_default=True, type=float, help="Adam learning rate (betas 0.5, 0.999), both nets.")
@click.option("--kl-weight", default=1e-3, show_default=True, type=float)
@click.option("--adv-weight", default=0.01, show_default=True, type=float, help="Weight of the pair-discriminator loss (0: plain VAE).")
@click.option("--adv-warmup", default=1000, show_default=True, type=int, help="Steps of pure autoencoding before the GAN terms start.")
@click.option("--snapshot-every", default=1000, show_default=True, type=int, help="Checkpoint and score the codec this often.")
@click.option("--eval-faces", default=128, show_default=True, type=int, help="Validation faces coded to score snapshots (0: keep the latest).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--no-resume", is_flag=True, help="Start afresh even if --out has a checkpoint.")
@guard
def vaegan(data: str, out: str, downsample: str, device: str, no_resume: bool, **kw: object) -> None:
    """Train a VAE-GAN codec (encoder, decoder, pair discriminator; QSGD in the loop) on DATA, e.g.

    \b
      invcomp train vaegan --data ../shared/data/utkface --out runs/vaegan-c8 --channels 8 --minutes 45
      invcomp train vaegan --data faces/ --out runs/tiny --resolution 16 --widths 8,8,8 --ndf 8 --device cpu
    """
    from .train.vaegan import config_from_kwargs, train_vaegan

    dev = resolve_device(device)
    cfg = config_from_kwargs(data=data, out=out, device=dev, downsample=int(downsample), **kw)
    try:
        path = train_vaegan(cfg, resume=not no_resume)
    except FileNotFoundError as e:
        raise InvcompError(str(e)) from None
    click.echo(f"best VAE-GAN: {path}")
