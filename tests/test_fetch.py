"""Fetching over real HTTP from the local arXiv stand-in: the request, the pace, the parse."""

from __future__ import annotations

import itertools

from fakearxiv import FakeArxiv
from fixtures import REAL_AFFILIATIONS, SEED_000, make_papers, parse_seed

from digestd.core.diff import in_categories
from digestd.core.models import Keyword
from digestd.source.arxiv import ArxivSource, FetchError, parse_feed


def test_one_request_per_keyword_sorted_and_paced() -> None:
    kws = ["Video Anomaly Detection", "Vision Language Model", "VLM"]
    feeds = {k: make_papers(k, 30, first=100 * i) for i, k in enumerate(kws)}
    with FakeArxiv(feeds) as fake:
        src = ArxivSource(fake.url, delay=0.3, timeout=5)
        got = [src.fetch(Keyword(k), 25) for k in kws]
        reqs = list(fake.requests)
    assert [len(g) for g in got] == [25, 25, 25]
    assert len(reqs) == 3  # one request per keyword
    for r, k in zip(reqs, kws, strict=True):
        assert r.params["sortBy"] == "lastUpdatedDate" and r.params["sortOrder"] == "descending"
        assert r.params["max_results"] == "25" and r.params["start"] == "0"
        joiner = "AND" if k == "VLM" else "OR"
        assert r.params["search_query"] == f'ti:"{k}" {joiner} abs:"{k}"'
    gaps = [b.at - a.at for a, b in itertools.pairwise(reqs)]
    assert all(g >= 0.29 for g in gaps), gaps


def test_category_filter_and_fields() -> None:
    feeds = parse_seed(SEED_000)
    kw = next(iter(feeds))
    feeds[kw][0].categories = ["cs.CL"]
    feeds[kw][0].primary_category = "cs.CL"
    with FakeArxiv(feeds) as fake:
        src = ArxivSource(fake.url, delay=0, timeout=5)
        all_papers = src.fetch(Keyword(kw), 100)
        only_cl = in_categories(
            src.fetch(Keyword(kw, categories=("cs.CL",)), 100), Keyword(kw, categories=("cs.CL",))
        )
    assert len(all_papers) == 20 and [p.id for p in only_cl] == [all_papers[0].id]
    first = all_papers[0]
    assert (
        first.link == "http://arxiv.org/abs/2506.05175v1" and first.version == 1 and first.id == "2506.05175"
    )


def test_real_response_with_old_style_id_and_leading_spaces() -> None:
    (p,) = parse_feed(REAL_AFFILIATIONS.read_bytes())
    assert p.id == "astro-ph/0601001" and p.link.startswith("https://arxiv.org/abs/astro-ph/0601001v")
    assert not p.summary.startswith(" ") and "  " not in p.summary


def test_a_malformed_entry_is_a_fetch_error_not_a_crash() -> None:
    import pytest
    from fixtures import atom_feed

    feed = atom_feed(make_papers("X", 2)).replace(
        b"<updated>2026-11-20T23:59:59Z</updated>", b"<updated>not-a-date</updated>"
    )
    assert b"not-a-date" in feed
    with pytest.raises(FetchError, match="malformed entry"):
        parse_feed(feed)


def test_entries_read_as_the_arxiv_package_reads_them() -> None:
    """digestd reads entries itself (to skip bad ones one by one); what it reads from both
    feed formats matches the `arxiv` package's own client, field by field."""
    import arxiv

    from digestd.source.arxiv import collapse

    feeds = parse_seed(SEED_000)
    for classic in (False, True):
        with FakeArxiv(feeds, classic=classic) as fake:
            client = arxiv.Client(delay_seconds=0, num_retries=0, page_size=100)
            client.query_url_format = fake.query_url_format
            for kw in feeds:
                ours = ArxivSource(fake.url, delay=0, timeout=5).fetch(Keyword(kw), 100)
                search = arxiv.Search(
                    query=Keyword(kw).search_query,
                    max_results=100,
                    sort_by=arxiv.SortCriterion.LastUpdatedDate,
                )
                theirs = list(client.results(search))
                assert len(ours) == len(theirs) == len(feeds[kw])
                for p, r in zip(ours, theirs, strict=True):
                    assert f"{p.id}v{p.version}" == r.get_short_id()
                    assert (
                        p.link == next(lk.href for lk in r.links if lk.rel == "alternate")
                        and p.pdf == r.pdf_url
                    )
                    assert (p.title, p.summary, p.comment) == (
                        collapse(r.title),
                        collapse(r.summary),
                        r.comment and collapse(r.comment),
                    )
                    assert p.updated == r.updated.strftime("%Y-%m-%dT%H:%M:%SZ")
                    assert p.published == r.published.strftime("%Y-%m-%dT%H:%M:%SZ")
                    assert p.authors == tuple(a.name for a in r.authors)
                    assert (p.categories, p.primary_category) == (tuple(r.categories), r.primary_category)
