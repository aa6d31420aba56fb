"""The fake arXiv API serves what the real one would, as seen by the real `arxiv` package
(through its public client) and by lxml, the parser that package uses."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import datetime

import arxiv
import pytest
import requests
from fakearxiv import FakeArxiv, Fault, keyword_of, serve_in_thread
from fixtures import (
    ATOM_NS,
    OPENSEARCH_NS,
    REAL_CLASSIC,
    REAL_EMPTY,
    REAL_ERROR_400,
    REAL_SEARCH,
    SEED_000,
    SEED_001,
    SEEDS,
    FixturePaper,
    atom_feed,
    make_feeds,
    make_paper,
    make_papers,
    parse_seed,
    seed_last_update,
)
from lxml import etree

VAD = "Video Anomaly Detection"
VAD_QUERY = f'ti:"{VAD}" OR abs:"{VAD}"'


@pytest.fixture
def fake() -> Iterator[FakeArxiv]:
    with FakeArxiv(parse_seed(SEED_001)) as f:
        yield f


def client_for(fake: FakeArxiv, **kw: float) -> arxiv.Client:
    delay = kw.pop("delay_seconds", 0)
    c = arxiv.Client(delay_seconds=delay, num_retries=0, **kw)
    c.query_url_format = fake.query_url_format
    return c


def search(query: str = VAD_QUERY, max_results: int = 20) -> arxiv.Search:
    return arxiv.Search(
        query=query, max_results=max_results, sort_by=arxiv.SortCriterion.LastUpdatedDate
    )


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def page_of(body: bytes, *, recover: bool = False) -> tuple[int, int, int]:
    """(totalResults, startIndex, number of entries) of a feed, read as the `arxiv` package
    reads it (lxml; `recover` as its parser does, for a broken document)."""
    root = etree.fromstring(body, etree.XMLParser(recover=recover, resolve_entities=False, no_network=True))
    if root is None:
        return (0, 0, 0)

    def number(tag: str) -> int:
        return int(root.findtext(f"{{{OPENSEARCH_NS}}}{tag}") or 0)

    return number("totalResults"), number("startIndex"), len(root.findall(f"{{{ATOM_NS}}}entry"))


def alternate(r: arxiv.Result) -> str:
    return str(next(link.href for link in r.links if link.rel == "alternate"))


def get(
    fake: FakeArxiv, query: str = VAD_QUERY, timeout: float = 5, **params: str
) -> requests.Response:
    return requests.get(fake.url, params={"search_query": query, **params}, timeout=timeout)


# --------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("seed", sorted(SEEDS))
def test_parse_seed_rows_and_order(seed: str) -> None:
    feeds = parse_seed(SEEDS[seed])
    assert list(feeds) == [VAD, "Video Understanding", "Vision Language Model",
                           "Multimodal Large Language Model"]  # fmt: skip
    scheme = "http" if seed == "000" else "https"
    for papers in feeds.values():
        assert len(papers) == 20
        assert {p.scheme for p in papers} == {scheme}
        # a stable sort by updated, newest first, reproduces row order exactly
        resorted = sorted(papers, key=lambda p: p.updated, reverse=True)
        assert [p.id for p in resorted] == [p.id for p in papers]
        assert len({p.updated for p in papers}) == 20
        for p in papers:
            assert p.categories == ["cs.CV"] and p.primary_category == "cs.CV"
            assert p.authors and p.published <= p.updated
            assert (p.published == p.updated) == (p.version == 1)
    # a paper under two keywords has one updated time, as the API would give it
    by_id: dict[str, set[str]] = {}
    for papers in feeds.values():
        for p in papers:
            by_id.setdefault(p.id, set()).add(p.updated)
    assert all(len(v) == 1 for v in by_id.values())
    assert sum(len(v) for v in feeds.values()) > len(by_id)  # duplicates do exist


def test_parse_seed_fields() -> None:
    feeds = parse_seed(SEED_000)
    first = feeds[VAD][0]
    assert (first.id, first.version, first.scheme) == ("2506.05175", 1, "http")
    assert first.title.startswith("Track Any Anomalous Object")
    assert first.link == "http://arxiv.org/abs/2506.05175v1"
    assert first.entry_id == "http://arxiv.org/abs/2506.05175v1"
    assert first.updated == "2025-06-05T23:59:59Z" and first.comment is None
    comments = {p.id: p.comment for ps in feeds.values() for p in ps}
    assert comments["2503.21169"] == "Accpeted by ICME 2025"  # from <details>, not "Accpe..."
    assert comments["2506.02535"] is None  # |  |
    assert "9 pages, 4 figures" in comments.values()  # short ones are inline
    long = [c for c in comments.values() if c and len(c) > 20]
    assert long and not any("<details>" in c or c.endswith("...") for c in long)
    assert any("$\\times$" in p.title for ps in feeds.values() for p in ps)
    assert seed_last_update(SEED_000) == "2025-06-09"
    assert seed_last_update(SEED_001) == "2025-12-24"
    v4 = next(p for ps in feeds.values() for p in ps if p.version == 4)
    assert v4.published < v4.updated


# --------------------------------------------------------------------------- atom_feed


def _shape(elem: etree._Element) -> list[tuple[str, tuple[str, ...]]]:
    return [(str(c.tag), tuple(c.attrib)) for c in elem]


def test_atom_feed_has_the_real_shape() -> None:
    real = etree.fromstring(REAL_SEARCH.read_bytes())
    real_entry = real.find(f"{{{ATOM_NS}}}entry")
    assert real_entry is not None
    p = make_paper(1, "x", "2022-02-24", categories=["cs.SE", "cs.LG"], comment="c",
                   authors=["A", "B", "C"])  # fmt: skip
    p.journal_ref, p.doi = "J. Ref 1", "10.1/x"
    ours = etree.fromstring(atom_feed([p], total_results=5, max_results=10))
    ours_entry = ours.find(f"{{{ATOM_NS}}}entry")
    assert ours_entry is not None
    assert ours.nsmap == real.nsmap
    assert [t for t in _shape(ours) if "entry" not in t[0]] == [
        t for t in _shape(real) if "entry" not in t[0]
    ]
    assert _shape(ours_entry) == _shape(real_entry)

    real_c = etree.fromstring(REAL_CLASSIC.read_bytes())
    p.categories = ["cond-mat.str-el", "cond-mat.supr-con"]
    ours_c = etree.fromstring(atom_feed([p], classic=True))
    assert _shape(ours_c) == _shape(real_c)
    for o, r in zip(ours_c.iter(), real_c.iter(), strict=True):
        assert (o.tag, o.nsmap) == (r.tag, r.nsmap)


TRICKY = FixturePaper(
    id="2506.01234",
    version=3,
    title='A & B <C> "D" \'E\' with $\\times$ and \\alpha: ' + " ".join(["long words"] * 12),
    summary="Uses <b>tags</b> & ampersands, $x<y>z$, back\\slash, café, 日本語. " * 6,
    authors=["José Ramírez", "O'Neil & Sons", "<Anon>"],
    updated="2025-06-05T17:59:46Z",
    published="2025-05-30T01:02:03Z",
    comment="12 pages & <3 figures>, $\\times$2",
    categories=["cs.CV", "cs.LG", "eess.IV"],
    primary_category="cs.LG",
    scheme="http",
)


@pytest.mark.parametrize("classic", [False, True])
def test_round_trip_every_field(classic: bool) -> None:
    query = 'ti:"A & B" OR abs:"<x>"'
    body = atom_feed([TRICKY], classic=classic, search_query=query)
    assert page_of(body) == (1, 0, 1)  # well-formed under a strict parser
    with FakeArxiv({"A & B": [TRICKY]}, classic=classic) as fake:
        assert page_of(get(fake, query).content) == (1, 0, 1)
        (r,) = client_for(fake).results(search(query))
    p = TRICKY
    assert r.title == " ".join(p.title.split())  # arxiv collapses title whitespace
    if classic:
        assert r.summary != p.summary
        assert " ".join(r.summary.split()) == " ".join(p.summary.split())
        assert "\n  " in body.decode().split("<title>")[1]  # the entry's title is hard-wrapped
    else:
        assert r.summary == p.summary
    assert r.entry_id == p.entry_id == "http://arxiv.org/abs/2506.01234v3"
    assert r.get_short_id() == "2506.01234v3"
    assert alternate(r) == p.link and r.pdf_url == p.pdf
    assert (iso(r.updated), iso(r.published)) == (p.updated, p.published)
    assert [a.name for a in r.authors] == p.authors
    assert r.comment == p.comment
    assert r.categories == p.categories and r.primary_category == p.primary_category
    assert r.journal_ref is None and r.doi is None


def test_synthetic_papers_are_fast_and_sorted() -> None:
    t0 = time.perf_counter()
    feeds = make_feeds([f"keyword {k}" for k in range(50)], 100)
    bodies = [atom_feed(ps) for ps in feeds.values()]
    assert time.perf_counter() - t0 < 5  # measured 0.2 s, 0.43 s on a loaded machine
    ids = [p.id for ps in feeds.values() for p in ps]
    assert len(ids) == len(set(ids)) == 5000 and ids[0] == "2611.00000"
    ps = make_papers("k", 100)
    assert [p.updated for p in ps] == sorted((p.updated for p in ps), reverse=True)
    assert page_of(bodies[0])[2] == 100


# --------------------------------------------------------------------------- serving


@pytest.mark.parametrize(("seed", "classic"), [("000", True), ("001", False), ("000", False)])
def test_client_gets_the_seed_papers(seed: str, classic: bool) -> None:
    feeds = parse_seed(SEEDS[seed])
    with FakeArxiv(feeds, classic=classic) as fake:
        results = list(client_for(fake).results(search()))
    expected = feeds[VAD]
    assert [r.title for r in results] == [p.title for p in expected]
    assert [alternate(r) for r in results] == [p.link for p in expected]
    assert [r.pdf_url for r in results] == [p.pdf for p in expected]
    assert [r.entry_id for r in results] == [p.entry_id for p in expected]
    assert [r.get_short_id() for r in results] == [p.short_id for p in expected]
    assert [iso(r.updated) for r in results] == [p.updated for p in expected]
    assert [r.comment for r in results] == [p.comment for p in expected]
    for r, p in zip(results, expected, strict=True):
        assert " ".join(r.summary.split()) == p.summary
        assert p.scheme == ("http", "https")[seed == "001"]
        assert alternate(r).startswith(f"{p.scheme}://arxiv.org/abs/")


def test_paging_and_request_log(fake: FakeArxiv) -> None:
    results = list(client_for(fake, page_size=7, delay_seconds=0.15).results(search()))
    assert [r.get_short_id() for r in results] == [p.short_id for p in fake.feeds[VAD]]
    log = fake.requests_for(VAD)
    assert [r.params["start"] for r in log] == ["0", "7", "14"]
    for r in log:
        assert r.path == "/api/query" and r.fault is None
        assert r.params["search_query"] == VAD_QUERY
        assert (r.params["sortBy"], r.params["sortOrder"]) == ("lastUpdatedDate", "descending")
        assert r.params["max_results"] == "7"
    gaps = [b.at - a.at for a, b in itertools.pairwise(log)]
    assert all(g >= 0.14 for g in gaps)
    assert page_of(get(fake, start="18", max_results="5").content) == (20, 18, 2)


def test_keyword_matching(fake: FakeArxiv) -> None:
    assert keyword_of(VAD_QUERY) == VAD
    assert keyword_of('ti:"Transformers" AND abs:"Transformers"') == "Transformers"
    assert keyword_of("cat:cs.CV") == "cat:cs.CV"
    fake.feeds["Transformers"] = make_papers("Transformers", 3)
    fake.feeds["cat:cs.CV"] = make_papers("cs", 2, first=50)
    c = client_for(fake)
    assert len(list(c.results(search('ti:"Transformers" AND abs:"Transformers"')))) == 3
    assert len(list(c.results(search("cat:cs.CV")))) == 2
    assert len(list(c.results(search(f'(ti:"{VAD}" OR abs:"{VAD}") AND cat:cs.CV')))) == 20
    assert len(list(c.results(search('ti:"video anomaly detection"')))) == 20  # casefold
    assert [r.keyword for r in fake.requests][-1] == VAD
    # unknown keyword: 200 with an empty, well-formed feed
    resp = get(fake, 'ti:"Nothing Here" OR abs:"Nothing Here"')
    assert resp.status_code == 200
    assert etree.fromstring(resp.content).tag == f"{{{ATOM_NS}}}feed"
    assert page_of(resp.content) == (0, 0, 0)
    assert list(c.results(search('ti:"Nothing Here"'))) == []
    assert requests.get(fake.url.replace("/api/query", "/nope"), timeout=5).status_code == 404


# --------------------------------------------------------------------------- faults


def test_status_faults_are_consumed_one_per_request(fake: FakeArxiv) -> None:
    fake.faults[VAD] = [Fault.status(503), Fault.status(503)]
    with pytest.raises(arxiv.HTTPError) as err:
        list(client_for(fake).results(search()))
    assert err.value.status == 503
    retrying = client_for(fake)
    retrying.num_retries = 1
    assert len(list(retrying.results(search()))) == 20  # 503, then served
    assert [r.fault.code if r.fault else None for r in fake.requests] == [503, 503, None]
    assert fake.faults[VAD] == []


def test_429_400_and_wildcard(fake: FakeArxiv) -> None:
    fake.faults[VAD] = [Fault.status(429, retry_after=7), Fault.status(400)]
    resp = get(fake)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "7"
    resp = get(fake)
    assert resp.status_code == 400 and resp.content == REAL_ERROR_400.read_bytes()
    assert get(fake).status_code == 200
    fake.faults["*"] = [Fault.status(502)]
    assert get(fake, 'ti:"Video Understanding"').status_code == 502
    assert get(fake, 'ti:"Video Understanding"').status_code == 200


def test_empty_html_truncated(fake: FakeArxiv) -> None:
    fake.faults[VAD] = [Fault.empty(), Fault.html(), Fault.empty(), Fault.html(), Fault.truncated()]
    resp = get(fake)
    assert resp.status_code == 200 and resp.content == REAL_EMPTY.read_bytes()
    assert page_of(resp.content) == (0, 0, 0)

    resp = get(fake)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/html")
    assert etree.fromstring(resp.content).tag == "html"  # XML, but not an Atom feed
    assert page_of(resp.content)[2] == 0
    assert list(client_for(fake).results(search())) == []  # the empty feed
    assert list(client_for(fake).results(search())) == []  # the HTML page

    resp = get(fake, max_results="100")
    assert resp.status_code == 200
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(resp.content)
    assert b"<entry>" in resp.content
    assert page_of(resp.content, recover=True)[2] < 20  # recovering parsers lose entries


def test_unsorted_and_old(fake: FakeArxiv) -> None:
    old = make_papers("old", 4, date="2019-03-01")
    fake.faults[VAD] = [Fault.unsorted(), Fault.unsorted(shuffle=True, seed=3), Fault.old(old)]
    c = client_for(fake)
    asc = [iso(r.updated) for r in c.results(search())]
    assert asc == sorted(p.updated for p in fake.feeds[VAD])
    shuffled = [r.get_short_id() for r in c.results(search())]
    expected = [p.short_id for p in fake.feeds[VAD]]
    assert sorted(shuffled) == sorted(expected) and shuffled != expected
    assert [r.title for r in c.results(search())] == [p.title for p in old]
    assert [r.title for r in c.results(search())] == [p.title for p in fake.feeds[VAD]]


def test_stall_delays_the_response(fake: FakeArxiv) -> None:
    fake.faults[VAD] = [Fault.stall(0.6)]
    t0 = time.monotonic()
    assert get(fake).status_code == 200
    assert 0.55 <= time.monotonic() - t0 < 5  # measured 0.61 s


def test_stall_times_out_without_blocking_others_or_stop() -> None:
    fake = serve_in_thread(parse_seed(SEED_001), faults={VAD: [Fault.stall(30)]})
    try:
        t0 = time.monotonic()
        with pytest.raises(requests.exceptions.Timeout):
            get(fake, timeout=0.5)
        assert time.monotonic() - t0 < 5  # measured 0.50 s; the stall lasts 30 s
        # another keyword is served while the stalled handler still waits (30 s)
        t0 = time.monotonic()
        assert get(fake, 'ti:"Video Understanding"').status_code == 200
        assert time.monotonic() - t0 < 5  # measured 0.003-0.02 s
        # a stalled request in flight: stop() returns promptly, the client is cut off
        fake.faults[VAD] = [Fault.stall(30)]
        outcome: list[BaseException | int] = []

        def call() -> None:
            try:
                outcome.append(get(fake, timeout=20).status_code)
            except requests.RequestException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        deadline = time.monotonic() + 30
        while len(fake.requests_for(VAD)) < 2:  # the request is in, its handler stalls
            assert time.monotonic() < deadline, "the stalled request never arrived"
            time.sleep(0.01)
        serving = fake._thread  # stop() must end the server's thread, not give up joining it
        t0 = time.monotonic()
        fake.stop()
        assert serving is not None and not serving.is_alive()
        assert time.monotonic() - t0 < 5  # measured 0.04 s; the stalled handler would hold it 30 s
        worker.join(timeout=5)
        assert not worker.is_alive()
        assert isinstance(outcome[0], requests.ConnectionError)
    finally:
        fake.stop()
