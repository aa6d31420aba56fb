"""Subject lines people scan: the list, the date or week, the counts, the first keyword."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

MAX_SUBJECT = 99  # characters before encoding: "under 100"


def period_label(day: str, weekly: bool) -> str:
    """A daily digest's date, or "week of <date six days earlier>" for a weekly one: the
    seven days that end on the digest's date."""
    if not weekly:
        return day
    return f"week of {(date.fromisoformat(day) - timedelta(days=6)).isoformat()}"


def subject_line(list_name: str, period: str, new: int, updated: int, keywords: Sequence[str]) -> str:
    """`Daily Papers 2025-12-24: 18 new, 3 updated: Video Anomaly Detection +2 more`. Under
    100 characters: the keyword's name is shortened with "…" (left out when no room is worth
    it), and a list name too long for the date and counts is shortened too."""
    counts = f"{new} new, {updated} updated" if updated else f"{new} new"
    tail = f" {period}: {counts}"
    if len(list_name) + len(tail) > MAX_SUBJECT:
        list_name = list_name[: max(1, MAX_SUBJECT - len(tail) - 1)].rstrip() + "…"
    head = f"{list_name}{tail}"
    if not keywords:
        return head
    more = f" +{len(keywords) - 1} more" if len(keywords) > 1 else ""
    room = MAX_SUBJECT - len(head) - len(": ") - len(more)
    if room < 8:  # no room worth a keyword name: the counts say enough
        return head
    name = keywords[0] if len(keywords[0]) <= room else keywords[0][: room - 1].rstrip() + "…"
    return f"{head}: {name}{more}"
