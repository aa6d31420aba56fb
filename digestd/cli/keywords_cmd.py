"""`digestd keywords add | remove | list`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from digestd.cli.context import cli_context
from digestd.config import subscribers as subscriptions
from digestd.config.load import load_config
from digestd.config.settings import Paths
from digestd.errors import DigestdError
from digestd.store.papers import PaperStore


def register(app: typer.Typer) -> None:
    kw = typer.Typer(
        help="Manage the keywords (one arXiv search and one README section each).", no_args_is_help=True
    )
    app.add_typer(kw, name="keywords")

    @kw.command("add")
    def add(
        ctx: typer.Context,
        name: str,
        query: Annotated[
            str | None, typer.Option(help='Raw arXiv query instead of ti:"KW" OR abs:"KW".')
        ] = None,
        category: Annotated[
            list[str] | None,
            typer.Option("--category", help="Keep only papers in this category (repeatable)."),
        ] = None,
    ) -> None:
        """Add a keyword; its first run stores papers without mailing them."""
        home = cli_context(ctx).home
        for line in subscriptions.add_keyword(home, name, query, category or None, held=_held(home, name)):
            typer.echo(line)

    @kw.command("remove")
    def remove(ctx: typer.Context, name: str) -> None:
        """Remove a keyword (and from every subscriber that follows it)."""
        for line in subscriptions.remove_keyword(cli_context(ctx).home, name):
            typer.echo(line)

    @kw.command("list")
    def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """List the keywords."""
        cfg = load_config(cli_context(ctx).home)
        if as_json:
            rows: list[dict[str, object]] = []
            for k in cfg.keywords:
                row: dict[str, object] = {"name": k.name}
                if k.query:
                    row["query"] = k.query
                if k.categories:
                    row["categories"] = list(k.categories)
                for key, value in (("authors", k.authors), ("phrase", k.phrase), ("exclude", k.exclude)):
                    if value:
                        row[key] = list(value) if isinstance(value, tuple) else value
                if k.listing:
                    row.update(listing=list(k.listing), primary_only=k.primary_only, top=k.top)
                rows.append(row)
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        for k in cfg.keywords:
            extra = f"  [{', '.join(k.categories)}]" if k.categories else ""
            typer.echo(f"{k.name}{extra}  query: {k.search_query}")


def _held(home: Path, name: str) -> int:
    """Papers runs stored under `name` (a keyword removed, then added again, keeps them)."""
    path = Paths(home).papers_db
    if not path.exists():
        return 0
    try:
        store = PaperStore(path, read_only=True)
    except DigestdError:
        return 0  # the run will name the file
    try:
        return len(store.keyword_papers(name))
    finally:
        store.close()
