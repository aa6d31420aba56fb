"""Checks on single values that the loader, the editing commands and the CSV import share, so
the CLI refuses exactly what a run would refuse."""

from __future__ import annotations

import contextlib
import re
import unicodedata
from urllib.parse import urlsplit

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from digestd.core.models import Frequency
from digestd.errors import UsageError

# Addresses in the plain shape nearly every subscriber has, which email-validator always
# accepts: an ASCII dot-atom local part, LDH labels without "--", a TLD of letters. They skip
# email-validator (0.26 s per 10,000 addresses, 2.9 s per 100,000: too slow for every run);
# any other address gets its full check, so the run path accepts what the CLI accepts.
_PLAIN_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
# Domains email-validator refuses (local, test, localhost, ...) and their subdomains.
_SPECIAL_SUFFIXES = tuple("." + d.lower() for d in SPECIAL_USE_DOMAIN_NAMES)
# Characters no text field may hold: they would reach mail headers, the README and arXiv
# queries raw. C0 (tab and newline too), DEL, C1, and the Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def control_character(text: str) -> str | None:
    """The first control character in `text` as "U+000A", or None."""
    m = _CONTROL.search(text)
    return f"U+{ord(m.group()):04X}" if m else None


def keyword_key(name: str) -> str:
    """What tells keyword names apart: not case, not runs of spaces ("Video  Anomaly Detection"
    is the same arXiv phrase as "video anomaly detection")."""
    return " ".join(name.split()).casefold()


def keyword_name_problem(name: object) -> str | None:
    """Why `name` cannot be a keyword, or None: it becomes a README heading and an arXiv phrase."""
    if not isinstance(name, str) or not name.strip():
        return "a keyword must be non-empty text"
    if control_character(name):
        return f"keyword {name!r} contains a newline or control character"
    if '"' in name:
        return f"keyword {name!r} contains a double quote; use `query:` for raw queries"
    if name != name.strip():
        return f"keyword {name!r} has leading or trailing spaces"
    return None


def email_problem(addr: object) -> str | None:
    """Why `addr` is not an e-mail address by email-validator's syntax check (no DNS), or None;
    plain addresses take a fast path that gives the same answer."""
    if not isinstance(addr, str):
        return "not text"
    if _PLAIN_EMAIL_RE.fullmatch(addr) and len(addr) <= 254:
        domain = "." + addr.rpartition("@")[2].lower()
        if "--" not in domain and not domain.endswith(_SPECIAL_SUFFIXES):
            return None
    try:
        validate_email(addr, check_deliverability=False)
    except EmailNotValidError as err:
        return str(err)
    return None


def address_key(addr: str) -> str:
    """One key per mailbox: NFC, case-folded, the domain in its IDNA (xn--) form, so that
    `Jörg@exämple.org`, its NFD spelling and `jörg@xn--exmple-cua.org` are one subscriber."""
    local, _, domain = unicodedata.normalize("NFC", addr.strip()).casefold().rpartition("@")
    with contextlib.suppress(UnicodeError):
        domain = domain.encode("idna").decode("ascii")
    return f"{local}@{domain}"


MAX_URL = 200  # public_url goes into every digest's List-Unsubscribe header and footer


def url_problem(url: str) -> str | None:
    """Why `url` cannot be the instance's public base URL, or None: http(s), a host, nothing
    that would need escaping in a header or an attribute, short enough for a header line."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL with a host"
    if len(url) > MAX_URL:
        return f"is {len(url)} characters long; at most {MAX_URL} fit the headers"
    if any(c.isspace() or c in '"<>\\`{}|^' for c in url) or not url.isascii():
        return "has characters a link cannot carry as they are (spaces, quotes, <, >, non-ASCII): encode them"
    if parts.query or parts.fragment:
        return "must not have a query or a fragment: digestd adds paths to it"
    return None


def looks_like_email(addr: object) -> bool:
    return email_problem(addr) is None


def normalize_email(addr: str) -> str:
    """Syntax check only (no DNS): a clear sentence for an address that cannot be one."""
    try:
        return validate_email(addr.strip(), check_deliverability=False).normalized
    except EmailNotValidError as err:
        raise UsageError(f"{addr!r} is not a valid e-mail address: {err}") from None


def check_name(name: str | None) -> None:
    """A subscriber's name reaches a mail header: one line, no control characters."""
    if name is not None and not name.strip():  # not a control character: say what it is
        raise UsageError("a name must not be blank; leave the name out for none")
    if name is not None and (char := control_character(name)):
        raise UsageError(f"a name must be one line of text without control characters (found {char})")


def parse_frequency(value: str) -> Frequency:
    """A frequency as typed (any case; empty means daily)."""
    try:
        return Frequency(value.strip().lower() or "daily")
    except ValueError:
        raise UsageError(f"{value!r} is not a frequency: use daily or weekly") from None
