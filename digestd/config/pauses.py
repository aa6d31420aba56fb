"""A subscriber's `paused_until: YYYY-MM-DD`: no digests before that day, and the papers of
the pause are skipped (as with `status: paused`); from that day on, digests again without
anyone resuming. The manage page writes it; the CLI's `resume` clears it."""

from __future__ import annotations

import datetime as dt
from typing import Any

MAX_DAYS = 3 * 366  # a pause longer than this is a typo in the year


def paused_until_problem(value: Any) -> str | None:
    """Why `value` is not a pause end date, or None."""
    return None if _as_date(value) is not None else "must be a date written YYYY-MM-DD"


def paused_until(value: Any) -> dt.date | None:
    """The checked date (YAML may give a date or the text of one), or None when unset."""
    return None if value is None else _as_date(value)


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return None
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def pause_end_problem(end: dt.date, today: dt.date) -> str | None:
    """A date a subscriber may choose on the manage page: after today, within MAX_DAYS."""
    if end <= today:
        return "choose a date after today"
    if (end - today).days > MAX_DAYS:
        return f"choose a date within {MAX_DAYS // 366} years"
    return None
