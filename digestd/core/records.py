"""Typed records of the state files (papers, the delivery ledger, cursors, fetch status, the
last run), and their field-by-field check at the storage edge.

state/*.json is outside data: an operator may edit it, a disk may flip it, an older digestd
may have written it. Every record read from it passes through `*_from_doc` here, which
returns a frozen value or raises `fields.BadRecord` naming the field (the store adds the table and
the record), so a wrong-typed value is a named, moved-aside file, never an "internal error"
later in the run. `BadRecord` is the only exception that leaves this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from digestd.core import fields
from digestd.core.models import Paper


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # queued, not yet accepted: the next attempt sends it
    SENT = "sent"  # the server answered 250 to the final "."
    FAILED = "failed"  # refused for good (5xx, unusable address): never retried
    UNKNOWN = "unknown"  # the final "." went out but no reply came: resent at most once later


def paper_from_doc(doc: Any) -> Paper:
    """A stored paper, every field checked (the README and digests print them all)."""
    doc = fields.as_object(doc)
    version = fields.nonneg(doc, "version")
    if version < 1:
        raise fields.BadRecord("field 'version' is below 1")
    return Paper(
        id=fields.get(doc, "id", str),
        version=version,
        title=fields.get(doc, "title", str),
        link=fields.get(doc, "link", str),
        pdf=fields.get(doc, "pdf", str, optional=True),
        updated=fields.stamp(doc, "updated") or "",
        published=fields.stamp(doc, "published") or "",
        authors=fields.str_list(doc, "authors") if "authors" in doc else (),
        summary=fields.get(doc, "summary", str, optional=True) or "",
        comment=fields.get(doc, "comment", str, optional=True),
        categories=fields.str_list(doc, "categories") if "categories" in doc else (),
        primary_category=fields.get(doc, "primary_category", str, optional=True) or "",
    )


@dataclass(frozen=True, slots=True)
class StoredPaper:
    keyword: str
    seq: int  # the run that first stored it for this keyword; 0: never mailed (baseline)
    paper: Paper


def stored_paper_from_doc(doc: Any) -> StoredPaper:
    doc = fields.as_object(doc)
    return StoredPaper(
        keyword=fields.get(doc, "keyword", str),
        seq=fields.nonneg(doc, "seq"),
        paper=paper_from_doc(fields.get(doc, "paper", dict)),
    )


class _NoCounts(Mapping[str, int]):
    """The empty `more` of nearly every delivery: one shared read-only object, not 100,000
    empty dicts; equal to {}, and pickled by name (the builder processes get deliveries)."""

    def __getitem__(self, key: str) -> int:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __reduce__(self) -> str:
        return "NO_COUNTS"

    def __repr__(self) -> str:
        return "{}"


NO_COUNTS: Mapping[str, int] = _NoCounts()


@dataclass(frozen=True, slots=True)
class Delivery:
    """One digest to one subscriber, as the ledger holds it. `key` is tinydb's doc id."""

    key: int
    email: str
    name: str | None
    run: int
    date: str
    created: str
    papers: Mapping[str, tuple[str, ...]]  # keyword -> paper ids, newest first
    message_id: str
    status: DeliveryStatus
    error: str | None = None
    sent_at: str | None = None
    resends: int = 0  # sends after an UNKNOWN outcome (at most one)
    attempts: int = 0  # outcomes recorded so far (`status` shows them; older files: 0)
    last_attempt: str | None = None  # ISO time of the last outcome
    for_you: tuple[str, ...] = ()  # paper ids above the reader's relevance bar (issue 12)
    more: Mapping[str, int] = field(default_factory=lambda: NO_COUNTS)  # listing -> papers beyond its `top`

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "email": self.email,
            "name": self.name,
            "run": self.run,
            "date": self.date,
            "created": self.created,
            # The delivery's own map, read only (JSON writes its tuples as lists): the ledger's
            # document and the delivery hold one object, not a copy per digest.
            "papers": self.papers if isinstance(self.papers, dict) else dict(self.papers),
            "message_id": self.message_id,
            "status": self.status.value,
        }
        # Optional keys only when set: a document stays within 10 keys once sent, the size
        # of the dict it was made as (one more doubles it: 30 MB at 100,000 deliveries).
        if self.error is not None:
            doc["error"] = self.error
        if self.sent_at is not None:
            doc["sent_at"] = self.sent_at
        if self.resends:
            doc["resends"] = self.resends
        if self.attempts:
            doc["attempts"] = self.attempts
        if self.last_attempt is not None:
            doc["last_attempt"] = self.last_attempt
        if self.for_you:
            doc["for_you"] = list(self.for_you)
        if self.more:
            doc["more"] = dict(self.more)
        return doc


def delivery_from_doc(key: int, doc: Any) -> Delivery:
    doc = fields.as_object(doc)
    papers = fields.get(doc, "papers", dict)
    checked: dict[str, tuple[str, ...]] = {}
    for kw, ids in papers.items():
        if not isinstance(ids, list | tuple) or not all(isinstance(i, str) for i in ids):
            raise fields.BadRecord(f"papers of {kw!r} are not a list of ids")
        checked[kw] = tuple(ids)
    day = fields.day(doc, "date") or ""
    status = fields.get(doc, "status", str)
    try:
        st = DeliveryStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in DeliveryStatus)
        raise fields.BadRecord(f"field 'status' is {status[:20]!r}, not one of {known}") from None
    return Delivery(
        key=key,
        email=fields.get(doc, "email", str),
        name=fields.get(doc, "name", str, optional=True),
        run=fields.nonneg(doc, "run", default=0),
        date=day,
        created=fields.stamp(doc, "created", optional=True) or f"{day}T00:00:00Z",
        papers=checked,
        message_id=fields.get(doc, "message_id", str),
        status=st,
        error=fields.get(doc, "error", str, optional=True),
        sent_at=fields.get(doc, "sent_at", str, optional=True),
        resends=fields.nonneg(doc, "resends", default=0),
        attempts=fields.nonneg(doc, "attempts", default=0),
        last_attempt=fields.stamp(doc, "last_attempt", optional=True),
        for_you=_ids(doc, "for_you"),
        more=_counts(doc, "more"),
    )


def _counts(doc: Mapping[str, Any], name: str) -> Mapping[str, int]:
    """An optional object of whole numbers (absent in older files: empty)."""
    value = fields.get(doc, name, dict, optional=True) or {}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values()):
        raise fields.BadRecord(f"field {name!r} is not an object of counts")
    return dict(value) if value else NO_COUNTS


def _ids(doc: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """An optional list of paper ids (absent in older files: none)."""
    value = fields.get(doc, name, list, optional=True) or []
    if not all(isinstance(i, str) for i in value):
        raise fields.BadRecord(f"field {name!r} is not a list of ids")
    return tuple(value)


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a subscriber stands: what was queued for them, and their pause/failure streak.

    `follows` maps each keyword they follow, or followed, to its spans: (start, end) run
    seqs, end None while they still follow it. Papers of that keyword with a seq in
    (start, min(end, queued_through)] were mailed to them, which is how a paper that
    reappears under another keyword is known as mailed, even after they switched keywords.
    """

    queued_through: int = 0
    since: str | None = None  # the date this record was made (weekly digests count from it)
    last_queued: str | None = None  # the date of their last digest
    fail_streak: int = 0  # permanent failures in a row
    paused: str | None = None  # why digestd paused them (None: not paused by digestd)
    paused_on: str | None = None  # the date digestd paused them (`status`; older files: None)
    follows: Follows | None = None  # None: written before digestd kept it

    def to_doc(self, follows_ref: str | None = None) -> dict[str, Any]:
        """`follows_ref` names the shared follows map (see `Outbox.save_cursors`)."""
        doc: dict[str, Any] = {"queued_through": self.queued_through}
        if self.since is not None:
            doc["since"] = self.since
        if self.last_queued is not None:
            doc["last_queued"] = self.last_queued
        if self.fail_streak:
            doc["fail_streak"] = self.fail_streak
        if self.paused:
            doc["paused"] = self.paused
            if self.paused_on:
                doc["paused_on"] = self.paused_on
        if follows_ref is not None:
            doc["follows"] = follows_ref
        elif self.follows is not None:
            doc["follows"] = follows_to_value(self.follows)
        return doc


Span = tuple[int, int | None]  # (started after run seq, ended at run seq or None: still followed)
Follows = Mapping[str, tuple[Span, ...]]


def follows_to_value(follows: Follows, shared: dict[Any, Any] | None = None,
                     ) -> dict[str, list[list[int | None]]]:
    """The stored form. `shared`: equal span lists become one list object across the maps of
    one save (100,000 distinct maps hold a handful of distinct spans); the JSON is the same."""
    shared = {} if shared is None else shared
    out: dict[str, list[list[int | None]]] = {}
    for kw, spans in sorted(follows.items()):
        value = shared.get(spans)
        if value is None:
            value = shared[spans] = [[a, b] for a, b in spans]
        out[kw] = value
    return out


def _run(value: Any, *, open_end: bool = False) -> int | None:
    if value is None and open_end:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise fields.BadRecord("a follows map is not a map of keyword to run spans")


def follows_from_value(value: Any, shared: dict[Any, Any] | None = None) -> dict[str, tuple[Span, ...]]:
    """`{kw: [[start, end|null], ...]}`; `{kw: start}` as an earlier digestd wrote it.
    `shared`: equal spans become one tuple across the maps of one load (see follows_to_value)."""
    if not isinstance(value, dict):
        raise fields.BadRecord("a follows map is not a map of keyword to run spans")
    out: dict[str, tuple[Span, ...]] = {}
    for kw, spans in value.items():
        if not isinstance(kw, str):
            raise fields.BadRecord("a follows map is not a map of keyword to run spans")
        if not isinstance(spans, list):
            out[kw] = ((_run(spans) or 0, None),)
            continue
        checked: list[Span] = []
        for span in spans:
            if not isinstance(span, list) or len(span) != 2:
                raise fields.BadRecord("a follows map is not a map of keyword to run spans")
            checked.append((_run(span[0]) or 0, _run(span[1], open_end=True)))
        spans_t = tuple(checked)
        out[kw] = spans_t if shared is None else shared.setdefault(spans_t, spans_t)
    return out


def cursor_from_doc(doc: Any, shared: Mapping[str, Follows] | None = None) -> Cursor:
    """`shared`: the follows maps cursors name by reference (one object per distinct map)."""
    doc = fields.as_object(doc)
    ref = doc.get("follows")
    follows: Follows | None = None
    if isinstance(ref, str):
        if shared is None or ref not in shared:
            raise fields.BadRecord(f"field 'follows' names {ref[:20]!r}, which the file does not hold")
        follows = shared[ref]
    elif ref is not None:
        follows = follows_from_value(ref)
    paused = doc.get("paused")
    if paused is not None and not isinstance(paused, str | bool):
        raise fields.BadRecord(f"field 'paused' is {type(paused).__name__}, not text")
    return Cursor(
        queued_through=fields.nonneg(doc, "queued_through", default=0),
        since=fields.day(doc, "since", optional=True),
        last_queued=fields.day(doc, "last_queued", optional=True),
        fail_streak=fields.nonneg(doc, "fail_streak", default=0),
        paused=(paused if isinstance(paused, str) else "paused") if paused else None,
        paused_on=fields.day(doc, "paused_on", optional=True),
        follows=follows,
    )


@dataclass(frozen=True, slots=True)
class Dropped:
    """A paper a keyword once stored and since dropped (it fell out of the newest rows)."""

    day: str  # when it was dropped; entries older than the retention window are forgotten
    seq: int  # the seq it had (0: never mailed, or recorded by a digestd that did not keep it)


def dropped_from_value(value: Any) -> Dropped:
    """Accept `"YYYY-MM-DD"` (written before seqs were kept) and `["YYYY-MM-DD", seq]`."""
    if isinstance(value, str) and fields.is_day(value):
        return Dropped(value, 0)
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and fields.is_day(value[0])
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
        and value[1] >= 0
    ):
        return Dropped(value[0], value[1])
    raise fields.BadRecord("not a date or a [date, seq] pair")


@dataclass(frozen=True, slots=True)
class FetchStatus:
    """What the last attempt to fetch a keyword did, and its last success (`digestd status`)."""

    keyword: str
    last_attempt: str | None = None
    last_success: str | None = None  # None: never fetched
    fetched: int | None = None  # of the last success
    new: int | None = None
    error: str | None = None  # why the last attempt failed; None: it succeeded

    def after(self, previous: FetchStatus | None) -> FetchStatus:
        """What to keep on record: a failed attempt keeps the last success's counts."""
        if not self.error or previous is None:
            return self
        return replace(previous, last_attempt=self.last_attempt, error=self.error)

    def to_doc(self) -> dict[str, Any]:
        return {
            "keyword": self.keyword,
            "last_attempt": self.last_attempt,
            "last_success": self.last_success,
            "fetched": self.fetched,
            "new": self.new,
            "error": self.error,
        }


def fetch_status_from_doc(doc: Any) -> FetchStatus:
    """Fields other than `keyword` may be missing: a first attempt that failed writes only those."""
    doc = fields.as_object(doc)
    return FetchStatus(
        keyword=fields.get(doc, "keyword", str),
        last_attempt=fields.stamp(doc, "last_attempt", optional=True),
        last_success=fields.stamp(doc, "last_success", optional=True),
        fetched=fields.count(doc, "fetched"),
        new=fields.count(doc, "new"),
        error=fields.get(doc, "error", str, optional=True),
    )


class RunOutcome(StrEnum):
    OK = "ok"
    PARTIAL = "partial"  # something failed for now; the next run retries it
    FAILED = "failed"  # the run stopped (`fatal` says why)


@dataclass(frozen=True, slots=True)
class KeywordRun:
    """One keyword in a run summary."""

    fetched: int = 0
    new: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What the last run did, kept for `digestd status` (and its --json, which prints `to_doc`)."""

    time: str
    date: str
    outcome: RunOutcome
    sent: int = 0
    pending: int = 0
    failed: int = 0
    keywords: Mapping[str, KeywordRun] = field(default_factory=dict)
    fatal: str | None = None
    written_to: str | None = None  # no SMTP server was set: the digests went there, not sent

    def to_doc(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "date": self.date,
            "outcome": self.outcome.value,
            "sent": self.sent,
            "pending": self.pending,
            "failed": self.failed,
            "keywords": {
                kw: {"fetched": k.fetched, "new": k.new, "error": k.error} for kw, k in self.keywords.items()
            },
            "fatal": self.fatal,
        } | ({"written_to": self.written_to} if self.written_to else {})  # earlier files' shape kept


def run_summary_from_doc(doc: Any) -> RunSummary:
    doc = fields.as_object(doc)
    outcome = fields.get(doc, "outcome", str)
    try:
        checked = RunOutcome(outcome)
    except ValueError:
        known = ", ".join(RunOutcome)
        raise fields.BadRecord(f"field 'outcome' is {outcome[:20]!r}, not one of {known}") from None
    keywords: dict[str, KeywordRun] = {}
    for kw, k in (fields.get(doc, "keywords", dict, optional=True) or {}).items():
        try:
            k = fields.as_object(k)
            fetched, new = fields.nonneg(k, "fetched", default=0), fields.nonneg(k, "new", default=0)
            keywords[kw] = KeywordRun(fetched, new, fields.get(k, "error", str, optional=True))
        except fields.BadRecord as err:
            raise fields.BadRecord(f"field 'keywords', keyword {kw[:40]!r}: {err.why}") from None
    return RunSummary(
        time=fields.stamp(doc, "time") or "",
        date=fields.day(doc, "date") or "",
        outcome=checked,
        sent=fields.nonneg(doc, "sent", default=0),
        pending=fields.nonneg(doc, "pending", default=0),
        failed=fields.nonneg(doc, "failed", default=0),
        keywords=keywords,
        fatal=fields.get(doc, "fatal", str, optional=True),
        written_to=fields.get(doc, "written_to", str, optional=True),
    )
