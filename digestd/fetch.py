"""Fetch the newest papers for a keyword from the arXiv API, refusing anything clearly wrong.

The `arxiv` package's Client sets no timeout, drops Retry-After, and its parser recovers an
HTML error page into an empty feed without a word. So the HTTP is ours (a timeout on every
request, a deadline on the whole body, Retry-After honoured, only 429/5xx retried), the
document is checked strictly to be an Atom feed first, and then the package's own parser
turns it into `arxiv.Result`s.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import arxiv
import requests
from arxiv import _feed as arxiv_feed
from lxml import etree

from digestd import __version__
from digestd.models import Keyword, Paper

log = logging.getLogger(__name__)

ATOM = "{http://www.w3.org/2005/Atom}"
USER_AGENT = f"digestd/{__version__} (daily arXiv digest; +https://github.com/)"
_ID_RE = re.compile(r"^(?:https?://arxiv\.org/abs/)?(?P<id>.+?)(?:v(?P<v>\d+))?$")
_WS = re.compile(r"\s+")


class FetchError(Exception):
    """This keyword could not be fetched now; its state stays as it was."""


class PaperSource(Protocol):
    def fetch(self, keyword: Keyword, max_results: int) -> list[Paper]: ...


def collapse(text: str | None) -> str:
    """Whitespace runs become one space, as the README format requires."""
    return _WS.sub(" ", text or "").strip()


def paper_from_result(result: arxiv.Result) -> Paper:
    m = _ID_RE.match(result.entry_id.strip())
    if m is None:  # pragma: no cover - the regex matches any non-empty string
        raise FetchError(f"unexpected entry id {result.entry_id!r}")
    link = next((lk.href for lk in result.links if lk.rel == "alternate"), result.entry_id)
    comment = collapse(result.comment) or None
    return Paper(
        id=m.group("id"),
        version=int(m.group("v") or 1),
        title=collapse(result.title),
        link=link,
        pdf=result.pdf_url,
        updated=result.updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
        published=result.published.strftime("%Y-%m-%dT%H:%M:%SZ"),
        authors=tuple(collapse(a.name) for a in result.authors),
        summary=collapse(result.summary),
        comment=comment,
        categories=tuple(result.categories),
        primary_category=result.primary_category or "",
    )


def parse_feed(body: bytes) -> list[Paper]:
    """Strictly check that `body` is an arXiv Atom feed, then parse it with the arxiv package."""
    try:
        root = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as err:
        raise FetchError(f"the response is not well-formed XML (truncated?): {err}") from None
    if root.tag != f"{ATOM}feed":
        raise FetchError(f"the response is not an Atom feed (root element {root.tag!r})")
    for entry in root.iterfind(f"{ATOM}entry"):
        entry_id = entry.findtext(f"{ATOM}id") or ""
        if "/api/errors" in entry_id:
            summary = collapse(entry.findtext(f"{ATOM}summary"))
            raise FetchError(f"arXiv answered with an error: {summary}")
    try:
        papers = [paper_from_result(r) for r in arxiv_feed.parse(body).results]
    except (ValueError, TypeError, AttributeError) as err:  # e.g. <updated>not-a-date</updated>
        raise FetchError(f"the response has a malformed entry: {err}") from None
    for earlier, later in itertools.pairwise(papers):
        if later.updated > earlier.updated:
            raise FetchError("the entries are not sorted by date, newest first")
    return papers


@dataclass
class ArxivSource:
    """The real API (or a stand-in at `url`), one request per keyword, `delay` s apart."""

    url: str
    delay: float = 3.0
    timeout: float = 30.0
    retries: int = 3
    max_retry_after: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._last: float | None = None

    def _wait_turn(self, at_least: float = 0.0) -> None:
        """Keep arXiv's rule: one request every `delay` seconds, retries included."""
        gap = max(self.delay, at_least)
        if self._last is not None:
            left = gap - (self.clock() - self._last)
            if left > 0:
                self.sleep(left)
        elif at_least > 0:
            self.sleep(at_least)

    def _get(self, params: dict[str, str]) -> requests.Response:
        """One GET with a connect/read timeout and a deadline for the whole body."""
        deadline = time.monotonic() + self.timeout
        try:
            resp = self._session.get(
                self.url, params=params, timeout=(min(10.0, self.timeout), self.timeout), stream=True
            )
            chunks = []
            for chunk in resp.iter_content(65536):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    resp.close()
                    raise FetchError(f"arXiv did not finish answering within {self.timeout:g} s")
            resp._content = b"".join(chunks)
            return resp
        except requests.Timeout:
            raise FetchError(f"arXiv did not answer within {self.timeout:g} s") from None
        except requests.ConnectionError as err:
            raise FetchError(f"cannot reach arXiv at {self.url}: {_reason(err)}") from None
        except requests.RequestException as err:
            raise FetchError(f"request to arXiv failed: {_reason(err)}") from None
        finally:
            self._last = self.clock()

    def fetch(self, keyword: Keyword, max_results: int) -> list[Paper]:
        params = {
            "search_query": keyword.search_query,
            "id_list": "",
            "sortBy": arxiv.SortCriterion.LastUpdatedDate.value,
            "sortOrder": arxiv.SortOrder.Descending.value,
            "start": "0",
            "max_results": str(max_results),
        }
        retry_after = 0.0
        last_error = "no attempt"
        for attempt in range(self.retries + 1):
            self._wait_turn(retry_after)
            retry_after = 0.0
            try:
                resp = self._get(params)
            except FetchError as err:
                last_error = str(err)
                log.info("%s: attempt %d failed: %s", keyword.name, attempt + 1, err)
                retry_after = self.delay * (2**attempt)
                continue
            status = resp.status_code
            if status == 200:
                return parse_feed(resp.content)
            last_error = f"arXiv answered HTTP {status}"
            if status == 429 or status >= 500:
                retry_after = _retry_after(resp.headers) or self.delay * (2**attempt)
                if retry_after > self.max_retry_after:
                    raise FetchError(f"{last_error} and asked to wait {retry_after:.0f} s; try later")
                log.info("%s: %s, retrying in %.1f s", keyword.name, last_error, retry_after)
                continue
            if status == 400:
                try:
                    parse_feed(resp.content)
                except FetchError as err:
                    raise FetchError(f"{err} (HTTP 400; check the keyword's query)") from None
            raise FetchError(last_error)
        raise FetchError(f"{last_error} (gave up after {self.retries + 1} attempts)")


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _reason(err: Exception) -> str:
    text = str(err)
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if m:
        return m.group(1)
    m = re.search(r"(Connection refused|Name or service not known|timed out)", text)
    return m.group(1) if m else text.splitlines()[0][:200]
