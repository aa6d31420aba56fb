"""papers.json: the papers per keyword (with the run `seq` that first stored them), the run
counter, each keyword's fetch status, the last run's summary and the ids each keyword dropped.

Tables: papers {keyword, seq, paper} (one document per paper and keyword), fetches (one per
keyword, found by a query on `keyword`), and the single documents meta {seq, last_run} and
seen {map}. A run changes them in memory and writes the file once, in `apply`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tinydb import Query

from digestd.core.fields import BadRecord, as_object, count
from digestd.core.models import Paper
from digestd.core.records import (
    Dropped,
    FetchStatus,
    RunSummary,
    dropped_from_value,
    fetch_status_from_doc,
    run_summary_from_doc,
    stored_paper_from_doc,
)
from digestd.store import db

# What starting papers.json afresh costs, said when a broken one is moved aside.
PAPERS_AFRESH = (
    "Restore it from a backup, or run again to start that file afresh "
    "(keywords then re-enter baseline mode: nothing is mailed for them that run)"
)

Held = dict[str, list[tuple[int, Paper]]]
_Q = Query()


def _check_meta(key: str, doc: Any) -> None:
    count(doc, "seq")
    if doc.get("last_run"):
        try:
            run_summary_from_doc(doc["last_run"])
        except BadRecord as err:
            raise BadRecord(f"field 'last_run': {err.why}") from None


def _check_seen(key: str, doc: Any) -> None:
    for kw, ids in as_object(doc)["map"].items():
        for pid, value in ids.items():
            try:
                dropped_from_value(value)
            except BadRecord:
                raise BadRecord(f"the dropped paper {pid!r} of {kw!r} has no date") from None


def check_papers(data: dict[str, Any]) -> str | None:
    """papers.json: papers {keyword, seq, paper}, meta {seq?, last_run?}, fetches {keyword},
    seen {map}: every record, every field."""
    return (
        db.check_tables(data)
        or db.check_single("meta", data.get("meta", {}))
        or db.check_single("seen", data.get("seen", {}), mapped=True)
        or db.check_each("papers", data.get("papers", {}), lambda k, d: stored_paper_from_doc(d))
        or db.check_each("meta", data.get("meta", {}), _check_meta)
        or db.check_each("fetches", data.get("fetches", {}), lambda k, d: fetch_status_from_doc(d))
        or db.check_each("seen", data.get("seen", {}), _check_seen)
    )


class PaperStore:
    """Papers per keyword plus the run counter: the input to diff, plan and the README.

    The papers are parsed once, on open, and kept in memory beside tinydb's table: every
    stage of a run reads `by_keyword()` without rebuilding a Paper."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.db = db.open_db(path, read_only=read_only, check=check_papers, afresh=PAPERS_AFRESH)
        self.papers = self.db.table("papers", cache_size=0)
        self.meta = self.db.table("meta", cache_size=0)
        self.fetches = self.db.table("fetches", cache_size=0)
        self.seen = self.db.table("seen", cache_size=0)
        self._held: Held = {}
        for doc in self.papers:
            sp = stored_paper_from_doc(doc)
            self._held.setdefault(sp.keyword, []).append((sp.seq, sp.paper))

    @property
    def seq(self) -> int:
        """The number of the last run that stored papers."""
        meta = db.single(self.meta)
        return int(meta.get("seq") or 0) if meta else 0

    def last_run(self) -> RunSummary | None:
        meta = db.single(self.meta)
        run = meta.get("last_run") if meta else None
        return run_summary_from_doc(run) if run else None

    def record_run(self, summary: RunSummary) -> None:
        db.put_single(self.meta, {"last_run": summary.to_doc()})
        db.commit(self.db)

    def by_keyword(self) -> Held:
        """Every stored paper as (seq, paper), grouped by keyword (read-only: do not change)."""
        return self._held

    def keyword_papers(self, keyword: str) -> list[tuple[int, Paper]]:
        return self._held.get(keyword, [])

    def seen_ids(self) -> dict[str, dict[str, Dropped]]:
        """Per keyword, ids once stored and since dropped."""
        doc = db.single(self.seen)
        if doc is None:
            return {}
        return {kw: {i: dropped_from_value(v) for i, v in ids.items()} for kw, ids in doc["map"].items()}

    def history(self) -> dict[str, dict[str, int]]:
        """Per paper id, the seq it has (or had) under each keyword that stored it with a seq:
        how the planner knows a paper was already mailed under another keyword."""
        out: dict[str, dict[str, int]] = {}
        for kw, ids in self.seen_ids().items():
            for pid, dropped in ids.items():
                if dropped.seq:
                    out.setdefault(pid, {})[kw] = dropped.seq
        for kw, items in self._held.items():
            for s, p in items:
                if s:
                    out.setdefault(p.id, {})[kw] = s
        return out

    def fetch_status(self) -> dict[str, FetchStatus]:
        """Per keyword, what its last fetch did."""
        statuses = (fetch_status_from_doc(doc) for doc in self.fetches)
        return {st.keyword: st for st in statuses}

    def apply(
        self,
        seq: int,
        stored: Held,
        fetches: Iterable[FetchStatus],
        seen: dict[str, dict[str, Dropped]] | None = None,
    ) -> None:
        """Replace the papers of the keywords in `stored`, record each fetch (a failed one keeps
        the last success on record) and the run seq: one write."""
        if stored:
            self.papers.remove(_Q.keyword.one_of(list(stored)))
            rows = [(kw, s, p) for kw, items in stored.items() for s, p in items]
            self.papers.insert_multiple({"keyword": kw, "seq": s, "paper": p.to_dict()} for kw, s, p in rows)
        for status in fetches:
            where = _Q.keyword == status.keyword
            old = self.fetches.get(where)
            after = status.after(fetch_status_from_doc(old) if old is not None else None)
            self.fetches.upsert(after.to_doc(), where)
        if seen is not None:
            raw = {kw: {i: [d.day, d.seq] for i, d in ids.items()} for kw, ids in seen.items()}
            db.put_single(self.seen, {"map": raw})
        db.put_single(self.meta, {"seq": seq})
        db.commit(self.db)
        self._held.update({kw: list(items) for kw, items in stored.items()})

    def close(self) -> None:
        self.db.close()
