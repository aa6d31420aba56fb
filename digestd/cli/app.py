"""The root `digestd` command: global options, logging, and the one place errors become exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from digestd import __version__
from digestd.cli import (
    bounces_cmd,
    helpfmt,
    keywords_cmd,
    run_cmd,
    serve_cmd,
    site_cmd,
    subscribers_cmd,
    systemd_cmd,
    view_cmd,
)
from digestd.cli.context import CliContext
from digestd.config.settings import resolve_home
from digestd.errors import DigestdError, ExitCode

app = typer.Typer(
    name="digestd",
    help="Daily arXiv digests: fetch new papers per keyword, mail subscribers, publish a README.",
    no_args_is_help=True,
    add_completion=True,  # `digestd --install-completion` (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,  # a traceback could show a secret held in a local variable
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
)
log = logging.getLogger("digestd")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"digestd {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="The instance folder (default: $DIGESTD_HOME, else the current folder)."),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.", case_sensitive=False)
    ] = "info",
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise typer.BadParameter("use debug, info, warning or error", param_hint="--log-level")
    setup_logging(level)
    ctx.obj = CliContext(home=resolve_home(home), log_level=log_level.lower())


def setup_logging(level: int) -> None:
    """Plain lines for the journal (it adds time and unit); no colours when not on a terminal."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(message)s" if level > logging.DEBUG else "%(levelname)s %(name)s: %(message)s")
    )
    root_logger = logging.getLogger()
    root_logger.handlers[:] = [handler]
    root_logger.setLevel(logging.WARNING)
    logging.getLogger("digestd").setLevel(level)
    # Libraries stay quiet: aiosmtplib and urllib3 at debug level would echo protocol lines.
    for name in ("aiosmtplib", "urllib3", "arxiv", "mail.log", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # flufl.bounce logs a detector's exception with its traceback, then raises it; digestd
    # says that in one line (digestd/mail/bounces.py), so the traceback is for debugging only.
    logging.getLogger("flufl.bounce").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.CRITICAL)


run_cmd.register(app)
keywords_cmd.register(app)
subscribers_cmd.register(app)
view_cmd.register(app)
systemd_cmd.register(app)
serve_cmd.register(app)
bounces_cmd.register(app)
site_cmd.register(app)


def main() -> None:
    """Entry point: DigestdError becomes one sentence on stderr and its exit code, never a traceback.

    typer (click) itself turns bad usage into exit 2 and handles --help and typer.Exit.
    """
    try:
        command = typer.main.get_command(app)
        helpfmt.tidy(command)  # value names in words, help lines whole
        command(prog_name="digestd")
    except DigestdError as err:
        _fail(str(err), err.exit_code)
    except OSError as err:  # a file or folder the user named cannot be read or written
        where = f"{err.filename}: " if err.filename else ""
        _fail(f"{where}{err.strerror or err}", ExitCode.ERROR)
    except Exception as err:  # the last guard: no traceback reaches a user
        if os.environ.get("DIGESTD_DEBUG") or logging.getLogger("digestd").isEnabledFor(logging.DEBUG):
            raise
        _fail(f"internal error: {type(err).__name__}: {err} (rerun with --log-level debug)", ExitCode.ERROR)


def _fail(message: str, code: int) -> NoReturn:
    """One sentence on stderr; with --json, stdout still holds JSON: {"error": ..., "exit_code": ...}."""
    typer.echo(f"digestd: {message}", err=True)
    if "--json" in sys.argv[1:]:
        typer.echo(json.dumps({"error": message, "exit_code": int(code)}, ensure_ascii=False))
    sys.exit(int(code))
