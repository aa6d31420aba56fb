"""The manage page (`/manage/TOKEN`) and the form safety around it, over real HTTP on 127.0.0.1:
tokens forged, stale and rotated; CSRF without the form token or from another Origin; body
limits; escaping; 100 concurrent saves through the CLI's edit code, none lost."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from conftest import Inbox, at, run_once, serve_digestd, smtp_env, write_instance
from fakearxiv import FakeArxiv
from fixtures import make_paper
from test_unsubscribe import request

from digestd.config.load import load_config
from digestd.core.models import Frequency, SubscriberStatus
from digestd.core.tokens import Keys, make_manage_token, manage_link, sign_until, verify, verify_until
from digestd.ops.status import gather
from digestd.web.forms import form_token, form_token_ok

SECRET = "manage-test-secret-0123456789"
OLD = "the-key-before-the-rotation-42"

HAND = """\
# the test list
keywords:
  - Video Anomaly Detection   # first
  - Graph Neural Networks
  - Diffusion Models
subscribers:
  - email: alice@example.org   # Alice, since 2024
    name: Alice
    keywords: [Video Anomaly Detection]
  # bob follows everything
  - email: Bob@Example.org
settings:
  from: Daily Papers <papers@example.org>
  list_name: Test Papers
  public_url: https://papers.example.org/
"""

Served = tuple[Path, str]


serve = serve_digestd


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    (tmp_path / "subscribers.yaml").write_text(HAND, encoding="utf-8")
    for base in serve(tmp_path, {"DIGESTD_SECRET": SECRET}):
        yield tmp_path, base


def page_of(base: str, email: str, secret: str = SECRET) -> str:
    return manage_link(base, secret.encode(), email)


def form_of(body: str) -> str:
    """The form token of the page, as the browser would send it back."""
    m = re.search(r'name="form_token" value="([^"]+)"', body)
    assert m, body
    return html.unescape(m.group(1))


def post(url: str, fields: list[tuple[str, str]], **headers: str) -> tuple[int, dict[str, str], str]:
    return request(url, "POST", urlencode(fields).encode(),
                   {"Content-Type": "application/x-www-form-urlencoded", **headers})


def save(url: str, token: str, keywords: list[str], frequency: str, updates: bool = True,
         **headers: str) -> tuple[int, dict[str, str], str]:
    fields = [("form_token", token), ("action", "save"), *(("keyword", k) for k in keywords),
              ("frequency", frequency)] + ([("updates", "yes")] if updates else [])
    return post(url, fields, **headers)


def test_page_shows_the_subscription_and_get_changes_nothing(served: Served) -> None:
    home, base = served
    before = (home / "subscribers.yaml").read_bytes()
    url = page_of(base, "alice@example.org")
    assert "alice" not in url.lower() and "example" not in url.split("/manage/")[1]  # names no address
    status, headers, body = request(url)
    assert status == 200
    assert "alice@example.org" in body and "Video Anomaly Detection" in body and "daily" in body
    assert re.search(r'value="Video Anomaly Detection" checked', body)
    assert not re.search(r'value="Graph Neural Networks" checked', body)
    assert headers["content-security-policy"].startswith("default-src 'none'")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "no-referrer" and headers["x-frame-options"] == "DENY"
    assert "<script" not in body
    # Every control has a label: checkboxes and radios sit inside one, buttons carry text.
    assert body.count("<input type=\"checkbox\"") + body.count("<input type=\"radio\"") == \
        len(re.findall(r"<label><input type=\"(?:checkbox|radio)\"", body))
    assert request(url, "HEAD")[0] == 200
    assert (home / "subscribers.yaml").read_bytes() == before


def test_save_edits_through_the_cli_code_keeping_comments(served: Served) -> None:
    home, base = served
    url = page_of(base, "alice@example.org")
    token = form_of(request(url)[2])
    status, _, body = save(url, token, ["Graph Neural Networks", "Diffusion Models"], "weekly", updates=False,
                           Origin="https://papers.example.org")
    assert status == 200, body
    assert "follows Graph Neural Networks, Diffusion Models" in html.unescape(body)  # says what changed
    assert "weekly digest" in body and "no longer gets revised papers" in body
    text = (home / "subscribers.yaml").read_text(encoding="utf-8")
    assert "  - email: alice@example.org   # Alice, since 2024\n" in text
    assert "# bob follows everything\n" in text and "  - Video Anomaly Detection   # first\n" in text
    alice = load_config(home, {}).subscribers[0]
    assert alice.keywords == ("Graph Neural Networks", "Diffusion Models")
    assert alice.frequency is Frequency.WEEKLY and alice.updates is False
    # Saving the same again says so and writes nothing.
    before = (home / "subscribers.yaml").read_bytes()
    status, _, body = save(url, token, ["Graph Neural Networks", "Diffusion Models"], "weekly", updates=False)
    assert status == 200 and "nothing changed" in body
    assert (home / "subscribers.yaml").read_bytes() == before


def test_all_keywords_stays_all(served: Served) -> None:
    home, base = served
    url = page_of(base, "bob@example.org")
    token = form_of(request(url)[2])
    every = ["Video Anomaly Detection", "Graph Neural Networks", "Diffusion Models"]
    status, _, body = save(url, token, every, "weekly")
    assert status == 200 and "weekly" in body
    bob = load_config(home, {}).subscribers[1]
    assert bob.keywords is None and bob.frequency is Frequency.WEEKLY


def test_refusals_are_said_escaped_and_change_nothing(served: Served) -> None:
    home, base = served
    before = (home / "subscribers.yaml").read_bytes()
    url = page_of(base, "alice@example.org")
    token = form_of(request(url)[2])
    status, _, body = save(url, token, ["<script>alert(1)</script>"], "daily")
    assert status == 400 and "is not a configured keyword" in body
    assert "<script>alert" not in body and "&lt;script&gt;" in body
    assert save(url, token, [], "daily")[0] == 400
    assert save(url, token, ["Diffusion Models"], "hourly")[0] == 400
    assert post(url, [("form_token", token), ("action", "drop-table")])[0] == 400
    assert request(url, "POST", b"x" * (9 * 1024), {"Content-Type": "application/x-www-form-urlencoded"})[0] == 400
    assert request(url, "POST", b"\xff\xfe", {"Content-Type": "application/x-www-form-urlencoded"})[0] == 400
    assert (home / "subscribers.yaml").read_bytes() == before


def test_pause_resume_unsubscribe(served: Served) -> None:
    home, base = served
    url = page_of(base, "alice@example.org")
    token = form_of(request(url)[2])
    status, _, body = post(url, [("form_token", token), ("action", "pause")])
    assert status == 200 and "is now paused" in body and "Resume my digests" in body
    assert load_config(home, {}).subscribers[0].status is SubscriberStatus.PAUSED
    status, _, body = post(url, [("form_token", token), ("action", "resume")])
    assert status == 200 and "is now active" in body
    assert load_config(home, {}).subscribers[0].status is SubscriberStatus.ACTIVE
    status, _, body = post(url, [("form_token", token), ("action", "unsubscribe")])
    assert status == 200 and "gets no more digests" in body
    assert [s.email for s in load_config(home, {}).subscribers] == ["Bob@Example.org"]
    assert "# Alice" not in (home / "subscribers.yaml").read_text() and "# bob follows" in (
        home / "subscribers.yaml").read_text()
    # The link is now stale: a plain 403 for the page and its forms.
    assert request(url)[0] == 403
    assert post(url, [("form_token", token), ("action", "resume")])[0] == 403


@pytest.mark.parametrize("tamper", ["other-id", "flip-mac", "other-key", "unsubscribe-token", "garbage"])
def test_forged_manage_tokens_get_a_plain_403(served: Served, tamper: str) -> None:
    home, base = served
    before = (home / "subscribers.yaml").read_bytes()
    key = SECRET.encode()
    token = make_manage_token(key, "alice@example.org")
    tid, mac = token.split(".")
    from digestd.core.tokens import make_token

    forged = {
        "other-id": make_manage_token(key, "bob@example.org").split(".")[0] + "." + mac,
        "flip-mac": f"{tid}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
        "other-key": make_manage_token(b"not the key", "alice@example.org"),
        "unsubscribe-token": make_token(key, "alice@example.org"),  # signed, but for another purpose
        "garbage": "AAAA.BBBB",
    }[tamper]
    status, _, body = request(f"{base}/manage/{forged}")
    assert status == 403 and "not valid" in body and "alice" not in body
    assert post(f"{base}/manage/{forged}", [("action", "unsubscribe")])[0] == 403
    assert (home / "subscribers.yaml").read_bytes() == before


def test_csrf_needs_the_page_token_and_this_origin(served: Served) -> None:
    home, base = served
    before = (home / "subscribers.yaml").read_bytes()
    url = page_of(base, "alice@example.org")
    good = form_of(request(url)[2])
    bobs = form_of(request(page_of(base, "bob@example.org"))[2])
    keys = Keys(SECRET.encode())
    expired = form_token(keys, "manage:" + url.rsplit("/", 1)[1].split(".")[0], now=1_000_000)
    cases: list[tuple[str | None, dict[str, str]]] = [
        (None, {}),  # no form token at all
        ("", {}),
        (bobs, {}),  # a genuine token of another page
        (expired, {}),
        (good + "x", {}),
        (good, {"Origin": "https://evil.example"}),
        (good, {"Origin": "null"}),
        (good, {"Origin": "null", "Sec-Fetch-Site": "cross-site"}),
        (good, {"Sec-Fetch-Site": "cross-site"}),
        (good, {"Sec-Fetch-Site": "same-site"}),  # a neighbour subdomain
        (good, {"Origin": base, "Sec-Fetch-Site": "cross-site"}),
    ]
    for token, headers in cases:
        fields = [("action", "unsubscribe")] + ([("form_token", token)] if token is not None else [])
        status, _, body = post(url, fields, **headers)
        assert status == 403 and "nothing was changed" in body, (token, headers)
    assert (home / "subscribers.yaml").read_bytes() == before
    # This site's origins pass: public_url's, and the Host the proxy passed on.
    assert post(url, [("form_token", good), ("action", "pause")], Origin="https://papers.example.org")[0] == 200
    assert post(url, [("form_token", good), ("action", "resume")], Origin=base)[0] == 200
    # What Chromium sends for this page's own form under Referrer-Policy: no-referrer.
    assert post(url, [("form_token", good), ("action", "pause")],
                **{"Origin": "null", "Sec-Fetch-Site": "same-origin"})[0] == 200


def test_rotated_keys(tmp_path: Path) -> None:
    """Links signed with a previous key work while it is listed, and not once it is removed."""
    (tmp_path / "subscribers.yaml").write_text(HAND, encoding="utf-8")
    from test_unsubscribe import link

    old_manage = page_of("", "alice@example.org", OLD)
    old_unsub = link("", "bob@example.org", OLD)
    keyfile = tmp_path / "previous"
    keyfile.write_text(f"an-even-older-key\n{OLD}\n")
    for env in ({"DIGESTD_SECRET": SECRET, "DIGESTD_SECRET_PREVIOUS": f"x-key, {OLD}"},
                {"DIGESTD_SECRET": SECRET, "DIGESTD_SECRET_PREVIOUS_FILE": str(keyfile)}):
        for base in serve(tmp_path, env):
            status, _, body = request(base + old_manage)
            assert status == 200 and "alice@example.org" in body
            assert request(base + old_unsub)[0] == 200
            assert request(base + page_of("", "alice@example.org"))[0] == 200  # the new key too
    for base in serve(tmp_path, {"DIGESTD_SECRET": SECRET}):
        assert request(base + old_manage)[0] == 403
        assert request(base + old_unsub)[0] == 403
        # A form token from the old key's time is refused too.
        tid = old_manage.rsplit("/", 1)[1].split(".")[0]
        token = form_token(Keys(OLD.encode()), f"manage:{tid}")
        url = base + page_of("", "alice@example.org")
        assert post(url, [("form_token", token), ("action", "pause")])[0] == 403


def test_generic_tokens() -> None:
    keys = Keys(b"new", (b"old",))
    old = sign_until(b"old", "confirm", "abc", 2000)
    assert verify_until(keys, "confirm", old, 1999) == "abc"
    assert verify_until(keys, "confirm", old, 2001) is None  # expired
    assert verify_until(keys, "form", old, 1999) is None  # another purpose
    assert verify_until(Keys(b"new"), "confirm", old, 1999) is None  # the old key removed
    assert verify(keys, "x", "a" * 5000) is None
    assert form_token_ok(keys, "b", form_token(keys, "b")) and not form_token_ok(keys, "b", form_token(keys, "c"))


def one_save(i: int, form: tuple[str, str]) -> int:
    """Subscriber i's save: Alpha or Beta, weekly, revised papers for two in three."""
    return save(form[0], form[1], ["Alpha"] if i % 2 else ["Beta"], "weekly", updates=i % 3 != 0)[0]


def test_100_concurrent_saves_none_lost(tmp_path: Path) -> None:
    subs = "".join(f"  - email: user{i}@example.org   # number {i}\n" for i in range(100))
    (tmp_path / "subscribers.yaml").write_text(
        "# a bigger list\nkeywords: [Alpha, Beta]\nsubscribers:\n" + subs
        + "settings:\n  public_url: https://papers.example.org\n", encoding="utf-8")
    for base in serve(tmp_path, {"DIGESTD_SECRET": SECRET}):
        urls = [page_of(base, f"user{i}@example.org") for i in range(100)]
        forms = [(u, form_of(request(u)[2])) for u in urls]
        with ThreadPoolExecutor(100) as pool:
            answers = list(pool.map(one_save, range(100), forms))
        assert answers == [200] * 100
    cfg = load_config(tmp_path, {})
    assert len(cfg.subscribers) == 100
    for i, s in enumerate(cfg.subscribers):
        assert s.email == f"user{i}@example.org"
        assert s.keywords == (("Alpha",) if i % 2 else ("Beta",)) and s.frequency is Frequency.WEEKLY
        assert s.updates is (i % 3 != 0)
    text = (tmp_path / "subscribers.yaml").read_text()
    assert all(f"# number {i}\n" in text for i in range(100))


def test_pause_until_a_date_then_digests_again(tmp_path: Path, smtp: tuple[Any, Inbox]) -> None:
    """A dated pause from the page: no digest before the day (its papers skipped), one after,
    without anyone resuming; bad dates are refused."""
    controller, inbox = smtp
    kw = "Video Anomaly Detection"
    home = write_instance(tmp_path, [kw], [{"email": "alice@example.org"}], timezone="UTC",
                          public_url="https://papers.example.org")
    env = smtp_env(controller, DIGESTD_SECRET=SECRET)
    today = datetime.now(UTC).date()
    until = today + timedelta(days=10)
    for base in serve(home, env):
        url = page_of(base, "alice@example.org")
        token = form_of(request(url)[2])
        for bad in ("tomorrow", today.isoformat(), (today + timedelta(days=4000)).isoformat()):
            assert post(url, [("form_token", token), ("action", "pause"), ("until", bad)])[0] == 400
        status, _, body = post(url, [("form_token", token), ("action", "pause"), ("until", until.isoformat())])
        assert status == 200 and f"paused until {until.isoformat()}" in body and "Resume my digests" in body
    assert load_config(home, {}).subscribers[0].paused_until == until

    def day(n: int) -> str:
        return (until + timedelta(days=n)).isoformat()

    with FakeArxiv({kw: [make_paper(100, kw, day(-3))]}) as fake:
        run_once(home, fake, env=env, now=at(day(-3)))  # the baseline
        during = make_paper(101, kw, day(-1))
        fake.feeds[kw] = [during, *fake.feeds[kw]]
        run_once(home, fake, env=env, now=at(day(-1)))
        assert inbox.messages == []  # paused
        shown = gather(load_config(home, {}), None, now=at(day(-1)))
        assert [p.reason for p in shown.paused] == [f"paused by them until {until.isoformat()} (digests again from that day)"]
        assert gather(load_config(home, {}), None, now=at(day(0))).paused == ()
        after = make_paper(102, kw, day(0))
        fake.feeds[kw] = [after, *fake.feeds[kw]]
        run_once(home, fake, env=env, now=at(day(0)))
    (msg,) = inbox.messages
    body = msg.get_body(("plain",)).get_content()
    assert re.findall(r"^\[(\d{4}\.\d{5})\]: ", body, re.M) == [after.id]  # the pause's paper skipped


def test_a_save_whose_page_cannot_be_read_back_still_gets_an_answer(tmp_path: Path) -> None:
    """The save is written, then the page is built from the file read again; when that read
    fails (here an interests .bib file removed meanwhile) the client got no answer at all and
    the log said "nothing was changed", though the change stood."""
    (tmp_path / "refs.bib").write_text("@article{a, title={Video anomaly detection}, eprint={2506.05175}}\n")
    (tmp_path / "subscribers.yaml").write_text(
        HAND.replace("    name: Alice\n", "    name: Alice\n    interests: [refs.bib]\n"), encoding="utf-8")
    for base in serve(tmp_path, {"DIGESTD_SECRET": SECRET}):
        url = page_of(base, "alice@example.org")
        token = form_of(request(url)[2])
        (tmp_path / "refs.bib").unlink()
        status, _, said = save(url, token, ["Video Anomaly Detection"], "weekly")
        assert status == 200 and "weekly" in said and "cannot be shown just now" in said
    assert "frequency: weekly" in (tmp_path / "subscribers.yaml").read_text()
