"""What `digestd status` shows an operator, gathered from the state without changing it.

`gather` returns a typed Status; its `to_json` is the `status --json` contract (keys once
published are kept; new ones are only added) and `lines` (ops/status_text.py) the text an
operator reads: who is waiting and why, what failed on the last run and what the server
said, who is paused or suppressed since when, when weekly digests go out, and which keyword
looks quiet for a normal reason or silent for a broken one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from digestd.config.settings import Config
from digestd.core.incidents import Incident
from digestd.core.models import Frequency, Subscriber, SubscriberStatus
from digestd.core.quiet import WEEKEND_NOTE, KeywordHistory, Quiet, is_announcement_day, judge
from digestd.core.records import Cursor, Delivery, DeliveryStatus, FetchStatus, RunSummary
from digestd.core.schedule import next_weekly
from digestd.errors import DigestdError
from digestd.ops.suppressed import BounceView, Suppressed, read_bounce_view
from digestd.store.ops import OpsStore
from digestd.store.outbox import Outbox
from digestd.store.papers import PaperStore

SHOWN_FAILURES = 20  # the most recent failed or unknown deliveries listed


@dataclass(frozen=True, slots=True)
class KeywordState:
    name: str
    stored: int
    baseline: bool  # nothing stored yet: the next run stores a baseline and mails nothing
    fetch: FetchStatus
    quiet: Quiet = field(default_factory=lambda: Quiet(0, False, None))


@dataclass(frozen=True, slots=True)
class Counts:
    pending: int
    sent: int
    failed: int
    unknown: int
    unknown_resent: int = 0  # of `unknown`, those already resent once: never sent again


@dataclass(frozen=True, slots=True)
class Failure:
    email: str
    date: str
    status: DeliveryStatus
    error: str | None
    attempts: int = 0
    when: str | None = None  # the last attempt


@dataclass(frozen=True, slots=True)
class Waiting:
    """A pending delivery: who waits, since when, how often it was tried and why it failed."""

    email: str
    date: str
    created: str
    age_hours: float
    attempts: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Paused:
    email: str
    reason: str
    since: str | None = None  # None: not recorded (paused in subscribers.yaml)


@dataclass(frozen=True, slots=True)
class Weekly:
    email: str
    next_digest: str


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
    now: str = ""
    announcement_day: bool = True  # today (in the run's timezone) is Monday to Friday
    pending: tuple[Waiting, ...] = ()
    last_run_failed: tuple[Failure, ...] = ()
    weekly: tuple[Weekly, ...] = ()
    bounces: BounceView = field(default_factory=BounceView)
    incidents: tuple[Incident, ...] = ()
    ops_problem: str | None = None  # state/ops.json cannot be read: the rest is still shown

    def to_json(self) -> dict[str, Any]:
        """The `status --json` document (scripts read it: keys are added, never changed)."""
        return {
            "home": self.home,
            "last_run": self.last_run.to_doc() if self.last_run else None,
            "next_run": self.next_run,
            "keywords": [_keyword_json(k) for k in self.keywords],
            "subscribers": self.subscribers,
            "deliveries": {
                "pending": self.deliveries.pending,
                "sent": self.deliveries.sent,
                "failed": self.deliveries.failed,
                "unknown": self.deliveries.unknown,
                "unknown_resent": self.deliveries.unknown_resent,
            },
            "failed": [_failure_json(f) for f in self.failed],
            "paused": [{"email": p.email, "reason": p.reason, "since": p.since} for p in self.paused],
            "now": self.now,
            "announcement_day": self.announcement_day,
            "quiet_day_note": None if self.announcement_day else WEEKEND_NOTE,
            "pending": [
                {"email": w.email, "date": w.date, "created": w.created, "age_hours": round(w.age_hours, 1),
                 "attempts": w.attempts, "last_error": w.error}
                for w in self.pending
            ],
            "last_run_failed": [_failure_json(f) for f in self.last_run_failed],
            "suppressed": [{"email": s.email, "reason": s.reason, "since": s.since}
                           for s in self.bounces.suppressed],
            "last_bounce_check": self.bounces.last_check,
            "weekly": [{"email": w.email, "next_digest": w.next_digest} for w in self.weekly],
            "incidents": [i.to_doc() for i in self.incidents],
            "ops_problem": self.ops_problem,
        }

    def lines(self) -> list[str]:
        """The text `digestd status` prints."""
        from digestd.ops.status_text import status_lines

        return status_lines(self)


def _keyword_json(k: KeywordState) -> dict[str, Any]:
    return {
        "name": k.name,
        "stored": k.stored,
        "last_success": k.fetch.last_success,
        "last_fetched": k.fetch.fetched,
        "last_new": k.fetch.new,
        "error": k.fetch.error,
        "baseline": k.baseline,
        "quiet_days": k.quiet.streak,
        "silent": k.quiet.silent,
        "note": k.quiet.note,
    }


def _failure_json(f: Failure) -> dict[str, Any]:
    return {"email": f.email, "date": f.date, "status": f.status.value, "error": f.error,
            "attempts": f.attempts, "last_attempt": f.when}


def _ops(cfg: Config) -> tuple[dict[str, KeywordHistory], dict[str, Incident], str | None]:
    """Keyword histories and open incidents, or none and why: ops.json is the secondary file
    (losing it costs a few days of silence counting), so it never hides the rest of status."""
    try:
        ops = OpsStore(cfg.paths.state_dir, read_only=True)
    except DigestdError as err:
        return {}, {}, str(err)
    try:
        return ops.histories(), ops.incidents(), None
    finally:
        ops.close()


def gather(cfg: Config, next_timer: str | None, now: datetime | None = None) -> Status:
    now = now or datetime.now(UTC)
    today = now.astimezone(cfg.tz).date() if cfg.tz else now.astimezone().date()
    store = PaperStore(cfg.paths.papers_db, read_only=True)
    outbox = Outbox(cfg.paths.outbox_db, read_only=True)
    try:
        held = store.by_keyword()
        fetches = {k.name: FetchStatus(k.name) for k in cfg.keywords} | store.fetch_status()
        deliveries = list(outbox.all_deliveries())
        cursors = outbox.load_cursors()
        last_run = store.last_run()
    finally:
        outbox.close()
        store.close()
    histories, incidents, ops_problem = _ops(cfg)
    counts: Counter[DeliveryStatus] = Counter(d.status for d in deliveries)
    pending = [d for d in deliveries if d.status is DeliveryStatus.PENDING]
    failed = [_failure(d) for d in deliveries if d.status in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN)]
    return Status(
        home=str(cfg.paths.home),
        last_run=last_run,
        next_run=next_timer,
        keywords=tuple(
            KeywordState(k.name, len(held.get(k.name, [])), not held.get(k.name), fetches[k.name],
                         judge(histories.get(k.name), today, cfg.settings.silent_days))
            for k in cfg.keywords
        ),
        subscribers=len(cfg.subscribers),
        deliveries=Counts(
            pending=counts[DeliveryStatus.PENDING],
            sent=counts[DeliveryStatus.SENT],
            failed=counts[DeliveryStatus.FAILED],
            unknown=counts[DeliveryStatus.UNKNOWN],
            unknown_resent=sum(1 for d in deliveries if d.status is DeliveryStatus.UNKNOWN and d.resends),
        ),
        failed=tuple(failed[-SHOWN_FAILURES:]),
        paused=tuple(_paused(cfg, cursors, today)),
        now=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        announcement_day=is_announcement_day(today),
        pending=tuple(_waiting(d, now) for d in pending),  # all: the text lists the first few
        last_run_failed=tuple(_last_run_failures(failed, last_run)),
        weekly=tuple(
            Weekly(s.email, next_weekly(_since(cursors.get(s.email.lower())), today,
                                        cfg.settings.weekly_day).isoformat())
            for s in cfg.subscribers
            if s.frequency is Frequency.WEEKLY and s.status is not SubscriberStatus.PAUSED
        ),
        bounces=read_bounce_view(cfg.paths.state_dir),
        incidents=tuple(incidents.values()),
        ops_problem=ops_problem,
    )


def _failure(d: Delivery) -> Failure:
    return Failure(d.email, d.date, d.status, d.error, d.attempts, d.last_attempt)


def _waiting(d: Delivery, now: datetime) -> Waiting:
    created = datetime.fromisoformat(d.created.replace("Z", "+00:00"))
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    hours = max((now - created).total_seconds() / 3600, 0.0)
    return Waiting(d.email, d.date, d.created, hours, d.attempts, d.error)


def _last_run_failures(failed: list[Failure], last_run: RunSummary | None) -> list[Failure]:
    """Failures whose last attempt came at or after the last run started (its summary time)."""
    if last_run is None:
        return []
    return [f for f in failed if f.when and f.when >= last_run.time]


def _since(cur: Cursor | None) -> str | None:
    return (cur.last_queued or cur.since) if cur else None


def _until(sub: Subscriber, today: date) -> str | None:
    """The day a pause set on the manage page ends, while it lasts."""
    return sub.paused_until.isoformat() if sub.paused_until is not None and today < sub.paused_until else None


def _paused(cfg: Config, cursors: dict[str, Cursor], today: date) -> list[Paused]:
    paused = [Paused(s.email, "paused in subscribers.yaml")
              for s in cfg.subscribers if s.status is SubscriberStatus.PAUSED]
    paused += [Paused(s.email, f"paused by them until {until} (digests again from that day)")
               for s in cfg.subscribers
               if s.status is not SubscriberStatus.PAUSED and (until := _until(s, today))]
    paused += [Paused(email, cur.paused, cur.paused_on) for email, cur in sorted(cursors.items())
               if cur.paused]
    return paused


__all__ = ["Status", "Suppressed", "gather"]
