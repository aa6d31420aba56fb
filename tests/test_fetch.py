"""Fetching over real HTTP from the local arXiv stand-in: the request, the pace, the parse."""

from __future__ import annotations

import itertools

from fakearxiv import FakeArxiv
from fixtures import REAL_AFFILIATIONS, SEED_000, make_papers, parse_seed

from digestd.core.diff import in_categories
from digestd.core.models import Keyword
from digestd.errors import FetchError
from digestd.source.arxiv import ArxivSource
from digestd.source.feed import parse_feed


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

    from digestd.source.feed import collapse

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


def test_the_query_is_the_arxiv_packages_search_sent_as_its_client_sends_it() -> None:
    """digestd builds its query from `arxiv.Search` and sends its own bounded GET; the
    parameters are those the `arxiv` package's own client sends for the same Search."""
    import arxiv

    from digestd.source.arxiv import query_params, search_for

    kw = Keyword("Video Anomaly Detection")
    with FakeArxiv({kw.name: make_papers(kw.name, 30)}) as fake:
        ArxivSource(fake.url, delay=0, timeout=5).fetch(kw, 25)
        client = arxiv.Client(page_size=25, delay_seconds=0, num_retries=0)
        client.query_url_format = fake.query_url_format
        theirs = list(client.results(search_for(kw, 25)))
        ours_sent, theirs_sent = (r.params for r in fake.requests)
    assert len(theirs) == 25
    assert ours_sent == theirs_sent == query_params(search_for(kw, 25))
    assert (ours_sent["sortBy"], ours_sent["sortOrder"]) == (
        arxiv.SortCriterion.LastUpdatedDate.value,
        arxiv.SortOrder.Descending.value,
    )


def test_entries_are_read_into_arxiv_results_as_its_client_reads_them() -> None:
    """Each entry becomes an `arxiv.Result` (through its public constructor), the model the
    Paper is made from; it matches the Result the package's own client makes, field by field."""
    import arxiv
    from fixtures import atom_feed
    from lxml import etree

    from digestd.source.feed import ATOM, paper_from_result, read_entry

    feeds = parse_seed(SEED_000)
    kw = next(iter(feeds))
    for classic in (False, True):
        body = atom_feed(feeds[kw], classic=classic)
        ours = [read_entry(e, i) for i, e in enumerate(etree.fromstring(body).iterfind(f"{ATOM}entry"))]
        with FakeArxiv(feeds, classic=classic) as fake:
            client = arxiv.Client(page_size=100, delay_seconds=0, num_retries=0)
            client.query_url_format = fake.query_url_format
            theirs = list(client.results(arxiv.Search(query=Keyword(kw).search_query, max_results=100)))
        assert len(ours) == len(theirs) == 20
        for i, (r, t) in enumerate(zip(ours, theirs, strict=True)):
            assert isinstance(r, arxiv.Result)
            assert (r.entry_id, r.get_short_id(), r.pdf_url) == (t.entry_id, t.get_short_id(), t.pdf_url)
            assert [(lk.href, lk.rel, lk.title, lk.content_type) for lk in r.links] == [
                (lk.href, lk.rel, lk.title, lk.content_type) for lk in t.links
            ]
            assert (r.updated, r.published, r.categories) == (t.updated, t.published, t.categories)
            p = paper_from_result(r, i)
            assert (f"{p.id}v{p.version}", p.pdf) == (r.get_short_id(), r.pdf_url)


def test_errors_that_leave_the_source_are_digestd_errors() -> None:
    """The pipeline catches FetchError and SuspiciousResponse per keyword; both are in the
    one error family with exit code 75 (the next run retries), and no other public exception
    class leaves digestd/source."""
    import importlib
    import inspect
    import pkgutil

    import digestd.source
    from digestd.core.diff import SuspiciousResponse
    from digestd.errors import DigestdError, ExitCode
    from digestd.source.http import ResponseRefused

    for cls in (FetchError, ResponseRefused, SuspiciousResponse):
        assert issubclass(cls, DigestdError) and cls.exit_code == ExitCode.TEMPFAIL
    for info in pkgutil.iter_modules(digestd.source.__path__):
        module = importlib.import_module(f"digestd.source.{info.name}")
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and not name.startswith("_"):
                assert issubclass(obj, DigestdError), f"digestd.source.{info.name}.{name}"
