"""`digestd systemd`: print or install the service and timer that run digestd unattended."""

import os
from typing import Annotated

import typer

from digestd.cli.context import cli_context
from digestd.errors import UsageError
from digestd.ops import systemd, unit_files

_HELP = (
    "Print (or with --install, write) digestd.service and digestd.timer.\n\n"
    "The service runs `PYTHON -m digestd --home HOME run` once, sandboxed so that it can write"
    " only the instance folder; the timer starts it after arXiv's nightly announcement.\n\n"
    "Default: --user, or --system when run as root. A --system unit runs as the user and group"
    " that own the instance folder. SMTP settings and secrets go in an environment file:"
    " /etc/digestd/digestd.env (--system) or ~/.config/digestd/digestd.env (--user);"
    " see digestd.env.example.\n\n"
    "--install writes to /etc/systemd/system (--system) or $XDG_CONFIG_HOME/systemd/user,"
    " else ~/.config/systemd/user (--user); $DIGESTD_SYSTEMD_UNIT_DIR overrides either."
    " It never overwrites a unit that differs from what it would write unless you pass --force."
)


def register(app: typer.Typer) -> None:
    """Add the `systemd` command to the root app."""

    @app.command("systemd", help=_HELP)
    def systemd_command(
        ctx: typer.Context,
        user: Annotated[
            bool, typer.Option("--user", help="A per-user unit (the default unless run as root).")
        ] = False,
        system: Annotated[
            bool, typer.Option("--system", help="A system unit (the default as root).")
        ] = False,
        install: Annotated[
            bool, typer.Option("--install", help="Write the units instead of printing them.")
        ] = False,
        force: Annotated[
            bool,
            typer.Option("--force", help="With --install, overwrite units that differ."),
        ] = False,
        on_calendar: Annotated[
            str,
            typer.Option(
                "--on-calendar",
                metavar="SPEC",
                help="When the timer fires, in systemd.time(7) calendar syntax.",
            ),
        ] = unit_files.DEFAULT_ON_CALENDAR,
    ) -> None:
        home = cli_context(ctx).home
        if user and system:
            raise UsageError("--user and --system cannot be used together; pass one of them.")
        user_mode = user or (not system and os.geteuid() != 0)
        if not home.is_dir():
            raise UsageError(f"The instance folder {home} does not exist; create it first.")
        systemd.validate_on_calendar(on_calendar)
        run_as: str | None = None
        group: str | None = None
        if not user_mode:
            run_as, group = systemd.instance_owner(home)
        opts = unit_files.UnitOptions(
            home=home,
            python=systemd.python_executable(),
            user_mode=user_mode,
            on_calendar=on_calendar,
            run_as=run_as,
            group=group,
            env_file=unit_files.default_env_file(user_mode),
        )
        service = unit_files.render_service(opts)
        timer = unit_files.render_timer(opts)
        if not install:
            # Each unit is preceded by a comment naming its file, so the output stays a valid unit.
            typer.echo(f"# {unit_files.SERVICE_NAME}\n{service}", nl=False)
            typer.echo(f"\n# {unit_files.TIMER_NAME}\n{timer}", nl=False)
            return
        for message in systemd.install_units(opts, systemd.unit_dir(user_mode), force):
            typer.echo(message)
