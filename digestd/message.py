"""Build a digest's RFC 5322 bytes directly: the stdlib EmailMessage costs ~1.5 ms a message.

multipart/alternative, text/plain (quoted-printable) first and text/html (base64) last,
CRLF line ends, every header value free of CR/LF. tests/test_message.py parses the result
with the stdlib parser to prove it is well-formed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from datetime import datetime


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


def sender_domain(sender: str) -> str:
    addr = parseaddr(sender)[1]
    return addr.rpartition("@")[2] or "localhost"


def message_id(sender: str, email: str, run_seq: int, date: str) -> str:
    """Stable across resends of the same delivery, unique per subscriber and run."""
    digest = hashlib.sha256(f"{email.lower()}\0{run_seq}".encode()).hexdigest()[:16]
    return f"<digest.{date}.{run_seq}.{digest}@{sender_domain(sender)}>"


def _qp(text: str) -> bytes:
    raw = text.replace("\r\n", "\n").encode("utf-8")
    return binascii.b2a_qp(raw, istext=True).replace(b"\n", b"\r\n")


def _b64(text: str) -> bytes:
    return base64.encodebytes(text.encode("utf-8")).replace(b"\n", b"\r\n")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a transport needs: SMTP envelope addresses and the finished bytes."""

    sender: str
    recipient: str
    data: bytes
    message_id: str


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
        f"From: {encode_header(sender) if not sender.isascii() else _clean(sender)}",
        f"To: {address(to_name, to_email)}",
        f"Subject: {encode_header(subject)}",
        f"Date: {format_datetime(when)}",
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
    return Envelope(sender=parseaddr(sender)[1], recipient=to_email, data=data, message_id=msg_id)
