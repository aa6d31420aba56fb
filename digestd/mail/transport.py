"""What every transport shares: the jobs it is given, the outcome it reports for each, and
the result it returns, so the pipeline never asks a transport how it went.

Each outcome is reported the moment it is known, and a transport waits until the report of
an acceptance returns (the ledger made it durable) before the next message goes out on that
connection: a kill repeats at most one digest per connection. The transports themselves are
in digestd/mail/smtp.py and digestd/mail/maildir.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from digestd.config.settings import SmtpSettings
from digestd.core.records import DeliveryStatus
from digestd.mail.message import Envelope

SENT, FAILED, PENDING, UNKNOWN = (
    DeliveryStatus.SENT,
    DeliveryStatus.FAILED,
    DeliveryStatus.PENDING,
    DeliveryStatus.UNKNOWN,
)


@dataclass(frozen=True, slots=True)
class Job:
    """One delivery to attempt: `key` is the ledger's id for it."""

    key: int
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one delivery ended, with the reason a person reads in `status`."""

    status: DeliveryStatus
    detail: str = ""


# Awaited for every outcome; for SENT it returns once the acceptance is durable.
Report = Callable[[Job, Outcome], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TransportResult:
    """How sending ended as a whole: `fatal` (a setting to fix: auth, TLS, our sender
    refused) or `unreachable` (the server could not be reached); None when neither."""

    fatal: str | None = None
    unreachable: str | None = None


class Transport(Protocol):
    """Where digests go: `deliver` reports every job's outcome, then says how it ended."""

    def describe(self) -> str: ...

    async def deliver(self, jobs: AsyncIterator[Job], report: Report) -> TransportResult: ...


def make_transport(
    smtp: SmtpSettings | None,
    maildir: Path,
    *,
    connections: int,
    max_rate: float | None,
) -> Transport:
    """SMTP when DIGESTD_SMTP_HOST is set, else the Maildir in state/ (the embedded default).
    Retries, backoff and CA file come from `smtp` (validated by config).

    The transports are imported here, not at the top: they import this module's types."""
    if smtp is None:
        from digestd.mail.maildir import MaildirTransport

        return MaildirTransport(maildir)
    from digestd.mail.smtp import SmtpTransport

    return SmtpTransport(
        smtp,
        connections=connections,
        max_rate=max_rate,
        retries=smtp.retries,
        backoff=smtp.backoff,
        ca_file=smtp.ca_file,
    )
