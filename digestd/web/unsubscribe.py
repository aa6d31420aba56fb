"""The one-click unsubscribe endpoint (RFC 8058) that `digestd serve` runs.

    GET  .../unsubscribe/TOKEN   a confirmation page with a button; never unsubscribes (mail
                                 scanners and link previews fetch every GET)
    POST .../unsubscribe/TOKEN   unsubscribes: removes the address from subscribers.yaml
                                 (comments and order kept) and answers 200, no redirect

TOKEN is an opaque id of the address and an HMAC of it (digestd.core.tokens) under
DIGESTD_SECRET(_FILE), or a previous key still listed in DIGESTD_SECRET_PREVIOUS; the server
finds the subscriber by the ids of the current ones. A forged or altered token gets 403 and
changes nothing; a genuine token for an address no longer subscribed gets 200 "already
unsubscribed", so a repeated click is harmless. The path may carry any prefix
(`/digest/unsubscribe/TOKEN`), so a reverse proxy may mount it anywhere under
`settings.public_url`. The HTTP plumbing (backlog, connection cap, idle timeout, cut requests)
is digestd.web.server's.

A click is never lost: the edits are serialised (and those that arrive together share one
write), and 200 is sent only once the change is on disk.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from digestd.config import subscribers as subscriptions
from digestd.config.load import load_config
from digestd.config.settings import Config, Paths
from digestd.config.yamlread import read_yaml_text
from digestd.core.models import Subscriber
from digestd.core.tokens import Keys, Token, address_id, read_token
from digestd.errors import ConfigError, DigestdError
from digestd.web import pages
from digestd.web.app import AppServer, Request, Route
from digestd.web.forms import same_origin
from digestd.web.server import DEFAULT_HOST, DEFAULT_IDLE_TIMEOUT, DEFAULT_PORT

log = logging.getLogger(__name__)

_PATH = re.compile(r"^(?:.*/)?unsubscribe/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)/?$")


class Directory:
    """Token id -> subscriber. A token carries no address, so the ids of the current
    subscribers are computed (under every accepted key), once per version of subscribers.yaml
    (its inode, size and times)."""

    def __init__(self, home: Path, keys: Keys) -> None:
        self._home = home
        self._path = Paths(home).subscribers
        self._keys = keys
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._ids: dict[str, Subscriber] = {}
        self._config: Config | None = None
        self._digest: bytes | None = None

    def find(self, token_id: str) -> str | None:
        """The subscribed address (spelt as in the file) whose id this is, or None."""
        sub = self.subscriber(token_id)
        return sub.email if sub is not None else None

    def subscriber(self, token_id: str) -> Subscriber | None:
        """The current subscriber whose id this is, or None."""
        with self._lock:
            fresh = self._stamp is None or self._stamp != self._stat()
            if fresh:
                self._load()
            sub = self._ids.get(token_id)
            if sub is None and not fresh and self._digest != self._read_digest():
                # A miss is the one answer a stale cache could get wrong ("already unsubscribed"
                # for someone just added): make sure with the file's bytes, and parse them again
                # only when they changed (a stale link, clicked over and over, costs a read).
                self._load()
                sub = self._ids.get(token_id)
            return sub

    def config(self) -> Config:
        """The instance as last read (fresh if the file changed)."""
        with self._lock:
            if self._config is None or self._stamp is None or self._stamp != self._stat():
                self._load()
            assert self._config is not None
            return self._config

    def _stat(self) -> tuple[int, int, int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def _read_digest(self) -> bytes | None:
        """A hash of the file's text (None if it cannot be read): far cheaper than parsing it.
        Read as the loader reads it, so a FIFO or /dev/zero is refused, not waited on."""
        try:
            return hashlib.sha256(read_yaml_text(self._path).encode()).digest()
        except DigestdError:
            return None

    def _load(self) -> None:
        before = self._stat()
        self._digest = self._read_digest()
        cfg = load_config(self._home, env={})
        self._config = cfg
        self._ids = {address_id(key, s.email): s for key in self._keys.all for s in cfg.subscribers}
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
    digestd.config.edit also takes the instance's edit lock, which the CLI's edits take."""

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
    """What a request needs: the list's name, the keys, and the instance's subscribers."""

    def __init__(self, home: Path, secret: bytes | Keys, list_name: str,
                 public_url: str | None = None) -> None:
        self.home = home
        self.keys = secret if isinstance(secret, Keys) else Keys(secret)
        self.list_name = list_name
        self.public_url = public_url
        self.directory = Directory(home, self.keys)
        self.remover = Remover(home)

    def find(self, token: Token) -> str | None:
        """The subscribed address a genuine token names, or None when it is not subscribed."""
        return self.directory.find(token.id)


_SECRET = re.compile(r"(?<=unsubscribe/)[^\s?#'\"]+")


def routes(ep: Endpoint) -> list[Route]:
    """GET: the confirmation page; POST: unsubscribe (RFC 8058), under any path prefix."""
    return [Route(_PATH, get=lambda r: confirm_page(ep, r), post=lambda r: unsubscribe_page(ep, r),
                  secret=_SECRET)]


def confirm_page(ep: Endpoint, request: Request) -> pages.Page:
    token = read_token(ep.keys, request.match.group(1))
    if token is None:
        return pages.invalid_link()
    try:
        email = ep.find(token)
    except DigestdError as err:
        log.error("unsubscribe page: %s", err)
        return pages.unavailable("The subscription list cannot be read right now.")
    if email is None:
        return pages.unsubscribed(ep.list_name, token.email, already=True)
    return pages.confirm_unsubscribe(ep.list_name, email)


def unsubscribe_page(ep: Endpoint, request: Request) -> pages.Page:
    # The body says List-Unsubscribe=One-Click; the token decides (mail providers POST it
    # without a form token or an Origin: the token in the path is the capability).
    token = read_token(ep.keys, request.match.group(1))
    if token is None:
        log.warning("unsubscribe: refused a forged or altered token")
        return pages.invalid_link()
    if not same_origin(request.headers, ep.public_url):
        log.warning("unsubscribe: refused a POST from another site")
        return pages.cross_site()
    return unsubscribe(ep, token)


def unsubscribe(ep: Endpoint, token: Token) -> pages.Page:
    try:
        email = ep.find(token)
    except DigestdError as err:
        log.error("unsubscribe failed: %s", err)
        return pages.unsubscribe_failed()
    if email is None:
        return pages.unsubscribed(ep.list_name, token.email, already=True)
    result = ep.remover.remove(email)  # returns once the change is on disk
    if result.error is not None:
        log.error("unsubscribe %s failed: %s", email, result.error)
        return pages.unsubscribe_failed()
    if not result.removed:
        return pages.unsubscribed(ep.list_name, email, already=True)
    log.info("unsubscribed %s (one-click link)", email)
    return pages.unsubscribed(ep.list_name, email, already=False)


def site_routes(cfg: Config, keys: Keys) -> list[Route]:
    """Every endpoint of `digestd serve`, in the order they are tried (a site at `/` last)."""
    from digestd.web import manage, morelike, signup
    from digestd.web.signup_mail import Mailer

    ep = Endpoint(home=cfg.paths.home, secret=keys, list_name=cfg.settings.list_name,
                  public_url=cfg.settings.public_url)
    mailer = Mailer(cfg.smtp, cfg.paths.maildir, cfg.sender)
    return [*routes(ep), *manage.routes(manage.Manager(ep)), *signup.routes(signup.Signup(ep, mailer)),
            *morelike.routes(ep)]


def make_server(cfg: Config, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> AppServer:
    """A server bound to host:port; ConfigError without a secret, DigestdError if it cannot bind."""
    if not cfg.secret:
        raise ConfigError(
            "digestd serve needs the key that signs unsubscribe links: set DIGESTD_SECRET_FILE "
            "(or DIGESTD_SECRET) to the same value the runs use (see digestd.env.example)"
        )
    keys = Keys(cfg.secret, cfg.previous_secrets)
    return AppServer((host, port), site_routes(cfg, keys), name="unsubscribe", idle_timeout=idle_timeout)
