"""Operating digestd: `status` answers who and why, quiet days against silent queries, and
alerts to the operator once per incident (with a "resolved" note), through a real SMTP server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import Inbox, InboxHandler, at, cli, free_port, run_once, smtp_env, write_instance
from fakearxiv import FakeArxiv, Fault
from faultkit import spawn_run
from fixtures import FixturePaper, make_paper
from freezegun import freeze_time
from smtpfaults import Faults, FaultServer, make_certs

from digestd.config.load import load_config
from digestd.core.bounce_policy import Suppression, SuppressReason
from digestd.core.fields import BadRecord, is_day
from digestd.core.incidents import Condition, IncidentKind, reconcile
from digestd.core.quiet import KeywordHistory, history_from_doc, judge, silent_streak
from digestd.core.records import Cursor
from digestd.core.schedule import next_weekly
from digestd.ops import status_text
from digestd.ops.status import gather
from digestd.store.outbox import Outbox
from digestd.store.suppressions import opened

KW, OTHER = "Video Anomaly Detection", "Vision Language Model"
OPERATOR = "ops@example.org"


# --- pure: quiet days, the weekly date, incidents ------------------------------------------------

def _history(*days: tuple[str, int]) -> KeywordHistory:
    h = KeywordHistory(KW)
    for d, n in days:
        h = h.after_success(date.fromisoformat(d), n)
    return h


def test_weekend_days_do_not_count_toward_silence() -> None:
    # Mon 2026-11-23 new; Tue..Fri nothing; Sat, Sun nothing; Mon 30 nothing.
    h = _history(("2026-11-23", 3), ("2026-11-24", 0), ("2026-11-25", 0), ("2026-11-26", 0),
                 ("2026-11-27", 0), ("2026-11-28", 0), ("2026-11-29", 0))
    assert silent_streak(h) == 4  # the weekend is skipped, not counted
    assert not judge(h, date(2026, 11, 29), 5).silent
    h = h.after_success(date(2026, 11, 30), 0)
    verdict = judge(h, date(2026, 11, 30), 5)
    assert verdict.silent and verdict.streak == 5 and "check the query" in (verdict.note or "")
    assert not judge(h.after_success(date(2026, 12, 1), 1), date(2026, 12, 1), 5).silent


def test_a_quiet_weekend_is_normal() -> None:
    h = _history(("2026-11-27", 4), ("2026-11-28", 0))
    verdict = judge(h, date(2026, 11, 28), 5)  # Saturday, nothing new
    assert not verdict.silent and "weekend is normal" in (verdict.note or "")
    assert judge(h, date(2026, 11, 27), 5).note is None


def test_runs_on_one_day_add_up_and_old_days_drop_out() -> None:
    h = _history(("2026-10-01", 1), ("2026-11-23", 0), ("2026-11-23", 2))
    assert h.days == (("2026-11-23", 2),)


def test_history_records_are_checked() -> None:
    good = _history(("2026-11-23", 1)).after_failure()
    assert history_from_doc(good.to_doc()) == good
    bad: object
    for bad in ({"keyword": KW, "days": [["2026-11-23", -1]]}, {"keyword": KW, "days": [["23/11", 1]]},
                {"keyword": KW, "days": "x"}, {"days": []}):
        with pytest.raises(BadRecord):
            history_from_doc(bad)


def test_next_weekly_digest_date() -> None:
    monday = "monday"
    assert next_weekly("2026-11-23", date(2026, 11, 25), monday) == date(2026, 11, 30)
    assert next_weekly(None, date(2026, 11, 23), monday) == date(2026, 11, 30)  # new: next week
    assert next_weekly("2026-11-16", date(2026, 11, 24), monday) == date(2026, 11, 24)  # missed: now


def test_an_incident_is_reported_once_and_resolved_once() -> None:
    c = Condition(IncidentKind.KEYWORD_FAILING, KW, "failed twice")
    first = reconcile({}, [c], "2026-11-23T12:00:00Z")
    assert [i.key for i in first.to_report] == [c.key] and not first.resolved
    told = {i.key: replace(i, notified=True) for i in first.open}
    again = reconcile(told, [c], "2026-11-24T12:00:00Z")
    assert not again.to_report and again.open[0].opened == "2026-11-23T12:00:00Z"
    cleared = reconcile(told, [], "2026-11-25T12:00:00Z")
    assert not cleared.open and [i.key for i in cleared.resolved] == [c.key]
    untold = reconcile({c.key: first.open[0]}, [], "x").resolved  # the opening never reached them
    assert [i.notified for i in untold] == [False]


# --- end to end ----------------------------------------------------------------------------------

def _papers(kw: str, day: str, first: int, n: int) -> list[FixturePaper]:
    return [make_paper(first + k, kw, day, time=f"{20 - k:02d}:00:00") for k in range(n)]


def test_status_answers_who_and_why(tmp_path: Path, smtp: tuple[Controller, Inbox]) -> None:
    controller, inbox = smtp
    inbox.refuse_rcpt["gone@example.org"] = "550 5.1.1 <gone@example.org>: user unknown"
    inbox.refuse_rcpt["later@example.org"] = "451 4.2.0 mailbox busy, try later"
    home = write_instance(
        tmp_path, [KW],
        [{"email": "ok@example.org"}, {"email": "gone@example.org"}, {"email": "later@example.org"},
         {"email": "week@example.org", "frequency": "weekly"},
         {"email": "rest@example.org", "status": "paused"}],
        timezone="UTC", weekly_day="monday", pause_after_failures=1,
    )
    env = smtp_env(controller, DIGESTD_SMTP_RETRIES="0")
    with FakeArxiv({KW: _papers(KW, "2026-11-24", 100, 3)}) as fake:
        run_once(home, fake, env=env, now=at("2026-11-24"))  # baseline
        fake.feeds[KW] = _papers(KW, "2026-11-25", 200, 2) + fake.feeds[KW]
        run_once(home, fake, env=env, now=at("2026-11-25"))
    with freeze_time("2026-11-25T18:00:00Z"):
        info = gather(load_config(home, env), None).to_json()
    assert [(w["email"], w["attempts"], w["age_hours"]) for w in info["pending"]] == [
        ("later@example.org", 1, 6.0)]
    assert "451" in info["pending"][0]["last_error"]
    assert [(f["email"], f["status"]) for f in info["failed"]] == [("gone@example.org", "failed")]
    assert "550" in info["failed"][0]["error"]
    assert info["weekly"] == [{"email": "week@example.org", "next_digest": "2026-11-30"}]
    assert info["paused"][0] == {"email": "rest@example.org", "reason": "paused in subscribers.yaml",
                                 "since": None}
    (gone,) = info["paused"][1:]  # paused by digestd after its permanent failure, with the day
    assert gone["email"] == "gone@example.org" and "550" in gone["reason"] and is_day(gone["since"])
    assert info["keywords"][0]["last_success"].startswith("2026-11-25")
    assert info["keywords"][0]["silent"] is False and info["announcement_day"] is True
    assert "suppressed" in info and "last_bounce_check" in info

    proc = cli(home, "status", "--json", env=env)  # the real command, with the real clock
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [f["email"] for f in doc["last_run_failed"]] == ["gone@example.org"]
    assert "user unknown" in doc["last_run_failed"][0]["error"]
    text = cli(home, "status", env=env).stdout
    assert "later@example.org: digest of 2026-11-25" in text and "1 attempt(s)" in text
    assert "failed on the last run" in text and "user unknown" in text
    assert "week@example.org: 2026-11-30" in text


def test_silent_keyword_flagged_and_alerted_once(tmp_path: Path, smtp: tuple[Controller, Inbox]) -> None:
    controller, inbox = smtp
    home = write_instance(tmp_path, [KW, OTHER], [{"email": "a@example.org"}], timezone="UTC",
                          alert_to=OPERATOR, silent_days=3)
    env = smtp_env(controller)
    feeds = {KW: _papers(KW, "2026-11-19", 100, 3), OTHER: _papers(OTHER, "2026-11-19", 500, 3)}
    n = 600
    with FakeArxiv(feeds) as fake:
        start = date(2026, 11, 19)  # Thursday: baseline
        for i in range(8):  # Thu .. Thu; OTHER gets a paper every day, KW never
            day = (start + timedelta(days=i)).isoformat()
            if i:
                fake.feeds[OTHER] = _papers(OTHER, day, n, 1) + fake.feeds[OTHER]
                n += 1
            run_once(home, fake, env=env, now=at(day))
            cfg = load_config(home, env)
            with freeze_time(f"{day}T13:00:00Z"):
                kws = {k["name"]: k for k in gather(cfg, None).to_json()["keywords"]}
            alerts = inbox.to(OPERATOR)
            # Fri, Sat, Sun, Mon, Tue: the third announcement day with nothing new is Tuesday
            assert len(alerts) == (0 if day < "2026-11-24" else 1), day
            assert kws[KW]["silent"] is (day >= "2026-11-24"), day
            if day in ("2026-11-21", "2026-11-22"):
                assert "weekend is normal" in kws[KW]["note"]
        assert kws[KW]["silent"] and not kws[OTHER]["silent"]
    assert len(alerts) == 1  # Tuesday opened it; Wednesday and Thursday did not repeat it
    body = alerts[0].get_content()
    assert "Video Anomaly Detection" in body and "check its query" in body
    assert alerts[0]["Auto-Submitted"] == "auto-generated"


def test_failing_keyword_alert_and_resolved_note(tmp_path: Path, smtp: tuple[Controller, Inbox]) -> None:
    controller, inbox = smtp
    home = write_instance(tmp_path, [KW], [{"email": "a@example.org"}], timezone="UTC", alert_to=OPERATOR)
    env = smtp_env(controller)
    with FakeArxiv({KW: _papers(KW, "2026-11-23", 100, 3)}) as fake:
        run_once(home, fake, env=env, now=at("2026-11-23"))
        fake.faults[KW] = [Fault.status(400)] * 30
        run_once(home, fake, env=env, now=at("2026-11-24"))
        assert not inbox.to(OPERATOR)  # one failure is no incident
        run_once(home, fake, env=env, now=at("2026-11-25"))
        assert len(inbox.to(OPERATOR)) == 1
        run_once(home, fake, env=env, now=at("2026-11-26"))
        assert len(inbox.to(OPERATOR)) == 1  # once per incident, not once per run
        status = json.loads(cli(home, "status", "--json", env=env).stdout)
        assert [i["kind"] for i in status["incidents"]] == ["keyword-failing"]
        fake.faults[KW] = []
        fake.feeds[KW] = _papers(KW, "2026-11-27", 200, 1) + fake.feeds[KW]
        run_once(home, fake, env=env, now=at("2026-11-27"))
    mails = inbox.to(OPERATOR)
    assert len(mails) == 2
    assert "failed on 2 runs in a row" in mails[0].get_content()
    assert "resolved" in str(mails[1]["Subject"]) and KW in mails[1].get_content()
    assert not json.loads(cli(home, "status", "--json", env=env).stdout)["incidents"]


def test_status_json_lists_every_pending_delivery_the_text_points_to(
    tmp_path: Path, smtp: tuple[Controller, Inbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    controller, inbox = smtp
    busy = [f"busy{n}@example.org" for n in range(3)]
    for addr in busy:
        inbox.refuse_rcpt[addr] = "451 4.2.0 mailbox busy, try later"
    home = write_instance(tmp_path, [KW], [{"email": a} for a in busy], timezone="UTC")
    env = smtp_env(controller, DIGESTD_SMTP_RETRIES="0")
    with FakeArxiv({KW: _papers(KW, "2026-11-24", 100, 3)}) as fake:
        run_once(home, fake, env=env, now=at("2026-11-24"))
        fake.feeds[KW] = _papers(KW, "2026-11-25", 200, 2) + fake.feeds[KW]
        run_once(home, fake, env=env, now=at("2026-11-25"))
    monkeypatch.setattr(status_text, "SHOWN_PENDING", 1)
    info = gather(load_config(home, env), None)
    assert "  ... and 2 more (digestd status --json lists them)" in info.lines()
    assert sorted(w["email"] for w in info.to_json()["pending"]) == busy


def test_an_alert_goes_at_most_once_even_when_the_run_is_killed_as_it_goes(tmp_path: Path) -> None:
    """The server takes the alert and the run is SIGKILLed before it hears the 250 (so before it
    can write ops.json): the next run must not mail the same alert again."""
    inbox = Inbox()
    victim: list[subprocess.Popen[str]] = []

    class KillOnAlert(InboxHandler):
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            reply = await super().handle_DATA(server, session, envelope)
            if OPERATOR in envelope.rcpt_tos and victim:
                os.kill(victim[0].pid, signal.SIGKILL)
                victim[0].wait()
            return reply

    controller = Controller(KillOnAlert(inbox), hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        home = write_instance(tmp_path, [KW], [{"email": "a@example.org"}], timezone="UTC", alert_to=OPERATOR)
        env = smtp_env(controller)
        with FakeArxiv({KW: _papers(KW, "2026-11-23", 100, 3)}) as fake:
            run_once(home, fake, env=env, now=at("2026-11-23"))
            fake.faults[KW] = [Fault.status(400)] * 60
            run_once(home, fake, env=env, now=at("2026-11-24"))
            victim.append(spawn_run(home, fake, env))  # the second failure in a row: the alert
            victim[0].wait(timeout=60)
            assert victim[0].returncode == -signal.SIGKILL and len(inbox.to(OPERATOR)) == 1
            run_once(home, fake, env=env, now=at("2026-12-01"))
            assert len(inbox.to(OPERATOR)) == 1  # not mailed a second time
            [incident] = json.loads(cli(home, "status", "--json", env=env).stdout)["incidents"]
            assert incident["kind"] == "keyword-failing" and incident["mailing"] is True
            fake.faults[KW] = []
            fake.feeds[KW] = _papers(KW, "2026-12-02", 200, 1) + fake.feeds[KW]
            run_once(home, fake, env=env, now=at("2026-12-02"))
    finally:
        controller.stop()
    mails = inbox.to(OPERATOR)
    assert len(mails) == 2 and "resolved" in str(mails[1]["Subject"])
    assert "may not have reached you" in mails[1].get_content()


def test_pending_for_a_day_is_alerted(tmp_path: Path, smtp: tuple[Controller, Inbox]) -> None:
    controller, inbox = smtp
    inbox.refuse_rcpt["slow@example.org"] = "451 4.3.0 try again later"
    home = write_instance(tmp_path, [KW], [{"email": "slow@example.org"}], timezone="UTC",
                          alert_to=OPERATOR)
    env = smtp_env(controller, DIGESTD_SMTP_RETRIES="0")
    with FakeArxiv({KW: _papers(KW, "2026-11-23", 100, 3)}) as fake:
        run_once(home, fake, env=env, now=at("2026-11-23"))
        fake.feeds[KW] = _papers(KW, "2026-11-24", 200, 1) + fake.feeds[KW]
        run_once(home, fake, env=env, now=at("2026-11-24", 8))
        assert not inbox.to(OPERATOR)
        run_once(home, fake, env=env, now=at("2026-11-25", 9))  # 25 hours later, still refused
        assert len(inbox.to(OPERATOR)) == 1
        assert "pending for over 24 hours" in inbox.to(OPERATOR)[0].get_content()
        del inbox.refuse_rcpt["slow@example.org"]
        run_once(home, fake, env=env, now=at("2026-11-26", 9))
    assert len(inbox.to("slow@example.org")) == 1
    assert "resolved" in str(inbox.to(OPERATOR)[-1]["Subject"])


def test_smtp_login_failure_is_an_incident_and_its_end_is_mailed(tmp_path: Path) -> None:
    """The alert goes through the same login that fails, so it cannot reach the operator then;
    it stays open (unmailed) and the note that it was resolved arrives with the next good run."""
    certs = make_certs(tmp_path / "certs")
    home = write_instance(tmp_path / "home", [KW], [{"email": "a@example.org"}], timezone="UTC",
                          alert_to=OPERATOR)
    with FakeArxiv({KW: _papers(KW, "2026-11-23", 100, 3)}) as fake, \
            FaultServer(Faults(refuse_auth=True), tls=certs, require_starttls=True,
                        auth=("digest", "s3cret-pw")) as srv:
        env = srv.env(DIGESTD_SMTP_USERNAME="digest", DIGESTD_SMTP_PASSWORD="s3cret-pw")
        run_once(home, fake, env=env, now=at("2026-11-23"))
        fake.feeds[KW] = _papers(KW, "2026-11-24", 200, 1) + fake.feeds[KW]
        assert run_once(home, fake, env=env, now=at("2026-11-24")).fatal
        status = json.loads(cli(home, "status", "--json", env=env).stdout)
        assert [(i["kind"], i["notified"]) for i in status["incidents"]] == [("smtp-fatal", False)]
        assert "535" in status["incidents"][0]["detail"]
        assert "s3cret-pw" not in json.dumps(status)
        srv.faults.refuse_auth = False  # the operator fixed the account
        run_once(home, fake, env=env, now=at("2026-11-25"))
        alerts = [m for m in srv.messages if m.rcpt == OPERATOR]
    assert len(alerts) == 1 and b"could not be mailed while it lasted" in alerts[0].data
    assert b"resolved" in alerts[0].data and b"535" in alerts[0].data
    assert {m.rcpt for m in srv.messages} == {OPERATOR, "a@example.org"}


def test_status_shows_suppressed_and_paused_with_reason_and_date(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW], [{"email": "dead@example.org"}, {"email": "bad@example.org"}],
                          timezone="UTC", pause_after_failures=1)
    with opened(home / "state" / "suppressions.json") as s:
        s.suppress(Suppression("dead@example.org", SuppressReason.BOUNCE, "5.1.1 user unknown",
                               "2026-11-20T08:00:00Z"))
        s.set_last_check({"time": "2026-11-25T06:00:00Z"})
    outbox = Outbox(home / "state" / "outbox.json")
    outbox.save_cursors({"bad@example.org": Cursor(paused="paused after 1 permanent failures: 550",
                                                   paused_on="2026-11-24")})
    outbox.close()
    info = gather(load_config(home, {}), None).to_json()
    assert info["suppressed"] == [{"email": "dead@example.org", "reason": "bounce: 5.1.1 user unknown",
                                   "since": "2026-11-20T08:00:00Z"}]
    assert info["last_bounce_check"] == "2026-11-25T06:00:00Z"
    assert info["paused"] == [{"email": "bad@example.org", "reason": "paused after 1 permanent failures: 550",
                               "since": "2026-11-24"}]
    text = cli(home, "status").stdout
    assert "dead@example.org: bounce: 5.1.1 user unknown (since 2026-11-20T08:00:00Z)" in text
    assert "(since 2026-11-24)" in text and "last bounce check: 2026-11-25T06:00:00Z" in text


def test_a_broken_ops_json_does_not_hide_the_rest_of_status(tmp_path: Path) -> None:
    """ops.json is the secondary file; before, a broken one made `status` exit 1 showing nothing."""
    home = write_instance(tmp_path, ["Vision"], [{"email": "a@example.org"}], timezone="UTC")
    with FakeArxiv({"Vision": [make_paper(1, "Vision", "2026-11-19")]}) as fake:
        run_once(home, fake, now=at("2026-11-19"))
    (home / "state" / "ops.json").write_text('{"history": [')
    text = cli(home, "status")
    assert text.returncode == 0, text.stderr
    assert "last run: " in text.stdout and "Vision" in text.stdout
    assert "ops.json" in text.stdout and "open problems and quiet-keyword counts are not shown" in text.stdout
    doc = json.loads(cli(home, "status", "--json").stdout)
    assert "ops.json" in doc["ops_problem"] and doc["last_run"] is not None
    assert (home / "state" / "ops.json").read_text() == '{"history": ['  # status moves nothing
