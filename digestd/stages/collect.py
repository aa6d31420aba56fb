"""Stage 1: fetch every keyword, diff it against what is held, store the result in one write.

One keyword's failure (FetchError, SuspiciousResponse) fails that keyword only: its papers and
README section stay as they were, and a later run catches it up."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from digestd.config.settings import Config
from digestd.core.diff import SuspiciousResponse, diff_keyword, in_categories
from digestd.core.models import KeywordFetch, Paper, RunReport
from digestd.core.plan import retention
from digestd.core.records import Cursor, Dropped, FetchStatus
from digestd.errors import FetchError
from digestd.source.arxiv import PaperSource
from digestd.stages.follow import fetch_keyword, keep_count, local_checks
from digestd.store.outbox import Outbox
from digestd.store.papers import Held, PaperStore

log = logging.getLogger(__name__)

KEEP_SEEN_DAYS = 400  # a paper that fell out of a keyword's list is remembered this long
CLOCK_SLACK = timedelta(days=1)  # how far past the run's clock an arXiv date may be


@dataclass(frozen=True, slots=True)
class Collected:
    """The papers per keyword as they now stand, and the run seq new ones carry."""

    papers: Held
    seq: int


def collect(
    cfg: Config,
    store: PaperStore,
    outbox: Outbox,
    cursors: Mapping[str, Cursor],
    source: PaperSource,
    dry_run: bool,
    now: datetime,
    today: date,
    report: RunReport,
    on_keyword: Callable[[KeywordFetch], None] | None,
) -> Collected:
    """Fetch and diff every keyword; store the result (one write) unless this is a dry run."""
    s = cfg.settings
    held_all = store.by_keyword()
    seen = store.seen_ids()
    seq = store.seq + 1
    floors = retention(cfg.subscribers, cfg.keywords, cursors, outbox.pending())
    stored: Held = {}
    status: list[FetchStatus] = []
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    not_after = now.astimezone(UTC) + CLOCK_SLACK  # no arXiv date is later: one later is wrong
    for kw in cfg.keywords:
        held = held_all.get(kw.name, [])
        try:
            fetched = fetch_keyword(source, kw, s.max_results, held)  # a listing pages
            if not fetched and held:
                raise FetchError("arXiv returned an empty page for a keyword that has papers")
            fetched = not_in_the_future(fetched, not_after, kw.name)
            fetched = in_categories(fetched, kw)  # after the check: a filtered-out day is no error
            fetched = local_checks(fetched, kw)  # exclusions (arXiv stems), primary_only
            low, pend_ids = floors.get(kw.name, (1 << 60, set()))
            keep = frozenset(pend_ids | {p.id for q, p in held if q > low})
            result = diff_keyword(
                held,
                fetched,
                seq=seq,
                max_results=keep_count(kw, s.max_results, fetched),
                stale_margin_days=s.stale_margin_days,
                keep_ids=keep,
                known_ids=frozenset(seen.get(kw.name, {})),
                not_after=not_after,
            )
        except Exception as err:
            why = str(err) if isinstance(err, FetchError | SuspiciousResponse) else _unexpected(kw.name, err)
            kf = KeywordFetch(kw.name, error=why)
            status.append(FetchStatus(kw.name, last_attempt=stamp, error=why))
        else:
            kf = KeywordFetch(
                kw.name,
                fetched=len(fetched),
                new=result.additions,
                baseline=result.baseline and bool(fetched),
            )
            if fetched:
                stored[kw.name] = result.stored
                kept = {p.id for _, p in result.stored}
                gone = {p.id: Dropped(today.isoformat(), q) for q, p in held if p.id not in kept}
                seen.setdefault(kw.name, {}).update(gone)
            status.append(FetchStatus(kw.name, stamp, stamp, len(fetched), len(result.additions)))
        report.keywords.append(kf)
        if on_keyword:
            on_keyword(kf)
    if dry_run:
        return Collected({**held_all, **stored}, seq)
    cutoff = date.fromordinal(today.toordinal() - KEEP_SEEN_DAYS).isoformat()
    seen = {kw: {i: d for i, d in ids.items() if d.day >= cutoff} for kw, ids in seen.items()}
    store.apply(seq if stored else store.seq, stored, status, seen)
    return Collected(store.by_keyword(), store.seq)


def not_in_the_future(papers: list[Paper], not_after: datetime, keyword: str) -> list[Paper]:
    """The papers not dated after `not_after` (the run's clock plus CLOCK_SLACK); the others
    are skipped with a warning: stored, one would top the keyword forever, and every real new
    paper would then look years old to the stale-response check, failing the keyword every run."""
    limit = not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    kept = []
    for paper in papers:
        if max(paper.updated, paper.published) > limit:
            log.warning("%s: skipped %sv%d: it is dated %s, after the clock's %s",
                        keyword, paper.id, paper.version, max(paper.updated, paper.published), limit)
            continue
        kept.append(paper)
    return kept


def _unexpected(keyword: str, err: Exception) -> str:
    """A fault digestd did not foresee fails that keyword, in one logged line (a bug to report)."""
    log.warning("%s: unexpected %s: %s", keyword, type(err).__name__, err)
    return f"unexpected {type(err).__name__} while fetching: {err}"
