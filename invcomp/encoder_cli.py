"""``invcomp train encoder``: train a latent encoder for a frozen generator (a warm start for inversion).

The command is a plain :class:`click.Command`; register it with ``train.add_command(encoder)``.
"""
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
        raise click.BadParameter(f"expected comma-separated channel counts like 32,64,128,256, got {value!r}") from None
    if not widths or min(widths) < 1:
        raise click.BadParameter("channel counts must be positive")
    return widths


@click.command("encoder")
@click.option("--generator", "generator", required=True,
              help="Registered model name, a .pt state_dict, or any model spec that `invcomp encode --model` accepts.")
@click.option("--data", required=True, type=click.Path(exists=True), help="Folder, .zip or .tar of images (train split is used).")
@click.option("--out", required=True, type=click.Path(), help="Run folder: checkpoint.pt, encoder.pt/.json, train.log.")
@click.option("--steps", default=20000, show_default=True, type=int, help="Stop after this many steps in total.")
@click.option("--minutes", default=None, type=float, help="Also stop (and checkpoint) after this much wall time.")
@click.option("--batch-size", default=32, show_default=True, type=int, help="Generated pairs and real faces per step (each).")
@click.option("--lr", default=3e-4, show_default=True, type=float, help="Adam learning rate.")
@click.option("--widths", default=None, callback=_widths,
              help="Channels of the stride-2 blocks, one per halving down to 4x4 [default: 32, 64, ... capped at 256].")
@click.option("--snapshot-every", default=1000, show_default=True, type=int, help="Checkpoint and score the encoder this often.")
@click.option("--eval-faces", default=128, show_default=True, type=int,
              help="Validation faces scored by the SSIM of G(E(x)) (0: keep the latest).")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--no-resume", is_flag=True, help="Start afresh even if --out has a checkpoint.")
@guard
def encoder(generator: str, data: str, out: str, device: str, no_resume: bool, **kw: object) -> None:
    """Train an encoder E(x) -> z for GENERATOR on DATA, to start inversion near the answer, e.g.

    \b
      invcomp train encoder --generator dcgan-utkface64 --data ../shared/data/utkface --out runs/enc64 --minutes 30
      invcomp train encoder --generator runs/pgan64/generator.pt --data faces/ --out runs/enc --steps 200 --device cpu
    """

    from .train.warmstart import config_from_kwargs, train_warm_start

    dev = resolve_device(device)
    cfg = config_from_kwargs(generator=generator, data=data, out=out, device=dev, **kw)
    try:
        path = train_warm_start(cfg, resume=not no_resume)
    except FileNotFoundError as e:
        raise InvcompError(str(e)) from None
    click.echo(f"best encoder: {path}")
