"""Build a digest's RFC 5322 bytes directly: the stdlib EmailMessage costs ~1.5 ms a message.

multipart/alternative, text/plain (quoted-printable) first and text/html (base64) last,
CRLF line ends, every header value free of CR/LF. tests/test_message.py parses the result
with the stdlib parser to prove it is well-formed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import struct
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr


def _clean(value: str) -> str:
    """No header injection: control characters never reach a header."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


def encode_header(value: str) -> str:
    value = _clean(value)
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=10_000).encode(linesep="\r\n")


def address(name: str | None, email: str) -> str:
    return formataddr((_clean(name), email), charset="utf-8") if name else email


@functools.lru_cache(maxsize=64)
def sender_address(sender: str) -> str:
    """The bare address of a `Name <addr>` sender (parsed once: parseaddr is slow)."""
    return parseaddr(sender)[1]


def sender_domain(sender: str) -> str:
    return sender_address(sender).rpartition("@")[2] or "localhost"


@functools.lru_cache(maxsize=64)
def _from_header(sender: str) -> str:
    return encode_header(sender) if not sender.isascii() else _clean(sender)


@functools.lru_cache(maxsize=64)
def _date_header(when: datetime) -> str:
    return format_datetime(when)


def message_id(sender: str, email: str, run_seq: int, date: str) -> str:
    """Stable across resends of the same delivery, unique per subscriber and run."""
    digest = hashlib.sha256(f"{email.lower()}\0{run_seq}".encode()).hexdigest()[:16]
    return f"<digest.{date}.{run_seq}.{digest}@{sender_domain(sender)}>"


_QP_CACHE: dict[str, bytes] = {}
_QP_CACHE_MAX = 8192


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends. Encoding is line by line, so each paragraph is
    encoded once and cached: a digest's text part is mostly paragraphs every digest of the
    run shares (the papers), and b2a_qp was a tenth of the cost of a message."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    paras = text.split("\n\n")
    last = len(paras) - 1
    out: list[bytes] = []
    cache = _QP_CACHE
    for i, para in enumerate(paras):
        if i < last:
            para += "\n\n"  # with its line ends: trailing blanks encode as they do mid-text
        enc = cache.get(para)
        if enc is None:
            enc = binascii.b2a_qp(para.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")
            if len(cache) >= _QP_CACHE_MAX:
                cache.clear()
            cache[para] = enc
        out.append(enc)
    return b"".join(out)


@functools.lru_cache(maxsize=256)
def _lines_of_76(count: int) -> struct.Struct:
    return struct.Struct("76s" * count)


def _b64(text: str) -> bytes:
    """Base64 in CRLF lines of 76: one C call to encode and one (struct) to cut the lines,
    where encodebytes loops in Python over every 57 bytes."""
    enc = base64.b64encode(text.encode("utf-8"))
    if not enc:
        return b""
    full, rest = divmod(len(enc), 76)
    lines = list(_lines_of_76(full).unpack_from(enc)) if full else []
    if rest:
        lines.append(enc[full * 76 :])
    return b"\r\n".join(lines) + b"\r\n"


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a transport needs: SMTP envelope addresses and the finished bytes."""

    sender: str
    recipient: str
    data: bytes
    message_id: str
    crlf: bool = False  # True: `data` has CRLF line ends only (build_message guarantees it)


def build_message(
    *,
    sender: str,
    to_email: str,
    to_name: str | None,
    subject: str,
    when: datetime,
    msg_id: str,
    list_id: str,
    unsubscribe_url: str,
    one_click: bool,
    text: str,
    html: str,
) -> Envelope:
    boundary = "=_digestd_" + msg_id.strip("<>").split("@")[0].replace(".", "_")
    headers = [
        f"From: {_from_header(sender)}",
        f"To: {address(to_name, to_email)}",
        f"Subject: {encode_header(subject)}",
        f"Date: {_date_header(when)}",
        f"Message-ID: {msg_id}",
        "MIME-Version: 1.0",
        f"List-Id: {encode_header(list_id)}",
        f"List-Unsubscribe: {_clean(unsubscribe_url)}",
    ]
    if one_click:
        headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    headers += [
        "Auto-Submitted: auto-generated",
        "Precedence: bulk",
        "X-Auto-Response-Suppress: All",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
    ]
    head = ("\r\n".join(headers) + "\r\n\r\n").encode("utf-8")
    b = boundary.encode("ascii")
    data = b"".join(
        [
            head,
            b"--" + b + b"\r\n",
            b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
            _qp(text),
            b"\r\n--" + b + b"\r\n",
            b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            _b64(html),
            b"--" + b + b"--\r\n",
        ]
    )
    return Envelope(
        sender=sender_address(sender), recipient=to_email, data=data, message_id=msg_id, crlf=True
    )
