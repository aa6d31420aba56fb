"""interests.json: the title and abstract of every paper a reader named as an interest, fetched
once by id and kept, and the ids arXiv did not serve (not asked again, said once).

One table, papers {id, title, summary, gone}: every record checked on open."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinydb import Query

from digestd.core import fields
from digestd.store import db

_AFRESH = "Run again to start it afresh: interest papers are fetched again from arXiv, once"
_Q = Query()


@dataclass(frozen=True, slots=True)
class InterestPaper:
    """One interest paper as kept: its text, or `gone` when arXiv did not serve it."""

    id: str
    title: str
    summary: str
    gone: bool = False

    def to_doc(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "summary": self.summary, "gone": self.gone}


def interest_from_doc(doc: Any) -> InterestPaper:
    """A record, field by field (BadRecord names the field)."""
    doc = fields.as_object(doc)
    return InterestPaper(
        id=fields.get(doc, "id", str),
        title=fields.get(doc, "title", str),
        summary=fields.get(doc, "summary", str),
        gone=fields.get(doc, "gone", bool),
    )


def check_interests(data: dict[str, Any]) -> str | None:
    return db.check_tables(data) or db.check_each(
        "papers", data.get("papers", {}), lambda k, d: interest_from_doc(d)
    )


class InterestStore:
    """The cache, read once on open; `add` then `commit` writes it in one atomic write."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.db = db.open_db(path, read_only=read_only, check=check_interests, afresh=_AFRESH)
        self.papers = self.db.table("papers", cache_size=0)
        self._known: dict[str, InterestPaper] = {}
        for doc in self.papers:
            paper = interest_from_doc(doc)
            self._known[paper.id] = paper

    def known(self) -> Mapping[str, InterestPaper]:
        return self._known

    def missing(self, ids: Iterable[str]) -> list[str]:
        """The ids never asked for, in first-seen order."""
        return [i for i in dict.fromkeys(ids) if i not in self._known]

    def add(self, papers: Iterable[InterestPaper]) -> None:
        new = [p for p in papers if p.id not in self._known]
        if new:
            self.papers.insert_multiple(p.to_doc() for p in new)
            self._known.update((p.id, p) for p in new)

    def commit(self) -> None:
        db.commit(self.db)

    def close(self) -> None:
        self.db.close()
