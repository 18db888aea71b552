"""The ``invcomp`` command line: a thin click layer over :mod:`invcomp.codecs` and friends.

One module per command group; they are imported only when their command runs (or its help is shown),
and none imports torch at import time, so ``invcomp --help`` and usage errors stay fast. Errors a user
can cause print one line on stderr and exit non-zero (1 for a failed item or bad input, 2 for bad usage);
``--debug`` shows tracebacks.
"""
from __future__ import annotations

import importlib
import logging
import sys
from typing import Any, Optional, Sequence

import click

from invcomp import __version__
from invcomp.cli.threads import apply_threads

COMMANDS = {  # name -> (module, attribute)
    "encode": ("encode", "encode"),
    "decode": ("decode", "decode"),
    "compare": ("compare", "compare"),
    "bench": ("bench", "bench"),
    "models": ("models", "models"),
    "convert": ("models", "convert"),
    "train": ("train", "train"),
    "batch": ("batch", "batch"),
    "info": ("info", "info"),
    "serve": ("serve", "serve"),
}


class LazyGroup(click.Group):
    """A group whose commands live in :data:`COMMANDS` and are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *super().list_commands(ctx)]

    def get_command(self, ctx: click.Context, name: str) -> Optional[click.Command]:
        if name in COMMANDS:
            module, attr = COMMANDS[name]
            return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="invcomp")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
@click.option("--threads", default=None, type=click.IntRange(1), envvar="INVCOMP_THREADS", show_envvar=True,
              help="CPU threads for torch.  [default: the CPUs this process may use, less the load average]")
def cli(debug: bool, verbose: bool, threads: Optional[int]) -> None:
    """Generative face compression: images to .ivc files of a few hundred bytes or less, and back.

    The default (--mode auto) writes about 90-230 B per face; GAN inversion alone
    (--mode inversion) about 57 B for a 64-px face like the generator's training faces.

    \b
    Examples:
      invcomp encode face.png -o face.ivc
      invcomp decode face.ivc -o face.decoded.png
      invcomp compare face.png face.decoded.png --bitstream face.ivc
    """
    logging.basicConfig(level=logging.INFO if verbose or debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    apply_threads(threads)


def main(argv: Optional[Sequence[str]] = None) -> Any:
    """Entry point usable from tests: returns the exit code instead of exiting."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="invcomp", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0)
    return 0
