""""More like this": a signed link beside each paper of a digest.

    GET  .../more/TOKEN   a page naming the paper, with one button; never changes anything
    POST .../more/TOKEN   adds the paper to the reader's `interests:`, then says so

TOKEN is digestd.core.morelike's (the reader's opaque id and the paper, signed). A forged
token, or one for an address no longer subscribed, gets a plain 403. The POST needs this
page's form token and, when the browser sends one, this site's Origin (digestd.web.forms),
so a mail scanner following links, or another site, adds nothing. The change goes through
digestd.config.edit: same validation, comments kept, serialised by the edit lock.
"""

from __future__ import annotations

import logging
import re
from http import HTTPStatus

from markupsafe import Markup

from digestd.config.interest_edit import InterestsFull, add_interest
from digestd.core.interests import MAX_INTERESTS
from digestd.core.models import Subscriber
from digestd.core.morelike import MoreLike, read_more_like
from digestd.errors import ConfigError, DigestdError, UsageError
from digestd.web import pages
from digestd.web.app import Request, Route
from digestd.web.forms import CSRF_FIELD, form_token_ok, hidden_token, parse_form, same_origin
from digestd.web.unsubscribe import Endpoint

log = logging.getLogger(__name__)

PATH = re.compile(r"^(?:.*/)?more/([A-Za-z0-9_~-]{1,200}\.[A-Za-z0-9_-]{1,64})/?$")
SECRET = re.compile(r"(?<=more/)[^\s?#'\"]+")
MAX_BODY = 2 * 1024  # a form token


class MoreLikeThis:
    """The endpoint over the shared Endpoint (keys, directory of subscribers)."""

    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep

    def _find(self, request: Request) -> tuple[MoreLike, Subscriber] | None:
        asked = read_more_like(self.ep.keys, request.match.group(1))
        if asked is None:
            return None
        sub = self.ep.directory.subscriber(asked.reader)
        return (asked, sub) if sub is not None else None

    def get(self, request: Request) -> pages.Page:
        try:
            found = self._find(request)
        except DigestdError as err:
            log.error("more like this: %s", err)
            return pages.unavailable("The subscription list cannot be read right now.")
        if found is None:
            return pages.forbidden()
        asked, sub = found
        if asked.paper in sub.interests:
            return _done(asked.paper, already=True)
        form = Markup('<form method="post">{}<button type="submit">Add to my interests</button></form>')
        button = form.format(hidden_token(self.ep.keys, _binding(asked)))
        body = Markup("<p>Add <a href=\"https://arxiv.org/abs/{0}\">arXiv:{0}</a> to your interests? Your "
                      "digests of {1} then put papers like it first.</p>{2}").format(
                          asked.paper, self.ep.list_name, button)
        return pages.Page(HTTPStatus.OK, "More like this", body)

    def post(self, request: Request) -> pages.Page:
        try:
            found = self._find(request)
        except DigestdError as err:
            log.error("more like this: %s", err)
            return pages.unavailable("The subscription list cannot be read right now; nothing was changed.")
        if found is None:
            return pages.forbidden()
        asked, sub = found
        form = parse_form(request.body)
        if form is None:
            return pages.bad_request()
        if not same_origin(request.headers, self.ep.public_url) or not form_token_ok(
            self.ep.keys, _binding(asked), form.one(CSRF_FIELD)
        ):
            log.warning("more like this: refused a POST without this page's form token or from another site")
            return pages.cross_site()
        try:
            said = add_interest(self.ep.home, sub.email, asked.paper)
        except InterestsFull as err:
            log.warning("more like this for %s refused: %s", sub.email, err)
            return _full(asked.paper)
        except (DigestdError, OSError) as err:
            if isinstance(err, UsageError) and not isinstance(err, ConfigError):
                return pages.forbidden()  # unsubscribed meanwhile
            log.error("more like this for %s failed: %s", sub.email, err)  # the file, not the reader
            return pages.unavailable("Your change could not be saved just now; nothing was changed.")
        log.info("more like this: %s", "; ".join(said))
        return _done(asked.paper, already=False)


def _binding(asked: MoreLike) -> str:
    return f"morelike:{asked.reader}:{asked.paper}"


def _done(paper: str, *, already: bool) -> pages.Page:
    what = "is already among" if already else "was added to"
    return pages.Page(HTTPStatus.OK, "More like this",
                      Markup("<p class=\"note\">arXiv:{} {} your interests. The next digests put papers "
                             "like it first.</p>").format(paper, what))


def _full(paper: str) -> pages.Page:
    """400 when the file refuses the change: in practice the reader's interests are full."""
    return pages.Page(HTTPStatus.BAD_REQUEST, "Not added",
                      Markup("<p class=\"error\">arXiv:{} was not added: your interests already hold {:,} "
                             "entries, the most there can be. Nothing was changed.</p>").format(
                                 paper, MAX_INTERESTS))


def routes(ep: Endpoint) -> list[Route]:
    endpoint = MoreLikeThis(ep)
    return [Route(PATH, get=endpoint.get, post=endpoint.post, max_body=MAX_BODY, secret=SECRET)]
