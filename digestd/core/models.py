"""The domain types every stage passes around: frozen records, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any

from digestd.core.query import build_query


@dataclass(frozen=True, slots=True)
class Paper:
    """One arXiv paper as digestd keeps it: already whitespace-collapsed, ready to render."""

    id: str  # arXiv id without version: "2506.05175" or "astro-ph/0601001"
    version: int
    title: str
    link: str  # the entry's rel="alternate" href, exactly as the API gave it
    pdf: str | None
    updated: str  # ISO 8601 UTC as the API gives it, e.g. "2025-06-05T17:59:46Z"
    published: str
    authors: tuple[str, ...]
    summary: str
    comment: str | None
    categories: tuple[str, ...]
    primary_category: str

    @property
    def date(self) -> str:
        """The updated date (UTC) the README and digests show."""
        return self.updated[:10]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "title": self.title,
            "link": self.link,
            "pdf": self.pdf,
            "updated": self.updated,
            "published": self.published,
            "authors": list(self.authors),
            "summary": self.summary,
            "comment": self.comment,
            "categories": list(self.categories),
            "primary_category": self.primary_category,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Paper:
        return cls(
            id=d["id"],
            version=int(d["version"]),
            title=d["title"],
            link=d["link"],
            pdf=d.get("pdf"),
            updated=d["updated"],
            published=d["published"],
            authors=tuple(d.get("authors", ())),
            summary=d.get("summary", ""),
            comment=d.get("comment"),
            categories=tuple(d.get("categories", ())),
            primary_category=d.get("primary_category", ""),
        )


@dataclass(frozen=True, slots=True)
class Keyword:
    """One configured keyword: one arXiv search and one README section."""

    name: str
    query: str | None = None  # raw arXiv query; None means the default ti/abs query
    categories: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()  # papers by any of them; the name is then only a label
    phrase: str | None = None  # the phrase searched instead of the name (AND with authors)
    exclude: tuple[str, ...] = ()  # a paper with one of these in title or abstract is dropped
    listing: tuple[str, ...] = ()  # every new paper of these categories (paged), not a search
    primary_only: bool = False  # a listing without cross-lists
    top: int = 15  # a listing's papers per reader: the most relevant to them

    @property
    def highlight(self) -> str | None:
        """The phrase a digest highlights in this entry's papers: its `phrase:`, else its name
        when the name is what is searched; nothing for an author or category entry, whose name
        is only a label."""
        if self.phrase:
            return self.phrase
        return None if self.authors or self.listing else self.name

    @property
    def search_query(self) -> str:
        """The arXiv search_query this entry sends (digestd/core/query.py builds it)."""
        return build_query(
            self.name, query=self.query, authors=self.authors, phrase=self.phrase, exclude=self.exclude,
            listing=self.listing,
        )


def email_key(email: str) -> str:
    """`email.lower()`, the key cursors and lookups use; the same object when the address
    already is lower case, so 100,000 subscribers' keys cost no copies (docs/benchmarks.md)."""
    return email if email.islower() else email.lower()


class Frequency(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"


class SubscriberStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A mail recipient and the keywords they follow (None: every keyword)."""

    email: str
    name: str | None = None
    keywords: tuple[str, ...] | None = None
    frequency: Frequency = Frequency.DAILY
    status: SubscriberStatus = SubscriberStatus.ACTIVE
    updates: bool = True  # False: revisions of old papers are left out of their digests
    interests: tuple[str, ...] = ()  # arXiv ids (after loading, .bib files' ids too)
    interest_texts: tuple[str, ...] = ()  # titles and abstracts of .bib entries without an id
    interest_files: tuple[str, ...] = ()  # the .bib files the ids came from
    paused_until: date | None = None  # no digests before this day (the manage page's pause)


@dataclass(frozen=True, slots=True)
class KeywordFetch:
    """What one keyword's fetch and diff produced in a run."""

    keyword: str
    fetched: int = 0
    new: tuple[str, ...] = ()  # ids of additions, newest first
    baseline: bool = False
    error: str | None = None


@dataclass(slots=True)
class RunReport:
    """What a run did; the CLI prints it and maps it to an exit code."""

    date: str
    keywords: list[KeywordFetch] = field(default_factory=list)
    sent: int = 0
    pending: int = 0
    failed: int = 0
    unknown: int = 0  # the final "." went out and no reply came: resent at most once, later
    would_mail: int = 0  # --dry-run: the digests a real run would queue now
    dry_run: bool = False
    mail_target: str = ""
    readme_written: bool = False
    messages: list[str] = field(default_factory=list)
    fatal: str | None = None

    @property
    def partial(self) -> bool:
        """True when something failed for now and the next run will retry it."""
        return self.pending > 0 or self.unknown > 0 or any(k.error for k in self.keywords)
