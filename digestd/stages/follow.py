"""Readers' interests in a run: fetch the interest papers arXiv has not been asked for yet (once,
by id_list; kept in state/interests.json), then order each digest's papers by relevance to its
reader and mark those above the bar "for you". Readers without interests keep date order."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from digestd.config.settings import Config
from digestd.core.models import Keyword, Paper, Subscriber, SubscriberStatus
from digestd.core.plan import PlannedDigest
from digestd.core.query import kept
from digestd.core.rank import FOR_YOU_BAR, Relevance, best_first, paper_text
from digestd.core.records import NO_COUNTS
from digestd.errors import FetchError, StateError
from digestd.source.arxiv import PaperSource
from digestd.store.interests import InterestPaper, InterestStore
from digestd.store.papers import Held

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

LISTING_MAX = 10_000  # papers one listing fetch pages through at most (a busy day is 250)


@runtime_checkable
class IdSource(Protocol):
    """Where interest papers come from: arXiv's id_list."""

    def fetch_ids(self, ids: Sequence[str]) -> list[Paper]: ...


@runtime_checkable
class ListingSource(Protocol):
    """Where a listing's papers come from: arXiv's search, paged."""

    def fetch_listing(self, keyword: Keyword, limit: int, since: str | None) -> list[Paper]: ...


def fetch_keyword(
    source: PaperSource, kw: Keyword, max_results: int, held: Sequence[tuple[int, Paper]]
) -> list[Paper]:
    """A keyword's fetch. A listing pages through every paper since the newest it holds (its
    first run, a baseline that mails nothing, takes `max_results`)."""
    if kw.listing and held and isinstance(source, ListingSource):
        since = max(p.updated for _, p in held)
        fetched = source.fetch_listing(kw, LISTING_MAX, since)
        return [p for p in fetched if p.updated >= since]  # older ones were held, or came before it
    return source.fetch(kw, max_results)


def local_checks(fetched: Sequence[Paper], kw: Keyword) -> list[Paper]:
    """Excluded phrases checked again (arXiv stems words), and a primary_only listing's
    cross-lists dropped (the API cannot ask for primary categories)."""
    primary = kw.listing if kw.primary_only else ()
    return [p for p in fetched if kept(p.primary_category, p.title, p.summary, exclude=kw.exclude,
                                       primary_in=primary)]


def keep_count(kw: Keyword, max_results: int, fetched: Sequence[Paper]) -> int:
    """How many papers a keyword keeps: a listing keeps all of a day's until they are queued."""
    return max(max_results, len(fetched)) if kw.listing else max_results


@dataclass(frozen=True, slots=True)
class Ranked:
    """A digest's papers in the reader's order, and those marked "for you"."""

    digest: PlannedDigest
    for_you: tuple[str, ...] = ()
    more: Mapping[str, int] = field(default_factory=lambda: NO_COUNTS)  # listing -> papers left out by `top`


def refresh_interests(cfg: Config, source: object, *, dry_run: bool) -> None:
    """Fetch (once) the interest papers never asked for; an id arXiv does not serve is skipped
    with a warning and remembered. A failed fetch leaves the rest to the next run."""
    wanted = {i: s.email for s in _readers(cfg.subscribers) for i in s.interests}
    if not wanted or not isinstance(source, IdSource):
        return
    try:
        store = InterestStore(cfg.paths.interests_db, read_only=dry_run)
    except StateError as err:  # a cache: moved aside and named, then started afresh
        log.warning("%s", err)
        if dry_run:
            return
        store = InterestStore(cfg.paths.interests_db)
    try:
        missing = store.missing(wanted)
        if not missing:
            return
        try:
            got = {p.id: p for p in source.fetch_ids(missing)}
        except FetchError as err:
            log.warning("interest papers not fetched now (%s); the next run tries again", err)
            return
        for pid in missing:
            if pid not in got:
                log.warning("arXiv does not serve %s (an interest of %s); skipped", pid, wanted[pid])
        gone = InterestPaper("", "", "", gone=True)
        store.add(
            InterestPaper(i, got[i].title, got[i].summary) if i in got else replace(gone, id=i)
            for i in missing
        )
        if not dry_run:
            store.commit()
    finally:
        store.close()


def _readers(subscribers: Sequence[Subscriber]) -> list[Subscriber]:
    active = (s for s in subscribers if s.status is SubscriberStatus.ACTIVE)
    return [s for s in active if s.interests or s.interest_texts]


def rank_planned(cfg: Config, papers: Held, planned: Sequence[PlannedDigest]) -> list[Ranked]:
    """Each planned digest, its keywords' papers by relevance to its reader's interests."""
    readers = {s.email: s for s in _readers(cfg.subscribers)}
    ranked = [Ranked(p) for p in planned]
    todo = [i for i, p in enumerate(planned) if p.email in readers]
    if not todo:
        return _top(ranked, cfg.keywords)
    known = _known(cfg)
    interest_text = {i: paper_text(p.title, p.summary) for i, p in known.items() if not p.gone}
    profiles = [_profile(readers[planned[i].email], interest_text) for i in todo]
    tops = {k.name: k.top for k in cfg.keywords if k.listing}
    return _top(_apply(ranked, todo, profiles, _texts(papers), tops), cfg.keywords)


def _known(cfg: Config) -> Mapping[str, InterestPaper]:
    """The cached interest papers (none from a broken cache: a dry run leaves it in place)."""
    try:
        store = InterestStore(cfg.paths.interests_db, read_only=True)
    except StateError:
        return {}
    try:
        return store.known()
    finally:
        store.close()


def _top(ranked: list[Ranked], keywords: Sequence[Keyword]) -> list[Ranked]:
    """A listing's `top` papers per reader (the first: most relevant, or newest), and how
    many more there were."""
    tops = {k.name: k.top for k in keywords if k.listing}
    out: list[Ranked] = []
    for r in ranked:
        papers = r.digest.papers
        over = {kw: len(ids) - tops[kw] for kw, ids in papers.items() if kw in tops and len(ids) > tops[kw]}
        if not over:
            out.append(r)
            continue
        cut = {kw: ids[: tops[kw]] if kw in over else ids for kw, ids in r.digest.papers.items()}
        shown = {pid for ids in cut.values() for pid in ids}
        out.append(Ranked(replace(r.digest, papers=cut), tuple(p for p in r.for_you if p in shown), over))
    return out


def _profile(sub: Subscriber, interest_text: Mapping[str, str]) -> list[str]:
    """The texts of a reader's interests: shared string objects (one per paper, not per reader)."""
    return [interest_text[i] for i in sub.interests if i in interest_text] + list(sub.interest_texts)


def _texts(papers: Held) -> dict[str, str]:
    return {p.id: paper_text(p.title, p.summary) for items in papers.values() for _, p in items}


def _apply(
    ranked: list[Ranked], todo: Sequence[int], profiles: Sequence[Sequence[str]], texts: Mapping[str, str],
    tops: Mapping[str, int],
) -> list[Ranked]:
    """Score all readers at once (one sparse product per slice of readers), then per reader
    and keyword one numpy ordering (a listing's: its `top` best); no loop over pairs."""
    import numpy as np

    lists = {tuple(ids) for i in todo for ids in ranked[i].digest.papers.values()}
    cand_ids = [c for c in dict.fromkeys(pid for ids in lists for pid in ids) if c in texts]
    interest_texts = list(dict.fromkeys(t for prof in profiles for t in prof))
    where = {t: len(cand_ids) + n for n, t in enumerate(interest_texts)}
    rel = Relevance([texts[c] for c in cand_ids] + interest_texts)
    members = [[where[t] - len(cand_ids) for t in prof] for prof in profiles]
    interests = rel.rows(range(len(cand_ids), len(cand_ids) + len(interest_texts)))
    candidates = rel.rows(range(len(cand_ids)))
    del rel  # the whole matrix (18 MB at 7,000 texts): its two parts are all the scores need
    column = {c: n for n, c in enumerate(cand_ids)}  # a paper without text: the zero column after them
    columns: dict[tuple[str, ...], NDArray[np.intp]] = {}
    for start, block in Relevance.scores(members, interests, candidates):
        block = np.hstack([block, np.zeros((block.shape[0], 1), dtype=block.dtype)])
        for row, scores in enumerate(block):
            i = todo[start + row]
            digest, papers, marked, more = ranked[i].digest, {}, [], {}
            for kw, ids in digest.papers.items():
                key = tuple(ids)
                if key not in columns:
                    columns[key] = np.fromiter((column.get(p, len(cand_ids)) for p in key), np.intp, len(key))
                got = scores[columns[key]]
                order = best_first(got, tops.get(kw))
                papers[kw] = tuple(ids[j] for j in order)
                marked += [ids[j] for j in order[got[order] >= FOR_YOU_BAR]]
                if len(order) < len(ids):
                    more[kw] = len(ids) - len(order)
            ranked[i] = Ranked(replace(digest, papers=papers), tuple(dict.fromkeys(marked)), more)
    return ranked
