"""The one-click unsubscribe endpoint (RFC 8058) that `digestd serve` runs.

    GET  .../unsubscribe/TOKEN   a confirmation page with a button; never unsubscribes (mail
                                 scanners and link previews fetch every GET)
    POST .../unsubscribe/TOKEN   unsubscribes: removes the address from subscribers.yaml
                                 (comments and order kept) and answers 200, no redirect

TOKEN is an opaque id of the address and an HMAC of it (digestd.tokens) under
DIGESTD_SECRET(_FILE); the server finds the subscriber by the ids of the current ones. A forged
or altered token gets 403 and changes nothing; a genuine token for an address no longer
subscribed gets 200 "already unsubscribed", so a repeated click is harmless. The path may
carry any prefix (`/digest/unsubscribe/TOKEN`), so a reverse proxy may mount it anywhere under
`settings.public_url`. Standard library only: a ThreadingHTTPServer meant to listen on
127.0.0.1 behind that proxy.

A click is never lost: a deep listen backlog holds bursts, the edits are serialised (and those
that arrive together share one write), and 200 is sent only once the change is on disk.
Connections idle for `idle_timeout` are closed, and a client that goes away early costs one
log line.
"""

from __future__ import annotations

import io
import logging
import re
import socket
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from markupsafe import escape

from digestd.config import edit as subscriptions
from digestd.config.load import Config, Paths, load_config
from digestd.core.tokens import Token, address_id, read_token
from digestd.errors import ConfigError, DigestdError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8025
DEFAULT_IDLE_TIMEOUT = 30.0  # seconds a connection may send nothing before it is closed
MAX_BODY = 64 * 1024  # an RFC 8058 body is `List-Unsubscribe=One-Click`; anything larger is not read
_PATH = re.compile(r"^(?:.*/)?unsubscribe/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)/?$")
_TOKEN_IN_LINE = re.compile(r"unsubscribe/[^\s?#'\"]+")

_HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
</head>
<body style="margin:0;padding:0 12px;background:#eef1f4;color:#1f2328;font-size:16px;line-height:1.5;\
font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif">
<div style="max-width:480px;margin:48px auto;padding:24px;background:#fff;border:1px solid #d0d7de;\
border-radius:8px;overflow-wrap:anywhere">
<h1 style="font-size:22px;margin:0 0 12px">{title}</h1>
{body}
</div>
</body>
</html>
"""

_BUTTON = (
    '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
    '<button type="submit" style="font:inherit;font-weight:600;color:#fff;background:#0a4f94;border:0;'
    'border-radius:6px;padding:10px 18px;cursor:pointer">Unsubscribe</button></form>'
)


class Directory:
    """Token id -> subscribed address. A token carries no address, so the ids of the current
    subscribers are computed, once per version of subscribers.yaml (its inode, size and times)."""

    def __init__(self, home: Path, secret: bytes) -> None:
        self._home = home
        self._path = Paths(home).subscribers
        self._secret = secret
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._ids: dict[str, str] = {}

    def find(self, token_id: str) -> str | None:
        """The subscribed address (spelt as in the file) whose id this is, or None."""
        with self._lock:
            fresh = self._stamp is None or self._stamp != self._stat()
            if fresh:
                self._load()
            email = self._ids.get(token_id)
            if email is None and not fresh:
                # A miss is the one answer a stale cache could get wrong ("already unsubscribed"
                # for someone just added): make sure with the file itself.
                self._load()
                email = self._ids.get(token_id)
            return email

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def _load(self) -> None:
        before = self._stat()
        cfg = load_config(self._home, env={})
        self._ids = {address_id(self._secret, s.email): s.email for s in cfg.subscribers}
        # Cached only if the file did not change while it was read.
        self._stamp = before if before is not None and before == self._stat() else None


@dataclass(slots=True)
class Removal:
    """One click's request to remove an address, and what became of it."""

    email: str
    done: bool = False
    removed: bool = False
    error: str | None = None


class Remover:
    """One edit of subscribers.yaml at a time, and clicks that arrive while one is being written
    share the next one: a burst of N clicks costs a few writes, not N (each is a full read,
    check, fsync). A caller returns only after the write holding its change is on disk.
    subscriptions.edit also takes the instance's edit lock, which the CLI's edits take."""

    def __init__(self, home: Path) -> None:
        self._home = home
        self._cond = threading.Condition()
        self._queue: list[Removal] = []
        self._writing = False

    def remove(self, email: str) -> Removal:
        job = Removal(email)
        with self._cond:
            self._queue.append(job)
            while self._writing and not job.done:
                self._cond.wait()
            if job.done:
                return job
            batch, self._queue, self._writing = self._queue, [], True
        self._write(batch)
        return job

    def _write(self, batch: list[Removal]) -> None:
        removed: set[str] = set()
        error: str | None = None
        try:
            removed = subscriptions.unsubscribe_many(self._home, [job.email for job in batch])
        except DigestdError as err:
            error = str(err)
        except OSError as err:
            error = f"cannot write {Paths(self._home).subscribers}: {err.strerror or err}"
        except Exception as err:  # a bug must not leave the other clicks of the batch waiting
            log.error("unsubscribe: the edit failed: %s: %s", type(err).__name__, err,
                      exc_info=log.isEnabledFor(logging.DEBUG))
            error = "internal error"
        finally:
            with self._cond:
                claimed: set[str] = set()
                for job in batch:
                    key = job.email.strip().lower()
                    job.removed = key in removed and key not in claimed  # one click per address
                    claimed.add(key)
                    job.error = error
                    job.done = True
                self._writing = False
                self._cond.notify_all()


class Endpoint:
    """What a request needs: the list's name, the key, and the instance's subscribers."""

    def __init__(self, home: Path, secret: bytes, list_name: str) -> None:
        self.home = home
        self.secret = secret
        self.list_name = list_name
        self.directory = Directory(home, secret)
        self.remover = Remover(home)

    def find(self, token: Token) -> str | None:
        """The subscribed address a genuine token names, or None when it is not subscribed."""
        return self.directory.find(token.id)


class _Input(io.BufferedIOBase):
    """The request stream, noting whether the client ended it: a request cut short by the
    client is told apart from a complete one (http.server reads a cut header block as whole)."""

    def __init__(self, raw: io.BufferedIOBase) -> None:
        super().__init__()
        self._raw = raw
        self.ended = False

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1, /) -> bytes:
        line = self._raw.readline(size)
        if not line.endswith(b"\n") and (size is None or size < 0 or len(line) < size):
            self.ended = True
        return line

    def read(self, size: int | None = -1, /) -> bytes:
        data = self._raw.read(size)
        if size is None or size < 0 or len(data) < size:
            self.ended = True
        return data

    def close(self) -> None:
        self._raw.close()
        super().close()


def page(title: str, body: str) -> bytes:
    return _PAGE.format(title=escape(title), body=body).encode("utf-8")


def _redact(line: str) -> str:
    """A request line without its token (an id, but still the key to someone's subscription)."""
    return _TOKEN_IN_LINE.sub("unsubscribe/…", line)


class UnsubscribeHandler(BaseHTTPRequestHandler):
    server: UnsubscribeServer
    server_version = "digestd"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, socket.socket):
            self.request.settimeout(self.server.idle_timeout)
        self.input = _Input(self.rfile)
        self.rfile = self.input

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), _redact(format % args))

    def log_error(self, format: str, *args: Any) -> None:
        """http.server's errors (a bad request, a timeout), one line each."""
        if args and isinstance(args[0], TimeoutError):
            log.info("unsubscribe: closed the connection from %s: nothing arrived for %g s",
                     self.address_string(), self.server.idle_timeout)
        else:
            log.info("unsubscribe: %s: %s", self.address_string(), _redact(format % args))

    def parse_request(self) -> bool:
        """http.server's, unless the request line or the header block ended early."""
        if not self.input.ended and not super().parse_request():
            return False  # http.server has answered (400 and the like)
        return self._cut_short() if self.input.ended else True

    def _cut_short(self) -> bool:
        """The client closed the connection in the middle of its request: nothing is done."""
        log.info("unsubscribe: %s closed the connection before its request was complete; "
                 "nothing changed", self.address_string())
        self.close_connection = True
        return False

    def _reply(self, status: HTTPStatus, title: str, body: str, *, head: bool = False) -> None:
        data = page(title, body)
        self.send_response(status)
        for key, value in _HEADERS.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _token(self) -> tuple[Token | None, bool]:
        """(token, matched): the genuine token in the path, or None for a forged one; matched
        is False for a path that is not an unsubscribe link at all."""
        m = _PATH.match(self.path.split("?", 1)[0].split("#", 1)[0])
        if m is None:
            return None, False
        return read_token(self.server.endpoint.secret, m.group(1)), True

    def _not_found(self, head: bool = False) -> None:
        self._reply(HTTPStatus.NOT_FOUND, "Not found", "<p>There is nothing here.</p>", head=head)

    def _forbidden(self, head: bool = False) -> None:
        self._reply(HTTPStatus.FORBIDDEN, "This link is not valid",
                    "<p>This unsubscribe link was changed or is incomplete. Please use the link at the "
                    "bottom of your latest digest, or reply to it.</p>", head=head)

    def _unavailable(self, what: str, head: bool = False) -> None:
        self._reply(HTTPStatus.SERVICE_UNAVAILABLE, "Please try again later", f"<p>{what}</p>", head=head)

    def _gone(self, title: str, email: str | None, head: bool = False) -> None:
        who = f"<strong>{escape(email)}</strong>" if email else "This address"
        self._reply(HTTPStatus.OK, title,
                    f"<p>{who} gets no more digests from {escape(self.server.endpoint.list_name)}.</p>",
                    head=head)

    def _confirm_page(self, head: bool) -> None:
        token, matched = self._token()
        if not matched:
            return self._not_found(head)
        if token is None:
            return self._forbidden(head)
        ep = self.server.endpoint
        try:
            email = ep.find(token)
        except DigestdError as err:
            log.error("unsubscribe page: %s", err)
            return self._unavailable("The subscription list cannot be read right now.", head)
        if email is None:
            return self._gone("Already unsubscribed", token.email, head)
        question = (f"<p>Stop sending {escape(ep.list_name)} digests to "
                    f"<strong>{escape(email)}</strong>?</p>")
        return self._reply(HTTPStatus.OK, f"Unsubscribe from {ep.list_name}?", question + _BUTTON, head=head)

    def do_GET(self) -> None:
        self._confirm_page(head=False)

    def do_HEAD(self) -> None:
        self._confirm_page(head=True)

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            return self._reply(HTTPStatus.BAD_REQUEST, "Bad request", "<p>The request body is not valid.</p>")
        # The body says List-Unsubscribe=One-Click; the token decides. A body cut short is a
        # request the client gave up on: nothing is done.
        if len(self.rfile.read(length)) < length:
            self._cut_short()
            return None
        token, matched = self._token()
        if not matched:
            return self._not_found()
        if token is None:
            log.warning("unsubscribe: refused a forged or altered token")
            return self._forbidden()
        self._unsubscribe(token)
        return None

    def _unsubscribe(self, token: Token) -> None:
        ep = self.server.endpoint
        try:
            email = ep.find(token)
        except DigestdError as err:
            log.error("unsubscribe failed: %s", err)
            return self._sorry()
        if email is None:
            return self._gone("Already unsubscribed", token.email)
        result = ep.remover.remove(email)  # returns once the change is on disk
        if result.error is not None:
            log.error("unsubscribe %s failed: %s", email, result.error)
            return self._sorry()
        if not result.removed:
            return self._gone("Already unsubscribed", email)
        log.info("unsubscribed %s (one-click link)", email)
        return self._gone("Unsubscribed", email)

    def _sorry(self) -> None:
        self._unavailable("You could not be unsubscribed just now; nothing was changed. "
                          "Please try again in a few minutes.")


class UnsubscribeServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once (the accept loop waits for a
    free one; the kernel's backlog of `request_queue_size` holds the rest meanwhile)."""

    daemon_threads = True
    request_queue_size = 1024
    max_connections = 512

    def __init__(self, address: tuple[str, int], endpoint: Endpoint,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        self.endpoint = endpoint
        self.idle_timeout = idle_timeout
        self.slots = threading.BoundedSemaphore(self.max_connections)
        super().__init__(address, UnsubscribeHandler)

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
            log.info("unsubscribe: %s went away before the answer was complete (%s)", who, type(err).__name__)
        else:
            log.error("unsubscribe: a request from %s failed: %s: %s", who, type(err).__name__, err,
                      exc_info=log.isEnabledFor(logging.DEBUG))


def make_server(cfg: Config, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> UnsubscribeServer:
    """A server bound to host:port; ConfigError without a secret, DigestdError if it cannot bind."""
    if not cfg.secret:
        raise ConfigError(
            "digestd serve needs the key that signs unsubscribe links: set DIGESTD_SECRET_FILE "
            "(or DIGESTD_SECRET) to the same value the runs use (see digestd.env.example)"
        )
    endpoint = Endpoint(home=cfg.paths.home, secret=cfg.secret, list_name=cfg.settings.list_name)
    try:
        return UnsubscribeServer((host, port), endpoint, idle_timeout)
    except OSError as err:
        raise DigestdError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
