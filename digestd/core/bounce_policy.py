"""Pure: what a bounce or a complaint does to a subscriber, and the records that remember it.

A permanent failure suppresses at once (the address is dead; mailing it again harms the
relay's reputation). Transient failures suppress after `soft_bounce_limit` of them within
SOFT_WINDOW_DAYS (a full mailbox for two weeks is as good as dead). A complaint unsubscribes
and suppresses, so the address is not re-added by accident."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from digestd.core import fields as f
from digestd.core.fields import BadRecord

SOFT_WINDOW_DAYS = 14


class BounceKind(Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    COMPLAINT = "complaint"


class SuppressReason(Enum):
    BOUNCE = "bounce"  # a permanent failure
    SOFT_BOUNCES = "soft-bounces"  # too many transient failures
    COMPLAINT = "complaint"  # the person reported a digest as spam


class ActionKind(Enum):
    SUPPRESS = "suppress"
    UNSUBSCRIBE = "unsubscribe"  # a complaint: out of subscribers.yaml, and suppressed
    COUNT = "count"  # a transient failure, counted towards the limit


@dataclass(frozen=True, slots=True)
class Suppression:
    """An address digestd never mails again until `subscribers unsuppress`."""

    email: str
    reason: SuppressReason
    diagnostic: str
    since: str  # ISO 8601 UTC
    run: int | None = None  # the run whose digest bounced, from the VERP token

    def to_doc(self) -> dict[str, Any]:
        return {"email": self.email, "reason": self.reason.value, "diagnostic": self.diagnostic,
                "since": self.since, "run": self.run}

    @staticmethod
    def from_doc(doc: Any) -> Suppression:
        d = f.as_object(doc)
        reason = f.get(d, "reason", str)
        try:
            why = SuppressReason(reason)
        except ValueError:
            raise BadRecord(f"field 'reason' is not a suppression reason: {reason[:40]!r}") from None
        return Suppression(f.get(d, "email", str), why, f.get(d, "diagnostic", str),
                           f.stamp(d, "since") or "", f.count(d, "run"))


@dataclass(frozen=True, slots=True)
class SoftBounce:
    """One transient failure, kept SOFT_WINDOW_DAYS."""

    email: str
    time: str
    diagnostic: str

    def to_doc(self) -> dict[str, Any]:
        return {"email": self.email, "time": self.time, "diagnostic": self.diagnostic}

    @staticmethod
    def from_doc(doc: Any) -> SoftBounce:
        d = f.as_object(doc)
        return SoftBounce(f.get(d, "email", str), f.stamp(d, "time") or "", f.get(d, "diagnostic", str))


@dataclass(frozen=True, slots=True)
class Action:
    """What one bounce does; `line` is the log line (address, reason, diagnostic)."""

    kind: ActionKind
    email: str
    reason: SuppressReason | None
    diagnostic: str
    line: str


def parse_time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def recent(soft: Sequence[SoftBounce], now: datetime) -> list[SoftBounce]:
    """The transient failures still inside the window."""
    start = now - timedelta(days=SOFT_WINDOW_DAYS)
    return [s for s in soft if parse_time(s.time) > start]


def decide(kind: BounceKind, email: str, diagnostic: str, soft: Sequence[SoftBounce],
           now: datetime, limit: int) -> Action:
    """The action for one classified bounce; `soft` are this address's earlier transient
    failures (any age: the window is applied here)."""
    if kind is BounceKind.COMPLAINT:
        return Action(ActionKind.UNSUBSCRIBE, email, SuppressReason.COMPLAINT, diagnostic,
                      f"unsubscribed {email}: complaint ({diagnostic})")
    if kind is BounceKind.PERMANENT:
        return Action(ActionKind.SUPPRESS, email, SuppressReason.BOUNCE, diagnostic,
                      f"suppressed {email}: permanent failure ({diagnostic})")
    n = len(recent(soft, now)) + 1
    if n >= limit:
        return Action(ActionKind.SUPPRESS, email, SuppressReason.SOFT_BOUNCES, diagnostic,
                      f"suppressed {email}: {n} transient failures in {SOFT_WINDOW_DAYS} days ({diagnostic})")
    return Action(ActionKind.COUNT, email, None, diagnostic,
                  f"transient failure {n} of {limit} for {email} ({diagnostic})")


def by_email(records: Sequence[SoftBounce]) -> Mapping[str, list[SoftBounce]]:
    out: dict[str, list[SoftBounce]] = {}
    for r in records:
        out.setdefault(r.email.lower(), []).append(r)
    return out
