"""Typed records of the ledger, and their field-by-field check at the storage edge.

state/*.json is outside data: an operator may edit it, a disk may flip it, an older digestd
may have written it. Every record read from it passes through `*_from_doc` here, which
returns a frozen value or raises `BadRecord` naming the table, the record and the field, so
a wrong-typed value is a named, moved-aside file, never an "internal error" later in the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from digestd.core.models import Paper


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # queued, not yet accepted: the next attempt sends it
    SENT = "sent"  # the server answered 250 to the final "."
    FAILED = "failed"  # refused for good (5xx, unusable address): never retried
    UNKNOWN = "unknown"  # the final "." went out but no reply came: resent at most once later


class BadRecord(Exception):
    """A record in a state file has a missing field or a value of the wrong type."""

    def __init__(self, table: str, key: str, why: str) -> None:
        super().__init__(f"{table} record {key!r}: {why}")
        self.table, self.key, self.why = table, key, why


def _get(doc: Mapping[str, Any], name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if name not in doc or doc[name] is None:
        if optional:
            return None
        raise ValueError(f"no field {name!r}")
    value = doc[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"field {name!r} is {type(value).__name__}, not {_kind_name(kind)}")
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"field {name!r} holds a lone surrogate, not text") from None
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _day(doc: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = _get(doc, name, str, optional=optional)
    if value is not None:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"field {name!r} is not a date (YYYY-MM-DD): {value[:40]!r}") from None
    return value  # type: ignore[no-any-return]


def _stamp(doc: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = _get(doc, name, str, optional=optional)
    if value is not None:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"field {name!r} is not a time (ISO 8601): {value[:40]!r}") from None
    return value  # type: ignore[no-any-return]


def _str_list(doc: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = _get(doc, name, list)
    if not all(isinstance(v, str) for v in value):
        raise ValueError(f"field {name!r} holds something other than text")
    return tuple(value)


def _nonneg(doc: Mapping[str, Any], name: str, *, default: int | None = None) -> int:
    if default is not None and doc.get(name) is None:
        return default
    value: int = _get(doc, name, int)
    if value < 0:
        raise ValueError(f"field {name!r} is negative")
    return value


def paper_from_doc(doc: Mapping[str, Any]) -> Paper:
    """A stored paper, every field checked (the README and digests print them all)."""
    version = _nonneg(doc, "version")
    if version < 1:
        raise ValueError("field 'version' is below 1")
    return Paper(
        id=_get(doc, "id", str),
        version=version,
        title=_get(doc, "title", str),
        link=_get(doc, "link", str),
        pdf=_get(doc, "pdf", str, optional=True),
        updated=_stamp(doc, "updated") or "",
        published=_stamp(doc, "published") or "",
        authors=_str_list(doc, "authors") if "authors" in doc else (),
        summary=_get(doc, "summary", str, optional=True) or "",
        comment=_get(doc, "comment", str, optional=True),
        categories=_str_list(doc, "categories") if "categories" in doc else (),
        primary_category=_get(doc, "primary_category", str, optional=True) or "",
    )


@dataclass(frozen=True, slots=True)
class StoredPaper:
    keyword: str
    seq: int  # the run that first stored it for this keyword; 0: never mailed (baseline)
    paper: Paper


def stored_paper_from_doc(doc: Mapping[str, Any]) -> StoredPaper:
    return StoredPaper(
        keyword=_get(doc, "keyword", str),
        seq=_nonneg(doc, "seq"),
        paper=paper_from_doc(_get(doc, "paper", dict)),
    )


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

    def to_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "email": self.email,
            "name": self.name,
            "run": self.run,
            "date": self.date,
            "created": self.created,
            "papers": {kw: list(ids) for kw, ids in self.papers.items()},
            "message_id": self.message_id,
            "status": self.status.value,
            "error": self.error,
        }
        if self.sent_at is not None:
            doc["sent_at"] = self.sent_at
        if self.resends:
            doc["resends"] = self.resends
        return doc


def delivery_from_doc(key: int, doc: Mapping[str, Any]) -> Delivery:
    papers = _get(doc, "papers", dict)
    checked: dict[str, tuple[str, ...]] = {}
    for kw, ids in papers.items():
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"papers of {kw!r} are not a list of ids")
        checked[kw] = tuple(ids)
    day = _day(doc, "date") or ""
    status = _get(doc, "status", str)
    try:
        st = DeliveryStatus(status)
    except ValueError:
        known = ", ".join(s.value for s in DeliveryStatus)
        raise ValueError(f"field 'status' is {status[:20]!r}, not one of {known}") from None
    return Delivery(
        key=key,
        email=_get(doc, "email", str),
        name=_get(doc, "name", str, optional=True),
        run=_nonneg(doc, "run", default=0),
        date=day,
        created=_stamp(doc, "created", optional=True) or f"{day}T00:00:00Z",
        papers=checked,
        message_id=_get(doc, "message_id", str),
        status=st,
        error=_get(doc, "error", str, optional=True),
        sent_at=_get(doc, "sent_at", str, optional=True),
        resends=_nonneg(doc, "resends", default=0),
    )


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a subscriber stands: what was queued for them, and their pause/failure streak.

    `follows` maps each keyword they follow to the run seq at which they started following
    it: papers of that keyword with a seq in (follows[kw], queued_through] were mailed to
    them, which is how a paper that reappears under another keyword is known as mailed.
    """

    queued_through: int = 0
    since: str | None = None  # the date this record was made (weekly digests count from it)
    last_queued: str | None = None  # the date of their last digest
    fail_streak: int = 0  # permanent failures in a row
    paused: str | None = None  # why digestd paused them (None: not paused by digestd)
    follows: Mapping[str, int] | None = None  # None: written before digestd kept it

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
        if follows_ref is not None:
            doc["follows"] = follows_ref
        elif self.follows is not None:
            doc["follows"] = dict(self.follows)
        return doc


def follows_from_value(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in value.items()
    ):
        raise ValueError("a follows map is not a map of keyword to run number")
    return value


def cursor_from_doc(doc: Mapping[str, Any], shared: Mapping[str, Mapping[str, int]] | None = None) -> Cursor:
    """`shared`: the follows maps cursors name by reference (one object per distinct map)."""
    ref = doc.get("follows")
    follows: Mapping[str, int] | None = None
    if isinstance(ref, str):
        if shared is None or ref not in shared:
            raise ValueError(f"field 'follows' names {ref[:20]!r}, which the file does not hold")
        follows = shared[ref]
    elif ref is not None:
        follows = follows_from_value(ref)
    paused = doc.get("paused")
    if paused is not None and not isinstance(paused, str | bool):
        raise ValueError(f"field 'paused' is {type(paused).__name__}, not text")
    return Cursor(
        queued_through=_nonneg(doc, "queued_through", default=0),
        since=_day(doc, "since", optional=True),
        last_queued=_day(doc, "last_queued", optional=True),
        fail_streak=_nonneg(doc, "fail_streak", default=0),
        paused=(paused if isinstance(paused, str) else "paused") if paused else None,
        follows=follows,
    )


@dataclass(frozen=True, slots=True)
class Dropped:
    """A paper a keyword once stored and since dropped (it fell out of the newest rows)."""

    day: str  # when it was dropped; entries older than the retention window are forgotten
    seq: int  # the seq it had (0: never mailed, or recorded by a digestd that did not keep it)


def dropped_from_value(value: Any) -> Dropped:
    """Accept `"YYYY-MM-DD"` (written before seqs were kept) and `["YYYY-MM-DD", seq]`."""
    if isinstance(value, str):
        date.fromisoformat(value)
        return Dropped(value, 0)
    if (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
        and value[1] >= 0
    ):
        date.fromisoformat(value[0])
        return Dropped(value[0], value[1])
    raise ValueError("not a date or a [date, seq] pair")
