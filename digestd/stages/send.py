"""Stage 3: build and send the queued digests; record each outcome durably as it comes.

A connection sends its next message only after the previous acceptance is on disk, so a
kill repeats at most one digest per connection. One digest that cannot be built fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from digestd.config.settings import Config
from digestd.core.models import Frequency, Paper, RunReport, email_key
from digestd.core.morelike import more_like_links
from digestd.core.pause import after_outcome
from digestd.core.records import Cursor, Delivery, DeliveryStatus
from digestd.errors import ConfigError, DigestdError, MessageError, StateError
from digestd.mail.message import Envelope, build_message, message_id
from digestd.mail.transport import Job, Outcome, Transport
from digestd.mail.verp import verp_sender
from digestd.render.digest import DigestRenderer, Entry, count_new_updated, group_for_subscriber
from digestd.render.subject import period_label, subject_line
from digestd.site.days import keyword_order, slugs
from digestd.stages.builder import built
from digestd.store.archive import ArchiveEntry, ArchiveStore
from digestd.store.outbox import Outbox
from digestd.store.papers import Held
from digestd.store.suppressions import blocked

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
            except StateError as failure:  # the journal cannot be written or keep its room
                for w in waiters:  # those that came meanwhile get their own try: the room may hold them
                    w.set_exception(failure)
                continue
            for w in waiters:
                w.set_result(None)


def send(
    cfg: Config,
    held: Held,
    outbox: Outbox,
    transport: Transport,
    deliveries: Sequence[Delivery],
    cursors: dict[str, Cursor],
    report: RunReport,
) -> dict[str, Cursor]:
    """Send `deliveries`; each outcome is recorded (and made durable) before its connection
    takes the next one. One digest that cannot be built fails alone. `cursors` (the saved
    ones) are updated in place as the outcomes leave them (failure streaks, pauses), saved
    if an outcome changed one, and returned: rebuilding or copying 100,000 unchanged ones was
    the run's memory peak."""
    by_kw = {kw: {p.id: p for _, p in items} for kw, items in held.items()}
    digests = DigestBuilder(cfg)
    suppressed = blocked(cfg.paths.suppressions_db, [d.email for d in deliveries])
    subscribed = {email_key(sub.email) for sub in cfg.subscribers}
    refused: list[tuple[Delivery, str]] = []  # unsubscribed or suppressed since it was queued
    buildable: list[Delivery] = []
    for d in deliveries:
        if email_key(d.email) not in subscribed:
            refused.append((d, "no longer a subscriber"))
        elif email_key(d.email) in suppressed:  # bounced or complained since it was queued
            refused.append((d, "suppressed: see `digestd subscribers list`"))
        else:
            buildable.append(d)
    del subscribed, suppressed  # 100,000 entries each, not needed while sending
    inflight: dict[int, Delivery] = {}  # the deliveries handed to the transport, until their outcome
    sent_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M")
    outbox.reserve()  # a disk too full to record outcomes stops the run before the first message
    commits = GroupCommit(outbox)
    changed = False  # whether an outcome changed a cursor (a failure streak, a pause)

    async def on_outcome(job: Job, outcome: Outcome) -> None:
        nonlocal changed
        d = inflight.pop(job.key)
        resends = 1 if d.status is DeliveryStatus.UNKNOWN else None
        key = email_key(d.email)
        had = key in cursors
        cur = cursors.get(key, Cursor())
        outbox.mark(
            job.key,
            outcome.status,
            error=outcome.detail or None if outcome.status is not DeliveryStatus.SENT else None,
            sent_at=sent_at if outcome.status is DeliveryStatus.SENT else None,
            resends=resends,
            attempts=d.attempts + 1,
            # not read for a sent one (Outbox.mark keeps none): no clock for 100,000 of them
            last_attempt=None if outcome.status is DeliveryStatus.SENT else datetime.now(UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"),
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
        cursors[key], note = after_outcome(cur, outcome.status, outcome.detail, pause_after, sent_at[:10])
        changed = changed or cursors[key] is not cur or not had
        if note:
            report.messages.append(f"paused {d.email}: {note}")
        await commits.durable()

    async def fail(d: Delivery, why: str) -> None:
        inflight[d.key] = d
        await on_outcome(_no_job(d), Outcome(DeliveryStatus.FAILED, why))

    async def jobs() -> AsyncIterator[Job]:
        for d, why in refused:
            await fail(d, why)
        async for d, env in built(lambda d: digests.envelope(d, by_kw), buildable):
            if isinstance(env, str):  # one subscriber's data never stops the run
                await fail(d, env)
                continue
            if env is None:
                await fail(d, "its papers are no longer in the state")
                continue
            inflight[d.key] = d
            yield Job(d.key, env)
            await asyncio.sleep(0)

    result = asyncio.run(transport.deliver(jobs(), on_outcome))
    if changed:
        outbox.save_cursors(cursors)
    outbox.commit()
    if result.fatal:
        report.fatal = result.fatal
    if result.unreachable and result.unreachable not in report.messages:
        report.messages.append(result.unreachable)
    return cursors


def _no_job(d: Delivery) -> Job:
    return Job(d.key, Envelope("", d.email, b"", d.message_id))


class DigestBuilder:
    """Builds each delivery's message; renderers are made once per digest date."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.renderers: dict[str, DigestRenderer] = {}
        # Each digest looks its reader up: one set (of the weekly ones), not a scan of every
        # subscriber per digest.
        self.weekly = {email_key(x.email) for x in cfg.subscribers if x.frequency is Frequency.WEEKLY}
        self._site: tuple[dict[str, str], dict[tuple[str, str], str]] | None = None

    def site(self) -> tuple[dict[str, str], dict[tuple[str, str], str]]:
        """The site's keyword slugs and each archived paper's day (issue "Archive"), so a
        digest's "more" links the card where the site has it; papers of this run are not
        archived yet and go to the digest's day. Read once, only with public_url."""
        if self._site is None:
            configured = [k.name for k in self.cfg.keywords]
            entries: list[ArchiveEntry] = []
            if self.cfg.settings.public_url and self.cfg.paths.archive_db.exists():
                try:
                    store = ArchiveStore(self.cfg.paths.archive_db, read_only=True)
                    try:
                        entries = store.entries()
                    finally:
                        store.close()
                except DigestdError as err:  # the site stage names it; links go to the digest's day
                    log.warning("the archive cannot be read for the digest's links: %s", err)
            days = {(e.keyword, e.paper.id): e.day for e in entries}
            self._site = (slugs(keyword_order(configured, entries)), days)
        return self._site

    def renderer(self, day: str) -> DigestRenderer:
        if day not in self.renderers:
            s = self.cfg.settings
            names, days = self.site()
            self.renderers[day] = DigestRenderer(
                self.cfg.paths.templates,
                date=day,
                list_name=s.list_name,
                sender=self.cfg.sender,
                full_abstracts=s.full_abstracts,
                public_url=s.public_url,
                secret=self.cfg.secret,
                slugs=names,
                paper_days=days,
                highlights={k.name: k.highlight for k in self.cfg.keywords},
            )
        return self.renderers[day]

    def personal(self, d: Delivery, sections: list[tuple[str, list[Entry]]]) -> list[tuple[str, list[Entry]]]:
        """This reader's marks (issue "Follow"): "For you" and a signed "more like this" link."""
        url, secret = self.cfg.settings.public_url, self.cfg.secret
        mine = set(d.for_you)

        link = more_like_links(url, secret, d.email) if url and secret else None

        def like(paper_id: str) -> str | None:
            return link(paper_id) if link else None

        return [(kw, [replace(e, for_you=e.paper.id in mine, more_like=like(e.paper.id)) for e in entries])
                for kw, entries in sections]

    def envelope(self, d: Delivery, by_kw: Mapping[str, Mapping[str, Paper]]) -> Envelope | None:
        cfg = self.cfg
        additions = {
            kw: [by_kw[kw][i] for i in ids if i in by_kw.get(kw, {})] for kw, ids in d.papers.items()
        }
        order = [k.name for k in cfg.keywords] + [kw for kw in additions if cfg.keyword(kw) is None]
        sections = self.personal(d, group_for_subscriber(order, additions))
        if not sections:
            return None
        period = period_label(d.date, email_key(d.email) in self.weekly)
        text, html = self.renderer(d.date).render(d.email, sections, period=period, more_in=d.more)
        new, updated = count_new_updated(sections, d.date)
        subject = subject_line(cfg.settings.list_name, period, new, updated, [kw for kw, _ in sections])
        return self.message(d, subject, text, html)

    def message(self, d: Delivery, subject: str, text: str, html: str) -> Envelope:
        r = self.renderer(d.date)
        env = build_message(
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
        bounce_to, secret = self.cfg.settings.bounce_address, self.cfg.secret
        if bounce_to and secret:  # VERP: a bounce names the subscriber and the run
            env = replace(env, sender=verp_sender(bounce_to, secret, d.email, d.run))
        return env


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
