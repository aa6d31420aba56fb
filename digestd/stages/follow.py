"""Readers' interests in a run: fetch the interest papers arXiv has not been asked for yet (once,
by id_list; kept in state/interests.json), then order each digest's papers by relevance to its
reader and mark those above the bar "for you". Readers without interests keep date order."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING, Protocol, TypeAlias, runtime_checkable

from digestd.config.settings import Config
from digestd.core.models import Keyword, Paper, Subscriber, SubscriberStatus
from digestd.core.plan import PlannedDigest, followed, planned_from
from digestd.core.query import kept
from digestd.core.rank import (
    FOR_YOU_BAR,
    READERS_PER_SLICE,
    Fitted,
    Scorer,
    best_first_rows,
    make_scorer,
    paper_text,
    scorer_from,
    scorer_parts,
)
from digestd.core.records import NO_COUNTS, Cursor
from digestd.errors import FetchError, StateError
from digestd.ops.apart import ApartParts
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


# ranking_inputs: the candidates (id -> text) and the readers (address -> their interest texts)
Inputs: TypeAlias = tuple[dict[str, str], dict[str, list[str]]]


def ranking_inputs(cfg: Config, papers: Held, cursors: Mapping[str, Cursor], *, seq: int, start_seq: int,
                   today: date) -> Inputs | None:
    """What ranking is fitted on, known before the plan: the readers with interests whose digest
    the plan can make today (active, not paused, due) with the texts of their interest papers,
    and every held paper of their keywords the plan can pick for one of them (a seq above the
    lowest of their cursors, up to this run's); None when there is nothing to rank."""
    due = [(s, t) for s in _readers(cfg.subscribers)
           if (t := planned_from(s, cursors, start_seq=start_seq, today=today,
                                 weekly_day=cfg.settings.weekly_day)) is not None]
    if not due:
        return None
    low = min(t for _, t in due)
    wanted = {kw for s, _ in due for kw in followed(s, cfg.keywords)}
    candidates = {p.id: paper_text(p.title, p.summary)
                  for kw, items in papers.items() if kw in wanted for n, p in items if low < n <= seq}
    if not candidates:
        return None
    known = _known(cfg)
    interest_text = {i: paper_text(p.title, p.summary) for i, p in known.items() if not p.gone}
    return candidates, {s.email: _profile(s, interest_text) for s, _ in due}


Started: TypeAlias = "ApartParts[Fitted | NDArray[np.float32]]"  # the child's two parts


def start_ranking(inputs: Inputs | None) -> Started | None:
    """The part of ranking that needs no plan (the fit, then each reader's centroid), started in
    a forked child so it runs on the other core while the plan is made; None with nothing to
    rank. Its arrays cross the pipe as they are (ops/apart.py)."""
    if inputs is None:
        return None
    # What the parts need when they come back, imported before the fork: the child has them
    # too (its scikit-learn import is that much shorter), and nothing can fail after it.
    import numpy  # noqa: F401
    import scipy.sparse  # noqa: F401

    return ApartParts(lambda: scorer_parts(*inputs))


def rank_planned(cfg: Config, planned: Sequence[PlannedDigest], inputs: Inputs | None,
                 started: Started | None = None) -> list[Ranked]:
    """Each planned digest, its keywords' papers by relevance to its reader's interests, fitted
    on `inputs` (ranking_inputs); `started`: start_ranking's child for them (the caller closes
    it), else the work is done here, with the same result."""
    readers = inputs[1] if inputs is not None else {}
    ranked = [Ranked(p) for p in planned]
    todo = [i for i, p in enumerate(planned) if p.email in readers]
    tops = {k.name: k.top for k in cfg.keywords if k.listing}
    if not todo or inputs is None:
        return _top(ranked, tops)
    # the products are made here from the child's fit while the child makes the centroids
    scorer = scorer_from(started.parts()) if started is not None else make_scorer(*inputs)
    return _top(_apply(ranked, todo, scorer, tops), tops)


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


def _top(ranked: list[Ranked], tops: Mapping[str, int]) -> list[Ranked]:
    """A listing's `top` papers per reader (the first: most relevant, or newest), and how
    many more there were (`tops`: each listing's `top`)."""
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


def _apply(ranked: list[Ranked], todo: Sequence[int], scorer: Scorer,
           tops: Mapping[str, int]) -> list[Ranked]:
    """Score readers a slice at a time (one sparse product each), then order every keyword's
    papers for all readers of the slice who have the same papers at once (a listing's: its
    `top` best); no Python loop over pairs of reader and paper."""
    import numpy as np

    arrays: dict[tuple[str, ...], tuple[NDArray[np.intp], NDArray[np.object_]]] = {}
    for start in range(0, len(todo), READERS_PER_SLICE):
        chunk = todo[start : start + READERS_PER_SLICE]
        block = scorer.scores([ranked[i].digest.email for i in chunk])
        groups: dict[tuple[str, int], tuple[tuple[str, ...], list[int]]] = {}
        for row, i in enumerate(chunk):
            for kw, ids in ranked[i].digest.papers.items():  # the plan's tuples, one per keyword, by
                groups.setdefault((kw, id(ids)), (ids, []))[1].append(row)  # identity: a hash is not kept
        placed: list[dict[str, tuple[tuple[str, ...], list[str]]]] = [{} for _ in chunk]
        for (kw, _), (ids, rows) in groups.items():
            if ids not in arrays:
                arrays[ids] = (scorer.columns_of(ids), np.array(ids, dtype=object))
            columns, id_array = arrays[ids]
            got = block[np.ix_(np.asarray(rows, dtype=np.intp), columns)]
            order = best_first_rows(got, tops.get(kw))
            marks = np.take_along_axis(got, order, axis=1) >= FOR_YOU_BAR
            for row, chosen, marked in zip(rows, id_array[order].tolist(), marks.tolist(), strict=True):
                placed[row][kw] = (tuple(chosen), [p for p, m in zip(chosen, marked, strict=True) if m])
        for row, i in enumerate(chunk):
            digest = ranked[i].digest
            mine = placed[row]
            papers = {kw: mine[kw][0] for kw in digest.papers}
            more = {kw: len(ids) - len(papers[kw]) for kw, ids in digest.papers.items()
                    if len(papers[kw]) < len(ids)}
            marked = dict.fromkeys(p for kw in digest.papers for p in mine[kw][1])
            ranked[i] = Ranked(replace(digest, papers=papers), tuple(marked), more or NO_COUNTS)
    return ranked
