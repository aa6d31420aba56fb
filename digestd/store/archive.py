"""state/archive.json: what the site (site/, archive/) is built from, and nothing else.

Its own file, not a table in papers.json, because the two keep different things for different
times: papers.json holds the `max_results` newest papers per keyword (what diff and the planner
need) and drops the rest, while a day page must keep showing a paper for `archive_days` after
it left that list. Keeping the archive apart also leaves papers.json's shape, its check and its
old files untouched. `digestd site build` reads only this file (and the config), so a rebuild
is byte-identical to what the runs wrote.

Tables: runs {seq, day} (the date of every run that stored papers: seq -> date) and entries
{day, keyword, paper}, one per paper and keyword, on the day it was first stored for that
keyword. A newer version stored later replaces the paper in its entry (its day stays): the
feed entry keeps its id and moves its `updated`. New or updated on a page is the digest's rule
(core/versions.py), applied to the paper and its day.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from digestd.core import fields
from digestd.core.models import Paper
from digestd.core.records import paper_from_doc
from digestd.store import db

ARCHIVE_AFRESH = (
    "Restore it from a backup, or run again to start the archive afresh "
    "(the site then shows only the days from now on)"
)


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One paper on one day's page under one keyword."""

    day: str  # YYYY-MM-DD, the run's date
    keyword: str
    paper: Paper

    def to_doc(self) -> dict[str, Any]:
        return {"day": self.day, "keyword": self.keyword, "paper": self.paper.to_dict()}


def entry_from_doc(doc: Any) -> ArchiveEntry:
    doc = fields.as_object(doc)
    return ArchiveEntry(
        day=fields.day(doc, "day") or "",
        keyword=fields.get(doc, "keyword", str),
        paper=paper_from_doc(fields.get(doc, "paper", dict)),
    )


def _check_run(key: str, doc: Any) -> None:
    doc = fields.as_object(doc)
    fields.nonneg(doc, "seq")
    fields.day(doc, "day")


def check_archive(data: dict[str, Any]) -> str | None:
    """archive.json: runs {seq, day}, entries {day, keyword, paper}: every field."""
    return (
        db.check_tables(data)
        or db.check_each("runs", data.get("runs", {}), _check_run)
        or db.check_each("entries", data.get("entries", {}), lambda k, d: entry_from_doc(d))
    )


class ArchiveStore:
    """The archive, read whole on open (a year of days is a few thousand entries)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.db = db.open_db(path, read_only=read_only, check=check_archive, afresh=ARCHIVE_AFRESH)
        self.runs_table = self.db.table("runs", cache_size=0)
        self.entries_table = self.db.table("entries", cache_size=0)

    def runs(self) -> dict[int, str]:
        """seq -> the date of that run."""
        return {int(doc["seq"]): str(doc["day"]) for doc in self.runs_table}

    def entries(self) -> list[ArchiveEntry]:
        return [entry_from_doc(doc) for doc in self.entries_table]

    def record(
        self, seq: int, day: str, held: Mapping[str, Sequence[tuple[int, Paper]]], keep_days: int
    ) -> bool:
        """Add run `seq` of `day`: the papers it stored first, and newer versions of papers
        already archived; drop the days older than `keep_days`. Papers stored by an earlier
        run that never recorded itself (killed after storing, or its site failed) come in on
        `day` too. One write; False (nothing written) when `seq` is already recorded."""
        runs = self.runs()
        if seq <= 0 or seq in runs:
            return False
        after = max((s for s in runs if s < seq), default=seq - 1)  # the last run on record
        runs[seq] = day
        entries = merge(self.entries(), seq, day, held, after=after)
        cutoff = (date.fromisoformat(day) - timedelta(days=keep_days)).isoformat()
        self.runs_table.truncate()
        self.runs_table.insert_multiple({"seq": s, "day": d} for s, d in sorted(runs.items()) if d > cutoff)
        self.entries_table.truncate()
        self.entries_table.insert_multiple(e.to_doc() for e in entries if e.day > cutoff)
        db.commit(self.db)
        return True

    def close(self) -> None:
        self.db.close()


def merge(
    archived: Sequence[ArchiveEntry], seq: int, day: str, held: Mapping[str, Sequence[tuple[int, Paper]]],
    *, after: int | None = None,
) -> list[ArchiveEntry]:
    """Pure: the archive after run `seq` of `day`. A paper stored with a seq above `after`
    (the last recorded run; seq - 1 by default) up to this one and not yet archived under its
    keyword is added on `day`; an archived paper whose stored version is
    newer gets that version (its day stays). Baseline papers (seq 0) were never new to anyone
    and are not archived. Sorted by day, keyword, id: one order, so one byte string."""
    after = seq - 1 if after is None else after
    out = {(e.keyword, e.paper.id): e for e in archived}
    for keyword, items in held.items():
        for s, paper in items:
            old = out.get((keyword, paper.id))
            if old is None and after < s <= seq:
                out[(keyword, paper.id)] = ArchiveEntry(day, keyword, paper)
            elif old is not None and paper.version > old.paper.version:
                out[(keyword, paper.id)] = ArchiveEntry(old.day, keyword, paper)
    return sorted(out.values(), key=lambda e: (e.day, e.keyword, e.paper.id))
