"""Read an arXiv API answer strictly: an Atom feed, then each entry on its own.

The document must be a well-formed Atom feed (lxml, no entities resolved, no network) and
not arXiv's error feed; more entries than were asked for are trimmed, and the entries must
be newest first. An entry without an id, with an id that is not an arXiv id, or without a
title is skipped with a warning naming it. Each entry is read into the `arxiv` package's own
model of one, `arxiv.Result` (through its public constructor), and the Paper is made from
that: its short id, its alternate link and its `pdf_url`; those links are kept only when
they are this paper's own arXiv URLs (digestd/core/links.py). We read the XML ourselves,
not with `arxiv.Client`, so that one bad entry is skipped instead of failing the page, and
so that the bounded HTTP of digestd/source/http.py is what fetched it.
"""

from __future__ import annotations

import itertools
import logging
import re
from datetime import UTC, datetime
from typing import Any

import arxiv
from lxml import etree

from digestd.core.links import NEW_ID, OLD_ID, safe_arxiv_link
from digestd.core.models import Paper
from digestd.core.records import paper_from_doc
from digestd.core.text import cut
from digestd.errors import FetchError

log = logging.getLogger(__name__)

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
_NAME = f"{ATOM}name"
_ENTRY_ID_RE = re.compile(
    rf"(?:https?://(?:www\.|export\.)?arxiv\.org/abs/)?(?P<id>{NEW_ID}|{OLD_ID})(?:v(?P<v>[0-9]{{1,4}}))?"
)
_SHORT_ID_RE = re.compile(rf"(?P<id>{NEW_ID}|{OLD_ID})(?:v(?P<v>[0-9]{{1,4}}))?")
_WS = re.compile(r"\s+")
# DEL, C1 controls (U+009B is a terminal's CSI) and bidi embeddings, overrides and isolates,
# which would reorder what follows them in a subject-like line, the text part or a terminal.
_INVISIBLE = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Longest field kept, in characters (arXiv's own: abstracts up to 1,920, the largest
# collaborations about 3,000 authors). A longer one is cut, so one entry cannot turn a
# digest, the README or a feed into megabytes (a digest part must stay under 100 KB).
MAX_TITLE = 1_000
MAX_SUMMARY = 10_000
MAX_COMMENT = 1_000
MAX_NAME = 300
MAX_AUTHORS = 10_000
MAX_CATEGORIES = 50
MAX_CATEGORY = 40


def collapse(text: str | None) -> str:
    """Whitespace runs become one space, as the README format requires; controls and bidi
    overrides go."""
    return _WS.sub(" ", _INVISIBLE.sub("", _WS.sub(" ", text or ""))).strip()


def _short(text: str, limit: int = 100) -> str:
    """A value from arXiv as a log message may show it: quoted, escaped, cut."""
    return repr(cut(text, limit))


def _plain(text: str | None, limit: int = 300) -> str:
    """arXiv text shown in a message: one line, printable characters only, cut."""
    return cut("".join(c for c in collapse(text) if c.isprintable()), limit)


def _where(keyword: str, index: int, paper_id: str, version: int) -> str:
    """How a warning names an entry: the keyword, its place in the feed and its id."""
    prefix = f"{keyword}: " if keyword else ""
    return f"{prefix}entry {index + 1} ({paper_id}v{version})"


def _when(entry: Any, tag: str, where: str) -> datetime:
    """An entry's <updated>/<published> in UTC; a missing or bad one is a FetchError (dates
    drive the sort check and the diff, so the page cannot be trusted without them)."""
    text = (entry.findtext(f"{ATOM}{tag}") or "").strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):  # 9999-12-31T23:00:00-14:00 overflows on the way to UTC
        when = None
    if when is None or not 1991 <= when.year <= 9998:  # arXiv began in 1991
        raise FetchError(f"the response has a malformed entry: {where} has <{tag}> {_short(text)}")
    return when


def _links(entry: Any) -> list[Any]:
    """The entry's <link>s with an href, as `arxiv.Result.Link`s, as arXiv sent them."""
    return [
        arxiv.Result.Link(href, title=lk.get("title"), rel=lk.get("rel") or "", content_type=lk.get("type"))
        for lk in entry.iterfind(f"{ATOM}link")
        if (href := lk.get("href")) is not None
    ]


def _authors(entry: Any) -> list[Any]:
    """The entry's authors with a name, as `arxiv.Result.Author`s (affiliations are not kept)."""
    names = (collapse(a.findtext(_NAME)) for a in entry.iterfind(f"{ATOM}author"))
    kept = itertools.islice(filter(None, names), MAX_AUTHORS)
    return [arxiv.Result.Author(cut(n, MAX_NAME)) for n in kept]


def _categories(entry: Any) -> list[str]:
    """The entry's category terms, at most MAX_CATEGORIES of at most MAX_CATEGORY characters."""
    terms = (t for c in entry.iterfind(f"{ATOM}category") if (t := c.get("term")) is not None)
    return [cut(collapse(t), MAX_CATEGORY) for t in itertools.islice(terms, MAX_CATEGORIES)]


def read_entry(entry: Any, index: int, keyword: str = "") -> Any:
    """One <entry> as an `arxiv.Result`, or None (with a warning naming it) when it has no
    id, an id that is not an arXiv id, or no title. Text is whitespace-collapsed."""
    prefix = f"{keyword}: " if keyword else ""
    raw_id = collapse(entry.findtext(f"{ATOM}id"))
    title = cut(collapse(entry.findtext(f"{ATOM}title")), MAX_TITLE)
    if not raw_id:
        log.warning("%sskipped entry %d (title %s): it has no <id>", prefix, index + 1, _short(title))
        return None
    m = _ENTRY_ID_RE.fullmatch(raw_id)
    if m is None:
        log.warning("%sskipped entry %d: its id %s is not an arXiv id", prefix, index + 1, _short(raw_id))
        return None
    where = _where(keyword, index, m.group("id"), int(m.group("v") or 1))
    if m.group("v") is not None and int(m.group("v")) < 1:
        log.warning("%sskipped %s: arXiv versions start at v1", prefix, where[len(prefix) :])
        return None
    if not title:
        log.warning("%sskipped %s: it has no title", prefix, where[len(prefix) :])
        return None
    primary = entry.find(f"{ARXIV}primary_category")
    return arxiv.Result(
        entry_id=raw_id,
        updated=_when(entry, "updated", where),
        published=_when(entry, "published", where),
        title=title,
        authors=_authors(entry),
        summary=cut(collapse(entry.findtext(f"{ATOM}summary")), MAX_SUMMARY),
        comment=cut(collapse(entry.findtext(f"{ARXIV}comment")), MAX_COMMENT) or None,
        primary_category=cut(collapse(primary.get("term") if primary is not None else None), MAX_CATEGORY),
        categories=_categories(entry),
        links=_links(entry),
    )


def _checked_link(sent: str | None, paper_id: str, version: int, kind: str, where: str) -> str:
    """The link to store: arXiv's when it is this paper's plain arXiv URL, else one built from the id."""
    link = safe_arxiv_link(sent, paper_id, version, kind)
    if sent is not None and link != sent:
        log.warning(
            "%s: its %s link %s is not a plain arXiv URL of it; using %s",
            where,
            kind,
            _short(sent),
            link,
        )
    return link


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def paper_from_result(result: Any, index: int, keyword: str = "") -> Paper:
    """The Paper digestd keeps for a Result that read_entry made (its id already checked)."""
    m = _SHORT_ID_RE.fullmatch(result.get_short_id())
    if m is None:  # read_entry only makes Results with an arXiv id
        raise FetchError(f"the response has an entry whose id {_short(result.entry_id)} is not an arXiv id")
    paper_id, version = m.group("id"), int(m.group("v") or 1)
    where = _where(keyword, index, paper_id, version)
    alternate = next((lk.href for lk in result.links if lk.rel == "alternate"), None)
    pdf = result.pdf_url
    return Paper(
        id=paper_id,
        version=version,
        title=result.title,
        link=_checked_link(alternate or result.entry_id, paper_id, version, "abs", where),
        pdf=_checked_link(pdf, paper_id, version, "pdf", where) if pdf else None,
        updated=_stamp(result.updated),
        published=_stamp(result.published),
        authors=tuple(a.name for a in result.authors),
        summary=result.summary,
        comment=result.comment,
        categories=tuple(result.categories),
        primary_category=result.primary_category,
    )


def paper_from_entry(entry: Any, index: int, keyword: str = "") -> Paper | None:
    """One <entry> as a Paper, or None when read_entry skips it. What is kept passes the same
    check as a stored paper (records.paper_from_doc), so the store can always read back what
    a fetch gave it."""
    result = read_entry(entry, index, keyword)
    if result is None:
        return None
    paper = paper_from_result(result, index, keyword)
    try:
        paper_from_doc(paper.to_dict())
    except ValueError as err:
        log.warning("%sskipped entry %d (%s): %s", f"{keyword}: " if keyword else "", index + 1,
                    _short(paper.id), err)
        return None
    return paper


def parse_feed(
    body: bytes, max_results: int | None = None, *, keyword: str = "", by_date: bool = True
) -> list[Paper]:
    """Strictly check that `body` is an arXiv Atom feed, then read its entries: at most
    `max_results` of them (more is trimmed, with a warning), bad ones skipped."""
    try:
        root = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as err:
        raise FetchError(f"the response is not well-formed XML (truncated?): {err.msg}") from None
    if root.tag != f"{ATOM}feed":
        raise FetchError(f"the response is not an Atom feed (root element {_short(str(root.tag))})")
    entries = root.findall(f"{ATOM}entry")
    for entry in entries:
        if "/api/errors" in (entry.findtext(f"{ATOM}id") or ""):
            raise FetchError(f"arXiv answered with an error: {_plain(entry.findtext(f'{ATOM}summary'))}")
    if max_results is not None and len(entries) > max_results:
        log.warning(
            "%sarXiv sent %d entries where %d were asked for; kept the first %d",
            f"{keyword}: " if keyword else "", len(entries), max_results, max_results,
        )  # fmt: skip
        entries = entries[:max_results]
    papers = [p for i, e in enumerate(entries) if (p := paper_from_entry(e, i, keyword)) is not None]
    # A search is asked for newest first (what follows depends on it); an id_list answer
    # comes in the order of the ids, which is any order (a BibTeX file's, a reader's).
    for earlier, later in itertools.pairwise(papers) if by_date else ():
        if later.updated > earlier.updated:
            raise FetchError("the entries are not sorted by date, newest first")
    return papers
