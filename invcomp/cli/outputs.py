"""The CLI's output: one line per item (human or ``--json``) with a summary, and one-line errors."""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import click

from invcomp.errors import InvcompError, UsageError
from invcomp.files import dumps


@dataclass
class Report:
    """Collects per-item results; prints JSON lines or human lines to stdout and a summary to stderr."""

    as_json: bool
    ok: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    to_stderr: bool = False  # when stdout carries the data (-o -), the report lines go to stderr

    def success(self, row: dict, human: str) -> None:
        self.ok += 1
        print(dumps(row) if self.as_json else human, flush=True, file=sys.stderr if self.to_stderr else sys.stdout)

    def failure(self, item: str, reason: str) -> None:
        if reason.startswith(f"{item}: "):  # the message already names the file
            reason = reason[len(item) + 2:]
        self.failed.append((item, reason))
        if self.as_json:
            print(dumps({"input": item, "error": reason}), flush=True, file=sys.stderr if self.to_stderr else sys.stdout)
        else:
            print(f"invcomp: error: {item}: {reason}", file=sys.stderr, flush=True)

    def finish(self) -> int:
        """Print the summary (for batches of more than one) and return the exit code.

        A single failed item gets exactly one stderr line (in ``--json`` mode too).
        """
        total = self.ok + len(self.failed)
        if total > 1:
            reasons = "".join(f"\n  {i}: {r}" for i, r in self.failed)
            print(f"{self.ok} ok, {len(self.failed)} failed{reasons}", file=sys.stderr)
        elif self.failed and self.as_json:
            item, reason = self.failed[0]
            print(f"invcomp: error: {item}: {reason}", file=sys.stderr)
        return 1 if self.failed else 0


def guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn InvcompError (and, without --debug, any exception) into one stderr line and exit 1 (2 for a
    :class:`~invcomp.errors.UsageError`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except InvcompError as e:
            if debug:
                raise
            click.echo(f"invcomp: error: {e}", err=True)
            sys.exit(2 if isinstance(e, UsageError) else 1)
        except Exception as e:  # a bug, not bad input: still one line unless --debug
            if debug:
                raise
            click.echo(f"invcomp: internal error: {type(e).__name__}: {e} (rerun with --debug for a traceback)", err=True)
            sys.exit(1)

    return wrapper
