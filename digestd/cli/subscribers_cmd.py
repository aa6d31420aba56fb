"""`digestd subscribers ...`: every edit keeps subscribers.yaml's comments and order."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from digestd.cli.context import cli_context
from digestd.config import csvio
from digestd.config import subscribers as subscriptions
from digestd.config.load import load_config
from digestd.config.settings import Paths
from digestd.config.values import parse_frequency
from digestd.core.models import Frequency, Subscriber, SubscriberStatus
from digestd.errors import UsageError
from digestd.ops import personal
from digestd.pipeline import run_date

KW = Annotated[
    list[str] | None,
    typer.Option("--keyword", "-k", help="A configured keyword (repeatable); none means all."),
]

FREQUENCY = typer.Option(help="daily or weekly (any case).", parser=lambda v: _frequency(v),
                         metavar="daily|weekly")


def _frequency(value: str) -> Frequency:
    """Plain words for a wrong value: "'monthly' is not a frequency: use daily or weekly"."""
    try:
        return parse_frequency(value)
    except UsageError as err:
        raise typer.BadParameter(str(err)) from None


def _echo(lines: list[str]) -> None:
    for line in lines or ["nothing changed"]:
        typer.echo(line)


def register(app: typer.Typer) -> None:
    subs = typer.Typer(help="Manage who gets digests.", no_args_is_help=True)
    app.add_typer(subs, name="subscribers")

    @subs.command("add")
    def add(
        ctx: typer.Context,
        email: str,
        name: Annotated[str | None, typer.Option(help="Display name.")] = None,
        keyword: KW = None,
        frequency: Annotated[Frequency, FREQUENCY] = Frequency.DAILY,
        force: Annotated[bool, typer.Option("--force", help="Add a suppressed address, lifting it.")] = False,
    ) -> None:
        """Add a subscriber (a suppressed address only with --force)."""
        home = cli_context(ctx).home
        lifted = personal.refuse_suppressed(Paths(home), email, force=force)
        _echo(subscriptions.add_subscriber(home, email, name, keyword or [], frequency) + lifted)

    @subs.command("unsuppress")
    def unsuppress(ctx: typer.Context, email: str) -> None:
        """Mail an address again that bounces or a complaint suppressed."""
        _echo(personal.unsuppress(Paths(cli_context(ctx).home), email))

    @subs.command("forget")
    def forget(ctx: typer.Context, email: str) -> None:
        """Erase everything held about EMAIL (a suppressed one leaves only a salted hash)."""
        _echo(personal.forget_person(load_config(cli_context(ctx).home), email))

    @subs.command("remove")
    def remove(ctx: typer.Context, email: str) -> None:
        """Remove a subscriber."""
        _echo(subscriptions.remove_subscriber(cli_context(ctx).home, email))

    @subs.command("pause")
    def pause(ctx: typer.Context, email: str) -> None:
        """Stop mailing a subscriber until `resume` (papers meanwhile are skipped)."""
        _echo(subscriptions.set_status(cli_context(ctx).home, email, SubscriberStatus.PAUSED))

    @subs.command("resume")
    def resume(ctx: typer.Context, email: str) -> None:
        """Mail a paused subscriber again, from the next run's new papers on."""
        home = cli_context(ctx).home
        lines = subscriptions.set_status(home, email, SubscriberStatus.ACTIVE)
        from digestd.cli.view_cmd import clear_bounce_pause

        cleared = clear_bounce_pause(home, email)
        _echo(cleared if cleared and "already" in lines[0] else lines + cleared)

    @subs.command("set")
    def set_(
        ctx: typer.Context,
        email: str,
        keyword: Annotated[
            list[str] | None,
            typer.Option("--keyword", "-k", help="A configured keyword (repeatable); replaces the list."),
        ] = None,
        frequency: Annotated[Frequency | None, FREQUENCY] = None,
        name: Annotated[str | None, typer.Option(help="Display name.")] = None,
    ) -> None:
        """Change a subscriber's keywords, frequency or name."""
        if not keyword and frequency is None and name is None:
            raise UsageError("nothing to change: give --keyword, --frequency or --name")
        _echo(subscriptions.set_subscriber(cli_context(ctx).home, email, keyword, frequency, name))

    @subs.command("import")
    def import_(ctx: typer.Context, file: Path) -> None:
        """Add subscribers from a CSV: email,name,keywords (;-separated),frequency."""
        _echo(subscriptions.import_csv(cli_context(ctx).home, file))

    @subs.command("export")
    def export(
        ctx: typer.Context,
        email: Annotated[str | None, typer.Argument(help="One person: all data held, as JSON.")] = None,
        fmt: Annotated[str | None, typer.Option("--format", help="csv (the default) or json.")] = None,
    ) -> None:
        """Print every subscriber as CSV or JSON, or everything held about EMAIL as JSON."""
        if email is not None:
            if fmt not in (None, "json"):
                raise UsageError(f"the export of one person is JSON only; leave out --format {fmt}")
            held = personal.export_person(load_config(cli_context(ctx).home), email)
            typer.echo(json.dumps(held, indent=2, ensure_ascii=False))
            return
        fmt = fmt or "csv"
        if fmt not in ("csv", "json"):
            raise typer.BadParameter("use csv or json", param_hint="--format")
        typer.echo(csvio.export(load_config(cli_context(ctx).home), fmt), nl=False)

    @subs.command("list")
    def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """List subscribers."""
        cfg = load_config(cli_context(ctx).home)
        every = [k.name for k in cfg.keywords]
        held = {x.email.lower(): x for x in personal.suppressed_records(cfg)}
        today = run_date(cfg, datetime.now(UTC))

        def until(s: Subscriber) -> str | None:  # a pause set on the manage page, while it lasts
            day = s.paused_until
            return day.isoformat() if day is not None and today < day else None

        if as_json:
            rows = [
                {
                    "email": s.email,
                    "name": s.name,
                    "keywords": list(s.keywords) if s.keywords is not None else every,
                    "status": s.status.value,
                    "frequency": s.frequency.value,
                    "paused_until": until(s),
                    "suppressed": (x := held.get(s.email.lower())) and x.to_doc(),
                }
                for s in cfg.subscribers
            ]
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        for s in cfg.subscribers:
            name = f" ({s.name})" if s.name else ""
            keywords = ", ".join(s.keywords if s.keywords is not None else every)
            x = held.get(s.email.lower())
            why = f"  SUPPRESSED since {x.since[:10]}: {x.reason.value} ({x.diagnostic})" if x else ""
            state = f"paused until {day}" if (day := until(s)) else s.status.value
            typer.echo(f"{s.email}{name}  {state}, {s.frequency.value}: {keywords}{why}")
