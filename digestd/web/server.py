"""The HTTP plumbing every `digestd serve` endpoint shares (standard library only).

A ThreadingHTTPServer meant to listen on 127.0.0.1 behind a reverse proxy, hardened so that
no request is lost and no client can hold it: a deep listen backlog holds bursts, at most
`max_connections` threads run at once, a connection idle for `idle_timeout` is closed, a
request the client cut short is told apart from a complete one, and every failure is one log
line without a traceback. An endpoint subclasses Handler (its do_GET, do_POST, ...) and Server
(what its handlers need), and answers with pages from digestd.web.pages.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import re
import socket
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from markupsafe import Markup

from digestd.errors import DigestdError
from digestd.web.pages import HEADERS, Page, bad_request

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8025
DEFAULT_IDLE_TIMEOUT = 30.0  # seconds a connection may send nothing before it is closed
# Seconds a connection may last in all: a client trickling one byte every idle_timeout - 1
# seconds would otherwise hold its thread for ever, and enough of them every thread.
DEFAULT_CONNECTION_DEADLINE = 60.0
MAX_BODY = 64 * 1024  # a form body is a few fields; anything larger is refused unread
# Bytes of header lines: http.server alone takes 100 lines of 64 KiB, 6.5 MB a connection that
# its parser turns into some 40 MB, so a few dozen clients would exhaust the memory.
MAX_HEADERS = 64 * 1024


class RequestStream(io.BufferedIOBase):
    """The request stream, noting whether the client ended it: a request cut short by the
    client is told apart from a complete one (http.server reads a cut header block as whole)."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        super().__init__()
        self._raw = raw
        self.ended = False
        self._lines = 0
        self._header_bytes = 0

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1, /) -> bytes:
        """A line of the head (the body is read with read); past MAX_HEADERS bytes of header
        lines, http.client.HTTPException, which http.server answers with 431."""
        line = self._raw.readline(size)
        if not line.endswith(b"\n") and (size is None or size < 0 or len(line) < size):
            self.ended = True
        self._lines += 1
        if self._lines > 1:  # the first line is the request line, which http.server bounds
            self._header_bytes += len(line)
            if self._header_bytes > MAX_HEADERS and not self.ended:
                raise http.client.HTTPException(f"the header lines are over {MAX_HEADERS} bytes")
        return line

    def read(self, size: int | None = -1, /) -> bytes:
        data = self._raw.read(size)
        if size is None or size < 0 or len(data) < size:
            self.ended = True
        return data

    def close(self) -> None:
        self._raw.close()
        super().close()


class Handler(BaseHTTPRequestHandler):
    """One connection: idle timeout, EOF-aware parsing, one-line logs, pages with the security
    headers. `secret_in_path` matches what of a path must never reach a log (a token)."""

    server: Server
    server_version = "digestd"
    sys_version = ""
    secret_in_path: ClassVar[re.Pattern[str] | None] = None

    def setup(self) -> None:
        super().setup()
        self.deadline: threading.Timer | None = None
        if isinstance(self.request, socket.socket):
            self.request.settimeout(self.server.idle_timeout)
            self.deadline = threading.Timer(self.server.connection_deadline, self._cut, (self.request,))
            self.deadline.daemon = True
            self.deadline.start()
        self.input = RequestStream(self.rfile)
        self.rfile = self.input

    def _cut(self, sock: socket.socket) -> None:
        """The connection outlived its deadline: its reads and writes end at once."""
        log.info("%s: closed the connection from %s: it lasted over %g s",
                 self.server.name, self.address_string(), self.server.connection_deadline)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        super().finish()

    def redact(self, line: str) -> str:
        """A request line without its secret part (a token is the key to someone's subscription)."""
        return line if self.secret_in_path is None else self.secret_in_path.sub("…", line)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), self.redact(format % args))

    def log_error(self, format: str, *args: Any) -> None:
        """http.server's errors (a bad request, a timeout), one line each."""
        name = self.server.name
        if args and isinstance(args[0], TimeoutError):
            log.info("%s: closed the connection from %s: nothing arrived for %g s",
                     name, self.address_string(), self.server.idle_timeout)
        else:
            log.info("%s: %s: %s", name, self.address_string(), self.redact(format % args))

    def parse_request(self) -> bool:
        """http.server's, unless the request line or the header block ended early."""
        if not self.input.ended and not super().parse_request():
            return False  # http.server has answered (400 and the like)
        return self.cut_short() if self.input.ended else True

    def cut_short(self) -> bool:
        """The client closed the connection in the middle of its request: nothing is done."""
        log.info("%s: %s closed the connection before its request was complete; nothing changed",
                 self.server.name, self.address_string())
        self.close_connection = True
        return False

    def read_body(self, limit: int = MAX_BODY) -> bytes | None:
        """The whole body, or None once the request is answered (400) or found cut short."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= limit:
            self.close_connection = True
            self.send_page(bad_request())
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.cut_short()
            return None
        return body

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a bad request line, 414, 431, 501, 505) as digestd's page,
        so they carry the same security headers as every other answer."""
        try:
            status = HTTPStatus(code)
        except ValueError:
            super().send_error(code, message, explain)
            return
        self.log_error("code %d, message %s", code, message)
        self.close_connection = True
        self.send_page(Page(status, status.phrase, Markup("<p>{}</p>").format(status.description)),
                       head=getattr(self, "command", None) == "HEAD")

    def send_page(self, page: Page, *, head: bool = False) -> None:
        data = page.encode()
        self.send_response(page.status)
        for key, value in HEADERS.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)


class Server(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once (the accept loop waits for a
    free one; the kernel's backlog of `request_queue_size` holds the rest meanwhile). `name`
    starts each of its log lines."""

    daemon_threads = True
    request_queue_size = 1024
    max_connections = 512

    def __init__(self, address: tuple[str, int], handler: type[Handler], *, name: str,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 connection_deadline: float = DEFAULT_CONNECTION_DEADLINE) -> None:
        """Bound and listening; DigestdError (one sentence) when the address cannot be taken."""
        self.name = name
        self.idle_timeout = idle_timeout
        self.connection_deadline = max(connection_deadline, idle_timeout)
        self.slots = threading.BoundedSemaphore(self.max_connections)
        try:
            super().__init__(address, handler)
        except OSError as err:
            host, port = address
            raise DigestdError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None

    def process_request(self, request: Any, client_address: Any) -> None:
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line, no traceback: a client that went away is routine; anything else is logged
        as an error (with the traceback only at debug level)."""
        err = sys.exc_info()[1]
        who = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        if isinstance(err, ConnectionError | TimeoutError):
            log.info("%s: %s went away before the answer was complete (%s)",
                     self.name, who, type(err).__name__)
        else:
            log.error("%s: a request from %s failed: %s: %s", self.name, who, type(err).__name__, err,
                      exc_info=log.isEnabledFor(logging.DEBUG))
