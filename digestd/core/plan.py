"""Pure: decide, per subscriber, which stored papers their next digest carries.

A subscriber's cursor is the last run `seq` whose papers were queued for them. Their next
digest holds every paper of their keywords with a seq above it. Deriving digests from
cursors (not from "what today's fetch found") is what makes a crash anywhere safe: papers
stored by a run that died before queueing are still above every cursor next time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta

from digestd.config.settings import WEEKDAYS
from digestd.core.models import Frequency, Keyword, Paper, Subscriber, email_key
from digestd.core.pause import is_paused
from digestd.core.records import Cursor, Delivery, Follows, Span
from digestd.core.versions import is_update


@dataclass(frozen=True, slots=True)
class PlannedDigest:
    email: str
    name: str | None
    papers: dict[str, tuple[str, ...]]  # keyword -> paper ids (newest first), config keyword order


def followed(sub: Subscriber, keywords: Sequence[Keyword]) -> list[str]:
    """The subscriber's keywords in `keywords:` order (None means all of them)."""
    if sub.keywords is None:
        return [k.name for k in keywords]
    wanted = set(sub.keywords)
    return [k.name for k in keywords if k.name in wanted]


def last_weekly_day(today: date, weekly_day: str) -> date:
    """The most recent `weekly_day` on or before today."""
    return today - timedelta(days=(today.weekday() - WEEKDAYS.index(weekly_day)) % 7)


def is_due(sub: Subscriber, cursor: Cursor, today: date, weekly_day: str) -> bool:
    """Daily: every run. Weekly: once the weekly day has come since their last digest, so a
    failed run on that day is made up by the next one."""
    if sub.frequency is Frequency.DAILY:
        return True
    since = cursor.last_queued or cursor.since
    if not since:
        return False
    return last_weekly_day(today, weekly_day) > date.fromisoformat(since)


def already_mailed(pid: str, keyword: str, cursor: Cursor, history: Mapping[str, Mapping[str, int]]) -> bool:
    """True when `pid` reached this subscriber under another keyword: it had a seq there
    inside one of their spans of following that keyword, up to their cursor."""
    seqs = history.get(pid)
    if not seqs or len(seqs) < 2 or cursor.follows is None:
        return False
    through = cursor.queued_through
    for kw, s in seqs.items():
        if kw == keyword or s > through:
            continue
        for start, end in cursor.follows.get(kw, ()):
            if start < s and (end is None or s <= end):
                return True
    return False


class _Follows:
    """Each subscriber's spans of following each keyword. A new subscriber starts at
    `start_seq`; a keyword followed from now on opens a span at their cursor; a keyword no
    longer followed (dropped by them, or from the configuration) closes its span there and is
    kept while papers of that span may still come back under another keyword (seq above
    `floor`). A record written before spans existed is taken to have followed its keywords all
    along. Equal maps are one shared object (interned), which keeps 100,000 cursors small."""

    def __init__(self, start_seq: int, floor: int) -> None:
        self.start_seq = start_seq
        self.floor = floor  # the lowest seq any remembered paper still has
        self.interned: dict[str, Follows] = {}

    def __call__(self, old: Cursor | None, kws: Sequence[str]) -> Follows:
        if old is None:
            fresh: dict[str, tuple[Span, ...]] = dict.fromkeys(kws, ((self.start_seq, None),))
        elif old.follows is None:
            fresh = dict.fromkeys(kws, ((0, None),))
        else:
            if len(old.follows) == len(kws) and all(
                old.follows.get(kw, ((0, 0),))[-1][1] is None for kw in kws
            ):
                return old.follows  # unchanged, and already shared by every cursor that has it
            fresh = self._moved(old.follows, old.queued_through, set(kws))
        key = repr(sorted(fresh.items()))
        return self.interned.setdefault(key, fresh)

    def _moved(self, was: Follows, through: int, kws: set[str]) -> dict[str, tuple[Span, ...]]:
        out: dict[str, tuple[Span, ...]] = {}
        for kw, spans in was.items():
            kept = [(a, b) for a, b in spans if b is None or b > self.floor]
            if kept and kept[-1][1] is None and kw not in kws:
                kept[-1] = (kept[-1][0], through)  # no longer followed: the span ends here
            elif kw in kws and (not kept or kept[-1][1] is not None):
                kept.append((through, None))  # followed again: a new span
            if kept:
                out[kw] = tuple(kept)
        for kw in kws - out.keys():
            out[kw] = ((through, None),)
        return out


def plan(
    subscribers: Sequence[Subscriber],
    keywords: Sequence[Keyword],
    papers: Mapping[str, Sequence[tuple[int, Paper]]],
    cursors: Mapping[str, Cursor],
    *,
    seq: int,
    start_seq: int,
    today: date,
    weekly_day: str,
    history: Mapping[str, Mapping[str, int]] | None = None,
) -> tuple[list[PlannedDigest], dict[str, Cursor]]:
    """Digests to queue now, and every subscriber's next cursor (the caller writes both in
    one go). Cursors of people no longer subscribed are left out, so one who subscribes again
    starts afresh.

    `start_seq` is where a subscriber seen for the first time begins: they get this run's
    papers, not the backlog. Paused subscribers skip papers while paused. A paper that was
    mailed to a subscriber under one keyword is never mailed again under another
    (`history`: per paper id, its seq under each keyword).
    """
    history = history or {}
    out: list[PlannedDigest] = []
    nxt: dict[str, Cursor] = {}
    iso = today.isoformat()
    by_kw_seq: dict[str, list[tuple[int, str]]] = {
        kw: sorted(((s, p.id) for s, p in items if s > 0), key=lambda t: -t[0])
        for kw, items in papers.items()
    }
    order = {
        kw: [p.id for _, p in sorted(items, key=lambda sp: sp[1].updated, reverse=True)]
        for kw, items in papers.items()
    }
    by_id = {kw: {p.id: p for _, p in items} for kw, items in papers.items()}
    # Per (keyword, cursor), not per subscriber: subscribers share a handful of cursors, so
    # the papers above a cursor are found once per keyword and each digest is dict lookups.
    per_kw: dict[tuple[str, int], tuple[str, ...]] = {}
    floor = min((s for seqs in history.values() for s in seqs.values()), default=seq)
    follows = _Follows(start_seq, floor)
    for sub in subscribers:
        key = email_key(sub.email)
        old = cursors.get(key)
        cur = _current(old, start_seq, iso)
        kws = followed(sub, keywords)
        cur = replace(cur, follows=follows(old, kws))
        if is_paused(sub, cur, today):
            nxt[key] = replace(cur, queued_through=seq)
            continue
        if not is_due(sub, cur, today, weekly_day):
            nxt[key] = cur
            continue
        through = cur.queued_through
        picked: dict[str, tuple[str, ...]] = {}
        for kw in kws:
            ck = (kw, through)
            if ck not in per_kw:
                ids = {pid for s, pid in by_kw_seq.get(kw, ()) if through < s <= seq}
                per_kw[ck] = tuple(pid for pid in order.get(kw, ()) if pid in ids) if ids else ()
            common = per_kw[ck]
            kept = [pid for pid in common if not already_mailed(pid, kw, cur, history)]
            if not sub.updates:  # `updates: false`: revisions of old papers are left out
                kept = [pid for pid in kept if not is_update(by_id[kw][pid], today)]
            # The usual case: one tuple for all of the keyword's readers, not 100,000 copies
            # (a third of a 100,000-subscriber run's memory; docs/benchmarks.md).
            fresh = common if len(kept) == len(common) else tuple(kept)
            if fresh:
                picked[kw] = fresh
        cur = replace(cur, queued_through=seq)
        if picked:
            cur = replace(cur, last_queued=iso)
            out.append(PlannedDigest(sub.email, sub.name, picked))
        elif sub.frequency is Frequency.WEEKLY:
            cur = replace(cur, last_queued=iso)
        nxt[key] = cur
    return out, nxt


def _current(old: Cursor | None, start_seq: int, iso: str) -> Cursor:
    """A subscriber's cursor as the plan starts from it: a new one starts at `start_seq`."""
    cur = old if old is not None else Cursor(queued_through=start_seq, since=iso)
    return cur if cur.since is not None else replace(cur, since=iso)  # without "since" weekly is never due


def planned_from(sub: Subscriber, cursors: Mapping[str, Cursor], *, start_seq: int, today: date,
                 weekly_day: str) -> int | None:
    """The seq above which `plan` would give `sub` papers today; None if it gives none (paused,
    or a weekly digest not due). Ranking uses it to fit only what the plan can pick."""
    cur = _current(cursors.get(email_key(sub.email)), start_seq, today.isoformat())
    if is_paused(sub, cur, today) or not is_due(sub, cur, today, weekly_day):
        return None
    return cur.queued_through


def retention(
    subscribers: Sequence[Subscriber],
    keywords: Sequence[Keyword],
    cursors: Mapping[str, Cursor],
    pending: Sequence[Delivery],
) -> dict[str, tuple[int, set[str]]]:
    """What retention must keep per keyword, beyond the newest `max_results`: papers above the
    lowest cursor of the keyword's followers (given as that seq), and papers that pending
    deliveries name."""
    floor: dict[str, tuple[int, set[str]]] = {k.name: (1 << 60, set()) for k in keywords}
    for sub in subscribers:
        cur = cursors.get(sub.email.lower())
        if cur is None:
            continue
        q = cur.queued_through
        for kw in followed(sub, keywords):
            low, ids = floor[kw]
            if q < low:
                floor[kw] = (q, ids)
    for d in pending:
        for kw, pids in d.papers.items():
            floor.setdefault(kw, (1 << 60, set()))[1].update(pids)
    return floor
