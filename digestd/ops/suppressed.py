"""The suppression list and the last bounce check, as `digestd status` shows them.

They are kept by the bounce handling (digestd/store/suppressions.py); status reads them through
its one small interface, `status_view(state_dir)` -> (entries with `email`, `reason`, `since`;
the time of the last bounce check or None), and holds them as its own typed values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from digestd.store.suppressions import status_view


@dataclass(frozen=True, slots=True)
class Suppressed:
    email: str
    reason: str
    since: str | None


@dataclass(frozen=True, slots=True)
class BounceView:
    suppressed: tuple[Suppressed, ...] = ()
    last_check: str | None = None  # when bounces were last read; None: never


def read_bounce_view(state_dir: Path) -> BounceView:
    """What the suppression store holds (empty when it has never been written)."""
    entries, last_check = status_view(state_dir)
    return BounceView(tuple(Suppressed(e.email, e.reason, e.since) for e in entries), last_check)
