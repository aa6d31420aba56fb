"""Stage 3: build and send the queued digests; record each outcome durably as it comes.

A connection sends its next message only after the previous acceptance is on disk, so a
kill repeats at most one digest per connection. One digest that cannot be built fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime

from digestd.config.settings import Config
from digestd.core.models import Paper, RunReport
from digestd.core.pause import after_outcome
from digestd.core.records import Cursor, Delivery, DeliveryStatus
from digestd.errors import ConfigError, MessageError, StateError
from digestd.mail.message import Envelope, build_message, message_id
from digestd.mail.transport import Job, Outcome, Transport
from digestd.render.digest import DigestRenderer, count_papers, group_for_subscriber, plural
from digestd.store.outbox import Outbox
from digestd.store.papers import Held

log = logging.getLogger(__name__)


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
            except StateError as failure:  # the journal cannot be written: the outbox says so
                for w in waiters + self.waiters:
                    w.set_exception(failure)
                self.waiters = []
                return
            for w in waiters:
                w.set_result(None)


def send(
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
        text, html = self.renderer(d.date).render(d.email, sections)
        subject = f"{cfg.settings.list_name} {d.date}: {plural(count_papers(sections), 'new paper')}"
        return self.message(d, subject, text, html)

    def message(self, d: Delivery, subject: str, text: str, html: str) -> Envelope:
        r = self.renderer(d.date)
        return build_message(
            sender=self.cfg.sender,
            to_email=d.email,
            to_name=d.name,
            subject=subject,
            when=datetime.fromisoformat(d.created.replace("Z", "+00:00")),
            msg_id=d.message_id,
            list_name=self.cfg.settings.list_name,
            unsubscribe_url=r.list_unsubscribe(d.email),  # one-click https first, then mailto:
            one_click=r.unsubscribe_url(d.email).startswith("http"),
            text=text,
            html=html,
        )


def check(cfg: Config, today: str) -> None:
    """Before anything is queued: the instance's own settings (sender, list name, public_url)
    can be written into a message. If not, every digest would fail alike, which is a setting
    to fix (exit 2), never each subscriber's permanent failure."""
    sample = Delivery(0, "check@example.org", None, 0, today, f"{today}T00:00:00Z", {},
                      message_id("Daily Papers <check@example.org>", "check@example.org", 0, today),
                      DeliveryStatus.PENDING)
    try:
        DigestBuilder(cfg).message(sample, f"{cfg.settings.list_name} {today}: 1 new paper", "x", "<p>x</p>")
    except MessageError as err:
        raise ConfigError(
            f"the settings cannot be written into a digest's headers ({err}): check settings.from, "
            "settings.list_name and settings.public_url in subscribers.yaml"
        ) from None
