"""Pure: the archive's entries grouped as the site shows them (days, keywords, feeds' order)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from digestd.core.models import Paper
from digestd.core.versions import is_update
from digestd.site.urls import slug
from digestd.store.archive import ArchiveEntry


def slugs(keywords: Sequence[str]) -> dict[str, str]:
    """A distinct slug per keyword ("all" is the combined feed's): a clash gets -2, -3..."""
    taken = {"all"}
    out: dict[str, str] = {}
    for kw in keywords:
        base = slug(kw)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        out[kw] = name
    return out


@dataclass(frozen=True, slots=True)
class KeywordDay:
    """One keyword's additions on one day, new and updated apart (the digest's rule,
    core/versions.py: a v2+ of a paper first posted over a week before the day is an update)."""

    keyword: str
    new: tuple[Paper, ...]
    updated: tuple[Paper, ...]

    @property
    def count(self) -> int:
        return len(self.new) + len(self.updated)


@dataclass(frozen=True, slots=True)
class Day:
    day: str
    keywords: tuple[KeywordDay, ...]


def _newest_first(papers: Iterable[Paper]) -> tuple[Paper, ...]:
    return tuple(sorted(papers, key=lambda p: (p.updated, p.id), reverse=True))


def keyword_order(configured: Sequence[str], entries: Sequence[ArchiveEntry]) -> list[str]:
    """The configured keywords in config order, then archived ones no longer configured (sorted)."""
    extra = sorted({e.keyword for e in entries} - set(configured))
    return [*configured, *extra]


def group_days(entries: Sequence[ArchiveEntry], keywords: Sequence[str]) -> list[Day]:
    """Every day with additions, newest first; its keywords in `keywords` order."""
    by_day: dict[str, dict[str, list[ArchiveEntry]]] = {}
    for e in entries:
        by_day.setdefault(e.day, {}).setdefault(e.keyword, []).append(e)
    days: list[Day] = []
    for day in sorted(by_day, reverse=True):
        kws = by_day[day]
        parts = tuple(
            KeywordDay(
                kw,
                _newest_first(e.paper for e in kws[kw] if not is_update(e.paper, day)),
                _newest_first(e.paper for e in kws[kw] if is_update(e.paper, day)),
            )
            for kw in keywords
            if kw in kws
        )
        days.append(Day(day, parts))
    return days


def feed_items(entries: Iterable[ArchiveEntry], limit: int) -> list[ArchiveEntry]:
    """The latest `limit` papers, one entry per paper id (its latest day and version), newest
    day first, then newest update."""
    latest: dict[str, ArchiveEntry] = {}
    for e in entries:
        old = latest.get(e.paper.id)
        if old is None or (e.day, e.paper.updated) > (old.day, old.paper.updated):
            latest[e.paper.id] = e
    ranked = sorted(latest.values(), key=lambda e: (e.day, e.paper.updated, e.paper.id), reverse=True)
    return ranked[:limit]
