"""One bounded HTTP GET for the arXiv source: what a server sends can stretch neither the time
nor the memory a fetch takes.

A wall-clock deadline covers the whole answer: a timer shuts the socket down, so bytes
trickling in cannot stretch it (the sockets are registered through public extension points
of requests and urllib3: HTTPAdapter.init_poolmanager, pool_classes_by_scheme, ConnectionCls).
The decoded body is capped: gzip and deflate are inflated a piece at a time against the cap,
so a small bomb costs the cap in memory, not what it would inflate to. Every failure is a
FetchError with one sentence; ResponseRefused when asking again would get the same.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import re
import socket
import threading
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.response import HTTPResponse

from digestd import __version__
from digestd.core.links import shown_url
from digestd.core.text import cut
from digestd.errors import FetchError

USER_AGENT = f"digestd/{__version__} (daily arXiv digest; +https://github.com/)"
ACCEPT_ENCODING = "gzip, deflate"  # what _Inflater decodes; nothing else is asked for
_CHUNK = 65536


class ResponseRefused(FetchError):
    """The answer is too large or in an encoding digestd does not decode: asking again
    would get the same, so it is not retried within the run."""


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


@dataclass(frozen=True, slots=True)
class Answer:
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
        f"arXiv answered with Content-Encoding {cut(encoding, 40)!r}, which digestd does not decode")


def _too_large(max_bytes: int, compressed: bool) -> ResponseRefused:
    how = " once decompressed" if compressed else ""
    return ResponseRefused(
        f"arXiv's response is larger than DIGESTD_ARXIV_MAX_BYTES ({max_bytes:,} bytes){how}; "
        "raise that setting if such answers are expected"
    )


def _read_body(resp: requests.Response, max_bytes: int) -> bytes:
    """The body, decoded, refused as soon as it passes `max_bytes` (before, when the
    declared length already does)."""
    inflater = _inflater_for(resp.headers)
    length = resp.headers.get("Content-Length", "").strip()
    if inflater is None and length.isdigit() and int(length) > max_bytes:
        raise _too_large(max_bytes, False)
    buf = io.BytesIO()
    while chunk := resp.raw.read(_CHUNK, decode_content=False):
        for piece in inflater.inflate(chunk) if inflater else (chunk,):
            if buf.tell() + len(piece) > max_bytes:
                raise _too_large(max_bytes, inflater is not None)
            buf.write(piece)
    if inflater is not None:
        inflater.finish()
    return buf.getvalue()


class _Session(requests.Session):
    """A session that never follows a redirect itself: requests reads (and inflates) a
    redirect's body whole first, even with allow_redirects=False. BoundedHttp._follow does."""

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


class BoundedHttp:
    """A requests session whose every GET is bounded in wall-clock time and decoded size."""

    def __init__(self) -> None:
        self._session = _Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.headers["Accept-Encoding"] = ACCEPT_ENCODING
        for prefix in ("http://", "https://"):
            self._session.mount(prefix, _WatchedAdapter())

    def get(self, url: str, params: Mapping[str, str], *, timeout: float, max_bytes: int) -> Answer:
        """One GET: connect, headers and body all within `timeout` seconds of wall-clock time,
        the body at most `max_bytes` once decoded. Any failure is a FetchError."""
        check_resolves(url, min(DNS_LIMIT, timeout))
        answered = False
        deadline = _Deadline(timeout)
        timeouts = (min(10.0, timeout), timeout)
        try:
            with deadline, self._follow(url, params, timeouts) as resp:
                answered = True
                body = _read_body(resp, max_bytes)
                if deadline.fired:  # the socket was cut and the body merely looked complete
                    raise _too_slow(timeout)
                return Answer(resp.status_code, resp.headers, body)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
            if answered and deadline.fired:
                raise _too_slow(timeout) from None
            if deadline.fired or isinstance(err, _TIMEOUTS):
                what = "finish answering" if answered else "answer"
                raise FetchError(f"arXiv did not {what} within {timeout:g} s") from None
            if isinstance(err, requests.ConnectionError) and not answered:
                raise FetchError(f"cannot reach arXiv at {shown_url(url)}: {_reason(err)}") from None
            raise FetchError(f"request to arXiv failed: {_reason(err)}") from None

    def _follow(self, url: str, params: Mapping[str, str], timeouts: tuple[float, float]
                ) -> requests.Response:
        """The GET, following at most MAX_REDIRECTS redirects without reading their bodies:
        requests reads and inflates a redirect's body whole, so a 302 carrying a gzip bomb
        passed the cap."""
        resp = self._session.get(url, params=params, timeout=timeouts, stream=True, allow_redirects=False)
        for _ in range(MAX_REDIRECTS):
            if not resp.is_redirect:
                return resp
            resp.close()
            try:
                target = urljoin(resp.url, resp.headers["Location"])
            except ValueError:  # "http://[::1"
                shown = resp.headers["Location"][:100]
                raise FetchError(f"arXiv redirected to {shown!r}, which is not a URL") from None
            check_resolves(target, min(DNS_LIMIT, timeouts[1]))
            auth = self._kept_auth(resp.url, target)
            resp = self._session.get(target, auth=auth, timeout=timeouts, stream=True, allow_redirects=False)
        resp.close()
        raise FetchError(f"arXiv redirected more than {MAX_REDIRECTS} times")


    def _kept_auth(self, source: str, target: str) -> tuple[str, str] | None:
        """The `user:password@` of the URL redirected from, for a redirect to the same scheme,
        host and port (a mirror's own move); None for anywhere else, which must not get it."""
        a, b = urlsplit(source), urlsplit(target)
        try:
            if (a.scheme, a.hostname, a.port) != (b.scheme, b.hostname, b.port):
                return None
        except ValueError:  # a port out of range: the request itself will say so
            return None
        user, password = requests.utils.get_auth_from_url(source)
        return (user, password) if user or password else None


MAX_REDIRECTS = 5
DNS_LIMIT = 10.0  # seconds a host name may take to resolve (the resolver's own retries take longer)
DNS_HINT = "check the network, or set DIGESTD_ARXIV_API_URL to an arXiv API address that resolves"


def check_resolves(url: str, limit: float) -> None:
    """Resolve the host first, in a thread bounded by `limit`: getaddrinfo has no timeout of its
    own, and an unknown name is not retried (offline, asking again gets the same answer)."""
    parts = urllib3.util.parse_url(url)
    host = parts.host
    if not host or _is_ip(host.strip("[]")):
        return
    failures: list[OSError] = []

    def lookup() -> None:
        try:
            socket.getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
        except OSError as err:
            failures.append(err)

    worker = threading.Thread(target=lookup, name="digestd-dns", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        raise ResponseRefused(f"the host name {host} did not resolve within {limit:g} s: {DNS_HINT}")
    if failures and isinstance(failures[0], socket.gaierror):
        why = failures[0].strerror or str(failures[0])
        raise ResponseRefused(f"cannot resolve the host name {host} ({why}): {DNS_HINT}")


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            socket.inet_pton(family, host)
            return True
    return False


def _too_slow(timeout: float) -> ResponseRefused:
    """An answer that started and then crawled past the deadline is not asked for again in
    this run: a keyword fails within its timeout, instead of holding the run for every retry."""
    return ResponseRefused(
        f"arXiv did not finish answering within {timeout:g} s (it sent too slowly; the next run tries again)"
    )


def _reason(err: Exception) -> str:
    """The part of a requests/urllib3 error a person can act on, without its nested reprs."""
    text = str(err)
    m = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if m:
        return m.group(1)
    m = re.search(r"(Connection refused|Name or service not known|timed out)", text)
    return m.group(1) if m else text.splitlines()[0][:200]
