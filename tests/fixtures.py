"""Paper fixtures for digestd's tests: seed README parsing, synthetic papers, Atom feeds.

* `parse_seed` turns a real "Daily Papers" README snapshot (tests/data/NNN_*.txt) back into the
  per-keyword paper lists the arXiv API would have returned, newest first.
* `make_paper` / `make_papers` / `make_feeds` build synthetic papers quickly (benchmarks).
* `atom_feed` renders papers as an arXiv API response in exactly the real shapes found in
  tests/data/arxiv/ (today's format, or the older ``classic`` one with hard-wrapped text).

Nothing here imports digestd; these are the "what arXiv says" side of the tests.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import escape

TESTS_DIR = Path(__file__).resolve().parent
DATA_DIR = TESTS_DIR / "data"
ARXIV_DIR = DATA_DIR / "arxiv"

SEED_000 = DATA_DIR / "000_55745d464f6d8cf3.txt"  # http://arxiv.org/abs/... links
SEED_001 = DATA_DIR / "001_612ef79a72be928f.txt"  # https://arxiv.org/abs/... links
SEEDS: dict[str, Path] = {"000": SEED_000, "001": SEED_001}

REAL_SEARCH = ARXIV_DIR / "real_2026-04_search_testing_s0_m10.xml"
REAL_SEARCH_PAGE2 = ARXIV_DIR / "real_2026-04_search_testing_s10_m10.xml"
REAL_CLASSIC = ARXIV_DIR / "real_2016_classic_format_au_del_maestro_AND_ti_checkerboard.xml"
REAL_EMPTY = ARXIV_DIR / "real_2026-04_id_0000.0000_empty.xml"
REAL_ERROR_400 = ARXIV_DIR / "real_2026-04_id_abc_HTTP400_error.xml"
REAL_AFFILIATIONS = ARXIV_DIR / "real_2026-05_id_astro-ph_0601001_affiliations.xml"

ATOM_NS = "http://www.w3.org/2005/Atom"
ARXIV_NS = "http://arxiv.org/schemas/atom"
OPENSEARCH_NS = "http://a9.com/-/spec/opensearch/1.1/"

_ISO = "%Y-%m-%dT%H:%M:%SZ"


def real_bytes(path: Path) -> bytes:
    """The bytes of a recorded arXiv response (one of the REAL_* paths)."""
    return path.read_bytes()


@dataclass
class FixturePaper:
    """One paper as the arXiv API describes it (the API's fields, not digestd's model)."""

    id: str  # without version: "2506.05175" or "cond-mat/0603029"
    version: int
    title: str
    summary: str
    authors: list[str]
    updated: str  # "2025-06-05T17:59:46Z"
    published: str
    comment: str | None = None
    categories: list[str] = field(default_factory=lambda: ["cs.CV"])
    primary_category: str = "cs.CV"
    scheme: str = "https"  # of the alternate/pdf links; <id> is always http
    journal_ref: str | None = None
    doi: str | None = None

    @property
    def short_id(self) -> str:
        """Like "2506.05175v1": what `arxiv.Result.get_short_id()` returns."""
        return f"{self.id}v{self.version}"

    @property
    def entry_id(self) -> str:
        """The entry's <id>: always http."""
        return f"http://arxiv.org/abs/{self.short_id}"

    @property
    def link(self) -> str:
        """The rel="alternate" href."""
        return f"{self.scheme}://arxiv.org/abs/{self.short_id}"

    @property
    def pdf(self) -> str:
        """The title="pdf" href."""
        return f"{self.scheme}://arxiv.org/pdf/{self.short_id}"

    @property
    def date(self) -> str:
        """The updated date, as the README's Date column shows it."""
        return self.updated[:10]


# --------------------------------------------------------------------------- fake authors

_FIRST = [
    "Alice", "Bo", "Chen", "Dmitri", "Elena", "Farah", "Gustavo", "Hana", "Ivan", "José",
    "Kenji", "Lena", "Mateo", "Nadia", "Olu", "Priya", "Quentin", "Rosa", "Søren", "Tariq",
    "Uma", "Wei", "Yara", "Zoë",
]  # fmt: skip
_LAST = [
    "Abe", "Becker", "Castro", "Dubois", "Eriksen", "Fischer", "García", "Hoang", "Ito",
    "Jensen", "Kowalski", "Li", "Müller", "Nakamura", "Okafor", "Patel", "Quispe", "Rossi",
    "Schmidt", "Tanaka", "Usman", "Varga", "Wang", "Zhou",
]  # fmt: skip


def fake_authors(seed: str, n: int | None = None) -> list[str]:
    """Deterministic fake author names derived from `seed` (1-4 names unless `n` is given)."""
    digest = hashlib.sha256(seed.encode()).digest()
    count = n if n is not None else 1 + digest[0] % 4
    names: list[str] = []
    for k in range(count):
        a, b = digest[(1 + 2 * k) % 32], digest[(2 + 2 * k) % 32]
        names.append(f"{_FIRST[(a + k) % len(_FIRST)]} {_LAST[(b + 3 * k) % len(_LAST)]}")
    return names


def _published_for(updated: str, version: int) -> str:
    if version <= 1:
        return updated
    dt = datetime.strptime(updated, _ISO).replace(tzinfo=UTC)
    return (dt - timedelta(days=3 * (version - 1))).strftime(_ISO)


# --------------------------------------------------------------------------- seed READMEs

_ROW = re.compile(
    r"^\| \*\*\[(?P<title>.*)\]\((?P<scheme>https?)://arxiv\.org/abs/(?P<id>.+?)v(?P<version>\d+)\)"
    r"\*\* \| (?P<date>\d{4}-\d\d-\d\d) \| <details><summary>Show</summary><p>(?P<summary>.*?)"
    r"</p></details> \| (?P<comment>.*) \|$"
)
_LONG_COMMENT = re.compile(r"^<details><summary>.*?</summary><p>(?P<full>.*)</p></details>$")
_LAST_UPDATE = re.compile(r"^Last update: (\d{4}-\d\d-\d\d)\s*$", re.MULTILINE)


@dataclass
class _Row:
    keyword: str
    index: int
    id: str
    version: int
    scheme: str
    title: str
    date: str
    summary: str
    comment: str | None


def _parse_rows(text: str) -> tuple[list[str], list[_Row]]:
    keywords: list[str] = []
    rows: list[_Row] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("## "):
            keywords.append(line[3:].strip())
            continue
        if not line.startswith("| **["):
            continue
        m = _ROW.match(line)
        if m is None or not keywords:
            raise ValueError(f"line {lineno}: not a paper row: {line[:120]!r}")
        raw_comment = m["comment"]
        long = _LONG_COMMENT.match(raw_comment)
        comment = long["full"] if long else (raw_comment or None)
        kw = keywords[-1]
        rows.append(
            _Row(
                keyword=kw,
                index=sum(1 for r in rows if r.keyword == kw),
                id=m["id"],
                version=int(m["version"]),
                scheme=m["scheme"],
                title=m["title"],
                date=m["date"],
                summary=m["summary"],
                comment=comment,
            )
        )
    return keywords, rows


def _consistent_times(rows: list[_Row]) -> dict[tuple[str, int, str], str] | None:
    """One time per (id, version, date), strictly decreasing along every keyword's rows.

    Topologically sorts each date's papers by the row orders of all keywords, so a paper
    listed under two keywords gets one `updated` value (as the real API would give it).
    Returns None if two keywords order the same pair of papers oppositely.
    """
    Node = tuple[str, int, str]
    succ: dict[Node, set[Node]] = {}
    indeg: dict[Node, int] = {}
    prio: dict[Node, tuple[int, int]] = {}
    for seen, r in enumerate(rows):
        node = (r.id, r.version, r.date)
        succ.setdefault(node, set())
        indeg.setdefault(node, 0)
        prio[node] = min(prio.get(node, (r.index, seen)), (r.index, seen))
    for prev, cur in itertools.pairwise(rows):
        if prev.keyword != cur.keyword or prev.date != cur.date:
            continue
        a, b = (prev.id, prev.version, prev.date), (cur.id, cur.version, cur.date)
        if a != b and b not in succ[a]:
            succ[a].add(b)
            indeg[b] += 1
    heap = [(prio[n], n) for n, d in indeg.items() if d == 0]
    heapq.heapify(heap)
    rank_in_date: dict[str, int] = {}
    times: dict[Node, str] = {}
    per_date = {n[2]: sum(1 for m in indeg if m[2] == n[2]) for n in indeg}
    while heap:
        _, node = heapq.heappop(heap)
        date = node[2]
        rank = rank_in_date.get(date, 0)
        rank_in_date[date] = rank + 1
        step = 60 if per_date[date] <= 1440 else 1
        hhmmss = 86399 - rank * step
        times[node] = f"{date}T{hhmmss // 3600:02d}:{hhmmss // 60 % 60:02d}:{hhmmss % 60:02d}Z"
        for nxt in succ[node]:
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                heapq.heappush(heap, (prio[nxt], nxt))
    return times if len(times) == len(indeg) else None


def parse_seed(path: str | Path) -> dict[str, list[FixturePaper]]:
    """Per-keyword papers of a seed README, keywords in heading order, papers in row order.

    Rows only carry a date, so each gets a time on that date such that a stable sort by
    `updated` descending reproduces row order (23:59:59 minus k minutes, k the paper's rank
    among that date's papers); a paper listed under several keywords gets the same time in
    each. Authors are fake (deterministic), categories ["cs.CV"], published == updated
    unless version > 1 (then 3 days per extra version earlier).
    """
    keywords, rows = _parse_rows(Path(path).read_text(encoding="utf-8"))
    times = _consistent_times(rows)
    feeds: dict[str, list[FixturePaper]] = {kw: [] for kw in keywords}
    for r in rows:
        if times is not None:
            updated = times[(r.id, r.version, r.date)]
        else:  # contradictory orders across keywords: per-keyword times instead
            hhmmss = 86399 - r.index * 60
            updated = f"{r.date}T{hhmmss // 3600:02d}:{hhmmss // 60 % 60:02d}:{hhmmss % 60:02d}Z"
        feeds[r.keyword].append(
            FixturePaper(
                id=r.id,
                version=r.version,
                title=r.title,
                summary=r.summary,
                authors=fake_authors(r.id),
                updated=updated,
                published=_published_for(updated, r.version),
                comment=r.comment,
                categories=["cs.CV"],
                primary_category="cs.CV",
                scheme=r.scheme,
            )
        )
    return feeds


def seed_last_update(path: str | Path) -> str:
    """The "Last update: YYYY-MM-DD" date of a seed README."""
    m = _LAST_UPDATE.search(Path(path).read_text(encoding="utf-8"))
    if m is None:
        raise ValueError(f"{path}: no 'Last update:' line")
    return m[1]


# --------------------------------------------------------------------------- synthetic papers


def make_paper(
    i: int,
    keyword: str,
    date: str,
    *,
    time: str = "12:00:00",
    version: int = 1,
    title: str | None = None,
    summary: str | None = None,
    authors: list[str] | None = None,
    comment: str | None = None,
    categories: list[str] | None = None,
    primary_category: str | None = None,
    scheme: str = "https",
) -> FixturePaper:
    """A synthetic paper with id "2611.{i:05d}".

    `date` is "YYYY-MM-DD" (combined with `time`) or a full "YYYY-MM-DDTHH:MM:SSZ".
    """
    updated = date if "T" in date else f"{date}T{time}Z"
    cats = categories if categories is not None else ["cs.CV"]
    return FixturePaper(
        id=f"2611.{i:05d}",
        version=version,
        title=title if title is not None else f"{keyword}: Synthetic Study Number {i}",
        summary=summary
        if summary is not None
        else f"We study {keyword} in synthetic setting {i}. Results are reproducible.",
        authors=authors if authors is not None else fake_authors(f"2611.{i:05d}"),
        updated=updated,
        published=_published_for(updated, version),
        comment=comment,
        categories=cats,
        primary_category=primary_category if primary_category is not None else cats[0],
        scheme=scheme,
    )


def make_papers(
    keyword: str, n: int, *, first: int = 0, date: str = "2026-11-20", scheme: str = "https"
) -> list[FixturePaper]:
    """`n` synthetic papers for `keyword`, newest first (ids first .. first+n-1).

    Paper k is updated at `date` 23:59:59 minus k minutes, crossing into earlier days
    as needed, so the list is strictly sorted by `updated` descending.
    """
    top = datetime.strptime(f"{date}T23:59:59Z", _ISO).replace(tzinfo=UTC)
    return [
        make_paper(
            first + k,
            keyword,
            (top - timedelta(minutes=k)).strftime(_ISO),
            scheme=scheme,
            comment=f"{k % 30 + 1} pages" if k % 3 == 0 else None,
        )
        for k in range(n)
    ]


def make_feeds(
    keywords: Sequence[str], per_keyword: int, *, date: str = "2026-11-20"
) -> dict[str, list[FixturePaper]]:
    """Feeds for a benchmark: distinct ids across keywords, each list newest first."""
    return {
        kw: make_papers(kw, per_keyword, first=j * per_keyword, date=date)
        for j, kw in enumerate(keywords)
    }


# --------------------------------------------------------------------------- Atom rendering


def _attr(value: str) -> str:
    return escape(value, {'"': "&quot;"})


def _feed_hash(seed: str) -> str:
    return base64.b64encode(hashlib.sha1(seed.encode()).digest()).decode()[:27]  # noqa: S324


def _wrap(text: str, width: int, indent: str = "") -> list[str]:
    lines = textwrap.wrap(
        text, width, initial_indent=indent, break_long_words=False, break_on_hyphens=False
    )
    return lines or [indent]


def _entry_current(p: FixturePaper) -> str:
    out = [
        "  <entry>",
        f"    <id>{escape(p.entry_id)}</id>",
        f"    <title>{escape(p.title)}</title>",
        f"    <updated>{p.updated}</updated>",
        f'    <link href="{_attr(p.link)}" rel="alternate" type="text/html"/>',
        f'    <link href="{_attr(p.pdf)}" rel="related" type="application/pdf" title="pdf"/>',
        f"    <summary>{escape(p.summary)}</summary>",
    ]
    out += [f'    <category term="{_attr(c)}" scheme="{ARXIV_NS}"/>' for c in p.categories]
    out.append(f"    <published>{p.published}</published>")
    if p.comment is not None:
        out.append(f"    <arxiv:comment>{escape(p.comment)}</arxiv:comment>")
    out.append(f'    <arxiv:primary_category term="{_attr(p.primary_category)}"/>')
    if p.journal_ref is not None:
        out.append(f"    <arxiv:journal_ref>{escape(p.journal_ref)}</arxiv:journal_ref>")
    for name in p.authors:
        out += ["    <author>", f"      <name>{escape(name)}</name>", "    </author>"]
    if p.doi is not None:
        out.append(f"    <arxiv:doi>{escape(p.doi)}</arxiv:doi>")
        out.append(f'    <link rel="related" href="https://doi.org/{_attr(p.doi)}" title="doi"/>')
    out.append("  </entry>")
    return "\n".join(out)


def _entry_classic(p: FixturePaper) -> str:
    xa = f'xmlns:arxiv="{ARXIV_NS}"'
    title = "\n  ".join(_wrap(p.title, 72))
    summary = "\n".join(_wrap(p.summary, 80, indent="  ")) + "\n"
    out = [
        "  <entry>",
        f"    <id>{escape(p.entry_id)}</id>",
        f"    <updated>{p.updated}</updated>",
        f"    <published>{p.published}</published>",
        f"    <title>{escape(title)}</title>",
        f"    <summary>{escape(summary)}</summary>",
    ]
    for name in p.authors:
        out += ["    <author>", f"      <name>{escape(name)}</name>", "    </author>"]
    if p.doi is not None:
        out.append(f"    <arxiv:doi {xa}>{escape(p.doi)}</arxiv:doi>")
        out.append(
            f'    <link title="doi" href="http://dx.doi.org/{_attr(p.doi)}" rel="related"/>'
        )
    if p.comment is not None:
        out.append(f"    <arxiv:comment {xa}>{escape(p.comment)}</arxiv:comment>")
    if p.journal_ref is not None:
        out.append(f"    <arxiv:journal_ref {xa}>{escape(p.journal_ref)}</arxiv:journal_ref>")
    out += [
        f'    <link href="{_attr(p.link)}" rel="alternate" type="text/html"/>',
        f'    <link title="pdf" href="{_attr(p.pdf)}" rel="related" type="application/pdf"/>',
        f'    <arxiv:primary_category {xa} term="{_attr(p.primary_category)}"'
        f' scheme="{ARXIV_NS}"/>',
    ]
    out += [f'    <category term="{_attr(c)}" scheme="{ARXIV_NS}"/>' for c in p.categories]
    out.append("  </entry>")
    return "\n".join(out)


def atom_feed(
    papers: Iterable[FixturePaper],
    *,
    total_results: int | None = None,
    start: int = 0,
    classic: bool = False,
    search_query: str = "",
    max_results: int | None = None,
    updated: str | None = None,
) -> bytes:
    """An arXiv API response listing `papers` (in the given order), as UTF-8 bytes.

    Header and entry element order, namespaces and indentation copy the recorded responses:
    today's format (namespaces declared once on <feed>, https links), or with
    `classic=True` the older one (per-element namespaces, title wrapped with newline + two
    spaces, summary with two leading spaces, wrapped lines and a trailing newline).
    `total_results` defaults to the number of papers, `max_results` (itemsPerPage) too;
    `updated` (the feed's own timestamp) defaults to the newest paper's, so output is
    deterministic.
    """
    plist = list(papers)
    total = len(plist) if total_results is None else total_results
    per_page = len(plist) if max_results is None else max_results
    stamp = updated or max((p.updated for p in plist), default="2026-04-12T22:09:27Z")
    query = f"search_query={search_query}&id_list=&start={start}&max_results={per_page}"
    fid = _feed_hash(query)
    if classic:
        osn = f'xmlns:opensearch="{OPENSEARCH_NS}"'
        head = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            f'<feed xmlns="{ATOM_NS}">',
            f'  <link href="http://arxiv.org/api/query?{_attr(quote(query, safe=""))}"'
            ' rel="self" type="application/atom+xml"/>',
            f'  <title type="html">ArXiv Query: {escape(query)}</title>',
            f"  <id>http://arxiv.org/api/{fid}</id>",
            f"  <updated>{stamp[:10]}T00:00:00-04:00</updated>",
            f"  <opensearch:totalResults {osn}>{total}</opensearch:totalResults>",
            f"  <opensearch:startIndex {osn}>{start}</opensearch:startIndex>",
            f"  <opensearch:itemsPerPage {osn}>{per_page}</opensearch:itemsPerPage>",
        ]
        entries = [_entry_classic(p) for p in plist]
    else:
        href = (
            f"https://arxiv.org/api/query?search_query={quote(search_query, safe=':')}"
            f"&start={start}&max_results={per_page}&id_list="
        )
        head = [
            "<?xml version='1.0' encoding='UTF-8'?>",
            f'<feed xmlns:opensearch="{OPENSEARCH_NS}" xmlns:arxiv="{ARXIV_NS}"'
            f' xmlns="{ATOM_NS}">',
            f"  <id>https://arxiv.org/api/{fid}</id>",
            f"  <title>arXiv Query: {escape(query)}</title>",
            f"  <updated>{stamp}</updated>",
            f'  <link href="{_attr(href)}" type="application/atom+xml"/>',
            f"  <opensearch:itemsPerPage>{per_page}</opensearch:itemsPerPage>",
            f"  <opensearch:totalResults>{total}</opensearch:totalResults>",
            f"  <opensearch:startIndex>{start}</opensearch:startIndex>",
        ]
        entries = [_entry_current(p) for p in plist]
    return "\n".join([*head, *entries, "</feed>", ""]).encode("utf-8")
