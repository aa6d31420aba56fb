"""Header lines for a digest, written by hand to RFC 5322 and RFC 2047 (the stdlib policy
costs ~1.5 ms a message).

A non-ASCII display name, subject or list name becomes encoded words (at most 75 characters
each, never splitting a character) with the address or list-id outside them; every header is
folded at 78 columns where it has a place to fold (a line over 998 is a MessageError). An
address with a non-ASCII local part is written raw in UTF-8 (RFC 6532) and reported as needing
SMTPUTF8; a non-ASCII domain alone is written in its IDNA (xn--) form and needs nothing. No
control character reaches a header. Values that cannot be written raise MessageError only.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parseaddr
from typing import NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

import idna

from digestd.errors import MessageError

# Control characters (C0, DEL, C1) never reach a header; lone surrogates become U+FFFD.
_CONTROLS = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0)], " ")
_SURROGATES_RE = re.compile("[\ud800-\udfff]")


def _clean(value: str) -> str:
    """One line of text: no header injection, no control characters, single spaces."""
    if value.isprintable() and "  " not in value and value[:1] != " " and value[-1:] != " ":
        return value  # the common case, all in C: nothing to clean
    if not value.isascii():
        value = _SURROGATES_RE.sub("\ufffd", value)
    return " ".join(value.translate(_CONTROLS).split())


_WIDTH = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters
_MAX_LINE = 998  # ... and MUST be at most 998
_EW_MAX = 75  # RFC 2047 2: an encoded word is at most 75 characters
_EW_MIN_ROOM = 24  # room for "=?utf-8?q?" "?=" and one 4-byte character in Q

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_ATOM_RE = re.compile(_ATEXT + "+")
_PLAIN_ADDR_RE = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
# RFC 6532 3.2: atext also takes every non-ASCII character (controls are gone by _clean).
_UATEXT = r"(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]|[^\x00-\x7f])"
_LOCAL_RE = re.compile(rf'{_UATEXT}+(?:\.{_UATEXT}+)*|"(?:[^"\\]|\\.)*"')
_DOMAIN_RE = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*|\[[!-Z^-~]*\]")
_MSGID_RE = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>")  # printable ASCII but < and >

# RFC 2047 5(3): the characters a Q-encoded word may carry as themselves anywhere, phrases too.
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q = [chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256)]


@dataclass(frozen=True, slots=True)
class _Encoded:
    """Text the header writes as RFC 2047 encoded words (split to fit its lines)."""

    text: str


_Item = str | _Encoded


def _encoded_words(text: str, room: int) -> list[str]:
    """`text` as UTF-8 encoded words, the first at most `room` characters long and the rest
    at most 75; Q when it is shorter (mostly ASCII), else B. Words end on character bounds."""
    raw = text.encode("utf-8")
    q_len = sum(len(_Q[b]) for b in raw)
    words: list[str] = []
    if q_len <= -(-len(raw) // 3) * 4:
        cur: list[str] = []
        used = 0
        for ch in text:
            piece = "".join([_Q[b] for b in ch.encode("utf-8")])
            if cur and used + len(piece) > room - 12:
                words.append("=?utf-8?q?" + "".join(cur) + "?=")
                cur, used, room = [], 0, _EW_MAX
            cur.append(piece)
            used += len(piece)
        words.append("=?utf-8?q?" + "".join(cur) + "?=")
        return words
    chunk = bytearray()
    for ch in text:
        b = ch.encode("utf-8")
        if chunk and len(chunk) + len(b) > (room - 12) // 4 * 3:
            words.append("=?utf-8?b?" + base64.b64encode(chunk).decode("ascii") + "?=")
            chunk, room = bytearray(), _EW_MAX
        chunk += b
    words.append("=?utf-8?b?" + base64.b64encode(chunk).decode("ascii") + "?=")
    return words


def fold_words(field: str, words: list[str]) -> str:
    """_fold for plain words, with a fast path for the usual header that fits one line."""
    line = f"{field}: {' '.join(words)}"
    return line if len(line) <= _WIDTH else _fold(field, words)


def _fold(field: str, items: Sequence[_Item]) -> str:
    """`Field: item item ...`, a CRLF put before the space ahead of any item that would pass
    column 78 (unfolding gives back the same single space). Encoded text is cut into words
    that fit the lines; a line still over 998 characters is a MessageError."""
    lines: list[str] = []
    line = field + ":"
    bare = True  # nothing after "Field:" yet: never fold there
    for item in items:
        if isinstance(item, str):
            if not bare and len(line) + 1 + len(item) > _WIDTH:
                lines.append(line)
                line = " " + item
            else:
                line += " " + item
            bare = False
            continue
        room = min(_EW_MAX, _WIDTH - len(line) - 1)
        words = _encoded_words(item.text, room) if room >= _EW_MIN_ROOM else []
        if not words or (len(words) > 1 and not bare):
            whole = _encoded_words(item.text, _EW_MAX)
            if not words or len(whole) == 1:  # on a line of its own: fewer words to join
                lines.append(line)
                line, words = "", whole
        for i, word in enumerate(words):
            if i:
                lines.append(line)
                line = ""
            line += " " + word
        bare = False
    lines.append(line)
    for text in lines:
        if len(text) > _MAX_LINE:
            raise MessageError(f"the {field} header has a part too long for a line ({len(text)} characters)")
    return "\r\n".join(lines)


def _room(field: str) -> int:
    """What fits after `Field: ` on a header's first line."""
    return _WIDTH - len(field) - 2


def _phrase(field: str, name: str) -> list[str] | tuple[_Encoded]:
    """A display name (RFC 5322 phrase): atoms as they are, other ASCII quoted (a list of
    words), anything with non-ASCII, "=?" or a word too long for its line as encoded words."""
    words = name.split(" ")
    if (
        name.isascii()
        and "=?" not in name
        and len(words[0]) <= _room(field) - 2  # room for quotes
        and max(len(w) for w in words) <= _WIDTH - 3
    ):
        if all(_ATOM_RE.fullmatch(w) for w in words):
            return words
        quoted = name.replace("\\", "\\\\").replace('"', '\\"').split(" ")
        quoted[0] = '"' + quoted[0]
        quoted[-1] += '"'
        return quoted
    return (_Encoded(name),)


def _unstructured(field: str, text: str) -> list[_Item]:
    """Free text (Subject): ASCII words as they are, each run of other words (non-ASCII, one
    holding "=?" that a reader would decode, one too long for its line) as encoded words."""
    items: list[_Item] = []
    run: list[str] = []
    limit = _room(field)  # the first word's line starts with "Field: "
    for word in text.split(" ") if text else ():
        if word.isascii() and "=?" not in word and len(word) <= limit:
            if run:
                items.append(_Encoded(" ".join(run)))
                run = []
            items.append(word)
        else:
            run.append(word)
        limit = _WIDTH - 1
    if run:
        items.append(_Encoded(" ".join(run)))
    return items


def _not_an_address(addr: str, why: str) -> MessageError:
    return MessageError(f"{addr!r} cannot be written into a message: {why}")


def _ascii_domain(domain: str) -> str:
    """The IDNA (xn--) form of a domain, UTS 46 mapped as email-validator does."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError as err:  # idna.IDNAError is a UnicodeError
        raise MessageError(f"the domain {domain!r} has no IDNA (ASCII) form: {err}") from None


@functools.lru_cache(maxsize=1024)
def _slow_address(addr: str) -> WireAddress:
    clean = _clean(addr)
    local, at, domain = clean.rpartition("@")
    if not at or not local or not domain:
        raise _not_an_address(addr, "it has no local part@domain")
    if not _LOCAL_RE.fullmatch(local):
        raise _not_an_address(addr, "its local part is not a dot-atom or a quoted string")
    if not domain.isascii():
        domain = _ascii_domain(domain)
    if not _DOMAIN_RE.fullmatch(domain):
        raise _not_an_address(addr, "its domain is not a domain name")
    return WireAddress(f"{local}@{domain}", not local.isascii())


class WireAddress(NamedTuple):
    """An address as headers and the SMTP envelope carry it."""

    address: str
    utf8: bool  # True: a non-ASCII local part, sent only with SMTPUTF8 (RFC 6531)


class AddressHeader(NamedTuple):
    """A From or To header line and the envelope address that goes with it."""

    line: str
    wire: str
    utf8: bool


def wire_address(addr: str) -> WireAddress:
    """`addr` as headers and the SMTP envelope carry it, and whether that needs SMTPUTF8: a
    non-ASCII domain becomes its IDNA form; only a non-ASCII local part needs UTF-8."""
    if not isinstance(addr, str):
        raise MessageError(f"{addr!r} is not an e-mail address")
    if _PLAIN_ADDR_RE.fullmatch(addr):
        return WireAddress(addr, False)
    return _slow_address(addr)


def _mailbox(field: str, name: str | None, addr: str) -> str:
    """`Field: phrase <addr>` or `Field: addr`, folded."""
    name = _clean(name) if name else ""
    if not name:
        return fold_words(field, [addr])
    phrase = _phrase(field, name)
    if isinstance(phrase, list):  # atoms or a quoted string: plain words
        return fold_words(field, [*phrase, f"<{addr}>"])
    return _fold(field, [*phrase, f"<{addr}>"])


@functools.lru_cache(maxsize=64)
def sender_address(sender: str) -> str:
    """The bare address of a `Name <addr>` sender (parsed once: parseaddr is slow)."""
    return parseaddr(sender)[1]


@functools.lru_cache(maxsize=64)
def sender_domain(sender: str) -> str:
    """The sender's domain in ASCII (IDNA), for Message-IDs and the List-Id."""
    domain = sender_address(sender).rpartition("@")[2]
    if domain.isascii():
        return domain or "localhost"
    try:
        return _ascii_domain(domain)
    except MessageError:
        return "localhost"


@functools.lru_cache(maxsize=64)
def from_header(sender: str) -> AddressHeader:
    """The From header and the envelope sender (cached: one sender makes every message)."""
    name, addr = parseaddr(sender)
    if not addr:
        raise MessageError(f"the sender {sender!r} has no e-mail address")
    wire, utf8 = wire_address(addr)
    return AddressHeader(_mailbox("From", name, wire), wire, utf8)


def to_header(name: str | None, email: str) -> AddressHeader:
    """The To header and the envelope recipient; a bare short address skips the folding."""
    if name is not None and not isinstance(name, str):
        raise MessageError(f"the name of {email!r} is not text")
    wire, utf8 = wire_address(email)
    if not name and len(wire) < _WIDTH - 4:
        return AddressHeader("To: " + wire, wire, utf8)
    return AddressHeader(_mailbox("To", name, wire), wire, utf8)


@functools.lru_cache(maxsize=256)
def subject_header(subject: str) -> str:
    """Subject: cached, as a run mails a few subjects to many subscribers."""
    return _fold("Subject", _unstructured("Subject", _clean(subject)))


@functools.lru_cache(maxsize=64)
def list_id_header(list_name: str, domain: str) -> str:
    """The List-Id header line(s) (RFC 2919): `List-Id: <phrase> <daily-papers.domain>`,
    the name encoded as a display name is, the list-id in ASCII outside it."""
    label = "daily-papers." + (domain if domain.isascii() else _ascii_domain(domain))
    name = _clean(list_name)
    return _fold("List-Id", [*(_phrase("List-Id", name) if name else []), f"<{_clean(label)}>"])


@functools.lru_cache(maxsize=64)
def legacy_list_id(list_id: str) -> str:
    """The List-Id from the old `list_id="Name <daily-papers.domain>"` argument."""
    name, lt, rest = _clean(list_id).rpartition("<")
    if not lt or not rest.endswith(">"):
        return _fold("List-Id", _unstructured("List-Id", _clean(list_id)))
    label = rest[:-1]
    if not label.isascii():
        label = _ascii_domain(label)
    name = name.strip()
    return _fold("List-Id", [*(_phrase("List-Id", name) if name else []), f"<{label}>"])


@functools.lru_cache(maxsize=64)
def date_header(when: datetime) -> str:
    """Date: cached, as every message of a run has the same date."""
    return "Date: " + format_datetime(when)


def msgid_header(msg_id: str) -> str:
    """`Message-ID: <left@right>`, ASCII: a non-ASCII right side gets its IDNA form."""
    if isinstance(msg_id, str) and _MSGID_RE.fullmatch(msg_id) and msg_id.isascii():
        return "Message-ID: " + msg_id
    clean = _clean(msg_id) if isinstance(msg_id, str) else ""
    left, at, right = clean.strip("<>").rpartition("@")
    fixed = f"<{left}@{right if right.isascii() else _ascii_domain(right)}>" if at else ""
    if not (_MSGID_RE.fullmatch(fixed) and fixed.isascii()):
        raise MessageError(f"{msg_id!r} is not a Message-ID (<left@right> in printable ASCII)")
    return "Message-ID: " + fixed


_URL_SAFE = "".join(chr(c) for c in range(0x21, 0x7F)) + " "


def _ascii_url(url: str) -> str:
    """A URL in ASCII: an internationalised host in IDNA, any other character percent-encoded."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed "[": no host to convert
        return quote(url, safe=_URL_SAFE)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host, colon, port = hostport.partition(":")
    if not host.isascii():
        with contextlib.suppress(UnicodeError):  # else percent-encoded below (RFC 3986 reg-name)
            host = idna.encode(host, uts46=True).decode("ascii")
        url = urlunsplit(parts._replace(netloc=f"{userinfo}{at}{host}{colon}{port}"))
    return quote(url, safe=_URL_SAFE)


def unsubscribe_header(value: str) -> str:
    """List-Unsubscribe (RFC 2369): ASCII, folded only between its <URL>s."""
    value = _clean(value)
    if not value.isascii():
        value = re.sub(r"<([^<>]*)>", lambda m: f"<{_ascii_url(m.group(1))}>", value)
        value = quote(value, safe=_URL_SAFE)
    return fold_words("List-Unsubscribe", value.split(" ")) if value else "List-Unsubscribe:"
