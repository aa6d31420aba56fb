"""Fetch the newest papers for a keyword from the arXiv API, keeping arXiv's rules.

One request per keyword, `delay` seconds apart (retries included), as arXiv's terms ask.
The query is an `arxiv.Search` (the `arxiv` package's public model of one: newest updates
first), sent as the API's parameters. Timeouts, dropped connections, 429 and 5xx are retried
with backoff, and a Retry-After is honoured up to `max_retry_after`; an answer that would
come back the same (too large, an encoding we do not decode, any other 4xx) is not. Each
GET is bounded by digestd/source/http.py; the answer is read by digestd/source/feed.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

import arxiv

from digestd.config.settings import DEFAULT_ARXIV_MAX_BYTES
from digestd.core.models import Keyword, Paper
from digestd.errors import FetchError
from digestd.source.feed import parse_feed
from digestd.source.http import Answer, BoundedHttp, ResponseRefused

log = logging.getLogger(__name__)

ID_SLICE = 100  # ids per id_list request: a short URL, a small answer
LISTING_SLICE = 2000  # results per request at most, as arXiv's API terms ask


class PaperSource(Protocol):
    """Where a run gets a keyword's papers: newest first, at most `max_results`."""

    def fetch(self, keyword: Keyword, max_results: int) -> list[Paper]: ...


def search_for(keyword: Keyword, max_results: int) -> arxiv.Search:
    """The keyword's query: the newest updates first, as the digest wants them."""
    return arxiv.Search(
        query=keyword.search_query,
        max_results=max_results,
        sort_by=arxiv.SortCriterion.LastUpdatedDate,
        sort_order=arxiv.SortOrder.Descending,
    )


def query_params(search: arxiv.Search) -> dict[str, str]:
    """The API parameters of one page (the first) of `search`, from its public fields."""
    return {
        "search_query": search.query,
        "id_list": ",".join(search.id_list),
        "sortBy": search.sort_by.value,
        "sortOrder": search.sort_order.value,
        "start": "0",
        "max_results": str(search.max_results),
    }


@dataclass
class ArxivSource:
    """The real API (or a stand-in at `url`), one request per keyword, `delay` s apart;
    each answer within `timeout` s of wall-clock time and `max_bytes` once decoded."""

    url: str
    delay: float = 3.0
    timeout: float = 30.0
    retries: int = 3
    max_retry_after: float = 120.0
    max_bytes: int = DEFAULT_ARXIV_MAX_BYTES
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self._http = BoundedHttp()
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

    def _get(self, params: Mapping[str, str]) -> Answer:
        """One bounded GET; the pace counts from when it ended, failed or not."""
        try:
            return self._http.get(self.url, params, timeout=self.timeout, max_bytes=self.max_bytes)
        finally:
            self._last = self.clock()

    def fetch(self, keyword: Keyword, max_results: int) -> list[Paper]:
        params = query_params(search_for(keyword, max_results))
        return self._fetch(params, keyword.name, max_results, "check the keyword's query")

    def fetch_listing(self, keyword: Keyword, limit: int, since: str | None) -> list[Paper]:
        """A listing's papers, newest first, in slices of at most LISTING_SLICE (arXiv's terms),
        each request `delay` s after the last: until a short slice, `limit` papers, or a slice
        reaching papers updated before `since` (those are held already)."""
        papers: list[Paper] = []
        while len(papers) < limit:
            size = min(LISTING_SLICE, limit - len(papers))
            params = {**query_params(search_for(keyword, size)), "start": str(len(papers))}
            page = self._fetch(params, keyword.name, size, "check the listing's categories")
            papers += page
            if len(page) < size or (since is not None and page and page[-1].updated < since):
                break
        return papers

    def fetch_ids(self, ids: Sequence[str]) -> list[Paper]:
        """The papers of `ids` by `id_list`, ID_SLICE per request; an id arXiv does not
        serve is simply absent from the answer (the caller says so)."""
        papers: list[Paper] = []
        for start in range(0, len(ids), ID_SLICE):
            chunk = list(ids[start : start + ID_SLICE])
            search = arxiv.Search(id_list=chunk, max_results=len(chunk))
            params = {**query_params(search), "search_query": ""}
            papers += self._fetch(params, f"{len(chunk)} interest papers", len(chunk), "check the ids",
                                  by_date=False)
        return papers

    def _fetch(
        self, params: Mapping[str, str], label: str, max_results: int, hint: str, *, by_date: bool = True
    ) -> list[Paper]:
        """One answer for `params`, retried within arXiv's pace; its papers, read strictly."""
        retry_after = 0.0
        last_error = "no attempt"
        for attempt in range(self.retries + 1):
            self._wait_turn(retry_after)
            retry_after = 0.0
            try:
                answer = self._get(params)
            except ResponseRefused:
                raise
            except FetchError as err:
                last_error = str(err)
                log.info("%s: attempt %d failed: %s", label, attempt + 1, err)
                retry_after = self.delay * (2**attempt)
                continue
            status = answer.status
            if status == 200:
                return parse_feed(answer.body, max_results, keyword=label, by_date=by_date)
            last_error = f"arXiv answered HTTP {status}"
            if status == 429 or status >= 500:
                retry_after = _retry_after(answer.headers) or self.delay * (2**attempt)
                if retry_after > self.max_retry_after:
                    raise FetchError(f"{last_error} and asked to wait {retry_after:.0f} s; try later")
                if attempt < self.retries:  # the last attempt gives up below, with no wait
                    log.info("%s: %s, retrying in %.1f s", label, last_error, retry_after)
                continue
            if status == 400:
                try:
                    parse_feed(answer.body)
                except FetchError as err:
                    raise FetchError(f"{err} (HTTP 400; {hint})") from None
            raise FetchError(last_error)
        raise FetchError(f"{last_error} (gave up after {self.retries + 1} attempts)")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Retry-After in seconds, from a number or an HTTP date; None when absent or unreadable."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
