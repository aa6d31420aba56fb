"""digestd/mail/message.py: the digest's bytes, parsed back with the stdlib parser (policy.default).

Headers in every shape (non-ASCII, long, quoted, internationalised addresses) are proven in
tests/test_trust_headers.py; this file covers the message as a whole.
"""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from digestd.errors import MessageError
from digestd.mail.message import Envelope, build_message, message_id

WHEN = datetime(2026, 11, 20, 6, 30, tzinfo=UTC)
SENDER = "Daily Papers <papers@example.org>"
MSG_ID = "<digest.2026-11-20.3.0123456789abcdef@example.org>"


def _args(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "sender": SENDER,
        "to_email": "alice@example.org",
        "to_name": "Alice",
        "subject": "Daily Papers 2026-11-20: 3 new papers",
        "when": WHEN,
        "msg_id": MSG_ID,
        "list_name": "Daily Papers",
        "unsubscribe_url": "<https://papers.example.org/unsubscribe/abc>, <mailto:papers@example.org?subject=unsubscribe>",
        "one_click": True,
        "text": "Daily Papers\n\n[2611.00001]: A paper — with ünïcode\n.a line starting with a dot\n",
        "html": "<html><body><p>Grüße</p>" + "<p>x</p>" * 2000 + "</body></html>",
    }
    args.update(kw)
    return args


def _build(**kw: Any) -> Envelope:
    return build_message(**_args(**kw))


def _parse(env: Envelope) -> EmailMessage:
    msg = email.message_from_bytes(env.data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_parts_round_trip_and_crlf_only() -> None:
    text = "Daily Papers\n\n[2611.00001]: A paper — with ünïcode\n" + "word " * 400 + "\n.dot\n"
    html = "<html><body><p>Grüße</p>" + "<p>x</p>" * 2000 + "</body></html>"
    env = _build(text=text, html=html)
    assert env.crlf and not env.utf8
    data = env.data
    assert data.count(b"\n") == data.count(b"\r\n") and data.count(b"\r") == data.count(b"\r\n")
    assert max(len(line) for line in data.split(b"\r\n")) <= 78  # QP and base64 lines too
    msg = _parse(env)
    assert msg.defects == []
    assert msg.get_content_type() == "multipart/alternative"
    plain, rich = list(msg.iter_parts())
    assert plain.get_content_type() == "text/plain" and rich.get_content_type() == "text/html"
    assert plain.get_content() == text.replace("\n", "\r\n")  # CRLF on the wire, QP keeps it
    assert rich.get_content() == html
    assert all(part.defects == [] for part in (plain, rich))


def test_headers_a_digest_carries() -> None:
    msg = _parse(_build())
    assert msg["Date"] == "Fri, 20 Nov 2026 06:30:00 +0000"
    assert msg["Message-ID"] == MSG_ID
    assert msg["MIME-Version"] == "1.0"
    assert msg["List-Id"] == "Daily Papers <daily-papers.example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Precedence"] == "bulk"
    assert str(msg["List-Unsubscribe"]).startswith("<https://papers.example.org/unsubscribe/abc>")
    assert "List-Unsubscribe-Post" not in _parse(_build(one_click=False))


def test_envelope_addresses_are_bare() -> None:
    env = _build()
    assert (env.sender, env.recipient, env.message_id) == ("papers@example.org", "alice@example.org", MSG_ID)


def test_control_characters_cannot_inject_headers() -> None:
    env = _build(
        to_name="Eve\r\nBcc: victim@example.org",
        subject="Hi\nBcc: victim@example.org\x00\x1b",
        list_name="List\rX-Evil: 1",
    )
    msg = _parse(env)
    assert "Bcc" not in msg and "X-Evil" not in msg
    assert msg["To"].addresses[0].display_name == "Eve Bcc: victim@example.org"
    assert msg["Subject"] == "Hi Bcc: victim@example.org"
    head = env.data.split(b"\r\n\r\n")[0]
    assert not re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", head)


def test_lone_surrogates_do_not_raise() -> None:
    env = _build(to_name="Bad \ud800 name", subject="S \udfff", text="t \ud800\n", html="<p>\udc80</p>")
    msg = _parse(env)
    assert msg["To"].addresses[0].display_name == "Bad \ufffd name"
    assert msg["Subject"] == "S \ufffd"
    plain, rich = list(msg.iter_parts())
    assert plain.get_content() == "t ?\r\n" and rich.get_content() == "<p>?</p>"


def test_boundary_is_safe_for_any_message_id_and_never_in_a_body() -> None:
    env = _build(msg_id='<a"b;c=d@example.org>', text="--=_digestd_a\n", html="--=_digestd_a")
    msg = _parse(env)
    assert msg.defects == [] and len(list(msg.iter_parts())) == 2
    boundary = msg.get_boundary()
    assert boundary is not None and re.fullmatch(r"[0-9A-Za-z_=-]{1,70}", boundary)


def test_list_unsubscribe_folds_between_its_urls_and_is_ascii() -> None:
    https = "<https://papers.exämple.org/unsubscribe/" + "t" * 60 + ">"  # an IDN public_url
    mailto = "<mailto:papers@example.org?subject=unsubscribe%20" + "a" * 40 + "%40example.org>"
    env = _build(unsubscribe_url=f"{https}, {mailto}")
    assert env.data.isascii()
    lines = env.data.decode("ascii").split("\r\n")
    i = next(n for n, line in enumerate(lines) if line.startswith("List-Unsubscribe:"))
    assert lines[i] == "List-Unsubscribe: <https://papers.xn--exmple-cua.org/unsubscribe/" + "t" * 60 + ">,"
    assert lines[i + 1] == " " + mailto
    assert str(_parse(env)["List-Unsubscribe"]).endswith(mailto)


def test_message_id_domain_in_idna() -> None:
    msg = _parse(_build(msg_id="<digest.1@exämple.org>"))
    assert msg["Message-ID"] == "<digest.1@xn--exmple-cua.org>"


def test_message_id_is_stable_and_per_subscriber() -> None:
    a = message_id(SENDER, "alice@example.org", 3, "2026-11-20")
    assert a == message_id(SENDER, "ALICE@example.org", 3, "2026-11-20")
    assert a != message_id(SENDER, "bob@example.org", 3, "2026-11-20")
    assert a != message_id(SENDER, "alice@example.org", 4, "2026-11-20")
    assert re.fullmatch(r"<digest\.2026-11-20\.3\.[0-9a-f]{16}@example\.org>", a)
    assert message_id("Ünï <p@exämple.org>", "a@example.org", 1, "2026-11-20").endswith("@xn--exmple-cua.org>")


def test_old_list_id_keyword_still_works() -> None:
    new = _build(list_name="Tägliche Papiere")
    args = _args()
    del args["list_name"]
    old = build_message(**args, list_id="Tägliche Papiere <daily-papers.example.org>")
    assert old.data == new.data
    with pytest.raises(TypeError):
        build_message(**args)  # neither list_name nor list_id: a programming error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("to_email", "not-an-address"),
        ("to_email", "a b@example.org"),
        ("to_email", "@example.org"),
        ("to_email", "alice@"),
        ("to_email", "alice@exa mple.org"),
        ("to_email", "jörg@ex😀mple.org"),  # no IDNA form
        ("to_email", "alice@-bad-.exämple.org"),
        ("to_email", "alice@example.org."),
        ("to_email", "jörg@exämple.org."),
        ("to_email", 42),
        ("to_name", ["not", "text"]),
        ("subject", None),
        ("sender", "No Address"),
        ("msg_id", "no angle brackets"),
        ("msg_id", "<ä@ö@>"),
        ("unsubscribe_url", "<https://example.org/" + "x" * 1200 + ">"),
        ("list_name", 7),
        ("list_name", ["unhashable"]),
        ("when", "2026-11-20"),
    ],
)
def test_bad_input_raises_message_error_only(field: str, value: object) -> None:
    with pytest.raises(MessageError):
        _build(**{field: value})


def test_errors_that_leave_mail_modules_are_digestd_errors() -> None:
    """MessageError fails one delivery in the pipeline: a DigestdError (still a ValueError).
    FinalReplyLost (smtpwire to smtp) and NoSmtpUtf8 (from the public sendmail) cross module
    edges too; every other public exception class of digestd/mail is in the family as well."""
    import importlib
    import inspect
    import pkgutil

    import digestd.mail
    from digestd.errors import DigestdError, ExitCode
    from digestd.mail.smtp import NoSmtpUtf8
    from digestd.mail.smtpwire import FinalReplyLost

    assert issubclass(MessageError, DigestdError) and issubclass(MessageError, ValueError)
    assert FinalReplyLost.exit_code == ExitCode.TEMPFAIL and issubclass(NoSmtpUtf8, DigestdError)
    for info in pkgutil.iter_modules(digestd.mail.__path__):
        module = importlib.import_module(f"digestd.mail.{info.name}")
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and not name.startswith("_"):
                assert issubclass(obj, DigestdError), f"digestd.mail.{info.name}.{name}"
