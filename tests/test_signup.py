"""Sign-up with double opt-in over real HTTP, mails received by aiosmtpd: off by default, GET
never changes anything, the same answer for subscribed and new addresses, the CLI's address
check, the rate limits, forged, expired and rotated confirmation links, CSRF."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from conftest import Inbox, serve_digestd, smtp_env, wait_for
from smtpfaults import SetupFaultServer
from test_manage import form_of, post
from test_unsubscribe import request

from digestd.config.load import load_config
from digestd.config.settings import SmtpSettings
from digestd.core.bounce_policy import Suppression, SuppressReason
from digestd.core.tokens import pack, sign_until
from digestd.store.suppressions import opened
from digestd.web.ratelimit import client_key
from digestd.web.signup_mail import Letter, Mailer

SECRET = "signup-test-secret-0123456789"
OLD = "signup-old-key-9876543210"

YAML = """\
# sign-up test list
keywords:
  - Video Anomaly Detection
  - Graph Neural Networks
subscribers:
  - email: alice@example.org   # already here
settings:
  from: Daily Papers <papers@example.org>
  list_name: Test Papers
  public_url: https://papers.example.org/
{extra}"""


serve = serve_digestd


@pytest.fixture
def site(tmp_path: Path, smtp: tuple[Any, Inbox]) -> Iterator[tuple[Path, str, Inbox]]:
    controller, inbox = smtp
    (tmp_path / "subscribers.yaml").write_text(YAML.format(extra="  open_signup: true\n"))
    env = smtp_env(controller, DIGESTD_SECRET=SECRET, DIGESTD_SECRET_PREVIOUS=OLD)
    for base in serve(tmp_path, env):
        yield tmp_path, base, inbox


def sign_up(base: str, email: str, keywords: list[str], **headers: str) -> tuple[int, dict[str, str], str]:
    token = form_of(request(f"{base}/subscribe")[2])
    return post(f"{base}/subscribe", [("form_token", token), ("email", email),
                                      *(("keyword", k) for k in keywords)], **headers)


def link_in(msg: Any) -> str:
    m = re.search(r"(https://papers\.example\.org/\S+)", msg.get_body(("plain",)).get_content())
    assert m, msg.get_body(("plain",)).get_content()
    return m.group(1)


def test_off_by_default(tmp_path: Path) -> None:
    (tmp_path / "subscribers.yaml").write_text(YAML.format(extra=""))
    for base in serve(tmp_path, {"DIGESTD_SECRET": SECRET}):
        assert request(f"{base}/subscribe")[0] == 404
        assert post(f"{base}/subscribe", [("email", "x@example.org")])[0] == 404
        token = sign_until(SECRET.encode(), "confirm", pack(b'{"e":"x@example.org","k":[]}'), 2**40)
        assert request(f"{base}/confirm/{token}")[0] == 403


@pytest.mark.parametrize(("public_url", "said"), [
    (True, "; sign-up at /subscribe"),
    (False, "; settings.open_signup is true, but /subscribe stays off until settings.public_url is set"),
])
def test_serve_says_whether_sign_up_is_on(tmp_path: Path, public_url: bool, said: str) -> None:
    text = YAML.format(extra="  open_signup: true\n")
    (tmp_path / "subscribers.yaml").write_text(text if public_url else text.replace("  public_url:", "  # "))
    proc = subprocess.Popen([sys.executable, "-m", "digestd", "--home", str(tmp_path), "serve", "--port", "0"],
                            env={**os.environ, "DIGESTD_SECRET": SECRET}, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
    assert first.startswith("serving unsubscribe links on ") and first.rstrip("\n").endswith(said), first


def test_sign_up_confirm_and_the_same_answer(site: tuple[Path, str, Inbox]) -> None:
    home, base, inbox = site
    before = (home / "subscribers.yaml").read_bytes()
    status, headers, new = sign_up(base, "Carol@Example.org", ["graph neural networks"])
    assert status == 200 and "on its way" in new
    assert "content-security-policy" in headers
    status, _, known = sign_up(base, "alice@example.org", ["Graph Neural Networks"])
    assert status == 200
    # The same page for a new and a subscribed address, but for the address itself.
    def anonymous(page: str, who: str) -> str:
        return re.sub(r'value="[^"]*"', "", re.sub(who, "X", page, flags=re.I))

    assert anonymous(new, "carol@example.org") == anonymous(known, "alice@example.org")
    wait_for(lambda: len(inbox.messages) == 2)
    assert (home / "subscribers.yaml").read_bytes() == before  # submitting creates nothing
    (carol,) = inbox.to("carol@example.org")
    (alice,) = inbox.to("alice@example.org")
    assert "/manage/" in link_in(alice) and "already subscribed" in str(alice["Subject"])
    url = link_in(carol).replace("https://papers.example.org", base)
    assert "/confirm/" in url

    # GET (a link scanner) changes nothing; the button's POST subscribes.
    for _ in range(2):
        status, _, page = request(url)
        assert status == 200 and "Confirm my subscription" in page
    assert (home / "subscribers.yaml").read_bytes() == before
    assert post(url, [("action", "confirm")])[0] == 403  # without the form token
    status, _, done = post(url, [("form_token", form_of(page))])
    assert status == 200 and "is subscribed" in done
    subs = load_config(home, {}).subscribers
    assert [s.email for s in subs] == ["alice@example.org", "Carol@example.org"]  # as the CLI writes it
    assert subs[1].keywords == ("Graph Neural Networks",)
    assert "# already here" in (home / "subscribers.yaml").read_text()
    # Again: harmless.
    assert post(url, [("form_token", form_of(page))])[0] == 200
    assert len(load_config(home, {}).subscribers) == 2


def test_addresses_are_checked_as_the_cli_checks_them(site: tuple[Path, str, Inbox]) -> None:
    _, base, inbox = site
    for bad in ("not-an-address", "a@b", "<script>alert(1)</script>@example.org", "x@example..org", ""):
        status, _, body = sign_up(base, bad, ["Graph Neural Networks"])
        assert status == 400 and "not a valid e-mail address" in body, bad
        assert "<script>alert" not in body
    status, _, body = sign_up(base, "dave@example.org", ["<b>no</b>"])
    assert status == 400 and "&lt;b&gt;" in body and "<b>no</b>" not in body
    assert sign_up(base, "dave@example.org", [])[0] == 400
    assert inbox.messages == []


def test_rate_limits(site: tuple[Path, str, Inbox]) -> None:
    _, base, inbox = site
    assert sign_up(base, "erin@example.org", ["Graph Neural Networks"])[0] == 200
    assert sign_up(base, "ERIN@example.org", ["Video Anomaly Detection"])[0] == 200  # same answer
    assert sign_up(base, "frank@example.org", ["Graph Neural Networks"])[0] == 200
    # The mails go out in order: once frank's is in, a second one to erin would be too.
    wait_for(lambda: len(inbox.to("frank@example.org")) == 1)
    assert len(inbox.to("erin@example.org")) == 1
    # Plus-addressing reaches the same mailbox: erin+1@, erin+2@ are not new recipients.
    assert sign_up(base, "erin+1@example.org", ["Graph Neural Networks"])[0] == 200
    assert sign_up(base, "frank+x@example.org", ["Graph Neural Networks"])[0] == 200
    assert sign_up(base, "frank@example.org", ["Graph Neural Networks"])[0] == 200
    assert sign_up(base, "g+tag@example.org", ["Graph Neural Networks"])[0] == 200
    wait_for(lambda: len(inbox.to("g+tag@example.org")) == 1)
    assert not inbox.to("erin+1@example.org") and not inbox.to("frank+x@example.org")
    assert len(inbox.to("frank@example.org")) == 1
    # Per client: 10 sign-ups an hour (7 so far), then 429, per forwarded client behind the proxy.
    statuses = [sign_up(base, f"u{i}@example.org", ["Graph Neural Networks"])[0] for i in range(4)]
    assert statuses == [200] * 3 + [429]
    other = sign_up(base, "g@example.org", ["Graph Neural Networks"], **{"X-Forwarded-For": "203.0.113.9"})
    assert other[0] == 200


def test_forged_expired_and_rotated_confirm_links(site: tuple[Path, str, Inbox]) -> None:
    home, base, _ = site
    before = (home / "subscribers.yaml").read_bytes()
    wish = pack(b'{"e":"mallory@example.org","k":["Graph Neural Networks"]}')
    future = int(time.time()) + 3600
    expired = sign_until(SECRET.encode(), "confirm", wish, int(time.time()) - 1)
    forged = sign_until(b"someone else's key", "confirm", wish, future)
    other_purpose = sign_until(SECRET.encode(), "form", wish, future)
    for token in (expired, forged, other_purpose, "AAAA.BBBB"):
        assert request(f"{base}/confirm/{token}")[0] == 403
        assert post(f"{base}/confirm/{token}", [("form_token", "x")])[0] == 403
    assert (home / "subscribers.yaml").read_bytes() == before
    # A link mailed under the previous key still confirms while that key is listed.
    rotated = f"{base}/confirm/{sign_until(OLD.encode(), 'confirm', wish, future)}"
    status, _, page = request(rotated)
    assert status == 200
    assert post(rotated, [("form_token", form_of(page))], Origin="https://evil.example")[0] == 403
    assert post(rotated, [("form_token", form_of(page))])[0] == 200
    assert [s.email for s in load_config(home, {}).subscribers][-1] == "mallory@example.org"


def test_csrf_on_the_form(site: tuple[Path, str, Inbox]) -> None:
    _, base, inbox = site
    fields = [("email", "h@example.org"), ("keyword", "Graph Neural Networks")]
    assert post(f"{base}/subscribe", fields)[0] == 403
    token = form_of(request(f"{base}/subscribe")[2])
    assert post(f"{base}/subscribe", [("form_token", token), *fields], Origin="https://evil.example")[0] == 403
    assert post(f"{base}/subscribe", [("form_token", token), *fields], **{"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert post(f"{base}/subscribe", [("form_token", token), *fields])[0] == 200
    wait_for(lambda: len(inbox.messages) == 1)


def test_the_proxys_own_forwarded_line_counts_not_the_clients() -> None:
    """A proxy that adds its X-Forwarded-For as a line of its own (HAProxy) follows the one a
    client sent: the last entry of all the lines is the client, or a forged first line would
    give each sign-up a new client and lift the limit."""
    headers = Message()
    headers["X-Forwarded-For"] = "10.9.9.1"  # written by the client
    headers["X-Forwarded-For"] = "203.0.113.7"  # appended by the proxy
    assert client_key("127.0.0.1", headers) == "203.0.113.7"
    assert client_key("198.51.100.2", headers) == "198.51.100.2"  # not through the proxy: the peer


def test_an_ipv6_client_is_its_64_not_each_address_of_it() -> None:
    """One host holds a whole /64: counted per address, it could sign up without limit."""
    headers = Message()
    one = client_key("2001:db8:1:2::1", headers)
    assert one == client_key("2001:db8:1:2:ffff:1234:5678:9abc", headers)
    assert one != client_key("2001:db8:1:3::1", headers)
    headers["X-Forwarded-For"] = "2001:db8:1:2::99"
    assert client_key("::1", headers) == one  # behind the proxy too
    assert client_key("::ffff:198.51.100.2", Message()) == "198.51.100.2"


def test_a_suppressed_address_is_not_mailed_nor_added(site: tuple[Path, str, Inbox]) -> None:
    """`subscribers add` refuses a suppressed address and runs never mail it; sign-up mailed it a
    confirmation (one that reported a digest as spam, too) and its link added it again."""
    home, base, inbox = site
    with opened(home / "state" / "suppressions.json") as s:
        s.suppress(Suppression("dan@example.org", SuppressReason.COMPLAINT, "spam", "2026-01-01T00:00:00+00:00"))
    assert sign_up(base, "dan@example.org", ["Graph Neural Networks"])[0] == 200  # the same answer
    assert sign_up(base, "erin@example.org", ["Graph Neural Networks"])[0] == 200
    wait_for(lambda: len(inbox.to("erin@example.org")) == 1)  # in order: dan's would be in
    assert inbox.to("dan@example.org") == []
    before = (home / "subscribers.yaml").read_bytes()
    wish = pack(b'{"e":"dan@example.org","k":["Graph Neural Networks"]}')
    url = f"{base}/confirm/{sign_until(SECRET.encode(), 'confirm', wish, int(time.time()) + 3600)}"
    status, _, said = post(url, [("form_token", form_of(request(url)[2]))])
    assert status == 400 and "cannot be subscribed" in said
    assert (home / "subscribers.yaml").read_bytes() == before


def test_a_list_that_cannot_be_read_gets_503_not_404_or_an_invalid_link(site: tuple[Path, str, Inbox]) -> None:
    """A broken subscribers.yaml answered 404 for the form and 403 "This link is not valid" for a
    genuine confirmation link, which a visitor would take as final."""
    home, base, _ = site
    wish = pack(b'{"e":"dan@example.org","k":["Graph Neural Networks"]}')
    url = f"{base}/confirm/{sign_until(SECRET.encode(), 'confirm', wish, int(time.time()) + 3600)}"
    token = form_of(request(url)[2])
    (home / "subscribers.yaml").write_text("keywords: [\n")
    assert request(f"{base}/subscribe")[0] == 503
    assert request(url)[0] == 503
    assert post(url, [("form_token", token)])[0] == 503
    assert (home / "subscribers.yaml").read_text() == "keywords: [\n"


def test_a_suppression_list_that_cannot_be_read_is_not_called_a_bounce(site: tuple[Path, str, Inbox]) -> None:
    """A broken suppressions.json made every confirmation link answer 400 "mail to it bounced or
    was reported as spam", a final word about the visitor's address that nothing supported; it
    is 503 (try again: the next run moves the file aside), and nothing is added."""
    home, base, _ = site
    (home / "state").mkdir(exist_ok=True)
    (home / "state" / "suppressions.json").write_text("{not json")
    before = (home / "subscribers.yaml").read_bytes()
    wish = pack(b'{"e":"dan@example.org","k":["Graph Neural Networks"]}')
    url = f"{base}/confirm/{sign_until(SECRET.encode(), 'confirm', wish, int(time.time()) + 3600)}"
    status, _, said = post(url, [("form_token", form_of(request(url)[2]))])
    assert status == 503 and "bounced" not in said
    assert (home / "subscribers.yaml").read_bytes() == before


@pytest.mark.parametrize("ehlo", ["endless", "trickle"])
def test_a_hostile_smtp_server_cannot_hold_the_confirmation_mailer(tmp_path: Path, ehlo: str) -> None:
    """An EHLO reply of lines without end, at full speed or a byte every 0.1 s: the one mail
    fails within its timeout. Before (smtplib, a timeout per read), the worker never came back
    and its memory grew without bound (4 GB in 30 s); every later confirmation waited behind it."""
    with SetupFaultServer(ehlo=ehlo) as bad:
        mailer = Mailer(SmtpSettings("127.0.0.1", bad.port, "none", timeout=1.0), tmp_path / "md", "p@example.org")
        msg = mailer.build(Letter("a@example.org", "Confirm", "text"))
        failed: list[BaseException] = []

        def send() -> None:
            try:
                mailer.send(msg)
            except Exception as err:  # whichever way aiosmtplib words it
                failed.append(err)

        worker = threading.Thread(target=send, daemon=True)
        worker.start()
        worker.join(8)  # measured 1.0-1.2 s: the 1 s timeout, then the exception
        assert not worker.is_alive() and failed
