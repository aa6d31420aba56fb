"""What the global options give every command: the instance home and the log level."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer


@dataclass(frozen=True, slots=True)
class CliContext:
    home: Path  # the resolved instance folder (--home, else $DIGESTD_HOME, else cwd), absolute
    log_level: str


def cli_context(ctx: typer.Context) -> CliContext:
    """The CliContext the global callback stored on the root context."""
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext)
    return obj
