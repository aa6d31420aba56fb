"""End to end, in process: fake arXiv over HTTP, real SMTP (aiosmtpd), real files."""

from __future__ import annotations

from pathlib import Path

from conftest import Inbox, at, run_once, smtp_env, write_instance
from fakearxiv import FakeArxiv
from fixtures import make_paper, make_papers

KW_A, KW_B = "Video Anomaly Detection", "Vision Language Model"


def _ids(msg: object) -> set[str]:
    body = msg.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    import re

    return set(re.findall(r"^\[(\d{4}\.\d{5})\]: ", body, re.M))


def test_two_days_then_same_day_again(tmp_path: Path, smtp: tuple[object, Inbox]) -> None:
    controller, inbox = smtp
    home = write_instance(
        tmp_path,
        [KW_A, KW_B],
        [{"email": "alice@example.org", "name": "Alice", "keywords": [KW_A]}, {"email": "bob@example.org"}],
        timezone="UTC",
    )
    env = smtp_env(controller)
    day1 = {
        KW_A: make_papers(KW_A, 10, first=0, date="2026-11-19"),
        KW_B: make_papers(KW_B, 10, first=100, date="2026-11-19"),
    }
    with FakeArxiv(day1) as fake:
        r1 = run_once(home, fake, env=env, now=at("2026-11-19"))
        assert all(k.baseline for k in r1.keywords)
        assert r1.sent == 0 and inbox.messages == []  # baseline: nothing mailed

        shared = make_paper(500, KW_A, "2026-11-20", time="23:59:59")
        fake.feeds[KW_A] = [shared, *make_papers(KW_A, 2, first=200, date="2026-11-20"), *day1[KW_A]]
        fake.feeds[KW_B] = [shared, *day1[KW_B]]
        r2 = run_once(home, fake, env=env, now=at("2026-11-20"))
        assert r2.sent == 2 and r2.pending == 0 and r2.failed == 0
        alice, bob = inbox.to("alice@example.org"), inbox.to("bob@example.org")
        assert len(alice) == 1 and len(bob) == 1
        assert _ids(alice[0]) == {"2611.00500", "2611.00200", "2611.00201"}
        # bob follows both keywords: the shared paper appears once, under the first keyword
        assert _ids(bob[0]) == {"2611.00500", "2611.00200", "2611.00201"}
        assert "Also in: Vision Language Model" in bob[0].get_body(("plain",)).get_content()
        assert str(bob[0]["Subject"]) == f"Daily Papers 2026-11-20: 3 new: {KW_A}"  # issue 10

        r3 = run_once(home, fake, env=env, now=at("2026-11-20", 18))
        assert r3.sent == 0 and len(inbox.messages) == 2  # same day again: nothing twice


def test_message_headers_and_parts(tmp_path: Path, smtp: tuple[object, Inbox]) -> None:
    controller, inbox = smtp
    home = write_instance(tmp_path, [KW_A], [{"email": "alice@example.org", "name": "Ålice"}], timezone="UTC")
    with FakeArxiv({KW_A: make_papers(KW_A, 3, date="2026-11-19")}) as fake:
        run_once(home, fake, env=smtp_env(controller), now=at("2026-11-19"))
        evil = make_paper(
            900, KW_A, "2026-11-20", title="Video <script>alert(1)</script> Anomaly | Detection"
        )
        fake.feeds[KW_A] = [evil, *fake.feeds[KW_A]]
        run_once(home, fake, env=smtp_env(controller), now=at("2026-11-20"))
    (msg,) = inbox.messages
    assert msg.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in msg.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    for h in ("From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe"):
        assert msg[h], h
    assert msg["Auto-Submitted"] == "auto-generated"
    assert str(msg["Message-ID"]).endswith("@example.org>")
    assert "mailto:" in str(msg["List-Unsubscribe"])
    assert "Ålice" in str(msg["To"])
    html = msg.get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("<style") == 1 and 'style="' in html  # CSS inlined; only the dark-mode block stays
    readme = (home / "README.md").read_text()
    assert "Anomaly \\| Detection" in readme and "<script>" not in readme


def test_maildir_default_and_dry_run(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW_A], [{"email": "alice@example.org"}], timezone="UTC")
    with FakeArxiv({KW_A: make_papers(KW_A, 3, date="2026-11-19")}) as fake:
        run_once(home, fake, now=at("2026-11-19"))
        fake.feeds[KW_A] = [make_paper(900, KW_A, "2026-11-20"), *fake.feeds[KW_A]]
        before = {p.name: p.read_bytes() for p in (home / "state").glob("*.json")}
        readme = (home / "README.md").read_bytes()
        from digestd.pipeline import RunOptions

        dry = run_once(home, fake, now=at("2026-11-20"), options=RunOptions(dry_run=True))
        assert dry.would_mail == 1 and dry.pending == 0 and any(
            "would mail alice@example.org: 1 new paper" in m for m in dry.messages
        )
        assert {p.name: p.read_bytes() for p in (home / "state").glob("*.json")} == before
        assert (home / "README.md").read_bytes() == readme
        real = run_once(home, fake, now=at("2026-11-20"))
    assert real.sent == 1 and "Maildir" in real.mail_target
    assert len(list((home / "state" / "maildir" / "new").iterdir())) == 1


def test_resubscribing_starts_afresh_without_a_backlog(tmp_path: Path, smtp: tuple[object, Inbox]) -> None:
    controller, inbox = smtp
    alice = {"email": "alice@example.org"}
    home = write_instance(tmp_path, [KW_A], [alice], timezone="UTC")
    env = smtp_env(controller)
    with FakeArxiv({KW_A: make_papers(KW_A, 5, date="2026-11-19")}) as fake:
        run_once(home, fake, env=env, now=at("2026-11-19"))  # baseline
        fake.feeds[KW_A] = [make_paper(300, KW_A, "2026-11-20"), *fake.feeds[KW_A]]
        assert run_once(home, fake, env=env, now=at("2026-11-20")).sent == 1
        write_instance(tmp_path, [KW_A], [], timezone="UTC")  # alice unsubscribes
        fake.feeds[KW_A] = [make_paper(301, KW_A, "2026-11-21"), *fake.feeds[KW_A]]
        assert run_once(home, fake, env=env, now=at("2026-11-21")).sent == 0
        write_instance(tmp_path, [KW_A], [alice], timezone="UTC")  # and comes back
        fake.feeds[KW_A] = [make_paper(302, KW_A, "2026-11-22"), *fake.feeds[KW_A]]
        assert run_once(home, fake, env=env, now=at("2026-11-22")).sent == 1
    first, second = inbox.to("alice@example.org")
    assert _ids(first) == {"2611.00300"}
    assert _ids(second) == {"2611.00302"}  # not the paper of the day she was away


def test_stale_temp_files_are_cleaned_up(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW_A], [], timezone="UTC")
    leftover = home / "state" / ".papers.json.abc123.tmp"
    leftover.write_text('{"half": ')
    with FakeArxiv({KW_A: make_papers(KW_A, 3, date="2026-11-19")}) as fake:
        run_once(home, fake, now=at("2026-11-19"))
    assert not leftover.exists()
