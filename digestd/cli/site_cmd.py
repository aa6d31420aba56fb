"""`digestd site build`: rewrite site/ and archive/ from state/archive.json alone."""

from __future__ import annotations

import typer

from digestd.cli.context import cli_context
from digestd.config.load import load_config
from digestd.site.build import build
from digestd.store.lock import RunLock


def register(app: typer.Typer) -> None:
    site = typer.Typer(help="The static site: day pages, an index and Atom feeds.", no_args_is_help=True)
    app.add_typer(site, name="site")

    @site.command("build")
    def build_cmd(ctx: typer.Context) -> None:
        """Rebuild site/ and archive/ from the state, byte for byte what the runs wrote."""
        cfg = load_config(cli_context(ctx).home)
        with RunLock(cfg.paths.lock):  # a run writes the same files
            built = build(cfg)
        typer.echo(f"site: {built.days} day(s); {built.written} file(s) written, {built.removed} removed "
                   f"({cfg.paths.site})")
