"""A local stand-in for https://export.arxiv.org/api/query, with fault injection.

    with FakeArxiv(parse_seed(SEED_001)) as fake:
        fake.faults["Video Understanding"] = [Fault.status(503), Fault.stall(5)]
        client.query_url_format = fake.query_url_format   # fake.url + "?{}"
        ...
        assert fake.requests[0].params["sortBy"] == "lastUpdatedDate"

The keyword of a request is the text inside the first pair of double quotes of its
`search_query` (digestd sends `ti:"KW" OR abs:"KW"`), else the whole `search_query`.
An exact key of `feeds` wins, then a case-insensitive one; unknown keywords get a 200 with
an empty feed, as the real API does. Faults queue per keyword (key "*" matches any keyword
whose own queue is empty) and are consumed one per request.

As a script: `python tests/fakearxiv.py --port 8080 --papers-per-keyword 100
--keywords-file kws.txt` (or `--seed tests/data/001_....txt`) serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import random
import re
import ssl
import struct
import sys
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

from fixtures import (
    REAL_EMPTY,
    REAL_ERROR_400,
    REAL_SEARCH,
    FixturePaper,
    atom_feed,
    make_feeds,
    make_papers,
    parse_seed,
)

ATOM_CONTENT_TYPE = "application/atom+xml; charset=utf-8"

HTML_ERROR_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"/><title>arXiv API - Service Temporarily Unavailable</title></head>
<body>
<h1>Service Temporarily Unavailable</h1>
<p>The arXiv API is undergoing maintenance. Please try again later.</p>
<hr/><address>Varnish cache server</address>
</body>
</html>
"""


class FaultKind(StrEnum):
    STATUS = "status"  # non-200 status (400: the real error feed body)
    EMPTY = "empty"  # 200 with the real empty feed
    HTML = "html"  # 200 text/html error page (well-formed, root <html>: parses, but not Atom)
    TRUNCATED = "truncated"  # 200, the feed cut in the middle of an entry
    STALL = "stall"  # nothing for `seconds`, then normal service
    UNSORTED = "unsorted"  # the keyword's papers oldest first (or shuffled)
    OLD = "old"  # serve `papers` instead of the keyword's
    TRICKLE = "trickle"  # the normal answer, one byte every `seconds` (from the status line on, or the body)
    GZIP = "gzip"  # the normal answer with Content-Encoding `encoding` (gzip, deflate, raw deflate)
    BOMB = "bomb"  # Content-Encoding gzip, inflating to `size` bytes of zeros (made piece by piece)
    PADDED = "padded"  # the feed with an XML comment of `size` bytes; `length=False`: no Content-Length
    TOO_MANY = "too_many"  # `size` entries whatever max_results says (the keyword's, then older ones)
    RAW = "raw"  # the normal feed with `entries` (raw XML) inserted before its first entry


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour; build with the classmethods (`Fault.status(503)`...)."""

    kind: FaultKind
    code: int = 200
    retry_after: int | None = None
    seconds: float = 0.0
    shuffle: bool = False
    seed: int = 0
    papers: tuple[FixturePaper, ...] = ()
    headers: bool = False  # TRICKLE: from the status line on, not only the body
    encoding: str = "gzip"  # GZIP: gzip | deflate | raw-deflate (sent as "deflate" without the zlib wrapper)
    label: str | None = None  # GZIP: the Content-Encoding header sent, when not the encoding's own
    size: int = 0  # BOMB: inflated bytes; PADDED: comment bytes; TOO_MANY: entries
    length: bool = True  # PADDED: send Content-Length (False: the body ends when the connection closes)
    entries: tuple[str, ...] = ()  # RAW: <entry> elements as XML text

    @classmethod
    def status(cls, code: int, *, retry_after: int | None = None) -> Fault:
        """HTTP `code`; 429/503 may carry Retry-After; 400 has the real API error feed."""
        return cls(FaultKind.STATUS, code=code, retry_after=retry_after)

    @classmethod
    def empty(cls) -> Fault:
        return cls(FaultKind.EMPTY)

    @classmethod
    def html(cls) -> Fault:
        return cls(FaultKind.HTML)

    @classmethod
    def truncated(cls) -> Fault:
        return cls(FaultKind.TRUNCATED)

    @classmethod
    def stall(cls, seconds: float) -> Fault:
        """Send nothing for `seconds` (interrupted by stop()), then answer normally."""
        return cls(FaultKind.STALL, seconds=seconds)

    @classmethod
    def unsorted(cls, *, shuffle: bool = False, seed: int = 0) -> Fault:
        """Ascending by updated (the stored list reversed), or a seeded shuffle."""
        return cls(FaultKind.UNSORTED, shuffle=shuffle, seed=seed)

    @classmethod
    def old(cls, papers: Sequence[FixturePaper]) -> Fault:
        return cls(FaultKind.OLD, papers=tuple(papers))

    @classmethod
    def trickle(cls, seconds: float = 0.5, *, headers: bool = False) -> Fault:
        """The normal answer one byte every `seconds`: the body only, or with `headers` the
        status line and headers too (stops when the client goes or stop() is called)."""
        return cls(FaultKind.TRICKLE, seconds=seconds, headers=headers)

    @classmethod
    def compressed(cls, encoding: str = "gzip", *, label: str | None = None) -> Fault:
        """The normal answer compressed: "gzip", "deflate" (zlib) or "raw-deflate"."""
        return cls(FaultKind.GZIP, encoding=encoding, label=label)

    @classmethod
    def gzip_bomb(cls, size: int = 1100 << 20) -> Fault:
        """Content-Encoding gzip: about size/1000 bytes on the wire, `size` bytes of zeros inflated.
        Made now (and kept), so serving it costs no time."""
        gzip_bomb(size)
        return cls(FaultKind.BOMB, size=size)

    @classmethod
    def padded(cls, size: int, *, length: bool = True) -> Fault:
        """The normal feed made `size` bytes larger by an XML comment (no Content-Length unless `length`)."""
        return cls(FaultKind.PADDED, size=size, length=length)

    @classmethod
    def too_many(cls, n: int) -> Fault:
        """`n` entries whatever max_results asks: the keyword's own, then older synthetic ones."""
        return cls(FaultKind.TOO_MANY, size=n)

    @classmethod
    def raw(cls, *entries: str) -> Fault:
        """The normal feed with these raw `<entry>` elements before its first entry."""
        return cls(FaultKind.RAW, entries=tuple(entries))


@dataclass
class RequestLog:
    """One request as the fake saw it."""

    at: float  # time.monotonic() when the request line was read
    path: str
    params: dict[str, str]  # query parameters, first value each
    keyword: str
    fault: Fault | None = None


_QUOTED = re.compile(r'"([^"]*)"')
_ID_SHAPE = re.compile(r"(\d{4}\.\d{4,5}|[a-z-]+(\.[A-Z]{2})?/\d{7})(v\d+)?")
ID_LIST = "id_list"  # the keyword an id_list request is logged and faulted under


def keyword_of(search_query: str) -> str:
    """The text inside the first pair of double quotes, else the whole query."""
    m = _QUOTED.search(search_query)
    return m[1] if m else search_query


def truncate_feed(body: bytes) -> bytes:
    """Cut an Atom feed in the middle of its middle entry (on a character boundary)."""
    text = body.decode("utf-8")
    starts = [m.start() for m in re.finditer("<entry>", text)]
    if not starts:
        return body[: len(body) // 2]
    a = starts[len(starts) // 2]
    b = text.find("</entry>", a)
    return text[: a + (b - a) // 2].encode("utf-8")


@functools.lru_cache(maxsize=2)
def gzip_bomb(size: int) -> bytes:
    """A gzip member inflating to `size` zero bytes, about size/1000 bytes long, made 1 MiB
    at a time: after a full flush the compressor starts afresh, so every 1 MiB block of
    zeros compresses to the same bytes, and the block is simply repeated."""
    block = bytes(1 << 20)
    n, rest = divmod(size, len(block))
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    piece = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.compress(bytes(rest)) + c.flush()
    crc = 0
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(bytes(rest), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip, deflate, no name, no mtime
    return header + piece * n + tail + struct.pack("<II", crc, size & 0xFFFFFFFF)


def compress(body: bytes, encoding: str) -> bytes:
    """`body` as Content-Encoding gzip, deflate (zlib-wrapped) or raw-deflate ("identity": as is)."""
    if encoding == "identity":
        return body
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw-deflate": -zlib.MAX_WBITS}[encoding]
    c = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return c.compress(body) + c.flush()


def insert_entries(body: bytes, entries: Sequence[str]) -> bytes:
    """A feed with raw `<entry>` elements put before its first entry (or before </feed>)."""
    at = body.find(b"<entry>")
    if at < 0:
        at = body.rindex(b"</feed>")
    raw = "".join(e.strip() + "\n  " for e in entries).encode("utf-8")
    return body[:at] + raw + body[at:]


def pad_feed(body: bytes, size: int) -> bytes:
    """A feed made `size` bytes longer by an XML comment before </feed>."""
    at = body.rindex(b"</feed>")
    filler = b"<!-- " + b"x" * max(0, size - 9) + b" -->\n"
    return body[:at] + filler + body[at:]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeArxiv


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeArxiv/1.0"
    protocol_version = "HTTP/1.0"  # one request per connection: nothing lingers after stop()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        fake = cast(_Server, self.server).fake
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up
            fake._handle(self)

    def send(
        self,
        code: int,
        body: bytes,
        content_type: str = ATOM_CONTENT_TYPE,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class FakeArxiv:
    """The fake API server. `feeds`, `faults`, `classic`, `latency` may change at any time."""

    def __init__(
        self,
        feeds: Mapping[str, Sequence[FixturePaper]] | None = None,
        *,
        faults: Mapping[str, Sequence[Fault]] | None = None,
        classic: bool = False,
        latency: float = 0.0,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.feeds: dict[str, list[FixturePaper]] = {k: list(v) for k, v in (feeds or {}).items()}
        self.faults: dict[str, list[Fault]] = {k: list(v) for k, v in (faults or {}).items()}
        self.requests: list[RequestLog] = []
        self.extra: list[FixturePaper] = []  # papers served by id_list only (not under any keyword)
        self.gone: set[str] = set()  # ids an id_list request leaves out
        self.classic = classic  # serve the older per-element-namespace format
        self.latency = latency  # seconds added before every response
        self._port = port
        self._tls = tls  # serve https with this server context
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeArxiv:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", self._port), _Handler)
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(server.socket, server_side=True)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name="fakearxiv", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; returns promptly even while requests are stalled."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes stalled handlers, which then drop their connection
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def __enter__(self) -> FakeArxiv:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeArxiv is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT/api/query (https with `tls`)"""
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/api/query"

    @property
    def query_url_format(self) -> str:
        """For `arxiv.Client.query_url_format`."""
        return self.url + "?{}"

    def requests_for(self, keyword: str) -> list[RequestLog]:
        with self._lock:
            return [r for r in self.requests if r.keyword == keyword]

    # ------------------------------------------------------------------ serving

    def _lookup(self, keyword: str) -> tuple[str, list[FixturePaper] | None]:
        with self._lock:
            if keyword in self.feeds:
                return keyword, list(self.feeds[keyword])
            folded = keyword.casefold()
            for k, v in self.feeds.items():
                if k.casefold() == folded:
                    return k, list(v)
        return keyword, None

    def _by_ids(self, ids: Sequence[str]) -> list[FixturePaper] | None:
        """The papers of an id_list request in its order (ids unknown or `gone`: absent, as
        arXiv leaves out what it no longer serves); None when an id is malformed."""
        if not all(_ID_SHAPE.fullmatch(i) for i in ids):
            return None
        with self._lock:
            known = {p.id: p for papers in [*self.feeds.values(), self.extra] for p in papers}
            bare = [re.sub(r"v\d+$", "", i) for i in ids]
            return [known[i] for i in bare if i in known and i not in self.gone]

    def _next_fault(self, keyword: str) -> Fault | None:
        with self._lock:
            for key in (keyword, "*"):
                queue = self.faults.get(key)
                if queue:
                    return queue.pop(0)
        return None

    def _handle(self, h: _Handler) -> None:
        at = time.monotonic()
        split = urlsplit(h.path)
        params = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        search_query = params.get("search_query", "")
        keyword, papers = self._lookup(keyword_of(search_query))
        id_list = [i for i in params.get("id_list", "").split(",") if i]
        if id_list and not search_query:
            keyword, papers = ID_LIST, self._by_ids(id_list)
        fault = self._next_fault(keyword) if split.path == "/api/query" else None
        with self._lock:
            self.requests.append(RequestLog(at, split.path, params, keyword, fault))

        if self.latency and self._stopping.wait(self.latency):
            return
        if split.path != "/api/query":
            h.send(404, b"Not Found\n", "text/plain; charset=utf-8")
            return
        try:
            start = int(params.get("start", "0"))
            max_results = int(params.get("max_results", "10"))
        except ValueError:
            h.send(400, REAL_ERROR_400.read_bytes())
            return
        if papers is None and keyword == ID_LIST:  # a malformed id: arXiv's 400 error feed
            h.send(400, REAL_ERROR_400.read_bytes())
            return

        if fault is not None:
            if fault.kind is FaultKind.STALL:
                if self._stopping.wait(fault.seconds):
                    return  # shutting down: drop the connection unanswered
            elif fault.kind is FaultKind.STATUS:
                self._send_status(h, fault)
                return
            elif fault.kind is FaultKind.EMPTY:
                h.send(200, REAL_EMPTY.read_bytes())
                return
            elif fault.kind is FaultKind.HTML:
                h.send(200, HTML_ERROR_PAGE, "text/html; charset=utf-8")
                return
            elif fault.kind is FaultKind.UNSORTED and papers:
                if fault.shuffle:
                    random.Random(fault.seed).shuffle(papers)
                else:
                    papers.reverse()
            elif fault.kind is FaultKind.OLD:
                papers = list(fault.papers)
            elif fault.kind is FaultKind.BOMB:
                h.send(200, gzip_bomb(fault.size), headers={"Content-Encoding": "gzip"})
                return
            elif fault.kind is FaultKind.TOO_MANY:
                own = papers or []
                extra = make_papers(keyword, max(0, fault.size - len(own)), first=50000, date="2001-01-01")
                papers = own + extra
                start, max_results = 0, len(papers)

        all_papers = papers or []
        body = atom_feed(
            all_papers[start : start + max_results],
            total_results=len(all_papers),
            start=start,
            max_results=max_results,
            search_query=search_query,
            classic=self.classic,
        )
        if fault is not None and fault.kind is FaultKind.TRUNCATED:
            body = truncate_feed(body if all_papers else REAL_SEARCH.read_bytes())
        if fault is not None:
            self._send_shaped(h, fault, body)
            return
        h.send(200, body)

    def _send_shaped(self, h: _Handler, fault: Fault, body: bytes) -> None:
        """The 200 answer `body` as `fault` bends it (or as it is)."""
        if fault.kind is FaultKind.RAW:
            h.send(200, insert_entries(body, fault.entries))
        elif fault.kind is FaultKind.GZIP:
            encoding = fault.label or ("deflate" if fault.encoding == "raw-deflate" else fault.encoding)
            h.send(200, compress(body, fault.encoding), headers={"Content-Encoding": encoding})
        elif fault.kind is FaultKind.PADDED and fault.length:
            h.send(200, pad_feed(body, fault.size))
        elif fault.kind is FaultKind.PADDED:  # no Content-Length: the body ends when the connection does
            h.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Type: " + ATOM_CONTENT_TYPE.encode() + b"\r\n\r\n")
            h.wfile.write(pad_feed(body, fault.size))
        elif fault.kind is FaultKind.TRICKLE:
            self._trickle(h, body, fault)
        else:
            h.send(200, body)

    def _trickle(self, h: _Handler, body: bytes, fault: Fault) -> None:
        """Write the answer one byte every `fault.seconds` until done, the client goes, or stop()."""
        head = (
            f"HTTP/1.0 200 OK\r\nContent-Type: {ATOM_CONTENT_TYPE}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        data = head + body if fault.headers else body
        if not fault.headers:
            h.wfile.write(head)
        for i in range(len(data)):
            if self._stopping.wait(fault.seconds):
                return
            h.wfile.write(data[i : i + 1])

    @staticmethod
    def _send_status(h: _Handler, fault: Fault) -> None:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        if fault.code == 400:
            h.send(400, REAL_ERROR_400.read_bytes(), headers=headers)
            return
        try:
            phrase = HTTPStatus(fault.code).phrase
        except ValueError:
            phrase = "Error"
        h.send(fault.code, f"{fault.code} {phrase}\n".encode(), "text/plain", headers)


def serve_in_thread(
    feeds: Mapping[str, Sequence[FixturePaper]] | None = None,
    *,
    faults: Mapping[str, Sequence[Fault]] | None = None,
) -> FakeArxiv:
    """A started FakeArxiv; call .stop() (or use it as a context manager)."""
    return FakeArxiv(feeds, faults=faults).start()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--papers-per-keyword", type=int, default=100)
    ap.add_argument("--keywords-file", type=Path, help="one keyword per line (synthetic papers)")
    ap.add_argument("--seed", type=Path, help="serve a seed README's papers instead")
    ap.add_argument("--classic", action="store_true", help="serve the older Atom format")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each response")
    args = ap.parse_args(argv)

    feeds: dict[str, list[FixturePaper]] = {}
    if args.seed:
        feeds.update(parse_seed(args.seed))
    if args.keywords_file:
        kws = [ln.strip() for ln in args.keywords_file.read_text().splitlines() if ln.strip()]
        feeds.update(make_feeds(kws, args.papers_per_keyword))
    fake = FakeArxiv(feeds, classic=args.classic, latency=args.latency, port=args.port).start()
    print(f"serving {len(feeds)} keywords at {fake.url}", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
