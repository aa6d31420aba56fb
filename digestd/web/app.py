"""The one server `digestd serve` runs: a table of routes, each a path pattern and what GET
and POST do there. An endpoint (unsubscribe, manage, subscribe, a static site at `/`) adds its
rows; the first row whose pattern matches the path answers. Adding an endpoint is adding rows.

Every answer is a Page sent with the security headers of digestd.web.pages; a POST body is
read (size-limited per route) before the route runs, and a route never sees a cut request.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus

from markupsafe import Markup

from digestd.web import pages
from digestd.web.server import DEFAULT_IDLE_TIMEOUT, MAX_BODY, Handler, Server

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Request:
    """What a route is given: the method, the path (without query), the pattern's match, the
    headers, the body (empty for GET/HEAD) and the client's address."""

    method: str
    path: str
    match: re.Match[str]
    headers: Message
    body: bytes = b""
    client: str = ""


Action = Callable[[Request], pages.Page]


@dataclass(frozen=True, slots=True)
class Route:
    """One row of the table. `secret` matches what of such a path must never be logged."""

    pattern: re.Pattern[str]
    get: Action | None = None
    post: Action | None = None
    max_body: int = MAX_BODY
    secret: re.Pattern[str] | None = None


def not_allowed() -> pages.Page:
    return pages.Page(HTTPStatus.METHOD_NOT_ALLOWED, "Not allowed",
                      Markup("<p>This address does not take that kind of request.</p>"))


@dataclass(slots=True)
class Table:
    """The routes in the order they are tried."""

    routes: list[Route] = field(default_factory=list)

    def add(self, *routes: Route) -> None:
        self.routes.extend(routes)

    def find(self, path: str) -> tuple[Route, re.Match[str]] | None:
        for route in self.routes:
            m = route.pattern.match(path)
            if m is not None:
                return route, m
        return None


class AppHandler(Handler):
    """Dispatches each request to the first matching route of the server's table."""

    server: AppServer

    def redact(self, line: str) -> str:
        for route in self.server.table.routes:
            if route.secret is not None:
                line = route.secret.sub("…", line)
        return line

    def _path(self) -> str:
        return self.path.split("?", 1)[0].split("#", 1)[0]

    def _answer(self, method: str) -> None:
        path = self._path()
        found = self.server.table.find(path)
        if found is None:
            if method == "POST":
                self.close_connection = True  # its body is left unread
            self.send_page(pages.not_found(), head=method == "HEAD")
            return
        route, m = found
        action = route.post if method == "POST" else route.get
        if action is None:
            self.close_connection = True
            self.send_page(not_allowed(), head=method == "HEAD")
            return
        body = b""
        if method == "POST":
            read = self.read_body(route.max_body)
            if read is None:
                return  # answered (400) or cut short: nothing is done
            body = read
        request = Request(method, path, m, self.headers, body, self.client_address[0])
        self.send_page(self._run(action, request), head=method == "HEAD")

    def _run(self, action: Action, request: Request) -> pages.Page:
        """The route's page, or 500 when it fails unexpectedly: the client still gets an answer
        and the log one line (the traceback only at debug level), the path's secret redacted."""
        try:
            return action(request)
        except Exception as err:
            log.error("%s: %s %s failed: %s", self.server.name, request.method,
                      self.redact(request.path), self.redact(f"{type(err).__name__}: {err}"),
                      exc_info=log.isEnabledFor(logging.DEBUG))
            return pages.internal_error()

    def do_GET(self) -> None:
        self._answer("GET")

    def do_HEAD(self) -> None:
        self._answer("HEAD")

    def do_POST(self) -> None:
        self._answer("POST")


class AppServer(Server):
    """The shared server plumbing with a route table."""

    def __init__(self, address: tuple[str, int], routes: Sequence[Route], *, name: str = "serve",
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        self.table = Table(list(routes))
        super().__init__(address, AppHandler, name=name, idle_timeout=idle_timeout)
