"""Sign-up with double opt-in, off unless `settings.open_signup: true`.

    GET  .../subscribe        the form: an address and a choice of keywords
    POST .../subscribe        creates nothing: queues a confirmation mail (valid 48 h) and
                              answers the same page whether or not the address is subscribed
    GET  .../confirm/TOKEN    a confirm button; never changes anything (scanners fetch links)
    POST .../confirm/TOKEN    adds the subscriber through digestd.config.subscribers (the
                              CLI's code), from the current papers on

TOKEN is `sign_until(key, "confirm", pack(json))` with the address and keywords chosen,
checked against every accepted key. Addresses are checked as the CLI checks them. Limits:
`CLIENT_LIMIT` sign-ups per client per hour (429 past it), and one mail per recipient per
hour (past it, the same answer and no mail). An address already subscribed gets, instead of
a confirmation, a mail with its manage link: the page cannot tell who is subscribed.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

from markupsafe import Markup

from digestd.config import subscribers as subscriptions
from digestd.config.settings import Config
from digestd.config.values import address_key, normalize_email
from digestd.core.tokens import manage_link, pack, sign_until, unpack, verify_until
from digestd.errors import DigestdError, UsageError
from digestd.store.suppressions import blocked
from digestd.web import pages
from digestd.web.app import Request, Route
from digestd.web.forms import CSRF_FIELD, Form, form_token_ok, hidden_token, parse_form, same_origin
from digestd.web.ratelimit import RateLimit, client_key
from digestd.web.signup_mail import Letter, Mailer
from digestd.web.signup_pages import confirm_page, confirmed_page, signup_page, too_many
from digestd.web.unsubscribe import Endpoint

log = logging.getLogger(__name__)

CONFIRM_TTL = 48 * 3600
CLIENT_LIMIT = 10  # sign-up POSTs per client per hour
RECIPIENT_LIMIT = 1  # confirmation mails per recipient per hour
SUBSCRIBE = re.compile(r"^(?:.*/)?subscribe/?$")
CONFIRM = re.compile(r"^(?:.*/)?confirm/([A-Za-z0-9_~-]{1,2048}\.[A-Za-z0-9_-]{1,64})/?$")
SECRET = re.compile(r"(?<=confirm/)[^\s?#'\"]+")
MAX_BODY = 16 * 1024


@dataclass(frozen=True, slots=True)
class Wish:
    """What a confirmation link asks for: an address (checked) and keywords."""

    email: str
    keywords: tuple[str, ...]


class Signup:
    def __init__(self, ep: Endpoint, mailer: Mailer, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.ep = ep
        self.mailer = mailer
        self.wall = wall
        self.per_client = RateLimit(CLIENT_LIMIT, 3600, clock=clock)
        self.per_recipient = RateLimit(RECIPIENT_LIMIT, 3600, clock=clock)

    def _open(self) -> Config | None:
        """The instance, when sign-up is open (read per request: the operator may close it)."""
        cfg = self.ep.directory.config()
        return cfg if cfg.settings.open_signup and cfg.settings.public_url else None

    def _form(self, cfg: Config, notice: str | None = None, email: str = "",
              chosen: tuple[str, ...] = ()) -> pages.Page:
        return signup_page(list_name=self.ep.list_name, keywords=[k.name for k in cfg.keywords],
                           form_field=hidden_token(self.ep.keys, "subscribe"), notice=notice,
                           email=email, chosen=chosen)

    def get(self, request: Request) -> pages.Page:
        cfg = self._read(pages.not_found())
        return cfg if isinstance(cfg, pages.Page) else self._form(cfg)

    def _read(self, closed: pages.Page) -> Config | pages.Page:
        """The instance while sign-up is open; else the answer: `closed`, or 503 when the list
        cannot be read just now (a 404 or "link not valid" would send a visitor away for good)."""
        try:
            cfg = self._open()
        except DigestdError as err:
            log.error("sign-up page: %s", err)
            return pages.unavailable("The subscription list cannot be read right now; nothing was changed. "
                                     "Please try again later.")
        return closed if cfg is None else cfg

    def post(self, request: Request) -> pages.Page:
        cfg = self._read(pages.not_found())
        if isinstance(cfg, pages.Page):
            return cfg
        form = parse_form(request.body)
        if form is None:
            return pages.bad_request()
        if not same_origin(request.headers, self.ep.public_url) or not form_token_ok(
            self.ep.keys, "subscribe", form.one(CSRF_FIELD)
        ):
            log.warning("sign-up: refused a POST without the form token or from another site")
            return pages.cross_site()
        if not self.per_client.allow(client_key(request.client, request.headers)):
            return too_many()
        try:
            wish = self._wish(cfg, form)
        except UsageError as err:
            chosen = tuple(form.all("keyword"))
            page = self._form(cfg, str(err), email=form.one("email") or "", chosen=chosen)
            return pages.Page(HTTPStatus.BAD_REQUEST, page.title, page.body)
        self._mail(cfg, wish)
        return self._form(cfg, f"If {wish.email} can be subscribed, a mail with a confirmation link is "
                               "on its way. The link is valid for 48 hours.")

    def _wish(self, cfg: Config, form: Form) -> Wish:
        email = normalize_email(form.one("email") or "")  # the CLI's check
        names = {k.name.casefold(): k.name for k in cfg.keywords}
        chosen = form.all("keyword")
        if not chosen:
            raise UsageError("choose at least one keyword")
        unknown = [k for k in chosen if k.casefold() not in names]
        if unknown:
            raise UsageError(f"{unknown[0]!r} is not one of this list's keywords")
        return Wish(email, tuple(dict.fromkeys(names[k.casefold()] for k in chosen)))

    def _suppressed(self, cfg: Config, email: str) -> bool | None:
        """True for an address digestd never mails (bounces, a complaint), not even to confirm;
        None when the suppression list cannot be read (a run moves it aside): not known."""
        try:
            return bool(blocked(cfg.paths.suppressions_db, [email]))
        except (DigestdError, OSError) as err:
            log.error("sign-up: %s", err)
            return None

    def _mail(self, cfg: Config, wish: Wish) -> None:
        """Queue the mail (or, past the recipient's limit, nothing): the answer is the same."""
        if self._suppressed(cfg, wish.email) is not False:  # unknown counts as suppressed
            log.info("sign-up: held back a mail to a suppressed address")
            return
        if not self.per_recipient.allow(mailbox_key(wish.email)):
            log.info("sign-up: held back a second mail within the hour to one recipient")
            return
        base = (cfg.settings.public_url or "").rstrip("/")
        known = {address_key(s.email): s.email for s in cfg.subscribers}
        already = known.get(address_key(wish.email))
        name = self.ep.list_name
        if already is not None:
            link = manage_link(base, self.ep.keys.current, already)
            text = (f"Someone, maybe you, asked to subscribe {already} to {name}. This address is "
                    f"already subscribed; nothing was changed.\n\nManage your subscription:\n{link}\n")
            self.mailer.submit(Letter(already, f"{name}: you are already subscribed", text))
            return
        payload = pack(json.dumps({"e": wish.email, "k": list(wish.keywords)}).encode("utf-8"))
        try:
            token = sign_until(self.ep.keys.current, "confirm", payload, int(self.wall()) + CONFIRM_TTL)
        except ValueError:  # too many keywords for one link
            log.warning("sign-up: a request chose too many keywords for a link")
            return
        text = (f"Someone, maybe you, asked to subscribe {wish.email} to {name} "
                f"({', '.join(wish.keywords)}).\n\nTo confirm, open this link within 48 hours and "
                f"press the button:\n{base}/confirm/{token}\n\nIf it was not you, ignore this mail: "
                "nothing happens without the confirmation.\n")
        self.mailer.submit(Letter(wish.email, f"{name}: please confirm your subscription", text))

    def _confirmed_wish(self, request: Request) -> Wish | None:
        payload = verify_until(self.ep.keys, "confirm", request.match.group(1), self.wall())
        raw = unpack(payload) if payload is not None else None
        try:
            data = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("e"), str):
            return None
        if not isinstance(data.get("k"), list) or not all(isinstance(k, str) for k in data["k"]):
            return None
        return Wish(data["e"], tuple(data["k"]))

    def confirm_get(self, request: Request) -> pages.Page:
        cfg = self._read(pages.forbidden())
        if isinstance(cfg, pages.Page):
            return cfg
        wish = self._confirmed_wish(request)
        if wish is None:
            return pages.forbidden()
        return confirm_page(self.ep.list_name, wish.email, wish.keywords,
                            hidden_token(self.ep.keys, "confirm:" + request.match.group(1)[-22:]))

    def confirm_post(self, request: Request) -> pages.Page:
        cfg = self._read(pages.forbidden())
        if isinstance(cfg, pages.Page):
            return cfg
        wish = self._confirmed_wish(request)
        if wish is None:
            return pages.forbidden()
        form = parse_form(request.body)
        if form is None or not same_origin(request.headers, self.ep.public_url) or not form_token_ok(
            self.ep.keys, "confirm:" + request.match.group(1)[-22:], form.one(CSRF_FIELD)
        ):
            return pages.cross_site()
        names = {k.name.casefold(): k.name for k in cfg.keywords}
        keywords = [names[k.casefold()] for k in wish.keywords if k.casefold() in names]
        if not keywords:
            return pages.forbidden()
        suppressed = self._suppressed(cfg, wish.email)
        if suppressed is None:
            return pages.unavailable("You could not be subscribed just now; please try the link again later.")
        if suppressed:  # as `subscribers add` without --force
            return pages.Page(HTTPStatus.BAD_REQUEST, "Not subscribed",
                              Markup("<p>This address cannot be subscribed here: mail to it bounced or "
                                     "was reported as spam. Please write to the list's operator.</p>"))
        try:
            subscriptions.add_subscriber(self.ep.home, wish.email, None, keywords)
        except UsageError as err:
            if "already a subscriber" not in str(err):
                return pages.Page(HTTPStatus.BAD_REQUEST, "Not subscribed",
                                  Markup("<p>{}</p>").format(str(err)))
        except (DigestdError, OSError) as err:
            log.error("sign-up confirmation failed: %s", err)
            return pages.unavailable("You could not be subscribed just now; please try the link again later.")
        log.info("sign-up: subscribed %s (confirmed)", wish.email)
        return confirmed_page(self.ep.list_name, wish.email, tuple(keywords))


def routes(signup: Signup) -> list[Route]:
    return [
        Route(SUBSCRIBE, get=signup.get, post=signup.post, max_body=MAX_BODY),
        Route(CONFIRM, get=signup.confirm_get, post=signup.confirm_post, max_body=MAX_BODY, secret=SECRET),
    ]


def mailbox_key(email: str) -> str:
    """The mailbox an address reaches, for the per-recipient limit: `victim+1@` and `victim+2@`
    land in one inbox at most providers, so they share one hour's allowance."""
    local, _, domain = address_key(email).rpartition("@")
    return f"{local.split('+', 1)[0] or local}@{domain}"
