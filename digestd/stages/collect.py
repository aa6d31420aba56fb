"""Stage 1: fetch every keyword, diff it against what is held, store the result in one write.

One keyword's failure (FetchError, SuspiciousResponse) fails that keyword only: its papers and
README section stay as they were, and a later run catches it up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from digestd.config.load import Config
from digestd.core.diff import SuspiciousResponse, diff_keyword, in_categories
from digestd.core.models import KeywordFetch, RunReport
from digestd.core.plan import retention
from digestd.core.records import Dropped
from digestd.source.arxiv import FetchError, PaperSource
from digestd.store.state import Held, Outbox, PaperStore

KEEP_SEEN_DAYS = 400  # a paper that fell out of a keyword's list is remembered this long


@dataclass(frozen=True, slots=True)
class Collected:
    """The papers per keyword as they now stand, and the run seq new ones carry."""

    papers: Held
    seq: int


def collect(
    cfg: Config,
    store: PaperStore,
    outbox: Outbox,
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
    floors = retention(cfg.subscribers, cfg.keywords, outbox.load_cursors(), outbox.pending())
    stored: Held = {}
    status: dict[str, dict[str, Any]] = {}
    stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    for kw in cfg.keywords:
        held = held_all.get(kw.name, [])
        try:
            fetched = source.fetch(kw, s.max_results)
            if not fetched and held:
                raise FetchError("arXiv returned an empty page for a keyword that has papers")
            fetched = in_categories(fetched, kw)  # after the check: a filtered-out day is no error
            low, pend_ids = floors.get(kw.name, (1 << 60, set()))
            keep = frozenset(pend_ids | {p.id for q, p in held if q > low})
            result = diff_keyword(
                held,
                fetched,
                seq=seq,
                max_results=s.max_results,
                stale_margin_days=s.stale_margin_days,
                keep_ids=keep,
                known_ids=frozenset(seen.get(kw.name, {})),
            )
        except (FetchError, SuspiciousResponse) as err:
            kf = KeywordFetch(kw.name, error=str(err))
            status[kw.name] = {"last_attempt": stamp, "error": str(err)}
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
            status[kw.name] = {
                "last_attempt": stamp,
                "last_success": stamp,
                "fetched": len(fetched),
                "new": len(result.additions),
                "error": None,
            }
        report.keywords.append(kf)
        if on_keyword:
            on_keyword(kf)
    if dry_run:
        return Collected({**held_all, **stored}, seq)
    cutoff = date.fromordinal(today.toordinal() - KEEP_SEEN_DAYS).isoformat()
    seen = {kw: {i: d for i, d in ids.items() if d.day >= cutoff} for kw, ids in seen.items()}
    old_status = store.fetch_status()
    for name, st in status.items():
        if st.get("error") and name in old_status:
            status[name] = {**old_status[name], "last_attempt": st["last_attempt"], "error": st["error"]}
        status[name].pop("keyword", None)
    store.apply(seq if stored else store.seq, stored, status, seen)
    return Collected(store.by_keyword(), store.seq)
