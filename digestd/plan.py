"""Pure: decide, per subscriber, which stored papers their next digest carries.

A subscriber's cursor is the last run `seq` whose papers were queued for them. Their next
digest holds every paper of their keywords with a seq above it. Deriving digests from
cursors (not from "what today's fetch found") is what makes a crash anywhere safe: papers
stored by a run that died before queueing are still above every cursor next time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from digestd.config import WEEKDAYS
from digestd.models import Frequency, Keyword, Paper, Subscriber, SubscriberStatus


@dataclass(frozen=True, slots=True)
class PlannedDigest:
    email: str
    name: str | None
    papers: dict[str, list[str]]  # keyword -> paper ids (newest first), config keyword order


def followed(sub: Subscriber, keywords: Sequence[Keyword]) -> list[str]:
    """The subscriber's keywords in `keywords:` order (None means all of them)."""
    if sub.keywords is None:
        return [k.name for k in keywords]
    wanted = set(sub.keywords)
    return [k.name for k in keywords if k.name in wanted]


def last_weekly_day(today: date, weekly_day: str) -> date:
    """The most recent `weekly_day` on or before today."""
    return today - timedelta(days=(today.weekday() - WEEKDAYS.index(weekly_day)) % 7)


def is_due(sub: Subscriber, cursor: Mapping[str, Any], today: date, weekly_day: str) -> bool:
    """Daily: every run. Weekly: once the weekly day has come since their last digest, so a
    failed run on that day is made up by the next one."""
    if sub.frequency is Frequency.DAILY:
        return True
    since = cursor.get("last_queued") or cursor.get("since")
    if not since:
        return False
    return last_weekly_day(today, weekly_day) > date.fromisoformat(since)


def plan(
    subscribers: Sequence[Subscriber],
    keywords: Sequence[Keyword],
    papers: Mapping[str, Sequence[tuple[int, Paper]]],
    cursors: dict[str, dict[str, Any]],
    *,
    seq: int,
    start_seq: int,
    today: date,
    weekly_day: str,
) -> list[PlannedDigest]:
    """Digests to queue now; updates `cursors` in place (the caller writes both in one go).

    `start_seq` is where a subscriber seen for the first time begins: they get this run's
    papers, not the backlog. Paused subscribers skip papers while paused.
    """
    out: list[PlannedDigest] = []
    iso = today.isoformat()
    by_kw_seq: dict[str, list[tuple[int, str]]] = {
        kw: sorted(((s, p.id) for s, p in items if s > 0), key=lambda t: -t[0])
        for kw, items in papers.items()
    }
    order = {
        kw: [p.id for _, p in sorted(items, key=lambda sp: sp[1].updated, reverse=True)]
        for kw, items in papers.items()
    }
    # Per (keyword, cursor), not per subscriber: subscribers share a handful of cursors, so
    # the papers above a cursor are found once per keyword and each digest is dict lookups.
    per_kw: dict[tuple[str, int], list[str]] = {}
    position = {k.name: i for i, k in enumerate(keywords)}
    for sub in subscribers:
        key = sub.email.lower()
        cur = cursors.setdefault(key, {})
        cur.setdefault("queued_through", start_seq)  # a record made by a send outcome alone
        cur.setdefault("since", iso)  # lacks these; without "since" weekly is never due
        if sub.status is SubscriberStatus.PAUSED or cur.get("paused"):
            cur["queued_through"] = seq
            continue
        if not is_due(sub, cur, today, weekly_day):
            continue
        kws = [k.name for k in keywords] if sub.keywords is None else \
            sorted({k for k in sub.keywords if k in position}, key=position.__getitem__)
        through = int(cur.get("queued_through", start_seq))
        picked: dict[str, list[str]] = {}
        for kw in kws:
            ck = (kw, through)
            if ck not in per_kw:
                ids = {pid for s, pid in by_kw_seq.get(kw, ()) if through < s <= seq}
                per_kw[ck] = [pid for pid in order[kw] if pid in ids] if ids else []
            if per_kw[ck]:
                picked[kw] = per_kw[ck]
        cur["queued_through"] = seq
        if picked:
            cur["last_queued"] = iso
            out.append(PlannedDigest(sub.email, sub.name, picked))
        elif sub.frequency is Frequency.WEEKLY:
            cur["last_queued"] = iso
    return out


def retention(
    subscribers: Sequence[Subscriber],
    keywords: Sequence[Keyword],
    cursors: Mapping[str, Mapping[str, Any]],
    pending: Sequence[Mapping[str, Any]],
) -> dict[str, tuple[int, set[str]]]:
    """What retention must keep per keyword, beyond the newest `max_results`: papers above the
    lowest cursor of the keyword's followers (given as that seq), and papers that pending
    deliveries name."""
    floor: dict[str, tuple[int, set[str]]] = {k.name: (1 << 60, set()) for k in keywords}
    for sub in subscribers:
        cur = cursors.get(sub.email.lower())
        if cur is None:
            continue
        q = int(cur.get("queued_through", 0))
        for kw in followed(sub, keywords):
            low, ids = floor[kw]
            if q < low:
                floor[kw] = (q, ids)
    for d in pending:
        for kw, pids in d.get("papers", {}).items():
            floor.setdefault(kw, (1 << 60, set()))[1].update(pids)
    return floor
