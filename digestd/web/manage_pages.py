"""The manage page's HTML: every value escaped, a label on every control, plain forms that work
without JavaScript, one column that fits a 375 px phone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from http import HTTPStatus

from markupsafe import Markup

from digestd.core.models import Frequency, Subscriber, SubscriberStatus
from digestd.web.pages import Page


@dataclass(frozen=True, slots=True)
class Notice:
    """What the last POST did (or why it did nothing), said at the top of the page."""

    text: str
    error: bool = False


def notice_html(notice: Notice | None) -> Markup:
    if notice is None:
        return Markup("")
    cls, role = ("error", "alert") if notice.error else ("note", "status")
    return Markup('<p class="{}" role="{}">{}</p>').format(cls, role, notice.text)


def _paused(sub: Subscriber, today: date) -> bool:
    dated = sub.paused_until is not None and today < sub.paused_until
    return sub.status is SubscriberStatus.PAUSED or dated


def _state(sub: Subscriber, today: date) -> str:
    if sub.status is SubscriberStatus.PAUSED:
        return "paused (no digests until you resume)"
    if sub.paused_until is not None and today < sub.paused_until:
        return f"paused until {sub.paused_until.isoformat()} (digests again from that day)"
    return "active"


def _summary(sub: Subscriber, today: date) -> Markup:
    follows = ", ".join(sub.keywords) if sub.keywords is not None else "all keywords"
    state = _state(sub, today)
    return Markup(
        "<p>Address: <strong>{}</strong><br>Keywords: {}<br>Frequency: {}<br>Revised papers: {}<br>"
        "State: {}</p>"
    ).format(sub.email, follows, sub.frequency.value, "included" if sub.updates else "left out", state)


def _keyword_boxes(sub: Subscriber, keywords: Sequence[str]) -> Markup:
    followed = {k.casefold() for k in sub.keywords} if sub.keywords is not None else None
    boxes = Markup("").join(
        Markup('<label><input type="checkbox" name="keyword" value="{}"{}> {}</label>').format(
            kw, Markup(" checked") if followed is None or kw.casefold() in followed else "", kw
        )
        for kw in keywords
    )
    return Markup("<fieldset><legend>Keywords</legend>{}</fieldset>").format(boxes)


def _frequency(sub: Subscriber) -> Markup:
    radios = Markup("").join(
        Markup('<label><input type="radio" name="frequency" value="{}"{}> {}</label>').format(
            f.value, Markup(" checked") if sub.frequency is f else "", label
        )
        for f, label in ((Frequency.DAILY, "Daily"), (Frequency.WEEKLY, "Weekly"))
    )
    return Markup("<fieldset><legend>How often</legend>{}</fieldset>").format(radios)


def _updates(sub: Subscriber) -> Markup:
    return Markup(
        '<fieldset><legend>Revised papers</legend><label><input type="checkbox" name="updates" '
        'value="yes"{}> Include new versions of papers already mailed</label></fieldset>'
    ).format(Markup(" checked") if sub.updates else "")


def _button(form_field: Markup, action: str, label: str, *, quiet: bool = False) -> Markup:
    cls = Markup(' class="quiet"') if quiet else Markup("")
    return Markup('<form method="post">{}<input type="hidden" name="action" value="{}">'
                  '<button type="submit"{}>{}</button></form>').format(form_field, action, cls, label)


def _pause_form(form_field: Markup, today: date) -> Markup:
    return Markup(
        '<form method="post">{}<input type="hidden" name="action" value="pause">'
        '<label for="until">Pause until (optional; empty: until you resume)</label>'
        '<input type="date" id="until" name="until" min="{}" placeholder="YYYY-MM-DD">'
        '<button type="submit" class="quiet">Pause my digests</button></form>'
    ).format(form_field, (today + timedelta(days=1)).isoformat())


def manage_page(*, list_name: str, sub: Subscriber, keywords: Sequence[str], form_field: Markup,
                notice: Notice | None, today: date) -> Page:
    """The subscriber's settings and the forms that change them."""
    save = Markup('<form method="post">{}<input type="hidden" name="action" value="save">{}{}{}'
                  '<button type="submit">Save changes</button></form>').format(
        form_field, _keyword_boxes(sub, keywords), _frequency(sub), _updates(sub))
    if _paused(sub, today):
        state = _button(form_field, "resume", "Resume my digests")
    else:
        state = _pause_form(form_field, today)
    leave = _button(form_field, "unsubscribe", "Unsubscribe", quiet=True)
    body = Markup("{}{}<h2 style=\"font-size:18px\">Change</h2>{}<h2 style=\"font-size:18px\">Pause or leave"
                  "</h2>{}{}").format(notice_html(notice), _summary(sub, today), save, state, leave)
    return Page(HTTPStatus.OK, f"Your {list_name} subscription", body)


def unsubscribed_page(list_name: str, email: str) -> Page:
    body = Markup("<p role=\"status\"><strong>{}</strong> gets no more digests from {}.</p>").format(
        email, list_name)
    return Page(HTTPStatus.OK, "Unsubscribed", body)
