"""The one-click unsubscribe endpoint (RFC 8058) that `digestd serve` runs.

    GET  .../unsubscribe/TOKEN   a confirmation page with a button; never unsubscribes (mail
                                 scanners and link previews fetch every GET)
    POST .../unsubscribe/TOKEN   unsubscribes: removes the address from subscribers.yaml
                                 (comments and order kept) and answers 200, no redirect

TOKEN is the address and an HMAC of it (digestd.tokens) under DIGESTD_SECRET(_FILE): a forged
or altered token gets 403 and changes nothing; a genuine token for an address no longer
subscribed gets 200 "already unsubscribed", so a repeated click is harmless. The path may
carry any prefix (`/digest/unsubscribe/TOKEN`), so a reverse proxy may mount it anywhere under
`settings.public_url`. Standard library only: a ThreadingHTTPServer meant to listen on
127.0.0.1 behind that proxy.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from markupsafe import escape

from digestd import subscriptions
from digestd.config import Config
from digestd.errors import ConfigError, DigestdError
from digestd.tokens import read_token

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8025
MAX_BODY = 64 * 1024  # an RFC 8058 body is `List-Unsubscribe=One-Click`; anything larger is not read
_PATH = re.compile(r"^(?:.*/)?unsubscribe/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)/?$")
_TOKEN_IN_LINE = re.compile(r"unsubscribe/[^\s?#]+")

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


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a request needs: where subscribers.yaml lives, the key, and the list's name."""

    home: Path
    secret: bytes
    list_name: str

    def is_subscribed(self, email: str) -> bool:
        from digestd.config import load_config

        cfg = load_config(self.home, env={})
        return any(s.email.lower() == email.lower() for s in cfg.subscribers)

    def unsubscribe(self, email: str) -> bool:
        """Remove the address; False when it was not subscribed (any more)."""
        return subscriptions.unsubscribe(self.home, email)


def page(title: str, body: str) -> bytes:
    return _PAGE.format(title=escape(title), body=body).encode("utf-8")


class UnsubscribeHandler(BaseHTTPRequestHandler):
    server: UnsubscribeServer
    server_version = "digestd"
    sys_version = ""

    def log_message(self, format: str, *args: object) -> None:
        # The request line holds the token (the address, base64): log the path's shape only.
        log.debug("%s %s", self.address_string(), _TOKEN_IN_LINE.sub("unsubscribe/…", format % args))

    def _reply(self, status: HTTPStatus, title: str, body: str, *, head: bool = False) -> None:
        data = page(title, body)
        self.send_response(status)
        for key, value in _HEADERS.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _token_address(self) -> tuple[str | None, bool]:
        """(address, matched): the address a genuine token names; matched is False for a path
        that is not an unsubscribe link at all."""
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

    def _confirm_page(self, head: bool) -> None:
        email, matched = self._token_address()
        if not matched:
            return self._not_found(head)
        if email is None:
            return self._forbidden(head)
        ep = self.server.endpoint
        name = escape(ep.list_name)
        try:
            subscribed = ep.is_subscribed(email)
        except DigestdError as err:
            log.error("unsubscribe page: %s", err)
            return self._reply(HTTPStatus.SERVICE_UNAVAILABLE, "Please try again later",
                               "<p>The subscription list cannot be read right now.</p>", head=head)
        if not subscribed:
            return self._reply(HTTPStatus.OK, "Already unsubscribed",
                               f"<p><strong>{escape(email)}</strong> gets no more digests from {name}.</p>",
                               head=head)
        question = f"<p>Stop sending {name} digests to <strong>{escape(email)}</strong>?</p>"
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
        self.rfile.read(length)  # the body says List-Unsubscribe=One-Click; the token decides
        email, matched = self._token_address()
        if not matched:
            return self._not_found()
        if email is None:
            log.warning("unsubscribe: refused a forged or altered token")
            return self._forbidden()
        ep = self.server.endpoint
        try:
            removed = ep.unsubscribe(email)
        except DigestdError as err:
            log.error("unsubscribe %s failed: %s", email, err)
            return self._reply(HTTPStatus.SERVICE_UNAVAILABLE, "Please try again later",
                               "<p>You could not be unsubscribed just now; nothing was changed. "
                               "Please try again in a few minutes.</p>")
        name = escape(ep.list_name)
        if not removed:
            return self._reply(HTTPStatus.OK, "Already unsubscribed",
                               f"<p><strong>{escape(email)}</strong> gets no more digests from {name}.</p>")
        log.info("unsubscribed %s (one-click link)", email)
        return self._reply(HTTPStatus.OK, "Unsubscribed",
                           f"<p><strong>{escape(email)}</strong> gets no more digests from {name}.</p>")


class UnsubscribeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        super().__init__(address, UnsubscribeHandler)


def make_server(cfg: Config, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> UnsubscribeServer:
    """A server bound to host:port; ConfigError without a secret, DigestdError if it cannot bind."""
    if not cfg.secret:
        raise ConfigError(
            "digestd serve needs the key that signs unsubscribe links: set DIGESTD_SECRET_FILE "
            "(or DIGESTD_SECRET) to the same value the runs use (see digestd.env.example)"
        )
    endpoint = Endpoint(home=cfg.paths.home, secret=cfg.secret, list_name=cfg.settings.list_name)
    try:
        return UnsubscribeServer((host, port), endpoint)
    except OSError as err:
        raise DigestdError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
