"""Fetch the newest papers for a keyword from the arXiv API, refusing anything clearly wrong.

The HTTP is ours: a wall-clock deadline on the whole answer (a timer shuts the socket down,
so bytes trickling in cannot stretch it), a cap on the decoded body (gzip and deflate are
inflated a piece at a time against it), Retry-After honoured, only 429/5xx retried. The
document must be an Atom feed; then each entry is read on its own: one without an id, with
an id that is not an arXiv id, or without a title is skipped with a warning, and its links
are kept only when they are this paper's own arXiv URLs (digestd/core/links.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import itertools
import logging
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import requests
import urllib3
from lxml import etree
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse

from digestd import __version__
from digestd.config.load import DEFAULT_ARXIV_MAX_BYTES
from digestd.core.links import NEW_ID, OLD_ID, safe_arxiv_link
from digestd.core.models import Keyword, Paper

log = logging.getLogger(__name__)

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
_NAME = f"{ATOM}name"
USER_AGENT = f"digestd/{__version__} (daily arXiv digest; +https://github.com/)"
ACCEPT_ENCODING = "gzip, deflate"  # what _Inflater decodes; nothing else is asked for
_CHUNK = 65536
_ENTRY_ID_RE = re.compile(
    rf"(?:https?://(?:www\.|export\.)?arxiv\.org/abs/)?(?P<id>{NEW_ID}|{OLD_ID})(?:v(?P<v>\d{{1,4}}))?"
)
_WS = re.compile(r"\s+")


class FetchError(Exception):
    """This keyword could not be fetched now; its state stays as it was."""


class ResponseRefused(FetchError):
    """The answer is too large or in an encoding digestd does not decode: asking again
    would get the same, so it is not retried within the run."""


class PaperSource(Protocol):
    def fetch(self, keyword: Keyword, max_results: int) -> list[Paper]: ...


def collapse(text: str | None) -> str:
    """Whitespace runs become one space, as the README format requires."""
    return _WS.sub(" ", text or "").strip()


# --------------------------------------------------------------------------- the feed


def _short(text: str, limit: int = 100) -> str:
    """A value from arXiv as a log message may show it: quoted, escaped, cut."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _plain(text: str | None, limit: int = 300) -> str:
    """arXiv text shown in a message: one line, printable characters only, cut."""
    line = "".join(c for c in collapse(text) if c.isprintable())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _timestamp(entry: Any, tag: str, where: str) -> str:
    """An entry's <updated>/<published> as ISO 8601 UTC; a missing or bad one is a FetchError."""
    text = (entry.findtext(f"{ATOM}{tag}") or "").strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FetchError(f"the response has a malformed entry: {where} has <{tag}> {_short(text)}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _links(entry: Any) -> tuple[str | None, str | None]:
    """The entry's rel="alternate" href and its title="pdf" href, as arXiv sent them."""
    alternate = pdf = None
    for link in entry.iterfind(f"{ATOM}link"):
        href = link.get("href")
        if href is None:
            continue
        if alternate is None and link.get("rel") == "alternate":
            alternate = href
        if pdf is None and link.get("title") == "pdf":
            pdf = href
    return alternate, pdf


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


def paper_from_entry(entry: Any, index: int, keyword: str = "") -> Paper | None:
    """One <entry> as a Paper, or None (with a warning naming it) when it has no id, an id
    that is not an arXiv id, or no title."""
    prefix = f"{keyword}: " if keyword else ""
    raw_id = collapse(entry.findtext(f"{ATOM}id"))
    title = collapse(entry.findtext(f"{ATOM}title"))
    if not raw_id:
        log.warning("%sskipped entry %d (title %s): it has no <id>", prefix, index + 1, _short(title))
        return None
    m = _ENTRY_ID_RE.fullmatch(raw_id)
    if m is None:
        log.warning("%sskipped entry %d: its id %s is not an arXiv id", prefix, index + 1, _short(raw_id))
        return None
    paper_id, version = m.group("id"), int(m.group("v") or 1)
    where = f"{prefix}entry {index + 1} ({paper_id}v{version})"
    if not title:
        log.warning("%sskipped %s: it has no title", prefix, where[len(prefix) :])
        return None
    alternate, pdf = _links(entry)
    primary = entry.find(f"{ARXIV}primary_category")
    return Paper(
        id=paper_id,
        version=version,
        title=title,
        link=_checked_link(alternate or raw_id, paper_id, version, "abs", where),
        pdf=_checked_link(pdf, paper_id, version, "pdf", where) if pdf else None,
        updated=_timestamp(entry, "updated", where),
        published=_timestamp(entry, "published", where),
        authors=tuple(n for a in entry.iterfind(f"{ATOM}author") if (n := collapse(a.findtext(_NAME)))),
        summary=collapse(entry.findtext(f"{ATOM}summary")),
        comment=collapse(entry.findtext(f"{ARXIV}comment")) or None,
        categories=tuple(t for c in entry.iterfind(f"{ATOM}category") if (t := c.get("term")) is not None),
        primary_category=(primary.get("term") if primary is not None else None) or "",
    )


def parse_feed(body: bytes, max_results: int | None = None, *, keyword: str = "") -> list[Paper]:
    """Strictly check that `body` is an arXiv Atom feed, then read its entries: at most
    `max_results` of them (more is trimmed, with a warning), bad ones skipped."""
    try:
        root = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as err:
        raise FetchError(f"the response is not well-formed XML (truncated?): {err}") from None
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
    for earlier, later in itertools.pairwise(papers):
        if later.updated > earlier.updated:
            raise FetchError("the entries are not sorted by date, newest first")
    return papers


# --------------------------------------------------------------------------- the deadline

_DEADLINE: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar("digestd_deadline", default=None)


def _shutdown(sock: socket.socket) -> None:
    """Shut the socket down (not close: the reader owns it); a blocked read returns at once.
    The plain socket's method, so a TLS socket is cut at the fd too."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Deadline:
    """The wall-clock limit of one request: when it passes, a timer shuts down the sockets
    the request reads from, so neither a stall nor a trickle of bytes can stretch it."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._over = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._token: contextvars.Token[_Deadline | None] | None = None

    def __enter__(self) -> _Deadline:
        self._token = _DEADLINE.set(self)
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._over = True
            self._socks.clear()
        if self._token is not None:
            _DEADLINE.reset(self._token)

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            if self.fired:
                _shutdown(sock)
            elif not self._over:
                self._socks.append(sock)

    def _fire(self) -> None:
        with self._lock:
            if self._over:
                return
            self.fired = True
            for sock in self._socks:
                _shutdown(sock)


def _watch_current(sock: object) -> None:
    """Put the socket a response is about to be read from under this request's deadline."""
    deadline = _DEADLINE.get()
    if deadline is not None and isinstance(sock, socket.socket):
        deadline.watch(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _watch_current(self.sock)
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        _watch_current(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter with urllib3 connections whose sockets the deadline can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is urllib3.ProxyManager:  # SOCKS proxies keep their own connections
            manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


# --------------------------------------------------------------------------- the body


class _Inflater:
    """gzip or deflate decoded a piece at a time, never more than the caller has room for:
    a small bomb stops at the cap instead of filling memory."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._gzip = encoding in ("gzip", "x-gzip")
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS)
        self._fed = False

    def inflate(self, data: bytes) -> Iterator[bytes]:
        """Inflate `data` at most `_CHUNK` bytes at a time: the caller stops at its cap, so a
        bomb costs the cap in memory, not what it would inflate to."""
        while data:
            yield self._decompress(data, _CHUNK)
            if not self._d.eof:
                data = self._d.unconsumed_tail
            elif self._gzip and self._d.unused_data:  # another gzip member follows
                data = self._d.unused_data
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            else:
                break

    def _decompress(self, data: bytes, limit: int) -> bytes:
        try:
            piece = self._d.decompress(data, limit)
        except zlib.error as err:
            if self.encoding == "deflate" and not self._fed:  # raw deflate, without the zlib wrapper
                self._fed = True
                self._d = zlib.decompressobj(-zlib.MAX_WBITS)
                return self._decompress(data, limit)
            raise FetchError(f"arXiv's {self.encoding} response cannot be decompressed: {err}") from None
        self._fed = True
        return piece

    def finish(self) -> None:
        if self._fed and not self._d.eof:
            raise FetchError(f"arXiv's {self.encoding} response ends early (truncated?)")


_TIMEOUTS = (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError)


@dataclass(frozen=True)
class _Answer:
    """One HTTP answer, its body read whole (and decoded) within the deadline and the cap."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)


def _inflater_for(headers: Mapping[str, str]) -> _Inflater | None:
    encoding = headers.get("Content-Encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip", "deflate"):
        return _Inflater(encoding)
    raise ResponseRefused(
        f"arXiv answered with Content-Encoding {_short(encoding, 40)}, which digestd does not decode"
    )


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
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.headers["Accept-Encoding"] = ACCEPT_ENCODING
        for prefix in ("http://", "https://"):
            self._session.mount(prefix, _WatchedAdapter())
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

    def _too_large(self, compressed: bool) -> ResponseRefused:
        how = " once decompressed" if compressed else ""
        return ResponseRefused(
            f"arXiv's response is larger than DIGESTD_ARXIV_MAX_BYTES ({self.max_bytes:,} bytes){how}; "
            "raise that setting if such answers are expected"
        )

    def _read_body(self, resp: requests.Response) -> bytes:
        """The body, decoded, refused as soon as it passes `max_bytes` (before, when the
        declared length already does)."""
        inflater = _inflater_for(resp.headers)
        length = resp.headers.get("Content-Length", "").strip()
        if inflater is None and length.isdigit() and int(length) > self.max_bytes:
            raise self._too_large(False)
        buf = io.BytesIO()
        while chunk := resp.raw.read(_CHUNK, decode_content=False):
            for piece in inflater.inflate(chunk) if inflater else (chunk,):
                if buf.tell() + len(piece) > self.max_bytes:
                    raise self._too_large(inflater is not None)
                buf.write(piece)
        if inflater is not None:
            inflater.finish()
        return buf.getvalue()

    def _get(self, params: dict[str, str]) -> _Answer:
        """One GET: connect, headers and body all within `timeout` seconds of wall-clock time."""
        answered = False
        deadline = _Deadline(self.timeout)
        timeouts = (min(10.0, self.timeout), self.timeout)
        try:
            with deadline, self._session.get(self.url, params=params, timeout=timeouts, stream=True) as resp:
                answered = True
                body = self._read_body(resp)
                if deadline.fired:  # the socket was cut and the body merely looked complete
                    raise FetchError(f"arXiv did not finish answering within {self.timeout:g} s")
                return _Answer(resp.status_code, resp.headers, body)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
            if deadline.fired or isinstance(err, _TIMEOUTS):
                what = "finish answering" if answered else "answer"
                raise FetchError(f"arXiv did not {what} within {self.timeout:g} s") from None
            if isinstance(err, requests.ConnectionError) and not answered:
                raise FetchError(f"cannot reach arXiv at {self.url}: {_reason(err)}") from None
            raise FetchError(f"request to arXiv failed: {_reason(err)}") from None
        finally:
            self._last = self.clock()

    def fetch(self, keyword: Keyword, max_results: int) -> list[Paper]:
        params = {
            "search_query": keyword.search_query,
            "id_list": "",
            "sortBy": "lastUpdatedDate",
            "sortOrder": "descending",
            "start": "0",
            "max_results": str(max_results),
        }
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
                log.info("%s: attempt %d failed: %s", keyword.name, attempt + 1, err)
                retry_after = self.delay * (2**attempt)
                continue
            status = answer.status
            if status == 200:
                return parse_feed(answer.body, max_results, keyword=keyword.name)
            last_error = f"arXiv answered HTTP {status}"
            if status == 429 or status >= 500:
                retry_after = _retry_after(answer.headers) or self.delay * (2**attempt)
                if retry_after > self.max_retry_after:
                    raise FetchError(f"{last_error} and asked to wait {retry_after:.0f} s; try later")
                log.info("%s: %s, retrying in %.1f s", keyword.name, last_error, retry_after)
                continue
            if status == 400:
                try:
                    parse_feed(answer.body)
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
