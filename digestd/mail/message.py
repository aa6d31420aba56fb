"""Build a digest's RFC 5322 bytes directly: the stdlib EmailMessage costs ~1.5 ms a message.

multipart/alternative, text/plain first and text/html last, both quoted-printable (a fifth
smaller than base64 for HTML, which is mostly ASCII: the bytes on the wire are the cost), CRLF
line ends only; the header lines come from digestd/mail/headers.py. The Envelope says
`utf8=True` when an address has a non-ASCII local part: the transport needs SMTPUTF8 (RFC
6531) for it. tests/test_message.py and tests/test_trust_headers.py parse the result with the
stdlib parser to prove it is well-formed.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from digestd.errors import MessageError
from digestd.mail.headers import (
    date_header,
    fold_words,
    from_header,
    legacy_list_id,
    list_id_header,
    msgid_header,
    sender_domain,
    subject_header,
    to_header,
    unsubscribe_header,
)

_BCHARS_RE = re.compile(r"[^0-9A-Za-z_-]")


def message_id(sender: str, email: str, run_seq: int, date: str) -> str:
    """Stable across resends of the same delivery, unique per subscriber and run."""
    digest = hashlib.sha256(f"{email.lower()}\0{run_seq}".encode()).hexdigest()[:16]
    return f"<digest.{date}.{run_seq}.{digest}@{sender_domain(sender)}>"


_QP_SEEN: dict[str, bytes] = {}  # pieces encoded once: mostly a reader's own lines (links)
_QP_KEPT: dict[str, bytes] = {}  # pieces asked for again: the papers' lines, shared by digests
_QP_SEEN_MAX = 32768
_QP_KEPT_MAX = 131072  # 2,000 papers of a ranked listing are about 30,000 pieces


def _qp(text: str, sep: str = "\n\n") -> bytes:
    """Quoted-printable with CRLF line ends. Encoding is line by line, so each piece between
    `sep`s (paragraphs of the text part, lines of the HTML part) is encoded once and cached:
    a digest is mostly pieces every digest of the run shares (the papers), and b2a_qp of a
    whole HTML part costs ten times its base64 (450 against 37 us, tests/data/digests). A
    piece is kept for the run once asked for twice, so readers' own lines, never reused,
    cannot push the papers' out (with one cache for both, ranked digests, each of its own
    15 of 2,000 papers, encoded twice as much: bench/rank_run.py)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    pieces = text.split(sep)
    last = len(pieces) - 1
    out: list[bytes] = []
    kept, seen = _QP_KEPT, _QP_SEEN
    for i, piece in enumerate(pieces):
        if i < last:
            piece += sep  # with its line ends: trailing blanks encode as they do mid-text
        enc = kept.get(piece)
        if enc is None:
            enc = seen.pop(piece, None)
            if enc is not None:  # the second time: kept
                if len(kept) >= _QP_KEPT_MAX:
                    kept.clear()
                kept[piece] = enc
            else:
                # "replace": a lone surrogate becomes "?" instead of an exception
                raw = piece.encode("utf-8", "replace")
                enc = binascii.b2a_qp(raw, istext=True).replace(b"\n", b"\r\n")
                if len(seen) >= _QP_SEEN_MAX:
                    seen.clear()
                seen[piece] = enc
        out.append(enc)
    return b"".join(out)


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a transport needs: SMTP envelope addresses and the finished bytes."""

    sender: str
    recipient: str
    data: bytes
    message_id: str
    crlf: bool = False  # True: `data` has CRLF line ends only (build_message guarantees it)
    # True: an address has a non-ASCII local part, raw UTF-8 in `data` and in the envelope
    # (RFC 6531/6532): send with SMTPUTF8, or fail the delivery where the server lacks it.
    utf8: bool = False


def _boundary(msg_id: str) -> str:
    """From the Message-ID, in boundary characters only; "=_" never occurs in QP."""
    left = msg_id.strip("<>").split("@")[0].replace(".", "_")
    if not (left.isascii() and left.replace("_", "").replace("-", "").isalnum()):
        left = _BCHARS_RE.sub("_", left)
    return "=_digestd_" + left[:56]


def _check_text(**values: object) -> None:
    """MessageError naming the first argument that is not text (what a corrupt state gives)."""
    for what, value in values.items():
        if not isinstance(value, str):
            raise MessageError(f"the {what} of a message must be text, not {type(value).__name__}")


def build_message(
    *,
    sender: str,
    to_email: str,
    to_name: str | None,
    subject: str,
    when: datetime,
    msg_id: str,
    unsubscribe_url: str,
    one_click: bool,
    text: str,
    html: str,
    list_name: str | None = None,
    list_id: str | None = None,
) -> Envelope:
    """The digest's bytes and envelope. The List-Id is built from `list_name` and the
    sender's domain (`list_id`, the old finished value, is still taken). Bad input raises
    MessageError and nothing else."""
    if not (
        isinstance(sender, str)
        and isinstance(to_email, str)
        and isinstance(subject, str)
        and isinstance(msg_id, str)
        and isinstance(unsubscribe_url, str)
        and isinstance(text, str)
        and isinstance(html, str)
        and isinstance(to_name or "", str)
    ):
        _check_text(  # raises
            sender=sender,
            recipient=to_email,
            subject=subject,
            Message_ID=msg_id,
            List_Unsubscribe=unsubscribe_url,
            text_part=text,
            HTML_part=html,
            name=to_name or "",
        )
    if not isinstance(list_name if list_name is not None else list_id or "", str):
        raise MessageError("the list name of a message must be text")
    if not isinstance(when, datetime):
        raise MessageError("the date of a message must be a datetime")
    from_line, env_sender, from_utf8 = from_header(sender)
    to_line, env_recipient, to_utf8 = to_header(to_name, to_email)
    if list_name is not None:
        list_line = list_id_header(list_name, sender_domain(sender))
    elif list_id is not None:
        list_line = legacy_list_id(list_id)
    else:
        raise TypeError("build_message needs list_name")
    boundary = _boundary(msg_id)
    headers = [
        from_line,
        to_line,
        subject_header(subject),
        date_header(when),
        msgid_header(msg_id),
        "MIME-Version: 1.0",
        list_line,
        unsubscribe_header(unsubscribe_url),
    ]
    if one_click:
        headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    headers += [
        "Auto-Submitted: auto-generated",
        "Precedence: bulk",
        "X-Auto-Response-Suppress: All",
        fold_words("Content-Type", ["multipart/alternative;", f'boundary="{boundary}"']),
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
            b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
            _qp(html, "\n"),
            b"\r\n--" + b + b"--\r\n",
        ]
    )
    return Envelope(
        sender=env_sender,
        recipient=env_recipient,
        data=data,
        message_id=msg_id,
        crlf=True,
        utf8=from_utf8 or to_utf8,
    )
