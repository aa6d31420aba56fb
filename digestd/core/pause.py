"""Pure: the pause policy, in one place. A subscriber is paused by digestd after
`pause_after` permanent failures in a row (a dead address keeps bouncing and harms the
relay's reputation), by the operator in subscribers.yaml (`status: paused`), and resumed by
`digestd subscribers resume`, which clears both the pause and the streak."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from digestd.core.models import Subscriber, SubscriberStatus
from digestd.core.records import Cursor, DeliveryStatus


def after_outcome(
    cur: Cursor, status: DeliveryStatus, detail: str, pause_after: int, day: str
) -> tuple[Cursor, str | None]:
    """The cursor after one delivery outcome on `day`, and a note when this outcome paused
    them (the pause records `day`, which `status` shows as since when)."""
    if status is DeliveryStatus.SENT:
        return (replace(cur, fail_streak=0) if cur.fail_streak else cur), None
    if status is not DeliveryStatus.FAILED:
        return cur, None
    streak = cur.fail_streak + 1
    if streak >= pause_after and not cur.paused:
        reason = f"paused after {streak} permanent failures: {detail}"
        paused = replace(cur, fail_streak=streak, paused=reason, paused_on=day)
        return paused, f"{streak} permanent failures in a row"
    return replace(cur, fail_streak=streak), None


def is_paused(sub: Subscriber, cur: Cursor | None, today: date) -> bool:
    """Paused by the operator (`status: paused`), by the subscriber until a day
    (`paused_until`, from the manage page) or by digestd: no digest, and papers meanwhile are
    skipped."""
    dated = sub.paused_until is not None and today < sub.paused_until
    return sub.status is SubscriberStatus.PAUSED or dated or bool(cur and cur.paused)


def resumed(cur: Cursor) -> Cursor:
    """What `subscribers resume` leaves: not paused, no failure streak."""
    return replace(cur, paused=None, fail_streak=0)
