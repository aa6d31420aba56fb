"""One `digestd run`, top to bottom: collect, queue, send, publish. Each stage lives in
digestd/stages/ and hands the next what it returns; the state is written at the commit points
(the papers after collecting, the deliveries with the cursors when queueing, each outcome as
it comes, the summary at the end)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from digestd.config import edit as subscriptions
from digestd.config.settings import Config
from digestd.core.models import KeywordFetch, RunReport
from digestd.core.records import KeywordRun, RunOutcome, RunSummary
from digestd.core.tokens import check_unsubscribe_config
from digestd.mail.transport import Transport
from digestd.ops import alerts
from digestd.render.digest import check_templates
from digestd.source.arxiv import PaperSource
from digestd.stages import bounces, collect, follow, publish, queue, send, site
from digestd.store import atomic, suppressions
from digestd.store.lock import RunLock
from digestd.store.outbox import Outbox
from digestd.store.papers import PaperStore

KEEP_LEDGER_DAYS = 14  # failed deliveries and the sent/ archive are kept this long


@dataclass(frozen=True, slots=True)
class RunOptions:
    dry_run: bool = False  # fetch and plan, change nothing, mail nobody
    no_mail: bool = False  # store and publish; the papers are mailed by the next normal run
    no_readme: bool = False


def run_date(cfg: Config, now: datetime) -> date:
    """The run's date in settings.timezone (local time when unset)."""
    return now.astimezone(cfg.tz).date() if cfg.tz else now.astimezone().date()


def run(
    cfg: Config,
    *,
    source: PaperSource,
    transport: Transport,
    options: RunOptions = RunOptions(),
    now: datetime | None = None,
    on_keyword: Callable[[KeywordFetch], None] | None = None,
) -> RunReport:
    """One run under the instance lock (a dry run takes none: it writes nothing)."""
    now = now or datetime.now(UTC)
    if not options.no_mail:
        check_unsubscribe_config(cfg.settings.public_url, cfg.secret)
        check_templates(cfg.paths.templates, date=run_date(cfg, now).isoformat(),
                        list_name=cfg.settings.list_name, sender=cfg.sender)
        send.check(cfg, run_date(cfg, now).isoformat())
        bounces.check_config(cfg)
    if options.dry_run:
        return _run(cfg, source, transport, options, now, on_keyword)
    if not options.no_readme:
        publish.check(cfg)
    with RunLock(cfg.paths.lock):
        _sweep(cfg)
        return _run(cfg, source, transport, options, now, on_keyword)


def _run(
    cfg: Config,
    source: PaperSource,
    transport: Transport,
    options: RunOptions,
    now: datetime,
    on_keyword: Callable[[KeywordFetch], None] | None,
) -> RunReport:
    today = run_date(cfg, now)
    report = RunReport(date=today.isoformat(), dry_run=options.dry_run, mail_target=transport.describe())
    writing, mailing = not options.dry_run, not options.no_mail and not options.dry_run
    store = PaperStore(cfg.paths.papers_db, read_only=not writing)
    outbox = Outbox(cfg.paths.outbox_db, read_only=not writing)
    try:
        if writing:  # bounces first: an address that died since the last run is not mailed again
            suppressions.check_whole(cfg.paths.suppressions_db)
            report.messages.extend(bounces.before_run(cfg, now))
        cursors = outbox.load_cursors()
        if mailing and (earlier := outbox.pending()):  # what an earlier run left goes first
            report.messages.append(f"sending {len(earlier)} digest(s) left pending by an earlier run")
            cursors = send.send(cfg, store.by_keyword(), outbox, transport, earlier, cursors, report)
        if writing:  # earlier days' sent records leave the ledger before it grows
            outbox.prune(KEEP_LEDGER_DAYS, today.isoformat())
        got = collect.collect(cfg, store, outbox, cursors, source, options.dry_run, now, today, report,
                              on_keyword)
        if report.fatal is None and not options.no_mail:
            follow.refresh_interests(cfg, source, dry_run=options.dry_run)  # once per interest paper
            queued, cursors = queue.queue(cfg, got.papers, got.seq, outbox, cursors, store.history(), today,
                                          now, report, dry_run=options.dry_run)
            if mailing and queued:
                send.send(cfg, got.papers, outbox, transport, queued, cursors, report)
        failed = {k.keyword for k in report.keywords if k.error}
        if writing and not options.no_readme:
            if report.keywords and len(failed) == len(report.keywords):
                report.messages.append("README.md left as it was: no keyword could be fetched")
            else:
                report.readme_written = publish.publish(cfg, got.papers, today, failed)
        if writing:  # the day's page and the feeds (only a run that stored papers adds a day)
            site.publish(cfg, got.papers, got.seq, today, report)
        if writing:
            outbox.commit()
            store.record_run(summary(report, now, written_to=None if cfg.smtp else report.mail_target))
            alerts.after_run(cfg, report, outbox.pending(), transport if mailing else None, now, today)
        return report
    finally:
        outbox.close()
        store.close()


def _sweep(cfg: Config) -> None:
    """Temp files a killed write left behind (under the run lock, so none is being written)."""
    for tmp in [*cfg.paths.state_dir.glob(".*.tmp"), *cfg.paths.state_dir.glob("sent/.*.tmp")]:
        tmp.unlink(missing_ok=True)
    atomic.sweep_leftovers(cfg.paths.readme)  # only runs write README.md
    stale = time.time() - 36 * 3600  # the Maildir convention for files left in tmp/
    for tmp in (cfg.paths.maildir / "tmp").glob("*"):
        with contextlib.suppress(OSError):
            if tmp.is_file() and tmp.stat().st_mtime < stale:
                tmp.unlink()
    subscriptions.sweep_leftovers(cfg.paths.home)  # takes the edit lock; skips if an edit runs


def summary(report: RunReport, now: datetime, *, written_to: str | None = None) -> RunSummary:
    """`written_to`: where the digests went when no SMTP server is set (so none was sent)."""
    outcome = RunOutcome.FAILED if report.fatal else RunOutcome.PARTIAL if report.partial else RunOutcome.OK
    return RunSummary(
        time=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        date=report.date,
        outcome=outcome,
        sent=report.sent,
        pending=report.pending,
        failed=report.failed,
        keywords={k.keyword: KeywordRun(k.fetched, len(k.new), k.error) for k in report.keywords},
        fatal=report.fatal,
        written_to=written_to,
    )
