"""New or updated: a revision of an old paper is not news, and a reader wants it told apart."""

from __future__ import annotations

from datetime import date, timedelta

from digestd.core.models import Paper

UPDATE_AFTER_DAYS = 7  # a v2+ whose v1 is older than this, before the run date, is an update


def first_posted(paper: Paper) -> str:
    """The date (UTC) version 1 appeared: arXiv's `published` is the first version's date."""
    return paper.published[:10]


def is_update(paper: Paper, today: str | date) -> bool:
    """True for version 2 or later of a paper first posted more than 7 days before `today`."""
    if paper.version < 2:
        return False
    try:
        first = date.fromisoformat(first_posted(paper))
        day = today if isinstance(today, date) else date.fromisoformat(today[:10])
    except ValueError:  # no usable date: shown as new rather than hidden
        return False
    return day - first > timedelta(days=UPDATE_AFTER_DAYS)
