"""What the codec commands share beyond the use cases' items (:mod:`invcomp.service.items`): the exit of a
request whose every item was refused, and the options every codec command takes."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, Sequence

import click

from invcomp.service.items import ItemError


def exit_refused(report: Any, pairs: Sequence[tuple[Path, Path]], refused: Sequence[Optional[ItemError]]) -> NoReturn:
    """Report every pair with its :func:`check_jobs` refusal, in order, and exit: nothing is left to do."""
    for (src, _), err in zip(pairs, refused):
        report.failure(str(src), err.reason if err is not None else "not run")
    sys.exit(report.finish())


def device_option(default: str = "auto") -> Callable:
    return click.option("--device", default=default, show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))


def option_defaults(options: Callable) -> dict:
    """What a decorator of click options (``codec_options``) gives a command called with none of them."""
    cmd = click.Command("defaults", params=list(options(lambda: None).__click_params__))
    return dict(cmd.make_context("defaults", [], resilient_parsing=True).params)
