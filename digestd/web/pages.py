"""The HTML pages `digestd serve` answers with: one small layout, every value escaped.

Pages are values (status, title, body) so a handler decides what to say and the server
(digestd.web.server) sends it with the same security headers every time. Styles are inline:
the Content-Security-Policy allows nothing else to load.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from markupsafe import Markup, escape

HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}

_LAYOUT = """<!DOCTYPE html>
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

_UNSUBSCRIBE_BUTTON = Markup(
    '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
    '<button type="submit" style="font:inherit;font-weight:600;color:#fff;background:#0a4f94;border:0;'
    'border-radius:6px;padding:10px 18px;cursor:pointer">Unsubscribe</button></form>'
)


@dataclass(frozen=True, slots=True)
class Page:
    """One answer: its status, a plain-text title (escaped here) and a body that is already HTML."""

    status: HTTPStatus
    title: str
    body: Markup

    def encode(self) -> bytes:
        return _LAYOUT.format(title=escape(self.title), body=self.body).encode("utf-8")


def not_found() -> Page:
    return Page(HTTPStatus.NOT_FOUND, "Not found", Markup("<p>There is nothing here.</p>"))


def bad_request() -> Page:
    return Page(HTTPStatus.BAD_REQUEST, "Bad request", Markup("<p>The request body is not valid.</p>"))


def unavailable(what: str) -> Page:
    """503: the request may succeed later (the list cannot be read or written just now)."""
    return Page(HTTPStatus.SERVICE_UNAVAILABLE, "Please try again later", Markup("<p>{}</p>").format(what))


def invalid_link() -> Page:
    """403 for a forged, altered or cut token: it names no one, so the page does not either."""
    return Page(
        HTTPStatus.FORBIDDEN,
        "This link is not valid",
        Markup(
            "<p>This unsubscribe link was changed or is incomplete. Please use the link at the "
            "bottom of your latest digest, or reply to it.</p>"
        ),
    )


def confirm_unsubscribe(list_name: str, email: str) -> Page:
    """The GET page: a question and a button, because scanners and previews fetch every GET."""
    question = Markup("<p>Stop sending {} digests to <strong>{}</strong>?</p>").format(list_name, email)
    return Page(HTTPStatus.OK, f"Unsubscribe from {list_name}?", question + _UNSUBSCRIBE_BUTTON)


def unsubscribed(list_name: str, email: str | None, *, already: bool) -> Page:
    """200 whether this click removed the address or an earlier one did: a repeat is harmless."""
    who = Markup("<strong>{}</strong>").format(email) if email else Markup("This address")
    body = Markup("<p>{} gets no more digests from {}.</p>").format(who, list_name)
    return Page(HTTPStatus.OK, "Already unsubscribed" if already else "Unsubscribed", body)


def unsubscribe_failed() -> Page:
    return unavailable("You could not be unsubscribed just now; nothing was changed. "
                       "Please try again in a few minutes.")
