"""Pure: incidents an operator is told about once, and told again when they clear.

Each run states the conditions it sees (a keyword failing twice in a row, SMTP login or TLS
refused, deliveries pending for a day, a silent keyword); `reconcile` compares them with the
open incidents in state: a new one opens (and is mailed), one still there stays quiet, one
gone is resolved with a note. That note is sent even when the opening could not be mailed
(an SMTP login that failed also refused the alert): the operator then learns of it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from digestd.core import fields


class IncidentKind(StrEnum):
    KEYWORD_FAILING = "keyword-failing"  # failed on two runs in a row
    SMTP_FATAL = "smtp-fatal"  # authentication or TLS failed
    PENDING_DAY = "pending-24h"  # deliveries pending for 24 hours or more
    KEYWORD_SILENT = "keyword-silent"  # nothing new on silent_days announcement days


@dataclass(frozen=True, slots=True)
class Condition:
    """A problem seen by this run; `subject` tells incidents of one kind apart (a keyword)."""

    kind: IncidentKind
    subject: str
    detail: str

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.subject}"


@dataclass(frozen=True, slots=True)
class Incident:
    kind: IncidentKind
    subject: str
    detail: str
    opened: str  # ISO time of the run that first saw it
    notified: bool = False  # the operator was mailed about it (else: try again next run)
    mailing: bool = False  # a run stopped while mailing its alert: it may have gone, never mailed again

    @property
    def key(self) -> str:
        return f"{self.kind.value}:{self.subject}"

    def to_doc(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "subject": self.subject, "detail": self.detail,
                "opened": self.opened, "notified": self.notified, "mailing": self.mailing}


def incident_from_doc(doc: Any) -> Incident:
    doc = fields.as_object(doc)
    kind = fields.get(doc, "kind", str)
    try:
        checked = IncidentKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in IncidentKind)
        raise fields.BadRecord(f"field 'kind' is {kind[:20]!r}, not one of {known}") from None
    return Incident(
        kind=checked,
        subject=fields.get(doc, "subject", str),
        detail=fields.get(doc, "detail", str),
        opened=fields.stamp(doc, "opened") or "",
        notified=bool(fields.get(doc, "notified", bool, optional=True)),
        mailing=bool(fields.get(doc, "mailing", bool, optional=True)),
    )


@dataclass(frozen=True, slots=True)
class Reconciled:
    """`open`: what stays in state; `to_report`: opened and not yet mailed (nor maybe mailed by a
    run that was stopped while mailing it); `resolved`:
    cleared incidents (`notified` says whether their opening reached the operator)."""

    open: tuple[Incident, ...]
    to_report: tuple[Incident, ...]
    resolved: tuple[Incident, ...]


def reconcile(known: Mapping[str, Incident], seen: Iterable[Condition], now: str) -> Reconciled:
    """Open incidents after this run: one per condition, kept from before when already open."""
    current = {c.key: c for c in seen}
    still: list[Incident] = []
    for key, c in current.items():
        old = known.get(key)
        still.append(replace(old, detail=c.detail) if old else Incident(c.kind, c.subject, c.detail, now))
    resolved = tuple(i for k, i in known.items() if k not in current)
    return Reconciled(tuple(still), tuple(i for i in still if not (i.notified or i.mailing)), resolved)
