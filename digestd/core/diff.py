"""Pure: compare a keyword's fetch with what it holds; decide what is new and what to keep."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from digestd.core.models import Keyword, Paper
from digestd.errors import DigestdError, ExitCode


@dataclass(frozen=True, slots=True)
class KeywordDiff:
    """The next state of one keyword, and which ids are additions."""

    stored: list[tuple[int, Paper]]  # (seq, paper), newest first, what to keep
    additions: tuple[str, ...]  # ids first stored by this run, newest first
    updated: tuple[str, ...]  # ids whose newer version replaced the stored one
    baseline: bool


class SuspiciousResponse(DigestdError):
    """The fetch looks wrong (e.g. years-old papers as "new"); keep the state as it was."""

    exit_code = ExitCode.TEMPFAIL  # the keyword is fetched again by the next run


def _ts(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def diff_keyword(
    held: list[tuple[int, Paper]],
    fetched: list[Paper],
    *,
    seq: int,
    max_results: int,
    stale_margin_days: int,
    keep_ids: frozenset[str] = frozenset(),
    known_ids: frozenset[str] = frozenset(),
    not_after: datetime | None = None,
) -> KeywordDiff:
    """Merge `fetched` into `held` for run `seq`.

    Identity is the id without version. A newer version updates the record but is not an
    addition. With nothing held, the keyword is in baseline mode: everything is stored as
    seq 0 (never mailed). The `max_results` newest papers are kept, plus `keep_ids`
    (papers a pending or not-yet-due digest still needs). `known_ids` holds ids stored before and
    since dropped, so a paper that falls out and comes back is never mailed twice. A held paper
    dated after `not_after` (the run's clock) does not count for the stale-response check.
    """
    by_id: dict[str, tuple[int, Paper]] = {p.id: (s, p) for s, p in held}
    baseline = not held
    additions: list[str] = []
    updated: list[str] = []
    seen: set[str] = set()
    dates = (_ts(p.updated) for _, p in held)
    # A held paper dated after the run's clock (stored before such entries were skipped) would
    # make every real new paper look stale: the check leaves it out.
    newest_held = max((d for d in dates if not_after is None or d <= not_after), default=None)
    margin = timedelta(days=stale_margin_days)
    for paper in fetched:
        if paper.id in seen:
            continue
        seen.add(paper.id)
        old = by_id.get(paper.id)
        if old is None:
            if newest_held is not None and _ts(paper.updated) < newest_held - margin:
                raise SuspiciousResponse(
                    f"arXiv returned {paper.id} (updated {paper.date}) as new, but this keyword "
                    f"already holds papers from {newest_held.date()}: the response looks wrong"
                )
            is_new = not baseline and paper.id not in known_ids
            by_id[paper.id] = (seq if is_new else 0, paper)
            if is_new:
                additions.append(paper.id)
        elif paper.version > old[1].version or (paper.version == old[1].version and paper != old[1]):
            by_id[paper.id] = (old[0], paper)
            if paper.version > old[1].version:
                updated.append(paper.id)
    ranked = sorted(by_id.values(), key=lambda sp: sp[1].updated, reverse=True)
    kept = ranked[:max_results] + [sp for sp in ranked[max_results:] if sp[1].id in keep_ids]
    return KeywordDiff(stored=kept, additions=tuple(additions), updated=tuple(updated), baseline=baseline)


def latest(held: list[tuple[int, Paper]], rows: int) -> list[Paper]:
    """The `rows` most recent papers by updated date (stable: ties keep stored order)."""
    return [p for _, p in sorted(held, key=lambda sp: sp[1].updated, reverse=True)[:rows]]


def in_categories(papers: list[Paper], keyword: Keyword) -> list[Paper]:
    """The papers in one of the keyword's `categories` (all of them when none are set)."""
    if not keyword.categories:
        return papers
    wanted = set(keyword.categories)
    return [p for p in papers if wanted.intersection(p.categories)]
