"""One `digestd run`: fetch, diff, store, queue, deliver, publish. The only place that wires
the stages together; each stage's logic lives in its own module."""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from digestd import publish
from digestd.config import Config
from digestd.deliver import FAILED, PENDING, SENT, Job, Outcome, Transport
from digestd.diff import SuspiciousResponse, diff_keyword, in_categories, latest
from digestd.fetch import FetchError, PaperSource
from digestd.lock import RunLock
from digestd.message import Envelope, build_message, message_id, sender_domain
from digestd.models import KeywordFetch, Paper, RunReport
from digestd.plan import plan, retention
from digestd.render import DigestRenderer, check_templates, count_papers, group_for_subscriber, plural
from digestd.state import Outbox, PaperStore
from digestd.templates import text_env
from digestd.tokens import check_unsubscribe_config

log = logging.getLogger(__name__)

LEDGER_FLUSH_SECONDS = 0.25  # an accepted message reaches the ledger within this (plus one write)
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
                report.messages.append(
                    f"sending {len(earlier)} digest(s) left pending by an earlier run first"
                )
                _send(cfg, store, outbox, transport, earlier, report)
        if not options.dry_run:  # earlier days' sent records leave the ledger before it grows
            outbox.prune(KEEP_LEDGER_DAYS, today.isoformat())
        papers, seq = _fetch_and_store(cfg, store, outbox, source, options, now, today, report, on_keyword)
        if report.fatal is None and not options.no_mail:
            queued = _queue(cfg, papers, seq, outbox, today, now, report, dry_run=options.dry_run)
            if mailing and queued:
                _send(cfg, store, outbox, transport, queued, report)
        if not options.no_readme and not options.dry_run:
            failed = {k.keyword for k in report.keywords if k.error}
            if report.keywords and len(failed) == len(report.keywords):
                report.messages.append("README.md left as it was: no keyword could be fetched")
            else:
                report.readme_written = _publish(cfg, store, today, failed)
        if not options.dry_run:
            outbox.prune(KEEP_LEDGER_DAYS, today.isoformat())
            outbox.flush()
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
) -> tuple[dict[str, list[tuple[int, Paper]]], int]:
    """Fetch and diff every keyword; store the result (one write) unless this is a dry run.

    Returns the papers per keyword as they now stand, and the run seq they belong to."""
    s = cfg.settings
    held_all = store.by_keyword()
    seen = store.seen_ids()
    seq = store.seq + 1
    floors = retention(cfg.subscribers, cfg.keywords, outbox.load_cursors(), outbox.pending())
    stored: dict[str, list[tuple[int, Paper]]] = {}
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
                dropped = {p.id for _, p in held if p.id not in kept}
                if dropped:
                    seen.setdefault(kw.name, {}).update(dict.fromkeys(dropped, today.isoformat()))
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
    seen = {kw: {i: d for i, d in ids.items() if d >= cutoff} for kw, ids in seen.items()}
    old_status = store.fetch_status()
    for name, st in status.items():
        if st.get("error") and name in old_status:
            status[name] = {**old_status[name], "last_attempt": st["last_attempt"], "error": st["error"]}
        status[name].pop("keyword", None)
    store.apply(seq if stored else store.seq, stored, status, seen)
    return store.by_keyword(), store.seq


def _queue(
    cfg: Config,
    papers: dict[str, list[tuple[int, Paper]]],
    seq: int,
    outbox: Outbox,
    today: date,
    now: datetime,
    report: RunReport,
    *,
    dry_run: bool,
) -> list[dict[str, Any]]:
    """Queue one pending delivery per due subscriber, with their cursors, in one atomic write."""
    cursors = outbox.load_cursors()
    if dry_run:
        cursors = copy.deepcopy(cursors)
    start = max(seq - 1, 0) if any(k.new for k in report.keywords) else seq
    planned = plan(
        cfg.subscribers,
        cfg.keywords,
        papers,
        cursors,
        seq=seq,
        start_seq=start,
        today=today,
        weekly_day=cfg.settings.weekly_day,
    )
    # Forget people no longer subscribed, so one who subscribes again starts afresh: no
    # backlog from an old cursor, no pause left over from an old address's bounces.
    current = {sub.email.lower() for sub in cfg.subscribers}
    for email in [e for e in cursors if e not in current]:
        del cursors[email]
    created = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    docs: list[dict[str, Any]] = [
        {
            "email": p.email,
            "name": p.name,
            "run": seq,
            "date": today.isoformat(),
            "created": created,
            "papers": p.papers,
            "message_id": message_id(cfg.sender, p.email, seq, today.isoformat()),
            "status": PENDING,
            "error": None,
        }
        for p in planned
    ]
    if dry_run:
        for d in docs:
            n = len({pid for ids in d["papers"].values() for pid in ids})
            report.messages.append(f"would mail {d['email']}: {plural(n, 'new paper')}")
        report.would_mail = len(docs)
        return []
    ids = outbox.add_deliveries(docs)
    outbox.save_cursors(cursors)
    outbox.flush()  # the outbox write: pending deliveries and cursors together
    for doc, doc_id in zip(docs, ids, strict=True):
        doc["_id"] = doc_id
    return docs


def _send(
    cfg: Config,
    store: PaperStore,
    outbox: Outbox,
    transport: Transport,
    deliveries: list[dict[str, Any]],
    report: RunReport,
) -> None:
    by_kw = {kw: {p.id: p for _, p in items} for kw, items in store.by_keyword().items()}
    renderers: dict[str, DigestRenderer] = {}
    cursors = outbox.load_cursors()
    by_key = {d["_id"]: d for d in deliveries}
    s = cfg.settings

    list_id = f"{s.list_name} <daily-papers.{sender_domain(cfg.sender)}>"

    def renderer(day: str) -> DigestRenderer:
        if day not in renderers:
            renderers[day] = DigestRenderer(
                cfg.paths.templates,
                date=day,
                list_name=s.list_name,
                sender=cfg.sender,
                full_abstracts=s.full_abstracts,
                public_url=s.public_url,
                secret=cfg.secret,
            )
        return renderers[day]

    def envelope(d: dict[str, Any]) -> Envelope | None:
        additions = {
            kw: [by_kw[kw][i] for i in ids if i in by_kw.get(kw, {})] for kw, ids in d["papers"].items()
        }
        order = [k.name for k in cfg.keywords] + [kw for kw in additions if cfg.keyword(kw) is None]
        sections = group_for_subscriber(order, additions)
        if not sections:
            return None
        r = renderer(d["date"])
        text, html = r.render(d["email"], sections)
        url = r.unsubscribe_url(d["email"])
        return build_message(
            sender=cfg.sender,
            to_email=d["email"],
            to_name=d.get("name"),
            subject=f"{s.list_name} {d['date']}: {plural(count_papers(sections), 'new paper')}",
            when=datetime.fromisoformat(d["created"].replace("Z", "+00:00")),
            msg_id=d["message_id"],
            list_id=list_id,
            unsubscribe_url=r.list_unsubscribe(d["email"]),  # one-click https first, then mailto:
            one_click=url.startswith("http"),
            text=text,
            html=html,
        )

    subscribed = {sub.email.lower() for sub in cfg.subscribers}

    async def jobs() -> AsyncIterator[Job]:
        for d in deliveries:
            if d["email"].lower() not in subscribed:  # unsubscribed (or removed) since it was queued
                on_outcome(
                    Job(d["_id"], Envelope("", d["email"], b"", d["message_id"])),
                    Outcome(FAILED, "no longer a subscriber"),
                )
                continue
            env = envelope(d)
            if env is None:
                on_outcome(
                    Job(d["_id"], Envelope("", d["email"], b"", d["message_id"])),
                    Outcome(FAILED, "its papers are no longer in the state"),
                )
                continue
            yield Job(d["_id"], env)
            await asyncio.sleep(0)

    sent_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")

    def on_outcome(job: Job, outcome: Outcome) -> None:
        d = by_key[job.key]
        cur = cursors.setdefault(d["email"].lower(), {})
        if outcome.status == SENT:
            outbox.mark(job.key, status=SENT, sent_at=sent_at, error=None)
            report.sent += 1
            if cur.get("fail_streak"):
                cur["fail_streak"] = 0
        elif outcome.status == FAILED:
            outbox.mark(job.key, status=FAILED, error=outcome.detail)
            report.failed += 1
            cur["fail_streak"] = int(cur.get("fail_streak", 0)) + 1
            if cur["fail_streak"] >= s.pause_after_failures and not cur.get("paused"):
                cur["paused"] = f"paused after {cur['fail_streak']} permanent failures: {outcome.detail}"
                report.messages.append(
                    f"paused {d['email']}: {cur['fail_streak']} permanent failures in a row"
                )
        else:
            outbox.mark(job.key, status=PENDING, error=outcome.detail)
            report.pending += 1
        outbox.maybe_flush(LEDGER_FLUSH_SECONDS)

    async def deliver() -> None:
        # A timer flushes the ledger too, not only the next outcome: while every worker waits
        # (retry backoff, a slow server) an acceptance must still reach the disk at once.
        async def tick() -> None:
            while True:
                await asyncio.sleep(LEDGER_FLUSH_SECONDS / 5)
                outbox.maybe_flush(LEDGER_FLUSH_SECONDS)

        ticker = asyncio.create_task(tick())
        try:
            await transport.deliver(jobs(), on_outcome)
        finally:
            ticker.cancel()

    asyncio.run(deliver())
    outbox.save_cursors(cursors)
    outbox.flush()
    fatal = getattr(transport, "fatal", None)
    if fatal:
        report.fatal = fatal
    unreachable = getattr(transport, "unreachable", None)
    if unreachable and unreachable not in report.messages:
        report.messages.append(unreachable)


def readme_sections(
    cfg: Config, papers: Mapping[str, list[tuple[int, Paper]]]
) -> list[tuple[str, list[Paper]]]:
    return [(k.name, latest(papers.get(k.name, []), cfg.settings.readme_rows)) for k in cfg.keywords]


def _publish(cfg: Config, store: PaperStore, today: date, failed: set[str]) -> bool:
    existing = cfg.paths.readme.read_text(encoding="utf-8") if cfg.paths.readme.exists() else None
    header = text_env(cfg.paths.templates).get_template("readme_header.md.j2")
    text = publish.render_readme(
        header,
        today.isoformat(),
        readme_sections(cfg, store.by_keyword()),
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
