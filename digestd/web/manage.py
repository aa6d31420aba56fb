"""The manage page: a subscriber changes their own subscription from a signed link.

    GET  .../manage/TOKEN   the address, keywords, frequency, revised papers and state, and
                            forms to change them; never changes anything
    POST .../manage/TOKEN   one change (save, pause, resume or unsubscribe), then the page
                            again, saying what changed

TOKEN is `sign(key, "manage", ID)`: ID the address's opaque id (digestd.core.tokens), so a
link names no address. A forged token, or one for an address no longer subscribed, gets a
plain 403. Every POST needs this page's form token and, when the browser sends one, this
site's Origin (digestd.web.forms). Changes go through digestd.config.subscribers, the CLI's
own code: same validation, comments and order kept, serialised by the edit lock.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from http import HTTPStatus

from markupsafe import Markup

from digestd.config import subscribers as subscriptions
from digestd.config.pauses import pause_end_problem, paused_until
from digestd.core.models import Frequency, Subscriber, SubscriberStatus
from digestd.core.tokens import read_manage_token
from digestd.errors import DigestdError, UsageError
from digestd.web import pages
from digestd.web.app import Request, Route
from digestd.web.forms import CSRF_FIELD, Form, form_token_ok, hidden_token, parse_form, same_origin
from digestd.web.manage_pages import Notice, manage_page, notice_html, unsubscribed_page
from digestd.web.unsubscribe import Endpoint

log = logging.getLogger(__name__)

PATH = re.compile(r"^(?:.*/)?manage/([A-Za-z0-9_-]{1,64}\.[A-Za-z0-9_-]{1,64})/?$")
SECRET = re.compile(r"(?<=manage/)[^\s?#'\"]+")
MAX_BODY = 8 * 1024  # a few checkboxes and a token


class Manager:
    """The manage endpoint over the shared unsubscribe Endpoint (keys, directory, remover)."""

    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep

    def _subscriber(self, request: Request) -> tuple[str, Subscriber] | None:
        token_id = read_manage_token(self.ep.keys, request.match.group(1))
        if token_id is None:
            return None
        sub = self.ep.directory.subscriber(token_id)
        return (token_id, sub) if sub is not None else None

    def _page(self, token_id: str, sub: Subscriber, notice: Notice | None = None) -> pages.Page:
        cfg = self.ep.directory.config()
        return manage_page(
            today=dt.datetime.now(dt.UTC).date(),
            list_name=self.ep.list_name,
            sub=sub,
            keywords=[k.name for k in cfg.keywords],
            form_field=hidden_token(self.ep.keys, f"manage:{token_id}"),
            notice=notice,
        )

    def get(self, request: Request) -> pages.Page:
        try:
            found = self._subscriber(request)
        except DigestdError as err:
            log.error("manage page: %s", err)
            return pages.unavailable("The subscription list cannot be read right now.")
        return pages.forbidden() if found is None else self._page(*found)

    def post(self, request: Request) -> pages.Page:
        try:
            found = self._subscriber(request)
        except DigestdError as err:
            log.error("manage page: %s", err)
            return pages.unavailable("The subscription list cannot be read right now; nothing was changed.")
        if found is None:
            return pages.forbidden()
        token_id, sub = found
        form = parse_form(request.body)
        if form is None:
            return pages.bad_request()
        if not same_origin(request.headers, self.ep.public_url) or not form_token_ok(
            self.ep.keys, f"manage:{token_id}", form.one(CSRF_FIELD)
        ):
            log.warning("manage: refused a POST without this page's form token or from another site")
            return pages.cross_site()
        return self._act(token_id, sub, form)

    def _act(self, token_id: str, sub: Subscriber, form: Form) -> pages.Page:
        action = form.one("action")
        try:
            if action == "unsubscribe":
                return self._unsubscribe(sub)
            if action == "save":
                said = self._save(sub, form)
            elif action == "pause":
                said = self._pause(sub, form)
            elif action == "resume":
                said = subscriptions.set_status(self.ep.home, sub.email, SubscriberStatus.ACTIVE)
            else:
                return pages.bad_request()
        except UsageError as err:
            return self._again(token_id, sub, Notice(str(err), error=True))
        except (DigestdError, OSError) as err:
            log.error("manage %s failed: %s", sub.email, err)
            return pages.unavailable("Your change could not be saved just now; nothing was changed. "
                                     "Please try again in a few minutes.")
        log.info("manage: %s", "; ".join(said))
        return self._again(token_id, sub, Notice(" ".join(s.rstrip(".") + "." for s in said)))

    def _again(self, token_id: str, sub: Subscriber, notice: Notice) -> pages.Page:
        """The page as the file now is (the change, or the refusal, said at the top)."""
        status = HTTPStatus.BAD_REQUEST if notice.error else HTTPStatus.OK
        try:
            fresh = self.ep.directory.subscriber(token_id)
        except DigestdError as err:  # the change stands: say it, without the rest of the page
            log.error("manage page: %s", err)
            return pages.Page(status, f"Your {self.ep.list_name} subscription", notice_html(notice) + Markup(
                "<p>The rest of this page cannot be shown just now; open your link again later.</p>"))
        if fresh is None:
            return pages.forbidden()
        page = self._page(token_id, fresh, notice)
        return pages.Page(status, page.title, page.body)

    def _save(self, sub: Subscriber, form: Form) -> list[str]:
        """Keywords, frequency and revised papers in one edit of subscribers.yaml."""
        chosen = form.all("keyword")
        if not chosen:
            raise UsageError("choose at least one keyword; nothing was changed "
                             "(to stop the digests, pause or unsubscribe below)")
        frequency = form.one("frequency")
        if frequency not in ("daily", "weekly"):
            raise UsageError("choose daily or weekly; nothing was changed")
        configured = [k.name for k in self.ep.directory.config().keywords]
        every = {k.casefold() for k in chosen} == {k.casefold() for k in configured}
        keywords = None if every and sub.keywords is None else chosen  # "all" stays "all"
        updates = form.one("updates") == "yes"
        return subscriptions.set_subscriber(self.ep.home, sub.email, keywords, Frequency(frequency),
                                            updates=updates)

    def _pause(self, sub: Subscriber, form: Form) -> list[str]:
        """Until a chosen day (digests resume by themselves), or until resumed."""
        until = (form.one("until") or "").strip()
        if not until:
            return subscriptions.set_status(self.ep.home, sub.email, SubscriberStatus.PAUSED)
        day = paused_until(until)
        if day is None:
            raise UsageError("write the date as YYYY-MM-DD; nothing was changed")
        problem = pause_end_problem(day, dt.datetime.now(dt.UTC).date())
        if problem:
            raise UsageError(f"{problem}; nothing was changed")
        return subscriptions.pause_until(self.ep.home, sub.email, day)

    def _unsubscribe(self, sub: Subscriber) -> pages.Page:
        result = self.ep.remover.remove(sub.email)
        if result.error is not None:
            log.error("unsubscribe %s failed: %s", sub.email, result.error)
            return pages.unsubscribe_failed()
        log.info("unsubscribed %s (manage page)", sub.email)
        return unsubscribed_page(self.ep.list_name, sub.email)


def routes(manager: Manager) -> list[Route]:
    return [Route(PATH, get=manager.get, post=manager.post, max_body=MAX_BODY, secret=SECRET)]
