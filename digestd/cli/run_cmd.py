"""`digestd run`: the pipeline, its summary, and its exit code."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer

from digestd.cli.context import cli_context
from digestd.cli.progress import FetchProgress, ProgressTransport, Screen
from digestd.config.apart import load_config_apart
from digestd.core.models import KeywordFetch, RunReport
from digestd.errors import ExitCode, SmtpFatalError
from digestd.mail.transport import make_transport
from digestd.ops import heap
from digestd.pipeline import RunOptions, run
from digestd.source.arxiv import ArxivSource

log = logging.getLogger("digestd")


def exit_code(report: RunReport) -> ExitCode:
    """0 done; 1 a person must fix something (SMTP login/TLS); 75 partly done, retried next run."""
    if report.fatal:
        return ExitCode.ERROR
    return ExitCode.TEMPFAIL if report.partial else ExitCode.OK


def keyword_line(k: KeywordFetch) -> str:
    if k.error:
        return f"{k.keyword}: FAILED, kept as it was: {k.error}"
    if k.baseline:
        return f"{k.keyword}: fetched {k.fetched}, baseline stored (nothing mailed for a new keyword)"
    return f"{k.keyword}: fetched {k.fetched}, {len(k.new)} new"


def summary_line(report: RunReport, *, to_maildir: bool = False) -> str:
    """`to_maildir`: no SMTP server is set, so "sent" would be untrue: the digests were written."""
    failed_kw = sum(1 for k in report.keywords if k.error)
    new = sum(len(k.new) for k in report.keywords)
    verb, digests = ("would mail", report.would_mail) if report.dry_run else ("sent", report.sent)
    where = ""
    if to_maildir and not report.dry_run:
        verb = "wrote"
        where = f" to {report.mail_target}, not sent (no SMTP server is set: see DIGESTD_SMTP_HOST)"
    tail = "" if report.dry_run else f", {report.pending} pending, {report.failed} failed"
    if report.unknown and not report.dry_run:  # else a run that exits 75 says 0, 0 and 0
        tail += f", {report.unknown} unknown (no reply after the final '.': see digestd status)"
    return (
        f"{'dry run' if report.dry_run else 'run'} {report.date}: {len(report.keywords)} keyword(s), "
        f"{failed_kw} failed, {new} new paper(s); {verb} {digests} digest(s){where}{tail}"
    )


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_command(
        ctx: typer.Context,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Write nothing; print what would be mailed.")
        ] = False,
        no_mail: Annotated[
            bool,
            typer.Option(
                "--no-mail", help="Store papers and write the README; mail nothing (it goes out next run)."
            ),
        ] = False,
        no_readme: Annotated[bool, typer.Option("--no-readme", help="Do not rewrite README.md.")] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    ) -> None:
        """Fetch, diff, mail and publish once (what the systemd timer runs)."""
        home = cli_context(ctx).home
        heap.return_large_buffers()  # a run's 70 KB message buffers go back to the system
        cfg = load_config_apart(home)  # a large file in a child: its parse leaves no heap here
        source = ArxivSource(
            cfg.arxiv_url, delay=cfg.arxiv_delay, timeout=cfg.arxiv_timeout, max_bytes=cfg.arxiv_max_bytes
        )
        transport = make_transport(
            cfg.smtp,
            cfg.paths.maildir,
            connections=cfg.settings.connections,
            max_rate=cfg.settings.max_rate,
        )
        if not cfg.keywords:
            log.warning(
                "no keywords configured in %s: add one with `digestd keywords add`", cfg.paths.subscribers
            )
        on_tty = sys.stderr.isatty() and not as_json
        screen = Screen(sys.stderr) if on_tty else None
        progress = FetchProgress(screen, len(cfg.keywords), keyword_line) if screen else None
        if screen and progress:
            transport = ProgressTransport(transport, screen)
            progress.start()

        def on_keyword(k: KeywordFetch) -> None:
            if progress:
                progress.step(k)
            else:
                (log.warning if k.error else log.info)(keyword_line(k))

        try:
            report = run(
                cfg,
                source=source,
                transport=transport,
                options=RunOptions(dry_run=dry_run, no_mail=no_mail, no_readme=no_readme),
                on_keyword=on_keyword,
            )
        finally:  # an error is then printed on a clean line
            if screen:
                screen.clear()
        if as_json:
            typer.echo(json.dumps(_as_dict(report), indent=2))
        else:
            for m in report.messages:
                log.info("%s", m)
            handed = report.sent or report.pending or report.failed or report.unknown
            if not no_mail and not dry_run and handed:
                log.info("mail: %s", report.mail_target)
            if first_run(report):
                log.info("first run: stored the baseline (the papers arXiv lists now) and mailed nothing; "
                         "digests start with the papers that are new on the next run")
            log.info("%s", summary_line(report, to_maildir=cfg.smtp is None))
        if report.fatal:
            raise SmtpFatalError(report.fatal + "; the digests stay pending for the next run")
        code = exit_code(report)
        if code:
            raise typer.Exit(int(code))


def first_run(report: RunReport) -> bool:
    """Every keyword fetched stored its baseline (nothing before it to compare with)."""
    fetched = [k for k in report.keywords if not k.error]
    return bool(fetched) and all(k.baseline for k in fetched) and not report.dry_run


def _as_dict(report: RunReport) -> dict[str, object]:
    return {
        "date": report.date,
        "dry_run": report.dry_run,
        "keywords": [
            {
                "keyword": k.keyword,
                "fetched": k.fetched,
                "new": list(k.new),
                "baseline": k.baseline,
                "error": k.error,
            }
            for k in report.keywords
        ],
        "sent": report.sent,
        "pending": report.pending,
        "failed": report.failed,
        "would_mail": report.would_mail,
        "readme_written": report.readme_written,
        "mail_target": report.mail_target,
        "messages": report.messages,
        "exit_code": int(exit_code(report)),
    }
