"""Pure: quiet days versus broken queries.

arXiv announces new papers Monday to Friday and nothing on weekends, so "nothing new" on a
Saturday is normal, while a keyword with nothing new on `silent_days` announcement days in a
row is more likely a query that stopped matching. Each keyword keeps a short history of its
successful runs (day, new papers that day); a failed fetch adds nothing (it says nothing about
the query), and neither does a baseline run (everything is "stored", nothing is "new").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from digestd.core import fields

KEEP_DAYS = 40  # days of history kept per keyword (silent_days is at most 30)
WEEKEND_NOTE = "no new papers on a weekend is normal: arXiv announces Monday to Friday"


def is_announcement_day(day: date) -> bool:
    """Monday to Friday, in the run's timezone (the caller passes the run's date)."""
    return day.weekday() < 5


@dataclass(frozen=True, slots=True)
class KeywordHistory:
    """Per keyword: the days it was fetched successfully with the new papers found that day
    (oldest first), and how many runs in a row its fetch failed (for alerts)."""

    keyword: str
    days: tuple[tuple[str, int], ...] = ()
    fail_streak: int = 0

    def after_success(self, day: date, new: int) -> KeywordHistory:
        """Record a successful fetch: several runs on one day add up; old days drop out."""
        iso = day.isoformat()
        days = list(self.days)
        if days and days[-1][0] == iso:
            days[-1] = (iso, days[-1][1] + new)
        else:
            days.append((iso, new))
        cutoff = date.fromordinal(day.toordinal() - KEEP_DAYS).isoformat()
        return replace(self, days=tuple(d for d in days if d[0] > cutoff), fail_streak=0)

    def after_failure(self) -> KeywordHistory:
        return replace(self, fail_streak=self.fail_streak + 1)

    def to_doc(self) -> dict[str, Any]:
        return {"keyword": self.keyword, "days": [[d, n] for d, n in self.days],
                "fail_streak": self.fail_streak}


def history_from_doc(doc: Any) -> KeywordHistory:
    """A stored history, every field checked (raises fields.BadRecord)."""
    doc = fields.as_object(doc)
    days: list[tuple[str, int]] = []
    for item in fields.get(doc, "days", list):
        if (not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str)
                or not fields.is_day(item[0]) or not isinstance(item[1], int)
                or isinstance(item[1], bool) or item[1] < 0):
            raise fields.BadRecord("field 'days' is not a list of [date, new papers] pairs")
        days.append((item[0], item[1]))
    return KeywordHistory(
        keyword=fields.get(doc, "keyword", str),
        days=tuple(days),
        fail_streak=fields.nonneg(doc, "fail_streak", default=0),
    )


def silent_streak(history: KeywordHistory) -> int:
    """Announcement days in a row, most recent first, on which the keyword found nothing new."""
    streak = 0
    for iso, new in reversed(history.days):
        if not is_announcement_day(date.fromisoformat(iso)):
            continue
        if new:
            break
        streak += 1
    return streak


def is_silent(history: KeywordHistory, silent_days: int) -> bool:
    return silent_streak(history) >= silent_days


@dataclass(frozen=True, slots=True)
class Quiet:
    """What `status` says about a keyword's recent silence."""

    streak: int  # announcement days in a row with nothing new
    silent: bool  # flagged: a query to check
    note: str | None  # a sentence for the operator, or None when there is nothing to say


def judge(history: KeywordHistory | None, today: date, silent_days: int) -> Quiet:
    """Silent (a query to check), quiet for a normal reason (the weekend), or nothing to say."""
    streak = silent_streak(history) if history else 0
    if history and streak >= silent_days:
        return Quiet(streak, True, f"nothing new on {streak} announcement days in a row: "
                                   "check the query (arXiv may have stopped matching it)")
    last_new = history.days[-1][1] if history and history.days else None
    if not is_announcement_day(today) and not last_new:
        return Quiet(streak, False, WEEKEND_NOTE)
    return Quiet(streak, False, None)


def silent_keywords(histories: Mapping[str, KeywordHistory], silent_days: int) -> list[str]:
    return sorted(kw for kw, h in histories.items() if is_silent(h, silent_days))
