"""One `digestd run`: fetch, diff, store, queue, deliver, publish. The only place that wires
the stages together; each stage's logic lives in its own module."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from digestd.config import edit as subscriptions
from digestd.config.load import Config
from digestd.core.diff import SuspiciousResponse, diff_keyword, in_categories, latest
from digestd.core.models import KeywordFetch, Paper, RunReport
from digestd.core.pause import after_outcome
from digestd.core.plan import plan, retention
from digestd.core.records import Cursor, Delivery, DeliveryStatus, Dropped
from digestd.core.tokens import check_unsubscribe_config
from digestd.errors import StateError
from digestd.mail.message import Envelope, build_message, message_id
from digestd.mail.transport import Job, Outcome, Transport
from digestd.render import readme as publish
from digestd.render.digest import (
    DigestRenderer,
    check_templates,
    count_papers,
    group_for_subscriber,
    plural,
)
from digestd.render.templates import text_env
from digestd.source.arxiv import FetchError, PaperSource
from digestd.store import atomic
from digestd.store.lock import RunLock
from digestd.store.state import Held, Outbox, PaperStore

log = logging.getLogger(__name__)

KEEP_LEDGER_DAYS = 14
KEEP_SEEN_DAYS = 400


@dataclass(frozen=True, slots=True)
class RunOptions:
    dry_run: bool = False
    no_mail: bool = False
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
    now = now or datetime.now(UTC)
    if not options.no_mail:
        check_unsubscribe_config(cfg.settings.public_url, cfg.secret)
    today = run_date(cfg, now)
    report = RunReport(date=today.isoformat(), dry_run=options.dry_run, mail_target=transport.describe())
    if options.dry_run:
        return _run_locked(cfg, source, transport, options, now, today, report, on_keyword)
    with RunLock(cfg.paths.lock):
        return _run_locked(cfg, source, transport, options, now, today, report, on_keyword)


def _run_locked(
    cfg: Config,
    source: PaperSource,
    transport: Transport,
    options: RunOptions,
    now: datetime,
    today: date,
    report: RunReport,
    on_keyword: Callable[[KeywordFetch], None] | None,
) -> RunReport:
    if not options.dry_run:  # temp files a killed write left behind (we hold the lock)
        for tmp in cfg.paths.state_dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        atomic.sweep_leftovers(cfg.paths.readme)  # only runs write README.md, under the run lock
        subscriptions.sweep_leftovers(cfg.paths.home)  # takes the edit lock; skips if an edit runs
    if not options.no_mail:
        check_templates(
            cfg.paths.templates, date=today.isoformat(), list_name=cfg.settings.list_name, sender=cfg.sender
        )
    store = PaperStore(cfg.paths.papers_db, read_only=options.dry_run)
    outbox = Outbox(cfg.paths.outbox_db, read_only=options.dry_run)
    try:
        mailing = not options.no_mail and not options.dry_run
        if mailing:
            earlier = outbox.pending()
            if earlier:
                report.messages.append(f"sending {len(earlier)} digest(s) left pending by an earlier run")
                _send(cfg, store.by_keyword(), outbox, transport, earlier, report)
        if not options.dry_run:  # earlier days' sent records leave the ledger before it grows
            outbox.prune(KEEP_LEDGER_DAYS, today.isoformat())
        papers, seq = _fetch_and_store(cfg, store, outbox, source, options, now, today, report, on_keyword)
        if report.fatal is None and not options.no_mail:
            queued = _queue(
                cfg, papers, seq, outbox, store.history(), today, now, report, dry_run=options.dry_run
            )
            if mailing and queued:
                _send(cfg, papers, outbox, transport, queued, report)
        if not options.no_readme and not options.dry_run:
            failed = {k.keyword for k in report.keywords if k.error}
            if report.keywords and len(failed) == len(report.keywords):
                report.messages.append("README.md left as it was: no keyword could be fetched")
            else:
                report.readme_written = _publish(cfg, papers, today, failed)
        if not options.dry_run:
            outbox.commit()
            store.record_run(_summary(report, now))
        return report
    finally:
        outbox.close()
        store.close()


def _fetch_and_store(
    cfg: Config,
    store: PaperStore,
    outbox: Outbox,
    source: PaperSource,
    options: RunOptions,
    now: datetime,
    today: date,
    report: RunReport,
    on_keyword: Callable[[KeywordFetch], None] | None,
) -> tuple[Held, int]:
    """Fetch and diff every keyword; store the result (one write) unless this is a dry run.

    Returns the papers per keyword as they now stand, and the run seq they belong to."""
    s = cfg.settings
    held_all = store.by_keyword()
    seen = store.seen_ids()
    seq = store.seq + 1
    floors = retention(cfg.subscribers, cfg.keywords, outbox.load_cursors(), outbox.pending())
    stored: Held = {}
    status: dict[str, dict[str, Any]] = {}
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for kw in cfg.keywords:
        held = held_all.get(kw.name, [])
        try:
            fetched = source.fetch(kw, s.max_results)
            if not fetched and held:
                raise FetchError("arXiv returned an empty page for a keyword that has papers")
            fetched = in_categories(fetched, kw)  # after the check: a filtered-out day is no error
            low, pend_ids = floors.get(kw.name, (1 << 60, set()))
            keep = frozenset(pend_ids | {p.id for q, p in held if q > low})
            result = diff_keyword(
                held,
                fetched,
                seq=seq,
                max_results=s.max_results,
                stale_margin_days=s.stale_margin_days,
                keep_ids=keep,
                known_ids=frozenset(seen.get(kw.name, {})),
            )
        except (FetchError, SuspiciousResponse) as err:
            kf = KeywordFetch(kw.name, error=str(err))
            status[kw.name] = {"last_attempt": stamp, "error": str(err)}
        else:
            kf = KeywordFetch(
                kw.name,
                fetched=len(fetched),
                new=result.additions,
                baseline=result.baseline and bool(fetched),
            )
            if fetched:
                stored[kw.name] = result.stored
                kept = {p.id for _, p in result.stored}
                gone = {p.id: Dropped(today.isoformat(), q) for q, p in held if p.id not in kept}
                seen.setdefault(kw.name, {}).update(gone)
            status[kw.name] = {
                "last_attempt": stamp,
                "last_success": stamp,
                "fetched": len(fetched),
                "new": len(result.additions),
                "error": None,
            }
        report.keywords.append(kf)
        if on_keyword:
            on_keyword(kf)
    if options.dry_run:
        return {**held_all, **stored}, seq
    cutoff = date.fromordinal(today.toordinal() - KEEP_SEEN_DAYS).isoformat()
    seen = {kw: {i: d for i, d in ids.items() if d.day >= cutoff} for kw, ids in seen.items()}
    old_status = store.fetch_status()
    for name, st in status.items():
        if st.get("error") and name in old_status:
            status[name] = {**old_status[name], "last_attempt": st["last_attempt"], "error": st["error"]}
        status[name].pop("keyword", None)
    store.apply(seq if stored else store.seq, stored, status, seen)
    return store.by_keyword(), store.seq


def _queue(
    cfg: Config,
    papers: Held,
    seq: int,
    outbox: Outbox,
    history: Mapping[str, Mapping[str, int]],
    today: date,
    now: datetime,
    report: RunReport,
    *,
    dry_run: bool,
) -> list[Delivery]:
    """Queue one pending delivery per due subscriber, with their cursors, in one atomic write."""
    start = max(seq - 1, 0) if any(k.new for k in report.keywords) else seq
    planned, cursors = plan(
        cfg.subscribers,
        cfg.keywords,
        papers,
        outbox.load_cursors(),
        seq=seq,
        start_seq=start,
        today=today,
        weekly_day=cfg.settings.weekly_day,
        history=history,
    )
    created = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    iso = today.isoformat()
    deliveries = [
        Delivery(
            key=0,
            email=p.email,
            name=p.name,
            run=seq,
            date=iso,
            created=created,
            papers={kw: tuple(ids) for kw, ids in p.papers.items()},
            message_id=message_id(cfg.sender, p.email, seq, iso),
            status=DeliveryStatus.PENDING,
        )
        for p in planned
    ]
    if dry_run:
        for d in deliveries:
            n = len({pid for ids in d.papers.values() for pid in ids})
            report.messages.append(f"would mail {d.email}: {plural(n, 'new paper')}")
        report.would_mail = len(deliveries)
        return []
    queued = outbox.add_deliveries(deliveries)
    outbox.save_cursors(cursors)
    outbox.commit()  # the outbox write: pending deliveries and cursors together
    return queued


class GroupCommit:
    """Outcomes become durable in batches: while one journal append and fsync runs (in a
    thread), the outcomes that arrive wait for the next one. A sender awaits `durable()`
    after each outcome, so at most one acceptance per connection is ever not on disk."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.waiters: list[asyncio.Future[None]] = []
        self.task: asyncio.Task[None] | None = None

    async def durable(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        await fut

    async def _run(self) -> None:
        while self.waiters:
            waiters, self.waiters = self.waiters, []
            try:
                await asyncio.to_thread(self.outbox.append, self.outbox.take())
            except OSError as err:
                failure = StateError(
                    f"cannot record sent digests in {self.outbox.journal}: {err.strerror or err}; "
                    "sending stopped so that nothing is sent twice (free space and run again)"
                )
                for w in waiters + self.waiters:
                    w.set_exception(failure)
                self.waiters = []
                return
            for w in waiters:
                w.set_result(None)


def _send(
    cfg: Config,
    held: Held,
    outbox: Outbox,
    transport: Transport,
    deliveries: Sequence[Delivery],
    report: RunReport,
) -> None:
    """Send `deliveries`; each outcome is recorded (and made durable) before its connection
    takes the next one. One digest that cannot be built fails alone."""
    by_kw = {kw: {p.id: p for _, p in items} for kw, items in held.items()}
    digests = DigestBuilder(cfg)
    by_key = {d.key: d for d in deliveries}
    cursors = outbox.load_cursors()
    subscribed = {sub.email.lower() for sub in cfg.subscribers}
    sent_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")
    commits = GroupCommit(outbox)

    async def on_outcome(job: Job, outcome: Outcome) -> None:
        d = by_key[job.key]
        resends = 1 if d.status is DeliveryStatus.UNKNOWN else None
        key = d.email.lower()
        cur = cursors.get(key, Cursor())
        outbox.mark(
            job.key,
            outcome.status,
            error=outcome.detail or None if outcome.status is not DeliveryStatus.SENT else None,
            sent_at=sent_at if outcome.status is DeliveryStatus.SENT else None,
            resends=resends,
        )
        if outcome.status is DeliveryStatus.SENT:
            report.sent += 1
        elif outcome.status is DeliveryStatus.FAILED:
            report.failed += 1
        elif outcome.status is DeliveryStatus.UNKNOWN:
            report.unknown += 1
        else:
            report.pending += 1
        pause_after = cfg.settings.pause_after_failures
        cursors[key], note = after_outcome(cur, outcome.status, outcome.detail, pause_after)
        if note:
            report.messages.append(f"paused {d.email}: {note}")
        await commits.durable()

    async def jobs() -> AsyncIterator[Job]:
        for d in deliveries:
            if d.email.lower() not in subscribed:  # unsubscribed (or removed) since it was queued
                await on_outcome(_no_job(d), Outcome(DeliveryStatus.FAILED, "no longer a subscriber"))
                continue
            try:
                env = digests.envelope(d, by_kw)
            except Exception as err:  # one subscriber's data never stops the run
                log.warning("cannot build the digest for %r: %s: %s", d.email, type(err).__name__, err)
                await on_outcome(
                    _no_job(d), Outcome(DeliveryStatus.FAILED, f"the digest could not be built: {err}")
                )
                continue
            if env is None:
                gone = Outcome(DeliveryStatus.FAILED, "its papers are no longer in the state")
                await on_outcome(_no_job(d), gone)
                continue
            yield Job(d.key, env)
            await asyncio.sleep(0)

    result = asyncio.run(transport.deliver(jobs(), on_outcome))
    outbox.save_cursors(cursors)
    outbox.commit()
    if result.fatal:
        report.fatal = result.fatal
    if result.unreachable and result.unreachable not in report.messages:
        report.messages.append(result.unreachable)


def _no_job(d: Delivery) -> Job:
    return Job(d.key, Envelope("", d.email, b"", d.message_id))


class DigestBuilder:
    """Builds each delivery's message; renderers are made once per digest date."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.renderers: dict[str, DigestRenderer] = {}

    def renderer(self, day: str) -> DigestRenderer:
        if day not in self.renderers:
            s = self.cfg.settings
            self.renderers[day] = DigestRenderer(
                self.cfg.paths.templates,
                date=day,
                list_name=s.list_name,
                sender=self.cfg.sender,
                full_abstracts=s.full_abstracts,
                public_url=s.public_url,
                secret=self.cfg.secret,
            )
        return self.renderers[day]

    def envelope(self, d: Delivery, by_kw: Mapping[str, Mapping[str, Paper]]) -> Envelope | None:
        cfg = self.cfg
        additions = {
            kw: [by_kw[kw][i] for i in ids if i in by_kw.get(kw, {})] for kw, ids in d.papers.items()
        }
        order = [k.name for k in cfg.keywords] + [kw for kw in additions if cfg.keyword(kw) is None]
        sections = group_for_subscriber(order, additions)
        if not sections:
            return None
        r = self.renderer(d.date)
        text, html = r.render(d.email, sections)
        url = r.unsubscribe_url(d.email)
        return build_message(
            sender=cfg.sender,
            to_email=d.email,
            to_name=d.name,
            subject=f"{cfg.settings.list_name} {d.date}: {plural(count_papers(sections), 'new paper')}",
            when=datetime.fromisoformat(d.created.replace("Z", "+00:00")),
            msg_id=d.message_id,
            list_name=cfg.settings.list_name,
            unsubscribe_url=r.list_unsubscribe(d.email),  # one-click https first, then mailto:
            one_click=url.startswith("http"),
            text=text,
            html=html,
        )


def readme_sections(
    cfg: Config, papers: Mapping[str, list[tuple[int, Paper]]]
) -> list[tuple[str, list[Paper]]]:
    return [(k.name, latest(papers.get(k.name, []), cfg.settings.readme_rows)) for k in cfg.keywords]


def _publish(cfg: Config, papers: Held, today: date, failed: set[str]) -> bool:
    existing = cfg.paths.readme.read_text(encoding="utf-8") if cfg.paths.readme.exists() else None
    header = text_env(cfg.paths.templates).get_template("readme_header.md.j2")
    text = publish.render_readme(
        header,
        today.isoformat(),
        readme_sections(cfg, papers),
        max_results=cfg.settings.max_results,
        existing=existing,
        failed=failed,
    )
    return publish.write_readme(cfg.paths.readme, text)


def _summary(report: RunReport, now: datetime) -> dict[str, Any]:
    outcome = "failed" if report.fatal else "partial" if report.partial else "ok"
    return {
        "time": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "date": report.date,
        "outcome": outcome,
        "sent": report.sent,
        "pending": report.pending,
        "failed": report.failed,
        "keywords": {
            k.keyword: {"fetched": k.fetched, "new": len(k.new), "error": k.error} for k in report.keywords
        },
        "fatal": report.fatal,
    }
