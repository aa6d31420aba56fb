"""The sign-up pages' HTML: every value escaped (what a visitor typed included), a label on
every control, plain forms that work without JavaScript, one column for a 375 px phone."""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

from markupsafe import Markup

from digestd.web.pages import Page


def signup_page(*, list_name: str, keywords: Sequence[str], form_field: Markup, notice: str | None,
                email: str, chosen: Sequence[str], error: bool = False) -> Page:
    """The form: an address and keywords; `notice` says what the last POST did."""
    picked = {k.casefold() for k in chosen}
    boxes = Markup("").join(
        Markup('<label><input type="checkbox" name="keyword" value="{}"{}> {}</label>').format(
            kw, Markup(" checked") if kw.casefold() in picked else "", kw)
        for kw in keywords
    )
    said = Markup('<p class="note" role="status">{}</p>').format(notice) if notice else Markup("")
    body = Markup(
        "{}<p>Get new arXiv papers on the keywords you choose, by mail. You will get a mail with a "
        "link to confirm; nothing starts without it.</p>"
        '<form method="post">{}<label for="email">Your e-mail address</label>'
        '<input type="email" id="email" name="email" required maxlength="254" autocomplete="email" '
        'value="{}"><fieldset style="margin-top:14px"><legend>Keywords</legend>{}</fieldset>'
        '<button type="submit">Send me a confirmation link</button></form>'
    ).format(said, form_field, email, boxes)
    return Page(HTTPStatus.OK, f"Subscribe to {list_name}", body)


def confirm_page(list_name: str, email: str, keywords: Sequence[str], form_field: Markup) -> Page:
    """The GET of a confirmation link: a question and a button (scanners fetch every link)."""
    body = Markup(
        "<p>Subscribe <strong>{}</strong> to {} for: {}?</p>"
        '<form method="post">{}<button type="submit">Confirm my subscription</button></form>'
    ).format(email, list_name, ", ".join(keywords), form_field)
    return Page(HTTPStatus.OK, "Confirm your subscription", body)


def confirmed_page(list_name: str, email: str, keywords: Sequence[str]) -> Page:
    body = Markup('<p role="status"><strong>{}</strong> is subscribed to {} ({}). Your first digest '
                  "comes with the next new papers; each one has a link to manage your "
                  "subscription.</p>").format(email, list_name, ", ".join(keywords))
    return Page(HTTPStatus.OK, "You are subscribed", body)


def too_many() -> Page:
    return Page(HTTPStatus.TOO_MANY_REQUESTS, "Too many requests",
                Markup("<p>Too many sign-up requests came from your address. Please try again in "
                       "an hour.</p>"))
