"""`digestd init`, `preview` and `status`: set up an instance and look at it."""

from __future__ import annotations

import json
import os
import shlex
import tempfile
import webbrowser
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from digestd.cli.context import cli_context
from digestd.config.instance import init_instance
from digestd.config.load import load_config
from digestd.core.pause import resumed
from digestd.errors import DigestdError
from digestd.ops.preview import preview
from digestd.ops.status import gather
from digestd.ops.systemd import next_timer_run
from digestd.pipeline import run_date
from digestd.store.atomic import WriteError, write_atomic
from digestd.store.lock import RunLock
from digestd.store.outbox import Outbox


def clear_bounce_pause(home: Path, email: str) -> list[str]:
    """Lift a pause that repeated permanent failures set in the state (under the run lock, so
    a run in progress cannot overwrite it)."""
    cfg = load_config(home)
    if not cfg.paths.outbox_db.exists():
        return []
    with RunLock(cfg.paths.lock):
        outbox = Outbox(cfg.paths.outbox_db)
        try:
            cursors = outbox.load_cursors()
            cur = cursors.get(email.lower())
            if not cur or not cur.paused:
                return []
            cursors[email.lower()] = resumed(cur)
            outbox.save_cursors(cursors)
            outbox.commit()
            return [f"{email}: cleared the pause set after repeated delivery failures"]
        finally:
            outbox.close()


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        ctx: typer.Context,
        directory: Annotated[Path | None, typer.Argument(help="Default: the home.")] = None,
    ) -> None:
        """Create an instance (subscribers.yaml, templates/, state/); never overwrites a file."""
        home = (directory or cli_context(ctx).home).expanduser().resolve()
        for line in init_instance(home):
            typer.echo(line)
        load_config(home)
        pasted = shlex.quote(str(home))  # ready to paste into a shell, spaces and quotes too
        typer.echo(f"next: edit {home / 'subscribers.yaml'}, then `digestd --home {pasted} run`")
        for line in smtp_steps(home):
            typer.echo(line)

    @app.command("preview")
    def preview_cmd(
        ctx: typer.Context,
        email: str,
        fmt: Annotated[str, typer.Option("--format", help="html or text.")] = "html",
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file.")] = None,
        open_: Annotated[
            bool, typer.Option("--open", help="Open it in the default browser ($BROWSER).")
        ] = False,
    ) -> None:
        """Render a subscriber's digest without mailing anyone."""
        if fmt not in ("html", "text"):
            raise typer.BadParameter("use html or text", param_hint="--format")
        cfg = load_config(cli_context(ctx).home)
        text, html, source = preview(cfg, email, run_date(cfg, datetime.now(UTC)).isoformat())
        body = html if fmt == "html" else text
        if open_ and output is None:
            suffix = ".html" if fmt == "html" else ".txt"
            output = _temp_file(suffix)
        if output is None or str(output) == "-":
            typer.echo(body, nl=False)
            return
        _write_output(output, body)
        typer.echo(f"wrote {output} ({source})", err=True)
        if open_:
            uri = output.resolve().as_uri()
            if not webbrowser.open(uri):
                typer.echo(f"no browser found (set $BROWSER); open {uri} yourself", err=True)

    @app.command("status")
    def status(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Last run, next timer run, per-keyword counts, pending and failed deliveries, paused subscribers."""
        cfg = load_config(cli_context(ctx).home)
        info = gather(cfg, next_timer_run(user=_user_mode()))
        if as_json:
            typer.echo(json.dumps(info.to_json(), indent=2, ensure_ascii=False))
            return
        for line in info.lines():
            typer.echo(line)


def smtp_steps(home: Path) -> list[str]:
    """How digests leave this machine: without an SMTP server they are only written locally."""
    return [
        f"mail: until an SMTP server is set, digests are written to {home / 'state' / 'maildir'} "
        "and not sent. To send them, set in the environment (or the systemd unit's environment file):",
        "  DIGESTD_SMTP_HOST=smtp.example.org  DIGESTD_SMTP_PORT=587  DIGESTD_SMTP_SECURITY=starttls",
        "  DIGESTD_SMTP_USERNAME=digests  DIGESTD_SMTP_PASSWORD_FILE=/path/to/a/file/holding/the/password",
        "  (DIGESTD_SMTP_SECURITY: starttls on port 587, tls on port 465, none only for a local relay)",
    ]


def _write_output(path: Path, body: str) -> None:
    """A new or regular file is replaced atomically (through a symlink, which stays); anything
    else (/dev/stdout, a FIFO, a device) is written to, never replaced by a file."""
    if path.exists() and not path.is_file():
        try:
            with path.open("w", encoding="utf-8") as out:
                out.write(body)
        except OSError as err:
            raise WriteError(path, err) from None
        return
    write_atomic(path.resolve(), body)


def _temp_file(suffix: str) -> Path:
    """A file for the browser to open, kept after digestd exits (the browser reads it later)."""
    try:
        fd, name = tempfile.mkstemp(prefix="digestd-preview-", suffix=suffix)
    except OSError as err:
        raise DigestdError(f"cannot create a temporary preview file: {err.strerror or err}; "
                           "pass --output FILE") from None
    os.close(fd)  # write_atomic writes it
    return Path(name)


def _user_mode() -> bool:
    return os.geteuid() != 0

