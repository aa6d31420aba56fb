"""The embedded default transport: each digest becomes a file in state/maildir/new.

It needs no mail server and no settings. A digest that cannot be written (disk full,
permissions) stays pending for the next run.
"""

from __future__ import annotations

import mailbox
from collections.abc import AsyncIterator
from pathlib import Path

from digestd.mail.transport import PENDING, SENT, Job, Outcome, Report, TransportResult


class MaildirTransport:
    """Maildir through the stdlib `mailbox`, which writes each message atomically (tmp/ then new/)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"the Maildir at {self.path}"

    async def deliver(self, jobs: AsyncIterator[Job], report: Report) -> TransportResult:
        try:
            box = mailbox.Maildir(str(self.path), create=True)
        except OSError as err:
            return TransportResult(unreachable=f"cannot open the Maildir {self.path}: {err.strerror or err}")
        async for job in jobs:
            try:
                box.add(job.envelope.data)
            except OSError as err:  # disk full, permissions: that digest stays pending
                await report(job, Outcome(PENDING, f"cannot write to {self.path}: {err.strerror or err}"))
                continue
            await report(job, Outcome(SENT, "stored in Maildir"))
        return TransportResult()
