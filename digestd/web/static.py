"""The static site (site/) at `/` of `digestd serve`, next to the unsubscribe and other routes.

A path no route takes is looked up in site/: only GET and HEAD, only regular files inside
site/ (no `..`, no hidden file such as a build's temp file, no symlink out of it), no
directory listing (`/` and `dir/` answer with their index.html, a folder without one is 404).
Answers carry the file's type, a strong ETag (a hash of its bytes) and Last-Modified, and
a matching If-None-Match (or, without one, If-Modified-Since) gets 304 without a body.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import threading
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote

from digestd.config.settings import Config
from digestd.site.pages import FILTER_SCRIPT
from digestd.web.app import AppHandler, AppServer
from digestd.web.server import DEFAULT_HOST, DEFAULT_IDLE_TIMEOUT, DEFAULT_PORT
from digestd.web.unsubscribe import make_server as make_app_server

MAX_FILE = 64 * 1024 * 1024  # the site's own files are far smaller; anything larger is not served
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".atom": "application/atom+xml; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/x-icon",
}
# The pages' one inline script is allowed by its hash; nothing else runs or loads.
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(FILTER_SCRIPT.encode()).digest()).decode()
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": f"default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}


CHUNK = 64 * 1024  # a file is sent in pieces of this size, never held whole


@dataclass(frozen=True, slots=True)
class StaticFile:
    """An open file of the site: the caller sends it (in pieces) and closes it."""

    file: io.BufferedReader
    size: int
    content_type: str
    etag: str
    mtime: float

    def send(self, out: io.BufferedIOBase) -> None:
        """The file's `size` bytes, CHUNK at a time: many clients fetching a large feed at once
        cost CHUNK each, not the feed's size each."""
        left = self.size
        while left > 0:
            piece = self.file.read(min(CHUNK, left))
            if not piece:
                raise OSError("the file became shorter while it was sent")
            out.write(piece)
            left -= len(piece)


class StaticSite:
    """Files under `root`, opened per request (a run may have just rewritten one); the hash of
    each is cached by (size, mtime_ns) so a 304 costs one stat and no read."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._etags: dict[Path, tuple[tuple[int, int], str]] = {}
        self._lock = threading.Lock()

    def resolve(self, url_path: str) -> Path | None:
        """The file a URL path names inside the site, or None (outside, hidden, a folder)."""
        path = unquote(url_path, errors="strict") if "%" in url_path else url_path
        if not path.startswith("/") or "\x00" in path or "\\" in path:
            return None
        parts = [p for p in path.split("/") if p]
        if any(p in (".", "..") or p.startswith(".") for p in parts):
            return None
        root = self.root.resolve()
        target = root.joinpath(*parts)
        if path.endswith("/") or not parts:
            target = target / "index.html"
        try:
            real = target.resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        return real if real.is_relative_to(root) and real.is_file() else None

    def open(self, url_path: str) -> StaticFile | None:
        """The file a URL path names, open, or None (not in the site, unreadable, too large)."""
        try:
            path = self.resolve(url_path)
        except UnicodeDecodeError:
            return None
        if path is None:
            return None
        try:
            f = path.open("rb")
        except OSError:
            return None
        try:
            st = os.fstat(f.fileno())
            if st.st_size > MAX_FILE:
                f.close()
                return None
            etag = self._etag(path, f, (st.st_size, st.st_mtime_ns))
        except OSError:
            f.close()
            return None
        content_type = TYPES.get(path.suffix.lower(), "application/octet-stream")
        return StaticFile(f, st.st_size, content_type, etag, st.st_mtime)

    def _etag(self, path: Path, f: io.BufferedReader, key: tuple[int, int]) -> str:
        """The cached hash of this version of the file, or one hashed from it in pieces."""
        with self._lock:
            cached = self._etags.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        digest = hashlib.file_digest(f, "sha256")
        f.seek(0)
        etag = '"' + digest.hexdigest()[:32] + '"'
        with self._lock:
            self._etags[path] = (key, etag)
        return etag


def not_modified(file: StaticFile, if_none_match: str | None, if_modified_since: str | None) -> bool:
    """RFC 9110 13.1: If-None-Match decides when present; else If-Modified-Since (seconds)."""
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or file.etag in tags
    if if_modified_since:
        try:
            since = parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return False
        return int(file.mtime) <= since
    return False


class SiteHandler(AppHandler):
    """AppHandler, plus the site for GET/HEAD paths that no route takes."""

    site: StaticSite

    def do_GET(self) -> None:
        if not self._static(head=False):
            super().do_GET()

    def do_HEAD(self) -> None:
        if not self._static(head=True):
            super().do_HEAD()

    def _static(self, *, head: bool) -> bool:
        """True when the site answered; False leaves the request to the routes (or 404)."""
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        if self.server.table.find(path) is not None:
            return False
        file = self.site.open(path)
        if file is None:
            return False
        with file.file:
            self._send_static(file, head=head)
        return True

    def _send_static(self, file: StaticFile, *, head: bool) -> None:
        fresh = not_modified(file, self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since"))
        self.send_response(HTTPStatus.NOT_MODIFIED if fresh else HTTPStatus.OK)
        for key, value in HEADERS.items():
            self.send_header(key, value)
        self.send_header("ETag", file.etag)
        self.send_header("Last-Modified", formatdate(file.mtime, usegmt=True))
        if not fresh:
            self.send_header("Content-Type", file.content_type)
            self.send_header("Content-Length", str(file.size))
        self.end_headers()
        if not fresh and not head:
            file.send(self.wfile)


def serve_site(server: AppServer, root: Path) -> AppServer:
    """`server` answering also from the site at `root` (socketserver's RequestHandlerClass)."""

    class Bound(SiteHandler):
        site = StaticSite(root)

    server.RequestHandlerClass = Bound
    return server


def make_server(cfg: Config, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> AppServer:
    """`digestd serve`'s server: every route of digestd.web, and the site at `/`."""
    return serve_site(make_app_server(cfg, host, port, idle_timeout), cfg.paths.site)
