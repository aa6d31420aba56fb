"""What `digestd run` shows on a terminal: a progress line while fetching and sending, and
above it the lines that stay (each keyword's result, then the delivery counts). Off a
terminal (journald, cron) none of this is used: the run logs plain lines.

The sending side wraps the run's transport, so the pipeline and the stages know nothing of
the screen: each outcome a transport reports passes through `ProgressTransport` on its way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import TextIO

from digestd.core.models import KeywordFetch
from digestd.core.records import DeliveryStatus
from digestd.mail.transport import Job, Outcome, Report, Transport, TransportResult

BAR = 24
WIDTH = 79  # the progress line is cut to this, so it never wraps (a wrapped line cannot be erased)


class Screen:
    """One erasable progress line at the bottom; `keep` prints a line that stays above it."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.shown = False

    def progress(self, text: str) -> None:
        self.out.write("\r\x1b[2K" + text[:WIDTH])
        self.out.flush()
        self.shown = True

    def keep(self, line: str) -> None:
        self.clear()
        self.out.write(line + "\n")
        self.out.flush()

    def clear(self) -> None:
        if self.shown:
            self.out.write("\r\x1b[2K")
            self.out.flush()
            self.shown = False


class FetchProgress:
    """`[#####.....] 3/10 keyword` while fetching; each keyword's result stays on screen."""

    def __init__(self, screen: Screen, total: int, line: Callable[[KeywordFetch], str]) -> None:
        self.screen, self.total, self.line, self.n = screen, total, line, 0

    def start(self) -> None:
        if self.total:
            self.screen.progress(f"fetching: {self._bar()} 0/{self.total}")

    def step(self, k: KeywordFetch) -> None:
        self.n += 1
        self.screen.keep(self.line(k))
        if self.n < self.total:
            self.screen.progress(f"fetching: {self._bar()} {self.n}/{self.total}")

    def _bar(self) -> str:
        filled = BAR * self.n // max(self.total, 1)
        return f"[{'#' * filled}{'.' * (BAR - filled)}]"


class ProgressTransport:
    """The run's transport, with a live count of outcomes on the progress line."""

    def __init__(self, inner: Transport, screen: Screen) -> None:
        self.inner, self.screen = inner, screen
        self.counts: Counter[DeliveryStatus] = Counter()

    def describe(self) -> str:
        return self.inner.describe()

    async def deliver(self, jobs: AsyncIterator[Job], report: Report) -> TransportResult:
        async def counted(job: Job, outcome: Outcome) -> None:
            self.counts[outcome.status] += 1
            self.screen.progress(f"sending: {self.line()}")
            await report(job, outcome)

        try:
            return await self.inner.deliver(jobs, counted)
        finally:
            self.screen.clear()

    def line(self) -> str:
        c = self.counts
        return (f"{c[DeliveryStatus.SENT]} sent, {c[DeliveryStatus.PENDING]} pending, "
                f"{c[DeliveryStatus.FAILED]} failed" + (f", {c[DeliveryStatus.UNKNOWN]} unknown"
                                                         if c[DeliveryStatus.UNKNOWN] else ""))
