"""The kill test: SIGKILL the real `digestd run` at seeded random moments, over several days.

A slow SMTP server (each message takes ACCEPT_DELAY to accept) and 40 subscribers make a
run last long enough to be killed while it fetches, stores, queues, sends and records. Each
day the fake arXiv gains new papers; the day's runs are killed a few times, then one run
goes to completion. In the end every subscriber must have received every addition of their
keywords, each paper under exactly one Message-ID. The only duplicate allowed is the
unavoidable one: the server accepted a message within a moment of the kill, before the
ledger recorded it; the resend carries the same Message-ID and the same papers. A connection
waits until each acceptance is durable before it sends the next message, so a kill repeats
at most one digest per connection.

DIGESTD_KILL_SEED=N replays another schedule.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fakearxiv import FakeArxiv
from faultkit import KW_A, KW_B, additions, day_feeds, run_cli, spawn_run, two_keyword_home
from smtpfaults import Faults, FaultServer, Received

SEED = int(os.environ.get("DIGESTD_KILL_SEED", "20261122"))
SUBSCRIBERS = 40
CONNECTIONS = 4
ACCEPT_DELAY = 0.03
TOTAL_KILLS = 24
MIN_DAYS = 5  # day 1 is the baseline; later days bring new papers
# Kills that land while the run sends. Days go on until there are this many: on a busy
# machine more of the kills at a random time land in start-up, and a count of kills alone
# would then miss the sending phase (8 of 25 in one loaded run).
MIN_SEND_KILLS = 10
KILLS_ON_DAY_1 = 2
KILLS_PER_DAY = 5  # planned; a run that finishes before its kill ends the day early
# A copy the server accepted after the kill: the dead client had already sent its DATA.
AFTER_KILL = ACCEPT_DELAY + 0.5
# From this day on the ledger holds 14 days' worth of old deliveries of a big instance (over
# 1 MB): outcomes still go to the journal, and the end-of-run rewrite takes longer.
BIG_LEDGER_FROM = 4
BIG_LEDGER_BYTES = int((1 << 20) * 1.25)


def followed(i: int) -> list[str]:
    return [[KW_A], [KW_B], [KW_A, KW_B]][i % 3]


def check_files_after_kill(home: Path) -> int:
    """Whatever the moment of the kill, every file parses; returns how many temp files a
    write cut short left behind (harmless: the next run must not mind them)."""
    for f in (home / "state").glob("*.json"):
        json.loads(f.read_bytes())  # raises on a half-written file
    assert not list((home / "state").glob("*.corrupt-*"))
    readme = home / "README.md"
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        assert f"## {KW_A}\n" in text and f"## {KW_B}\n" in text and text.endswith("\n")
    return len(list(home.glob("**/.*.tmp")))


def pad_ledger(outbox: Path) -> None:
    """Add sent deliveries of other (past) subscribers until outbox.json is big; between runs."""
    data = json.loads(outbox.read_bytes())
    docs = data.setdefault("deliveries", {})
    first = max(map(int, docs), default=0) + 1
    today = datetime.now(UTC).date().isoformat()  # recent: a run does not prune them
    size, i = len(outbox.read_bytes()), 0
    while size < BIG_LEDGER_BYTES:
        doc = {"email": f"past{i}@example.org", "name": None, "run": 0, "date": today,
               "created": f"{today}T00:00:00Z", "papers": {KW_A: [f"2611.{90000 + i % 9000:05d}"]},
               "message_id": f"<digest.{today}.0.past{i}@example.org>", "status": "sent",
               "error": None, "sent_at": f"{today}T00:00"}
        docs[str(first + i)] = doc
        size += len(json.dumps(doc)) + 10
        i += 1
    outbox.write_text(json.dumps(data), encoding="utf-8")


def repeats_per_kill(copies: dict[str, list[Received]], kills: list[float], started: float) -> dict[int, int]:
    """Each copy but the last of a Message-ID was followed by a resend: attribute it to the
    first kill at or after its acceptance (or just before it: the server finishing a DATA
    the dead client had sent). A resend with no kill to explain it fails the test."""
    per_kill: dict[int, int] = defaultdict(int)
    for mid, ms in copies.items():
        assert len({m.rcpt for m in ms}) == 1 and len({frozenset(m.paper_ids()) for m in ms}) == 1, mid
        for copy in ms[:-1]:
            after = [k for k, t in enumerate(kills) if copy.at <= t + AFTER_KILL]
            assert after, f"{mid} was sent again, but not after a kill (accepted at {copy.at - started:.2f} s)"
            per_kill[after[0]] += 1
    return per_kill


def wanted(sub: dict[str, list[str]], day: int) -> set[str]:
    return {p for kw in sub["keywords"] for p in additions(day, kw)}


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_resends_only_within_the_window(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    subs = [{"email": f"sub{i:02d}@example.org", "keywords": followed(i)} for i in range(SUBSCRIBERS)]
    home = two_keyword_home(tmp_path, subs, connections=CONNECTIONS)
    kills: list[float] = []  # time.monotonic() of each SIGKILL
    leftovers = mid_send_kills = journals = day = 0
    started = time.monotonic()

    with FakeArxiv(day_feeds(1)) as fake, FaultServer(Faults(accept_delay=ACCEPT_DELAY)) as srv:
        env = {**srv.env(DIGESTD_SMTP_TIMEOUT="10"), "DIGESTD_ARXIV_TIMEOUT": "10"}

        def still_due(day: int) -> int:
            """Subscribers who have not yet got all of the day's papers for their keywords."""
            got: dict[str, set[str]] = defaultdict(set)
            for m in srv.messages:
                got[m.rcpt] |= m.paper_ids()
            return 0 if day == 1 else sum(1 for s in subs if not wanted(s, day) <= got[s["email"]])

        while day < MIN_DAYS or len(kills) < TOTAL_KILLS or mid_send_kills < MIN_SEND_KILLS:
            day += 1
            assert day <= 12, "the schedule keeps missing its runs"
            fake.feeds.update(day_feeds(day))
            if day == BIG_LEDGER_FROM:
                pad_ledger(home / "state" / "outbox.json")
            for _ in range(KILLS_ON_DAY_1 if day == 1 else KILLS_PER_DAY):
                before, due = len(srv.messages), still_due(day)
                proc = spawn_run(home, fake, env)
                t0 = time.monotonic()
                if due and rng.random() < 0.7:  # once the server has taken n more messages
                    n, delay = before + rng.randrange(due), rng.uniform(0, 0.05)
                else:  # at a random time: start-up, fetch, store, queue or send
                    n, delay = -1, rng.uniform(0.0, 0.9)
                while proc.poll() is None and time.monotonic() - t0 < 30:
                    if (n >= 0 and len(srv.messages) >= n) or (n < 0 and time.monotonic() - t0 >= delay):
                        break
                    time.sleep(0.002)
                if n >= 0 and proc.poll() is None:
                    time.sleep(delay)
                if proc.poll() is not None:  # it finished first: the day's work is done
                    assert proc.returncode == 0, proc.communicate()[1]
                    proc.communicate()
                    break
                kills.append(time.monotonic())
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                mid_send_kills += len(srv.messages) > before
                leftovers = max(leftovers, check_files_after_kill(home))
                journals += (home / "state" / "outbox.journal").exists()
            final = run_cli(home, fake, env)  # then a run that is left to finish
            assert final.returncode == 0, final.stderr
            assert still_due(day) == 0, f"day {day}: someone is still missing papers"
        last_day = day

    # --- every addition exactly once per subscriber, duplicates only of the allowed kind ---
    copies: dict[str, list[Received]] = defaultdict(list)
    for m in srv.messages:
        copies[m.message_id].append(m)
    per_kill = repeats_per_kill(copies, kills, started)
    for s in subs:
        digests = [ms[0].paper_ids() for ms in copies.values() if ms[0].rcpt == s["email"]]
        flat = [p for d in digests for p in d]
        expected = set().union(*(wanted(s, day) for day in range(2, last_day + 1)))
        assert len(flat) == len(set(flat)), f"{s['email']} got a paper in two different digests"
        assert set(flat) == expected, f"{s['email']} missed {sorted(expected - set(flat))}"

    bound = CONNECTIONS  # one acceptance per connection may be on the wire, not yet on disk
    print(f"\nkill test seed {SEED}: {last_day} days, {len(kills)} kills ({mid_send_kills} while sending), "
          f"{sum(per_kill.values())} resent with the same Message-ID, at most {max(per_kill.values(), default=0)} "
          f"per kill (bound {bound}), at most {leftovers} temp files left over, a ledger journal after {journals} kills, {time.monotonic() - started:.1f} s")
    assert len(kills) >= 20
    assert mid_send_kills >= MIN_SEND_KILLS  # the schedule did hit the sending phase
    assert max(per_kill.values(), default=0) <= bound


FULL_SPEED_SUBSCRIBERS = 2000
FULL_SPEED_KILLS = 6


@pytest.mark.slow
def test_sigkill_at_full_speed_repeats_at_most_one_digest_per_connection(tmp_path: Path) -> None:
    """No artificial server delay and 2,000 subscribers: the run is killed each time the
    server has taken some more messages, then left to finish. Repeats per kill stay within
    one per connection, and every subscriber ends with every paper."""
    rng = random.Random(SEED + 1)
    subs = [{"email": f"fs{i:04d}@example.org", "keywords": followed(i)} for i in range(FULL_SPEED_SUBSCRIBERS)]
    home = two_keyword_home(tmp_path, subs, connections=CONNECTIONS)
    kills: list[float] = []
    started = time.monotonic()
    with FakeArxiv(day_feeds(1)) as fake, FaultServer(Faults()) as srv:
        env = {**srv.env(DIGESTD_SMTP_TIMEOUT="30"), "DIGESTD_ARXIV_TIMEOUT": "30"}
        assert run_cli(home, fake, env, timeout=300).returncode == 0  # day 1: the baseline
        fake.feeds.update(day_feeds(2))
        for _ in range(FULL_SPEED_KILLS):
            target = len(srv.messages) + rng.randrange(50, 250)
            proc = spawn_run(home, fake, env)
            while proc.poll() is None and len(srv.messages) < target:
                time.sleep(0.001)
            if proc.poll() is not None:
                break
            kills.append(time.monotonic())
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
        final = run_cli(home, fake, env, timeout=300)
        assert final.returncode == 0, final.stderr
    copies: dict[str, list[Received]] = defaultdict(list)
    for m in srv.messages:
        copies[m.message_id].append(m)
    per_kill = repeats_per_kill(copies, kills, started)
    got: dict[str, set[str]] = defaultdict(set)
    for ms in copies.values():
        got[ms[0].rcpt] |= ms[0].paper_ids()
    for s in subs:
        assert got[s["email"]] == wanted(s, 2), s["email"]
    print(f"\nfull-speed kill test: {len(kills)} kills, repeats per kill {dict(per_kill)}, "
          f"{len(srv.messages)} messages for {FULL_SPEED_SUBSCRIBERS} subscribers")
    assert len(kills) >= 3
    assert max(per_kill.values(), default=0) <= CONNECTIONS


FULL_DISK_SCRIPT = """\
set -u
BASE=$1; H=$2; OUT=$3; PY=$4
mount -t tmpfs -o size=1m digestd-test "$H" || exit 97
cp -a "$BASE/." "$H/"
( while [ ! -e "$OUT/fill" ]; do sleep 0.01; done
  head -c 2000000 /dev/zero > "$H/filler" 2>/dev/null; touch "$OUT/filled" ) &
"$PY" -m digestd --home "$H" run >/dev/null 2>"$OUT/run1.err"; echo $? > "$OUT/run1.rc"
rm -f "$H/filler"
"$PY" -m digestd --home "$H" run >/dev/null 2>"$OUT/run2.err"; echo $? > "$OUT/run2.rc"
find "$H" -name '.*.tmp' > "$OUT/tmp"
"""


def test_a_disk_that_fills_while_sending_repeats_no_digest(tmp_path: Path) -> None:
    """The disk (a 1 MiB tmpfs in a private mount namespace) fills up just as the first digest
    goes out, before its acceptance reaches outbox.journal, while the other connection has one
    in flight. The run stops sending with one sentence; the next run, with space again, sends
    the rest: every subscriber gets the day's papers once. Before, an acceptance that met the
    full disk was not recorded, nor was the other connection's (the run was torn down under
    it), and the next run sent them again."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    subs = [{"email": f"full{i}@example.org", "keywords": followed(i)} for i in range(6)]
    base = two_keyword_home(tmp_path, subs, connections=2)
    home, out = tmp_path / "mnt", tmp_path / "out"
    home.mkdir()
    out.mkdir()
    with FakeArxiv(day_feeds(1)) as fake, FaultServer(Faults()) as srv:
        env = srv.env()
        assert run_cli(base, fake, env).returncode == 0  # the baseline, on the ordinary disk
        srv.faults.accept_delay = 0.3  # both connections have a message in flight when it fills
        fake.feeds.update(day_feeds(2))

        def fill_the_disk(accepted: list[str]) -> None:  # at the first MAIL FROM
            if not (out / "fill").exists():
                (out / "fill").touch()
                deadline = time.monotonic() + 30
                while not (out / "filled").exists() and time.monotonic() < deadline:
                    time.sleep(0.01)

        srv.faults.on_mail = fill_the_disk
        full = {**os.environ, **env, "DIGESTD_ARXIV_API_URL": fake.url, "DIGESTD_ARXIV_DELAY": "0"}
        full.pop("DIGESTD_HOME", None)
        proc = subprocess.run(["unshare", "-Urm", "sh", "-c", FULL_DISK_SCRIPT, "sh", str(base), str(home), str(out),
                               sys.executable], capture_output=True, text=True, timeout=120, check=False,
                              cwd=Path(__file__).resolve().parent.parent, env=full)
        if proc.returncode == 97 or not (out / "run2.rc").exists():
            pytest.skip(f"no private tmpfs here: {proc.stderr.strip()[:200]}")
    assert (out / "filled").exists()
    assert (out / "run1.rc").read_text() == "1\n"
    said = [line for line in (out / "run1.err").read_text().splitlines() if line.startswith("digestd:")]
    assert len(said) == 1 and "no space left on device" in said[0].lower(), said
    assert (out / "run2.rc").read_text() == "0\n", (out / "run2.err").read_text()
    assert (out / "tmp").read_text() == ""
    for s in subs:
        got = srv.to(s["email"])
        assert len(got) == 1, f"{s['email']} got {len(got)} copies"
        assert got[0].paper_ids() == wanted(s, 2)


FROZEN_CLI = """\
import sys
from freezegun import freeze_time
with freeze_time(sys.argv.pop(1), tick=True, real_asyncio=True):
    from digestd.cli.app import main
    main()
"""


def test_a_run_killed_after_moving_sent_records_out_of_the_ledger_archives_them_once(tmp_path: Path) -> None:
    """The day after a send, a run moves yesterday's sent records to state/sent/DAY.jsonl.gz,
    then fetches; SIGKILL while it fetches (its ledger not yet written). The next run moves
    them again: the sent archive still holds each digest once. Before, twice (`subscribers
    export` showed every digest of that day sent twice)."""
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer(Faults()) as srv:
        env = {**os.environ, **srv.env(), "DIGESTD_ARXIV_API_URL": fake.url, "DIGESTD_ARXIV_DELAY": "0"}
        env.pop("DIGESTD_HOME", None)

        def run(day: str) -> subprocess.Popen[str]:
            return subprocess.Popen([sys.executable, "-c", FROZEN_CLI, f"{day} 12:00:00", "--home", str(home), "run"],
                                    env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    cwd=Path(__file__).resolve().parent.parent)

        for day, feeds in (("2026-11-20", 1), ("2026-11-21", 2)):
            fake.feeds.update(day_feeds(feeds))
            assert run(day).wait(60) == 0
        fake.feeds.update(day_feeds(3))
        fake.latency = 30.0
        asked = len(fake.requests)
        proc = run("2026-11-22")
        try:
            deadline = time.monotonic() + 30
            while len(fake.requests) == asked and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            proc.kill()
            proc.communicate()
        assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
        assert (home / "state" / "sent" / "2026-11-21.jsonl.gz").exists()  # moved before the fetch
        fake.latency = 0.0
        again = run("2026-11-22")
        assert again.wait(60) == 0, again.communicate()[1]
    lines = gzip.decompress((home / "state" / "sent" / "2026-11-21.jsonl.gz").read_bytes()).splitlines()
    ids = [json.loads(line)["message_id"] for line in lines]
    assert len(ids) == 3 and len(set(ids)) == 3, ids
