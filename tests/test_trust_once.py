"""A paper reaches a subscriber at most once, ever: across keywords, across a catch-up run after
a failed keyword, across a daily/weekly change and across re-queued deliveries (issue "Trust",
point 6). Simulated days against a fake arXiv and a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from conftest import Inbox, at, free_port, run_once, smtp_env, write_instance
from fakearxiv import FakeArxiv, Fault
from test_weekly import A, B, World, ids_of

from digestd.config import subscribers as subscriptions
from digestd.core.models import Frequency


def _received(inbox: Inbox) -> Counter[tuple[str, str]]:
    """(recipient, paper id) -> how many digests carried it."""
    got: Counter[tuple[str, str]] = Counter()
    for m in inbox.messages:
        for pid in ids_of(m):
            got[(str(m["To"]).lower(), pid)] += 1
    return got


def test_a_paper_caught_up_under_a_second_keyword_is_not_mailed_again(
    tmp_path: Path, smtp: tuple[object, Inbox]
) -> None:
    """Day 2: a paper matches A and B, but B's fetch fails, so it is mailed under A. Day 3:
    B catches up and stores it as new for B. Who follows both must not get it again; who
    follows only B gets it now."""
    controller, inbox = smtp
    subs = [{"email": "both@example.org"}, {"email": "a@example.org", "keywords": [A]},
            {"email": "b@example.org", "keywords": [B]}]
    got, shared = _switch_scenario(tmp_path, inbox, smtp_env(controller), subs,  # type: ignore[arg-type]
                                   lambda home: None)
    assert got[("both@example.org", shared)] == 1
    assert got[("a@example.org", shared)] == 1
    assert got[("b@example.org", shared)] == 1  # never mailed to b before: b gets it
    assert max(got.values()) == 1, [k for k, n in got.items() if n > 1]


def test_at_most_once_across_frequency_changes_outages_and_keyword_changes(
    tmp_path: Path, smtp: tuple[object, Inbox]
) -> None:
    controller, inbox = smtp
    home = write_instance(
        tmp_path, [A, B],
        [{"email": "carol@example.org", "keywords": [A]}, {"email": "dan@example.org"}],
        timezone="UTC", weekly_day="monday", max_results=6,
    )
    good = smtp_env(controller)  # type: ignore[arg-type]
    down = smtp_env(controller, DIGESTD_SMTP_PORT=str(free_port()))  # type: ignore[arg-type]
    world = World()
    world.publish("2026-11-19", {A: 4, B: 4})
    with FakeArxiv() as fake:
        def day(d: str, env: dict[str, str] = good, *, b_fails: bool = False) -> None:
            fake.feeds = {k: list(v) for k, v in world.feeds.items()}
            if b_fails:
                fake.faults[B] = [Fault.status(503), Fault.status(503)]
            run_once(home, fake, env=env, now=at(d, 21))

        day("2026-11-19")
        for d, shared in (("2026-11-20", True), ("2026-11-21", True)):
            world.publish(d, {A: 2, B: 2}, shared=shared)
            day(d, b_fails=d == "2026-11-20")
        subscriptions.set_subscriber(home, "carol@example.org", None, Frequency.WEEKLY)
        # carol now follows B as well: B's papers from now on, and never one she had under A
        subscriptions.set_subscriber(home, "carol@example.org", [A, B], None)
        for d in ("2026-11-22", "2026-11-23", "2026-11-24"):
            world.publish(d, {A: 1, B: 1}, shared=True)
            day(d, down if d == "2026-11-23" else good)  # Monday: SMTP down, digests stay pending
        subscriptions.set_subscriber(home, "carol@example.org", None, Frequency.DAILY)
        for d in ("2026-11-25", "2026-11-26"):
            world.publish(d, {A: 1, B: 1}, shared=True)
            day(d)

    got = _received(inbox)
    assert max(got.values()) == 1, [k for k, n in got.items() if n > 1]
    for who in ("carol@example.org", "dan@example.org"):
        mine = {pid for (r, pid) in got if r == who}
        wanted_a = world.between("2026-11-20", "2026-11-26", (A,))
        assert wanted_a <= mine, f"{who} missed {sorted(wanted_a - mine)}"
    dan = {pid for (r, pid) in got if r == "dan@example.org"}
    assert world.between("2026-11-20", "2026-11-26") <= dan


def _switch_scenario(tmp_path: Path, inbox: Inbox, env: dict[str, str], subs: list[dict[str, object]],
                     change: object) -> tuple[Counter[tuple[str, str]], str]:
    """Day 2: a paper matches A and B, B's fetch fails, the paper is mailed under A. Then
    `change(home)` (a subscriber switches keywords, or A leaves the configuration). Day 3: B
    catches up and stores that paper as new for B."""
    home = write_instance(tmp_path, [A, B], subs, timezone="UTC")
    world = World()
    world.publish("2026-11-19", {A: 4, B: 4})
    with FakeArxiv() as fake:
        def day(d: str) -> None:
            fake.feeds = {k: list(v) for k, v in world.feeds.items()}
            run_once(home, fake, env=env, now=at(d, 21))

        day("2026-11-19")
        world.publish("2026-11-20", {A: 1, B: 1}, shared=True)
        shared = next(i for i in world.added["2026-11-20"][A] if i in world.added["2026-11-20"][B])
        fake.faults[B] = [Fault.status(503), Fault.status(503)]
        day("2026-11-20")
        change(home)  # type: ignore[operator]
        world.publish("2026-11-21", {A: 1, B: 1})
        day("2026-11-21")
    return _received(inbox), shared


def test_switching_from_a_to_b_does_not_mail_a_paper_again(tmp_path: Path, smtp: tuple[object, Inbox]) -> None:
    controller, inbox = smtp
    got, shared = _switch_scenario(
        tmp_path, inbox, smtp_env(controller),  # type: ignore[arg-type]
        [{"email": "carol@example.org", "keywords": [A]}],
        lambda home: subscriptions.set_subscriber(home, "carol@example.org", [B], None),
    )
    assert got[("carol@example.org", shared)] == 1
    assert max(got.values()) == 1


def test_a_keyword_removed_from_the_configuration_still_counts_as_mailed(
    tmp_path: Path, smtp: tuple[object, Inbox]
) -> None:
    controller, inbox = smtp
    got, shared = _switch_scenario(
        tmp_path, inbox, smtp_env(controller),  # type: ignore[arg-type]
        [{"email": "dan@example.org"}],
        lambda home: subscriptions.remove_keyword(home, A),
    )
    assert got[("dan@example.org", shared)] == 1
    assert max(got.values()) == 1
