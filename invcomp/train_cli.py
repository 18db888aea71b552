"""``invcomp train ...`` commands (kept apart from the codec CLI)."""
from __future__ import annotations

import click

from .encoder_cli import encoder
from .vaegan_cli import vaegan
from .errors import InvcompError
from .outputs import guard, resolve_device


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
@click.option("--minutes", default=None, type=float, help="Also stop (and checkpoint) after this much wall time.")
@click.option("--snapshot-every", default=2000, show_default=True, type=int, help="Checkpoint and score the EMA generator this often.")
@click.option("--eval-faces", default=128, show_default=True, type=int, help="Validation faces inverted to score snapshots (0: keep the latest).")
@click.option("--eval-iters", default=200, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--no-resume", is_flag=True, help="Start afresh even if --out has a checkpoint.")
@guard
def dcgan(data: str, out: str, device: str, no_resume: bool, **kw: object) -> None:
    """Train a pytorch/examples DCGAN on DATA, e.g.

    \b
      invcomp train dcgan --data ../shared/data/utkface --out runs/dcgan64 --minutes 45
    """

    from .train.dcgan import config_from_kwargs, train_dcgan

    dev = resolve_device(device)
    cfg = config_from_kwargs(data=data, out=out, device=dev, **kw)
    try:
        path = train_dcgan(cfg, resume=not no_resume)
    except FileNotFoundError as e:
        raise InvcompError(str(e)) from None
    click.echo(f"best generator: {path}")


def _depths(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        depths = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated channel counts like 256,256,256,128,64, got {value!r}") from None
    if not depths or min(depths) < 1:
        raise click.BadParameter("channel counts must be positive")
    return depths


@train.command("pgan")
@click.option("--data", required=True, type=click.Path(exists=True), help="Folder, .zip or .tar of images (train split is used).")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoint.pt, generator.pt/.json, train.log, samples.")
@click.option("--resolution", default=64, show_default=True, type=int, help="Final side: a power of two; growing starts at 4.")
@click.option("--depths", default=None, callback=_depths, help="Channels per scale, 4x4 first (default 256,256,256,128,64,... cut to the scales).")
@click.option("--latent-dim", default=512, show_default=True, type=int)
@click.option("--batch-size", default=64, show_default=True, type=int)
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Adam learning rate (betas 0, 0.99).")
@click.option("--steps-per-phase", default=8000, show_default=True, type=int, help="Steps at alpha 0 per scale.")
@click.option("--fade-steps", default=8000, show_default=True, type=int, help="Steps to fade each new scale in (alpha 1 -> 0).")
@click.option("--steps", default=None, type=int, help="Stop after this many steps in total [default: end of the schedule]; "
              "past the schedule training stays at the final resolution.")
@click.option("--minutes", default=None, type=float, help="Also stop (and checkpoint) after this much wall time.")
@click.option("--snapshot-every", default=2000, show_default=True, type=int, help="Checkpoint and snapshot the EMA generator this often.")
@click.option("--eval-faces", default=128, show_default=True, type=int, help="Validation faces inverted to score final-resolution snapshots (0: keep the latest).")
@click.option("--eval-iters", default=200, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--no-resume", is_flag=True, help="Start afresh even if --out has a checkpoint.")
@guard
def pgan(data: str, out: str, device: str, no_resume: bool, **kw: object) -> None:
    """Train a progressive GAN (pytorch_GAN_zoo's PGAN, WGAN-GP) on DATA, growing from 4x4, e.g.

    \b
      invcomp train pgan --data ../shared/data/utkface --out runs/pgan64 --resolution 64 --minutes 45
      invcomp train pgan --data faces/ --out runs/tiny --resolution 16 --depths 8,8,4 --latent-dim 16 --device cpu
    """

    from .train.pgan import config_from_kwargs, train_pgan

    dev = resolve_device(device)
    cfg = config_from_kwargs(data=data, out=out, device=dev, **kw)
    try:
        path = train_pgan(cfg, resume=not no_resume)
    except FileNotFoundError as e:
        raise InvcompError(str(e)) from None
    click.echo(f"generator: {path}")


train.add_command(encoder)
train.add_command(vaegan)
