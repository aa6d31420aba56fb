"""`digestd bounces`: read new bounces and complaints now (every `run` also does it first)."""

from __future__ import annotations

import typer

from digestd.cli.context import cli_context
from digestd.config.load import load_config
from digestd.errors import ExitCode
from digestd.stages.bounces import check_bounces
from digestd.store.lock import RunLock


def register(app: typer.Typer) -> None:
    @app.command("bounces")
    def bounces(ctx: typer.Context) -> None:
        """Read new bounces from DIGESTD_BOUNCE_MAILDIR or DIGESTD_BOUNCE_IMAP_URL and suppress."""
        cfg = load_config(cli_context(ctx).home)
        with RunLock(cfg.paths.lock):  # a run reads the same mailbox first
            got = check_bounces(cfg)
        typer.echo(got.summary())
        for line in got.actions:
            typer.echo(line)
        for line in got.unreadable:
            typer.echo(f"left alone (cannot read it): {line}")
        if got.unreadable or got.deferred:  # partly done: the next check reads the rest
            raise typer.Exit(ExitCode.TEMPFAIL)
