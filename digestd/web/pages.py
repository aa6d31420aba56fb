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
<style>
form{{margin:12px 0}} fieldset{{border:1px solid #d0d7de;border-radius:6px;margin:0 0 14px;padding:8px 12px}}
legend{{font-weight:600;padding:0 4px}} label{{display:block;padding:6px 0;min-height:24px}}
input[type=checkbox],input[type=radio]{{width:20px;height:20px;margin:0 8px 0 0;vertical-align:-4px}}
input[type=email],input[type=date]{{font:inherit;width:100%;box-sizing:border-box;padding:8px;\
border:1px solid #8c959f;border-radius:6px}}
button{{font:inherit;font-weight:600;color:#fff;background:#0a4f94;border:0;border-radius:6px;\
padding:10px 18px;min-height:44px;cursor:pointer;margin:4px 8px 4px 0}}
button.quiet{{color:#0a4f94;background:#fff;border:1px solid #0a4f94}}
:focus-visible{{outline:3px solid #d4a72c;outline-offset:2px}}
.note{{background:#f1f8ff;border:1px solid #9ec5fe;border-radius:6px;padding:8px 12px}}
.error{{background:#fff1f0;border:1px solid #ffa39e;border-radius:6px;padding:8px 12px}}
a{{color:#0a4f94}}
</style>
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


def internal_error() -> Page:
    """500: a fault of digestd's own, not of the request; it changed nothing it could not finish."""
    return Page(HTTPStatus.INTERNAL_SERVER_ERROR, "Something went wrong",
                Markup("<p>This request failed on our side and was logged. Please try again later.</p>"))


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


def forbidden() -> Page:
    """403 for a forged, altered or stale link (manage, confirm): plain, naming no one."""
    return Page(HTTPStatus.FORBIDDEN, "This link is not valid",
                Markup("<p>This link was changed, is incomplete or is no longer valid. Please use "
                       "the link in your latest digest.</p>"))


def cross_site() -> Page:
    """403 for a POST without this site's form token or from another site's page (CSRF)."""
    return Page(HTTPStatus.FORBIDDEN, "Please use the form on this site",
                Markup("<p>This request did not come from this site's own form, or the form is "
                       "too old; nothing was changed. Open the page again and resubmit it.</p>"))


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
