"""Weekly digests over simulated weeks: one digest per week with everything new since the last,
nothing lost and nothing repeated, through a failed fetch, a day without a run, an SMTP outage,
a frequency change, and a state that keeps only `max_results` papers per keyword.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

from conftest import Inbox, at, free_port, run_once, smtp_env, write_instance
from fakearxiv import FakeArxiv, Fault
from fixtures import FixturePaper, make_paper

from digestd.config import subscribers as subscriptions
from digestd.config.load import load_config
from digestd.core.models import Frequency, Subscriber
from digestd.core.plan import is_due, last_weekly_day
from digestd.core.records import Cursor

A, B = "Video Anomaly Detection", "Vision Language Model"


def ids_of(msg: object) -> list[str]:
    body = msg.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    return re.findall(r"^\[(\d{4}\.\d{5})\]: ", body, re.M)


def test_weekly_due_logic() -> None:
    monday = date(2026, 11, 23)
    assert monday.strftime("%A") == "Monday"
    assert last_weekly_day(monday, "monday") == monday
    assert last_weekly_day(monday + timedelta(days=6), "monday") == monday
    assert last_weekly_day(monday, "friday") == monday - timedelta(days=3)
    weekly = Subscriber("w@example.org", frequency=Frequency.WEEKLY)
    daily = Subscriber("d@example.org")
    cursor = Cursor(last_queued="2026-11-20")  # a Friday
    assert not is_due(weekly, cursor, date(2026, 11, 22), "monday")  # Sunday: not yet
    assert is_due(weekly, cursor, monday, "monday")
    assert is_due(weekly, cursor, monday + timedelta(days=1), "monday")  # Monday's run failed: Tuesday
    assert not is_due(weekly, Cursor(last_queued="2026-11-23"), monday + timedelta(days=6), "monday")
    assert is_due(daily, Cursor(last_queued="2026-11-23"), monday, "monday")


class World:
    """A fake arXiv whose keywords get new papers every simulated day."""

    def __init__(self) -> None:
        self.next_id = 1000
        self.feeds: dict[str, list[FixturePaper]] = {A: [], B: []}
        self.added: dict[str, dict[str, list[str]]] = {}  # day -> keyword -> ids that day

    def publish(self, day: str, per_keyword: dict[str, int], shared: bool = False) -> None:
        new: dict[str, list[FixturePaper]] = {A: [], B: []}
        for kw, n in per_keyword.items():
            for k in range(n):
                new[kw].append(make_paper(self.next_id, kw, day, time=f"{20 - k:02d}:00:00"))
                self.next_id += 1
        if shared:  # one paper matching both keywords
            p = make_paper(self.next_id, A, day, time="22:00:00", title=f"{A} meets {B}")
            self.next_id += 1
            for kw in (A, B):
                new[kw].insert(0, p)
        for kw, papers in new.items():
            self.feeds[kw][:0] = papers  # newest first, as arXiv sorts them
        self.added[day] = {kw: [p.id for p in papers] for kw, papers in new.items()}

    def between(self, first: str, last: str, keywords: tuple[str, ...] = (A, B)) -> set[str]:
        return {i for day, kws in self.added.items() if first <= day <= last for kw in keywords for i in kws[kw]}


def test_weekly_and_daily_over_two_weeks(tmp_path: Path, smtp: tuple[object, Inbox]) -> None:
    controller, inbox = smtp
    home = write_instance(
        tmp_path, [A, B],
        [{"email": "alice@example.org", "keywords": [A]},  # daily
         {"email": "bob@example.org", "frequency": "weekly"},  # both keywords, weekly
         {"email": "carol@example.org"}],  # daily, switches to weekly on Wednesday
        timezone="UTC", max_results=4, weekly_day="monday",
    )
    good = smtp_env(controller)
    down = smtp_env(controller, DIGESTD_SMTP_PORT=str(free_port()))  # nothing listens there
    world = World()
    world.publish("2026-11-19", {A: 4, B: 4})
    sent_on: dict[str, dict[str, list[list[str]]]] = {}  # day -> address -> digests (ids)

    def day(d: str, env: dict[str, str] = good) -> None:
        fake.feeds = {k: list(v) for k, v in world.feeds.items()}
        before = len(inbox.messages)
        run_once(home, fake, env=env, now=at(d, 21))
        for m in inbox.messages[before:]:
            sent_on.setdefault(d, {}).setdefault(str(m["To"]), []).append(ids_of(m))

    with FakeArxiv() as fake:
        day("2026-11-19")  # Thursday: baseline, nothing mailed
        world.publish("2026-11-20", {A: 2, B: 1})
        day("2026-11-20")
        world.publish("2026-11-21", {A: 2, B: 1}, shared=True)
        day("2026-11-21")
        world.publish("2026-11-22", {A: 2, B: 1})
        fake.faults[B] = [Fault.status(503), Fault.status(503)]  # Sunday: B's fetch fails
        day("2026-11-22")
        world.publish("2026-11-23", {A: 1, B: 1})  # Monday: no run at all (machine off)
        world.publish("2026-11-24", {A: 1, B: 1})
        day("2026-11-24")  # Tuesday: the weekly digest that Monday should have sent
        assert sent_on["2026-11-24"]["bob@example.org"] == [sent_on["2026-11-24"]["bob@example.org"][0]]
        subscriptions.set_subscriber(home, "carol@example.org", None, Frequency.WEEKLY)
        for d in ("2026-11-25", "2026-11-26", "2026-11-27", "2026-11-28", "2026-11-29"):
            world.publish(d, {A: 2, B: 1})
            day(d)
        world.publish("2026-11-30", {A: 1, B: 1})
        day("2026-11-30", env=down)  # Monday: the SMTP server is down, digests stay pending
        world.publish("2026-12-01", {A: 1, B: 1})
        day("2026-12-01")  # Tuesday: pending ones go first; bob and carol are not due again

    bob = {d: v["bob@example.org"] for d, v in sent_on.items() if "bob@example.org" in v}
    assert list(bob) == ["2026-11-24", "2026-12-01"]  # one a week, Monday's late by a day each time
    week1, week2 = bob["2026-11-24"][0], bob["2026-12-01"][0]
    assert len(bob["2026-11-24"]) == len(bob["2026-12-01"]) == 1
    assert len(week1) == len(set(week1)) and len(week2) == len(set(week2))  # each paper once
    assert set(week1) == world.between("2026-11-20", "2026-11-24")  # incl. Sunday's failed B papers
    assert set(week2) == world.between("2026-11-25", "2026-11-30")
    assert not set(week1) & set(week2)
    # Twelve A papers in week two, with max_results 4: kept in the state for bob until sent.
    assert len(world.between("2026-11-25", "2026-11-30", (A,))) == 11 > 4

    alice = [ids for v in sent_on.values() for ids in v.get("alice@example.org", [])]
    flat = [i for ids in alice for i in ids]
    assert len(flat) == len(set(flat)) and set(flat) == world.between("2026-11-20", "2026-12-01", (A,))
    assert "2026-11-30" not in sent_on  # nothing got through on the day the server was down

    carol = {d: v["carol@example.org"] for d, v in sent_on.items() if "carol@example.org" in v}
    assert list(carol) == ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-24", "2026-12-01"]
    flat = [i for ids in carol.values() for d in ids for i in d]
    assert len(flat) == len(set(flat)) and set(flat) == world.between("2026-11-20", "2026-11-30")
    assert set(carol["2026-12-01"][0]) == world.between("2026-11-25", "2026-11-30")

    # The paper in both of bob's keywords: once, under the first, naming the other.
    bob_msgs = inbox.to("bob@example.org")
    shared = bob_msgs[0].get_body(("plain",)).get_content()
    assert f"{A} meets {B}" in shared and f"Also in: {B}" in shared
    assert str(bob_msgs[0]["Subject"]).startswith("Daily Papers week of 2026-11-18: ")  # weekly (issue 10)
    assert load_config(home, {}).subscribers[2].frequency is Frequency.WEEKLY


def test_new_weekly_subscriber_starts_with_the_next_week(tmp_path: Path, smtp: tuple[object, Inbox]) -> None:
    controller, inbox = smtp
    home = write_instance(tmp_path, [A], [], timezone="UTC", weekly_day="wednesday")
    env = smtp_env(controller)
    world = World()
    world.publish("2026-11-19", {A: 3})
    with FakeArxiv() as fake:
        fake.feeds = dict(world.feeds)
        run_once(home, fake, env=env, now=at("2026-11-19"))
        subscriptions.add_subscriber(home, "dora@example.org", None, [], Frequency.WEEKLY)
        for d in ("2026-11-20", "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"):
            world.publish(d, {A: 1})
            fake.feeds = {k: list(v) for k, v in world.feeds.items()}
            run_once(home, fake, env=env, now=at(d))
            if d < "2026-11-25":
                assert inbox.messages == [], d  # not before the first Wednesday
    (msg,) = inbox.messages
    assert str(msg["Subject"]).startswith("Daily Papers week of 2026-11-19: 4 new")  # issue 10: it says so
    assert set(ids_of(msg)) == world.between("2026-11-20", "2026-11-25", (A,))
