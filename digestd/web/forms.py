"""What makes a state-changing POST safe to act on: a signed form token (CSRF) bound to the
page it came from and valid for a few hours, an `Origin` (and `Sec-Fetch-Site`) that is this
site's when the browser sends one, and a small, strictly parsed form body.

A form token is `sign_until(key, "form", BINDING)`: BINDING is what the page is about (a
manage link's id, "subscribe", a confirmation), so a token taken from one page is refused on
another, and a token from a previous key is accepted while that key is listed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.message import Message
from urllib.parse import parse_qs, urlsplit

from markupsafe import Markup

from digestd.core.tokens import Keys, pack, sign_until, verify_until

FORM_TTL = 4 * 3600  # seconds a page's form may be submitted after it was shown
MAX_FIELDS = 64
MAX_VALUE = 512  # characters of one field: an address, a keyword name, a token
CSRF_FIELD = "form_token"


def _binding(binding: str) -> str:
    return pack(binding.encode("utf-8"))


def form_token(keys: Keys, binding: str, now: float | None = None) -> str:
    """A token for a form about `binding`, valid FORM_TTL seconds."""
    now = time.time() if now is None else now
    return sign_until(keys.current, "form", _binding(binding), int(now) + FORM_TTL)


def form_token_ok(keys: Keys, binding: str, token: str | None, now: float | None = None) -> bool:
    """True for a genuine, unexpired token made for `binding`."""
    if not token:
        return False
    now = time.time() if now is None else now
    return verify_until(keys, "form", token, now) == _binding(binding)


def hidden_token(keys: Keys, binding: str) -> Markup:
    """The hidden field every state-changing form carries."""
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, form_token(keys, binding))


def _origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def same_origin(headers: Message, public_url: str | None) -> bool:
    """False when the browser says the POST comes from another site: `Sec-Fetch-Site` other
    than same-origin (or none: typed by the user), an Origin that is not public_url's nor this
    Host's (a proxy may pass either), or `Origin: null` without `Sec-Fetch-Site: same-origin`
    (Chromium sends null for its own pages' forms under `Referrer-Policy: no-referrer`; a
    sandboxed frame elsewhere sends null and cross-site). Clients that send neither header
    (curl, mail providers' one-click POSTs) are judged by the tokens alone."""
    fetch_site = (headers.get("Sec-Fetch-Site") or "").strip().lower()
    if fetch_site not in ("", "same-origin", "none"):
        return False
    origin = headers.get("Origin")
    if origin is None:
        return True
    if origin.strip() == "null":
        return fetch_site == "same-origin"
    seen = _origin(origin.strip())
    if seen is None:
        return False
    allowed = set()
    if public_url:
        allowed.add(_origin(public_url))
    host = (headers.get("Host") or "").strip()
    if host:
        allowed |= {_origin(f"http://{host}"), _origin(f"https://{host}")}
    return seen in allowed


@dataclass(frozen=True, slots=True)
class Form:
    """A parsed application/x-www-form-urlencoded body: each field's values."""

    fields: dict[str, list[str]]

    def one(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values and len(values) == 1 else None

    def all(self, name: str) -> list[str]:
        return list(self.fields.get(name, []))


def parse_form(body: bytes) -> Form | None:
    """The fields of a form body, or None for one that is not a small UTF-8 form."""
    try:
        text = body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None
    if any(len(v) > MAX_VALUE for values in fields.values() for v in values):
        return None
    return Form(fields)
