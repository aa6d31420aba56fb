"""Pure: when a weekly subscriber's next digest goes out (for `digestd status`)."""

from __future__ import annotations

from datetime import date, timedelta

from digestd.config.settings import WEEKDAYS


def next_weekly(since: str | None, today: date, weekly_day: str) -> date:
    """The first `weekly_day` after their last digest (or after today for someone new), never
    before today: a weekly day whose run failed is made up by the next run (core/plan.is_due)."""
    base = date.fromisoformat(since) if since else today
    ahead = (WEEKDAYS.index(weekly_day) - base.weekday()) % 7 or 7
    return max(base + timedelta(days=ahead), today)
