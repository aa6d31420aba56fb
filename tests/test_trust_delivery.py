"""Per-delivery fault isolation (issue "Trust", point 1): whatever goes wrong while building or
handing over one digest fails that one delivery, with its reason where `digestd status` shows
it, and every other digest still goes. Non-ASCII addresses use SMTPUTF8 when the server offers
it, else fail permanently saying so; the Maildir takes them too. Real aiosmtpd servers."""

from __future__ import annotations

import email
import json
import mailbox
from collections.abc import Iterator
from email import policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import Inbox, InboxHandler, at, cli, free_port, run_once, smtp_env, write_instance
from fakearxiv import FakeArxiv
from fixtures import make_papers

from digestd.render.digest import DigestRenderer

KW = "Video Anomaly Detection"
JOERG = "jörg@example.org"
OTHERS = ["alice@example.org", "bob@example.org"]


def _server(utf8: bool) -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(InboxHandler(inbox), hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=utf8)
    controller.start()
    try:
        yield controller, inbox
    finally:
        controller.stop()


@pytest.fixture
def utf8_smtp() -> Iterator[tuple[Controller, Inbox]]:
    yield from _server(True)


@pytest.fixture
def ascii_smtp() -> Iterator[tuple[Controller, Inbox]]:
    """A server that does not offer SMTPUTF8 (aiosmtpd's Controller offers it by default)."""
    yield from _server(False)


def _home(tmp_path: Path) -> Path:
    subs = [{"email": OTHERS[0]}, {"email": JOERG, "name": "Jörg Müller"}, {"email": OTHERS[1]}]
    return write_instance(tmp_path / "home", [KW], subs, timezone="UTC")


def _two_days(home: Path, fake: FakeArxiv, env: dict[str, str] | None) -> None:
    """Day 1 is the baseline; day 2 brings new papers, mailed to everyone."""
    fake.feeds = {KW: make_papers(KW, 5, date="2026-11-20")}
    run_once(home, fake, now=at("2026-11-20", 21))
    fake.feeds = {KW: make_papers(KW, 3, first=100, date="2026-11-21") + fake.feeds[KW]}
    run_once(home, fake, env=env, now=at("2026-11-21", 21))


def _deliveries(home: Path) -> dict[str, dict[str, object]]:
    data = json.loads((home / "state" / "outbox.json").read_bytes())
    return {d["email"]: d for d in data["deliveries"].values()}


def test_a_non_ascii_address_goes_with_smtputf8_when_the_server_offers_it(
    tmp_path: Path, utf8_smtp: tuple[Controller, Inbox]
) -> None:
    controller, inbox = utf8_smtp
    home = _home(tmp_path)
    with FakeArxiv() as fake:
        _two_days(home, fake, smtp_env(controller))
    assert {d["status"] for d in _deliveries(home).values()} == {"sent"}
    # RFC 6532: the head is UTF-8, so it is read as text (BytesParser would surrogate-escape it)
    parsed = [email.message_from_string(raw.decode("utf-8"), policy=policy.default) for raw in inbox.raw]
    (joerg,) = [m for m in parsed if "jörg" in str(m["To"])]
    assert joerg["To"].addresses[0].addr_spec == JOERG
    assert joerg["To"].addresses[0].display_name == "Jörg Müller"
    assert not joerg.defects
    # the stdlib parser flags every non-ASCII local part; RFC 6532 allows it with SMTPUTF8
    assert {type(d).__name__ for d in joerg["To"].defects} <= {"NonASCIILocalPartDefect"}
    assert len(inbox.messages) == 3


def test_without_smtputf8_that_one_delivery_fails_for_good_and_the_others_go(
    tmp_path: Path, ascii_smtp: tuple[Controller, Inbox]
) -> None:
    controller, inbox = ascii_smtp
    home = _home(tmp_path)
    with FakeArxiv() as fake:
        _two_days(home, fake, smtp_env(controller))
        ds = _deliveries(home)
        assert ds[JOERG]["status"] == "failed" and "SMTPUTF8" in str(ds[JOERG]["error"])
        assert all(ds[o]["status"] == "sent" for o in OTHERS)
        assert sorted(str(m["To"]) for m in inbox.messages) == sorted(OTHERS)
        later = run_once(home, fake, env=smtp_env(controller), now=at("2026-11-22", 21))
    assert later.fatal is None and later.pending == 0  # a later run is not stopped by it either
    status = cli(home, "status")
    assert status.returncode == 0 and JOERG in status.stdout and "SMTPUTF8" in status.stdout


def test_the_maildir_takes_a_non_ascii_address(tmp_path: Path) -> None:
    home = _home(tmp_path)
    with FakeArxiv() as fake:
        _two_days(home, fake, None)
    box = mailbox.Maildir(str(home / "state" / "maildir"), create=False)
    tos = []
    for key in box.iterkeys():
        msg = email.message_from_string(box.get_bytes(key).decode("utf-8"), policy=policy.default)
        tos.append(msg["To"].addresses[0].addr_spec)
    assert sorted(tos) == sorted([*OTHERS, JOERG])


def test_a_digest_that_cannot_be_built_fails_alone(
    tmp_path: Path, smtp: tuple[Controller, Inbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rendering one subscriber's digest raises (an injected fault: the state is checked on
    open, so real data cannot reach here malformed): that delivery fails with the reason,
    the other digests go, the run ends normally."""
    controller, inbox = smtp
    home = write_instance(tmp_path / "home", [KW], [{"email": o} for o in OTHERS], timezone="UTC")
    real = DigestRenderer.render

    def render(self: DigestRenderer, email: str, sections: Any, **kw: Any) -> tuple[str, str]:
        if email == OTHERS[0]:
            raise UnicodeEncodeError("utf-8", "x", 0, 1, "injected")
        return real(self, email, sections, **kw)

    monkeypatch.setattr(DigestRenderer, "render", render)
    with FakeArxiv() as fake:
        _two_days(home, fake, smtp_env(controller))
    ds = _deliveries(home)
    assert ds[OTHERS[1]]["status"] == "sent"
    assert [str(m["To"]) for m in inbox.messages] == [OTHERS[1]]
    assert ds[OTHERS[0]]["status"] == "failed" and "could not be built" in str(ds[OTHERS[0]]["error"])


def test_a_lone_surrogate_in_the_ledger_is_a_bad_record_not_a_crash_at_write(tmp_path: Path) -> None:
    home = write_instance(tmp_path / "home", [KW], [{"email": o} for o in OTHERS], timezone="UTC")
    path = home / "state" / "outbox.json"
    path.write_text(json.dumps({"deliveries": {"1": {
        "email": OTHERS[0], "name": "\ud800", "date": "2026-11-21", "papers": {KW: ["2611.00001"]},
        "message_id": "<m@x>", "status": "pending"}}}))
    with FakeArxiv({KW: make_papers(KW, 3)}) as fake:
        proc = cli(home, "run", env={"DIGESTD_ARXIV_API_URL": fake.url})
    assert proc.returncode == 1 and "lone surrogate" in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_non_ascii_sender_without_smtputf8_stops_sending_and_fails_nobody(
    tmp_path: Path, ascii_smtp: tuple[Controller, Inbox]
) -> None:
    """Every digest would fail alike: a setting to fix (exit 1), not each subscriber's
    permanent failure; nobody is failed or paused, everything stays pending."""
    controller, inbox = ascii_smtp
    home = write_instance(tmp_path / "home", [KW], [{"email": o} for o in OTHERS], timezone="UTC",
                          **{"from": "Jörg <jörg@example.org>"})
    with FakeArxiv() as fake:
        _two_days(home, fake, smtp_env(controller))
        report = run_once(home, fake, env=smtp_env(controller), now=at("2026-11-22", 21))
    assert report.fatal and "sender address" in report.fatal and "settings.from" in report.fatal
    assert report.failed == 0 and inbox.messages == []
    assert {d["status"] for d in _deliveries(home).values()} == {"pending"}


def test_settings_that_cannot_be_written_into_headers_stop_the_run_before_anything_is_queued(
    tmp_path: Path, smtp: tuple[Controller, Inbox]
) -> None:
    controller, inbox = smtp
    url = "https://papers.example.org/" + "x" * 1000
    home = write_instance(tmp_path / "home", [KW], [{"email": o} for o in OTHERS], timezone="UTC",
                          public_url=url)
    with FakeArxiv({KW: make_papers(KW, 3)}) as fake:
        proc = cli(home, "run", env={**smtp_env(controller), "DIGESTD_ARXIV_API_URL": fake.url,
                                     "DIGESTD_SECRET": "s" * 32})
    assert proc.returncode == 2, proc.stderr
    assert "public_url" in proc.stderr and "Traceback" not in proc.stderr
    assert not (home / "state" / "outbox.json").exists() and inbox.messages == []


def test_a_server_that_never_answers_the_final_dot_stops_the_run_not_each_message(tmp_path: Path) -> None:
    """No reply within DIGESTD_SMTP_DATA_TIMEOUT: that digest is unknown and sending stops
    (the server would do it to every message, for data_timeout each); the rest stays pending."""
    from faultkit import two_keyword_home
    from smtpfaults import Faults, FaultServer

    subs = [{"email": f"s{i}@example.org"} for i in range(6)]
    home = two_keyword_home(tmp_path, subs, connections=1)
    with FakeArxiv() as fake, FaultServer(Faults(accept_delay=3.0)) as srv:
        from faultkit import day_feeds

        fake.feeds = day_feeds(1)
        run_once(home, fake, now=at("2026-11-20", 21))
        fake.feeds = day_feeds(2)
        report = run_once(home, fake, env=srv.env(DIGESTD_SMTP_DATA_TIMEOUT="0.5"), now=at("2026-11-21", 21))
    statuses = [d["status"] for d in _deliveries(home).values()]
    assert statuses.count("unknown") == 1 and statuses.count("pending") == 5, statuses
    assert report.unknown == 1 and report.pending == 5
    assert any("DIGESTD_SMTP_DATA_TIMEOUT" in m for m in report.messages), report.messages
