"""Issue 9 "Trust", point 2 and the message side of point 1: From, To, Subject and List-Id in
every shape a config can give them, parsed back by the stdlib (policy.default) with no defect.

A message with an ASCII-only head is parsed from its bytes, as the brief asks. A message for
a non-ASCII local part (RFC 6532, `Envelope.utf8`) is parsed from its UTF-8 text: the bytes
parser reads headers as ASCII by design, and the stdlib flags every non-ASCII local part with
NonASCIILocalPartDefect ("allowed only under RFC 6532"), the one defect accepted there.
"""

from __future__ import annotations

import base64
import binascii
import email
import itertools
import random
import re
from datetime import UTC, datetime
from email import errors, policy
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from conftest import Inbox, at, free_port, run_once, smtp_env, write_instance
from fakearxiv import FakeArxiv
from fixtures import make_paper, make_papers

from digestd.errors import MessageError
from digestd.mail.headers import list_id_header, wire_address
from digestd.mail.message import Envelope, build_message

WHEN = datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
ENCODED_WORD_RE = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
UNFOLDABLE_RE = re.compile(rb'<[^<> ]+>,?|[^<> ]+@[^<> ]+|boundary="[^" ]+"')

NAMES = [
    "Alice",
    "Jörg Müller",
    "Doe, John",
    'He said "hi" \\o/',
    "Ada (the first) Lovelace",
    "Dr. Strange",
    "Zoë O'Brien, PhD",
    "李小龍",
    "محمد علي",
    "📚 Reader 📚",
    "=?utf-8?q?not_encoded?=",
    "Anna " * 40,  # long ASCII: folds between words
    "Ärzte " * 40,  # long non-ASCII: many encoded words
    "x" * 120,  # one word too long to fold as an atom
    "ü" * 300,
    "a<b>c@d;e:f[g]h",
    "w" * 70 + " an atom just too long for the line after To:",
    "v" * 75,
]
LIST_NAMES = ["Daily Papers", "Tägliche Papiere", "日本語の論文", "Papers, Daily (beta)", "Daily " * 60, "Ü " * 200]
SUBJECTS = [
    "z" * 69 + " fits the first line",
    "z" * 70 + " does not: encoded",
    "=?utf-8?q?hi?=",
    "a=?utf-8?q?hi?=b",
    "y" * 200,
    "ascii then ünïcode then ascii",
    "€" * 100,
    "🎉 " * 50,
]
# (address as configured, as the message writes it, needs SMTPUTF8)
ADDRESSES = [
    ("alice@example.org", "alice@example.org", False),
    ("o'brien+tag@sub.example.co.uk", "o'brien+tag@sub.example.co.uk", False),
    ("joe@exämple.org", "joe@xn--exmple-cua.org", False),
    ("JOE@MÜNCHEN.DE", "JOE@xn--mnchen-3ya.de", False),
    ("jörg@example.org", "jörg@example.org", True),
    ("jörg@exämple.org", "jörg@xn--exmple-cua.org", True),
    ("用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v", True),
    ("l" * 64 + "@" + ".".join(["d" * 60] * 4) + ".org", "l" * 64 + "@" + ".".join(["d" * 60] * 4) + ".org", False),
]
SENDERS = [
    ("Daily Papers <papers@example.org>", "Daily Papers", "papers@example.org", False),
    ("papers@example.org", "", "papers@example.org", False),
    ('"Jörg Müller, Dr." <papers@exämple.org>', "Jörg Müller, Dr.", "papers@xn--exmple-cua.org", False),
    ("Ünï <jörg@example.org>", "Ünï", "jörg@example.org", True),
]


def _build(**kw: Any) -> Envelope:
    args: dict[str, Any] = {
        "sender": "Daily Papers <papers@example.org>",
        "to_email": "alice@example.org",
        "to_name": None,
        "subject": "Daily Papers 2026-11-20: 3 new papers",
        "when": WHEN,
        "msg_id": "<digest.2026-11-20.3.0123456789abcdef@example.org>",
        "list_name": "Daily Papers",
        "unsubscribe_url": "<https://papers.example.org/unsubscribe/abc>, <mailto:papers@example.org?subject=unsubscribe>",
        "one_click": True,
        "text": "text\n",
        "html": "<p>html</p>",
    }
    args.update(kw)
    return build_message(**args)


def _norm(text: str) -> str:
    return " ".join(text.split())


def _parse(env: Envelope) -> EmailMessage:
    if env.utf8:
        msg = email.message_from_string(env.data.decode("utf-8"), policy=policy.default)
    else:
        assert env.data.isascii(), "a message without SMTPUTF8 must be ASCII"
        msg = email.message_from_bytes(env.data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.defects == []
    return msg


def _header_defects(msg: EmailMessage) -> list[str]:
    """Every defect of every header, but NonASCIILocalPartDefect where RFC 6532 allows it."""
    found = []
    for name, value in msg.items():
        for defect in value.defects:
            if not isinstance(defect, errors.NonASCIILocalPartDefect):
                found.append(f"{name}: {type(defect).__name__}: {defect}")
    return found


def _head_lines(env: Envelope) -> list[bytes]:
    return env.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def check_head(env: Envelope) -> EmailMessage:
    """Folded and encoded as RFC 5322 and RFC 2047 say; parses with no defect."""
    lines = _head_lines(env)
    for line in lines:
        assert len(line) <= 998, line
        if len(line) > 78:  # allowed only where there is nowhere to fold: one token on the line,
            # which no encoded word could carry (an address, a URL, a msg-id, a boundary)
            body = line.split(b": ", 1)[1] if not line[:1].isspace() else line.strip()
            assert b" " not in body, f"unfolded line of {len(line)}: {line!r}"
            assert UNFOLDABLE_RE.fullmatch(body), f"line of {len(line)} that could be folded: {line!r}"
    head = b"\r\n".join(lines)
    for m in ENCODED_WORD_RE.finditer(head):
        word = m.group(0)
        assert len(word) <= 75, word
        assert head[m.start() - 1 : m.start()] == b" ", "an encoded word starts after white space"
        assert head[m.end() : m.end() + 1] in (b" ", b"\r", b""), "an encoded word ends before white space"
        assert m.group(1).lower() == b"utf-8"
        raw = (
            base64.b64decode(m.group(3), validate=True)
            if m.group(2) in b"bB"
            else binascii.a2b_qp(m.group(3), header=True)
        )
        raw.decode("utf-8")  # each word holds whole characters: strict decoding succeeds
        if m.group(2) in b"qQ":  # RFC 2047 5(3): only these may stand for themselves in a phrase
            assert re.fullmatch(rb"[A-Za-z0-9!*+\-/=_]*", m.group(3)), word
    msg = _parse(env)
    assert _header_defects(msg) == []
    return msg


def _raw_header(env: Envelope, name: str) -> str:
    """The header's value as written (unfolded, not decoded)."""
    text = env.data.decode("utf-8").split("\r\n\r\n", 1)[0]
    m = re.search(rf"^{name}:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", text, re.M)
    assert m is not None, name
    return re.sub(r"\r\n(?=[ \t])", "", m.group(1)).strip()


def _display_name(parsed: str, raw: str) -> str:
    """The display name of the raw mailbox `raw`, which the stdlib parsed as `parsed`.

    CPython gh-128110 (fixed upstream by PR #130749): the stdlib keeps the white space between
    adjacent encoded words of a display name, which RFC 2047 6.2 says a reader ignores (a long
    name needs several words). There the name is decoded as RFC 2047 says, and the stdlib's
    may differ from it only by that white space."""
    phrase = raw.rpartition("<")[0].strip() if raw.endswith(">") else ""
    if len(ENCODED_WORD_RE.findall(phrase.encode("utf-8"))) < 2:
        return parsed
    rfc2047 = str(make_header(decode_header(phrase)))
    assert parsed.replace(" ", "") == rfc2047.replace(" ", "")
    return rfc2047


def _mailbox(env: Envelope, msg: EmailMessage, field: str) -> tuple[str, str]:
    """(display name, addr-spec) of the one mailbox in From or To."""
    (addr,) = msg[field].addresses
    return _display_name(addr.display_name, _raw_header(env, field)), addr.addr_spec


def _list_id(env: Envelope) -> tuple[str, str]:
    """(name, list-id) of List-Id: the phrase is parsed by the stdlib as a display name is."""
    raw = _raw_header(env, "List-Id")
    phrase, _, rest = raw.rpartition("<")
    assert rest.endswith(">")
    mailbox = policy.default.header_factory("To", phrase + "<x@example.org>")
    assert not mailbox.defects
    return _display_name(mailbox.addresses[0].display_name, raw), rest[:-1]


@pytest.mark.parametrize("name", NAMES)
def test_display_names(name: str) -> None:
    env = _build(to_name=name, to_email="alice@example.org")
    msg = check_head(env)
    assert _mailbox(env, msg, "To") == (_norm(name), "alice@example.org")


@pytest.mark.parametrize("name", NAMES)
def test_sender_names(name: str) -> None:
    sender = f"{name} <papers@example.org>"
    if any(c in name for c in ',;:<>@[]"\\()'):  # config needs such a name quoted, as RFC 5322 does
        sender = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '" <papers@example.org>'
    env = _build(sender=sender)
    msg = check_head(env)
    assert _mailbox(env, msg, "From") == (_norm(name), "papers@example.org")
    assert env.sender == "papers@example.org"


@pytest.mark.parametrize(("configured", "written", "utf8"), ADDRESSES)
@pytest.mark.parametrize("name", [None, "Jörg", "Doe, John", "Ärzte " * 20])
def test_recipient_addresses(configured: str, written: str, utf8: bool, name: str | None) -> None:
    env = _build(to_email=configured, to_name=name)
    msg = check_head(env)
    assert _mailbox(env, msg, "To") == (_norm(name or ""), written)
    assert (env.recipient, env.utf8) == (written, utf8)
    assert wire_address(configured) == (written, utf8)


@pytest.mark.parametrize(("sender", "name", "written", "utf8"), SENDERS)
def test_sender_addresses(sender: str, name: str, written: str, utf8: bool) -> None:
    env = _build(sender=sender)
    msg = check_head(env)
    assert _mailbox(env, msg, "From") == (name, written)
    assert (env.sender, env.utf8) == (written, utf8)
    list_name, list_id = _list_id(env)
    assert (list_name, list_id) == ("Daily Papers", "daily-papers." + written.rpartition("@")[2])


@pytest.mark.parametrize("list_name", LIST_NAMES)
def test_list_names_in_list_id_and_subject(list_name: str) -> None:
    subject = f"{list_name} 2026-11-20: 3 new papers"  # as pipeline.py builds it
    env = _build(list_name=list_name, subject=subject)
    msg = check_head(env)
    assert msg["Subject"] == _norm(subject)
    assert _list_id(env) == (_norm(list_name), "daily-papers.example.org")


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subjects_decode_to_the_input(subject: str) -> None:
    msg = check_head(_build(subject=subject))
    assert msg["Subject"] == _norm(subject)


def test_list_id_header_alone() -> None:
    assert list_id_header("Daily Papers", "example.org") == "List-Id: Daily Papers <daily-papers.example.org>"
    assert list_id_header("Tägliche Papiere", "exämple.org") == (
        "List-Id: =?utf-8?q?T=C3=A4gliche_Papiere?= <daily-papers.xn--exmple-cua.org>"
    )


def test_every_combination_at_once() -> None:
    """Long and non-ASCII everything together, over the whole matrix of addresses."""
    for (configured, written, utf8), (sender, sname, swritten, sutf8) in itertools.product(ADDRESSES, SENDERS):
        env = _build(
            to_email=configured, to_name="Ärzte, Dr. " * 9, sender=sender, list_name="Tägliche " * 12,
            subject="Tägliche " * 12 + "2026-11-20: 3 new papers",
        )
        msg = check_head(env)
        assert _mailbox(env, msg, "To") == (_norm("Ärzte, Dr. " * 9), written)
        assert _mailbox(env, msg, "From") == (sname, swritten)
        assert _list_id(env) == (_norm("Tägliche " * 12), "daily-papers." + swritten.rpartition("@")[2])
        assert env.utf8 == (utf8 or sutf8)


def _random_text(rnd: random.Random, n: int) -> str:
    pools = [
        "abcdefghij ABC 0123",
        ' ,;:<>@[]"\\()=?_.',
        "äöüßéèçñ€—“”",
        "日本語中文한국어",
        "\U0001f389\U0001f4da",
        "\t\r\n\x00\x07\x1b\x7f\x85\u2028",
        "\ud800\udfff",
    ]
    return "".join(rnd.choice(rnd.choice(pools)) for _ in range(n))


def test_random_names_subjects_and_list_names() -> None:
    """Seeded random text of every kind: nothing raises and every head parses cleanly."""
    rnd = random.Random(9)
    for _ in range(400):
        name, subject, list_name = (_random_text(rnd, rnd.randint(0, 160)) for _ in range(3))
        env = _build(to_name=name, subject=subject, list_name=list_name or "x")
        msg = check_head(env)
        assert _mailbox(env, msg, "To") == (_as_header_text(name), "alice@example.org")
        assert msg["Subject"] == _as_header_text(subject)
        assert _list_id(env) == (_as_header_text(list_name or "x"), "daily-papers.example.org")


_CONTROL_TO_SPACE = dict.fromkeys([*range(0x20), 0x7F, *range(0x80, 0xA0)], " ")


def _as_header_text(text: str) -> str:
    """What a header keeps of free text: control characters are spaces, white space runs are
    one space, a lone surrogate (not encodable) is U+FFFD."""
    return _norm(re.sub("[\ud800-\udfff]", "\ufffd", text).translate(_CONTROL_TO_SPACE))


def test_random_addresses_build_or_raise_message_error() -> None:
    rnd = random.Random(6531)
    local_chars = "abcxyz09.+-_'!#äöü日本\U0001f389 @\"\\"
    domain_chars = "abcxyz09.-äöü日本\U0001f389 _"
    built = refused = 0
    for _ in range(400):
        local = "".join(rnd.choice(local_chars) for _ in range(rnd.randint(0, 12)))
        domain = "".join(rnd.choice(domain_chars) for _ in range(rnd.randint(0, 12)))
        try:
            env = _build(to_email=f"{local}@{domain}", to_name="Rändom")
        except MessageError:
            refused += 1
            continue
        built += 1
        msg = check_head(env)
        assert msg["To"].addresses[0].addr_spec == env.recipient
    assert built > 20 and refused > 20  # both paths were taken


# The envelope on the wire: a real SMTP server (aiosmtpd) receives what build_message made.


class _Keep:
    def __init__(self) -> None:
        self.got: list[tuple[str, list[str], bytes, list[str]]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        data = envelope.original_content or b""
        self.got.append((str(envelope.mail_from), list(envelope.rcpt_tos), data, list(envelope.mail_options)))
        return "250 OK"


def _send(env: Envelope) -> tuple[str, list[str], bytes, list[str]]:
    import smtplib

    keep = _Keep()
    controller = Controller(keep, hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=True)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", controller.port, timeout=10) as client:
            options = ["SMTPUTF8"] if env.utf8 else []
            client.sendmail(env.sender, [env.recipient], env.data, mail_options=options)
    finally:
        controller.stop()
    (got,) = keep.got
    return got


@pytest.mark.parametrize(("configured", "written", "utf8"), [a for a in ADDRESSES if a[0] != a[1]])
def test_envelope_goes_over_smtp(configured: str, written: str, utf8: bool) -> None:
    env = _build(to_email=configured, to_name="Jörg")
    mail_from, rcpt_tos, data, options = _send(env)
    assert (mail_from, rcpt_tos) == ("papers@example.org", [written])
    assert ("SMTPUTF8" in options) == utf8
    assert data.replace(b"\r\n", b"\n") == env.data.replace(b"\r\n", b"\n")


def test_a_whole_run_with_non_ascii_names_and_an_idn_address(tmp_path: Any, smtp: tuple[Controller, Inbox]) -> None:
    """pipeline -> build_message -> SMTP: every digest of a run parses cleanly."""
    controller, inbox = smtp
    kw = "Video Anomaly Detection"
    list_name = "Tägliche Papiere über Video-Anomalie-Erkennung und Sprachmodelle, Ausgabe Nürnberg"
    subs = [
        {"email": "alice@example.org", "name": "Ålice Ünïcode-Ñame, Ph.D. " * 3},
        {"email": "joe@exämple.org", "name": 'Joe "the reader" Doe'},
    ]
    home = write_instance(
        tmp_path, [kw], subs, timezone="UTC", list_name=list_name, **{"from": '"Jörg Müller, Dr." <papers@exämple.org>'}
    )
    with FakeArxiv({kw: make_papers(kw, 3, date="2026-11-19")}) as fake:
        run_once(home, fake, env=smtp_env(controller), now=at("2026-11-19"))  # baseline
        fake.feeds[kw] = [make_paper(900, kw, "2026-11-20"), *fake.feeds[kw]]
        report = run_once(home, fake, env=smtp_env(controller), now=at("2026-11-20"))
    assert report.sent == 2
    got = {}
    for raw in inbox.raw:
        env = Envelope("", "", raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"), "")
        msg = check_head(env)
        name, addr = _mailbox(env, msg, "To")
        got[addr] = name
        assert _mailbox(env, msg, "From") == ("Jörg Müller, Dr.", "papers@xn--exmple-cua.org")
        assert msg["Subject"] == f"{list_name[:80]}… 2026-11-20: 1 new"  # under 100 characters (issue 10)
        assert _list_id(env) == (list_name, "daily-papers.xn--exmple-cua.org")
    assert got == {
        "alice@example.org": _norm("Ålice Ünïcode-Ñame, Ph.D. " * 3),
        "joe@xn--exmple-cua.org": 'Joe "the reader" Doe',
    }
