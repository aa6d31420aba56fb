"""What `digestd status` shows an operator, gathered from the state without changing it.

`gather` returns a typed Status; its `to_json` is the `status --json` contract (keys and order
unchanged) and `lines` the text an operator reads.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from digestd.config.settings import Config
from digestd.core.models import SubscriberStatus
from digestd.core.records import DeliveryStatus, FetchStatus, RunSummary
from digestd.store.outbox import Outbox
from digestd.store.papers import PaperStore

SHOWN_FAILURES = 20  # the most recent failed or unknown deliveries listed


@dataclass(frozen=True, slots=True)
class KeywordState:
    name: str
    stored: int
    baseline: bool  # nothing stored yet: the next run stores a baseline and mails nothing
    fetch: FetchStatus


@dataclass(frozen=True, slots=True)
class Counts:
    pending: int
    sent: int
    failed: int
    unknown: int


@dataclass(frozen=True, slots=True)
class Failure:
    email: str
    date: str
    status: DeliveryStatus
    error: str | None


@dataclass(frozen=True, slots=True)
class Paused:
    email: str
    reason: str


@dataclass(frozen=True, slots=True)
class Status:
    home: str
    last_run: RunSummary | None
    next_run: str | None  # when digestd.timer fires next, None without an active timer
    keywords: tuple[KeywordState, ...]
    subscribers: int
    deliveries: Counts
    failed: tuple[Failure, ...]
    paused: tuple[Paused, ...]

    def to_json(self) -> dict[str, Any]:
        """The `status --json` document (scripts read it: its keys do not change)."""
        return {
            "home": self.home,
            "last_run": self.last_run.to_doc() if self.last_run else None,
            "next_run": self.next_run,
            "keywords": [
                {
                    "name": k.name,
                    "stored": k.stored,
                    "last_success": k.fetch.last_success,
                    "last_fetched": k.fetch.fetched,
                    "last_new": k.fetch.new,
                    "error": k.fetch.error,
                    "baseline": k.baseline,
                }
                for k in self.keywords
            ],
            "subscribers": self.subscribers,
            "deliveries": {
                "pending": self.deliveries.pending,
                "sent": self.deliveries.sent,
                "failed": self.deliveries.failed,
                "unknown": self.deliveries.unknown,
            },
            "failed": [
                {"email": f.email, "date": f.date, "status": f.status.value, "error": f.error}
                for f in self.failed
            ],
            "paused": [{"email": p.email, "reason": p.reason} for p in self.paused],
        }

    def lines(self) -> list[str]:
        """The text `digestd status` prints."""
        return [
            f"instance: {self.home}",
            *_run_lines(self.last_run),
            f"next run: {self.next_run or 'no digestd.timer installed (see `digestd systemd`)'}",
            "keywords:",
            *(_keyword_line(k) for k in self.keywords),
            *self._delivery_lines(),
            *(["paused subscribers:"] if self.paused else []),
            *(f"  {p.email}: {p.reason}" for p in self.paused),
        ]

    def _delivery_lines(self) -> list[str]:
        d = self.deliveries
        lines = [f"subscribers: {self.subscribers}; deliveries: {d.pending} pending, "
                 f"{d.sent} sent on the last run's day (older ones: state/sent/), "
                 f"{d.failed} failed in the last 14 days"]
        if d.unknown:
            lines.append(f"  {d.unknown} unknown: the server never answered after the message was sent "
                         "(resent once by the next run, with the same Message-ID)")
        lines.extend(f"  {f.status.value} {f.date} {f.email}: {f.error}" for f in self.failed)
        return lines


def _run_lines(run: RunSummary | None) -> list[str]:
    if run is None:
        return ["last run: never"]
    lines = [f"last run: {run.time} ({run.date}): {run.outcome.value}, sent {run.sent}, "
             f"pending {run.pending}, failed {run.failed}"]
    if run.fatal:
        lines.append(f"  stopped: {run.fatal}")
    return lines


def _keyword_line(k: KeywordState) -> str:
    state = "baseline pending" if k.baseline else f"{k.stored} stored"
    f = k.fetch
    last = "never fetched"
    if f.last_success:
        last = f"last fetch {f.last_success}: {f.fetched} fetched, {f.new} new"
    err = f"; LAST ATTEMPT FAILED: {f.error}" if f.error else ""
    return f"  {k.name}: {state}; {last}{err}"


def gather(cfg: Config, next_timer: str | None) -> Status:
    store = PaperStore(cfg.paths.papers_db, read_only=True)
    outbox = Outbox(cfg.paths.outbox_db, read_only=True)
    try:
        held = store.by_keyword()
        fetches = {k.name: FetchStatus(k.name) for k in cfg.keywords} | store.fetch_status()
        counts: Counter[DeliveryStatus] = Counter()
        failed: list[Failure] = []
        for d in outbox.all_deliveries():
            counts[d.status] += 1
            if d.status in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN):
                failed.append(Failure(d.email, d.date, d.status, d.error))
        cursors = outbox.load_cursors()
        last_run = store.last_run()
    finally:
        outbox.close()
        store.close()
    paused = [Paused(s.email, "paused in subscribers.yaml")
              for s in cfg.subscribers if s.status is SubscriberStatus.PAUSED]
    paused += [Paused(email, cur.paused) for email, cur in sorted(cursors.items()) if cur.paused]
    return Status(
        home=str(cfg.paths.home),
        last_run=last_run,
        next_run=next_timer,
        keywords=tuple(
            KeywordState(k.name, len(held.get(k.name, [])), not held.get(k.name), fetches[k.name])
            for k in cfg.keywords
        ),
        subscribers=len(cfg.subscribers),
        deliveries=Counts(
            pending=counts[DeliveryStatus.PENDING],
            sent=counts[DeliveryStatus.SENT],
            failed=counts[DeliveryStatus.FAILED],
            unknown=counts[DeliveryStatus.UNKNOWN],
        ),
        failed=tuple(failed[-SHOWN_FAILURES:]),
        paused=tuple(paused),
    )
