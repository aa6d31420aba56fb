"""Runs on the clock, which freezegun sets: `digestd run` (what the systemd timer starts) is
given no time by its caller, so the run's date, the README's "Last update" and the ledger's
`sent_at` and pruning all come from the clock, in settings.timezone.

The CLI runs in process so that the frozen clock is the one it reads. `real_asyncio` keeps the
event loop of the mail transport on real monotonic time.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from conftest import write_instance
from fakearxiv import FakeArxiv
from faultkit import deliveries
from fixtures import make_paper, make_papers
from freezegun import freeze_time
from typer.testing import CliRunner

from digestd.cli import run_cmd
from digestd.cli.context import CliContext

KW = "Video Anomaly Detection"
ALICE = "alice@example.org"


def run_now(home: Path, fake: FakeArxiv) -> dict[str, Any]:
    """`digestd run --json` in process, as the timer starts it: no time given, the Maildir."""
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = CliContext(home=home, log_level="info")

    run_cmd.register(app)
    env = {"DIGESTD_ARXIV_API_URL": fake.url, "DIGESTD_ARXIV_DELAY": "0", "DIGESTD_SMTP_HOST": None}
    result = CliRunner().invoke(app, ["run", "--json"], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout)
    assert isinstance(report, dict)
    return report


@pytest.mark.parametrize(
    ("timezone", "day"),
    [("UTC", "2026-11-22"), ("Asia/Tokyo", "2026-11-23"), ("America/Los_Angeles", "2026-11-22")],
)
def test_a_run_takes_its_date_from_the_clock_in_the_configured_timezone(
    tmp_path: Path, timezone: str, day: str
) -> None:
    home = write_instance(tmp_path, [KW], [{"email": ALICE}], timezone=timezone)
    with FakeArxiv({KW: make_papers(KW, 5, date="2026-11-19")}) as fake, \
            freeze_time("2026-11-22 23:30:00", real_asyncio=True):  # UTC
        report = run_now(home, fake)
    assert report["date"] == day
    assert f"\nLast update: {day}\n" in (home / "README.md").read_text(encoding="utf-8")


def archived(home: Path, day: str) -> list[dict[str, Any]] | None:
    """The sent records of `day` in state/sent/DAY.jsonl.gz; None when there is no such file."""
    path = home / "state" / "sent" / f"{day}.jsonl.gz"
    if not path.exists():
        return None
    return [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]


def test_sent_records_leave_the_ledger_the_next_day_and_their_archive_after_14_days(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW], [{"email": ALICE}], timezone="UTC")
    with FakeArxiv({KW: make_papers(KW, 5, date="2026-11-19")}) as fake, \
            freeze_time("2026-11-19 21:00:00", real_asyncio=True) as clock:
        assert run_now(home, fake)["sent"] == 0  # the baseline
        fake.feeds[KW] = [make_paper(900, KW, "2026-11-20"), *fake.feeds[KW]]

        clock.move_to("2026-11-20 21:00:00")
        assert run_now(home, fake)["sent"] == 1
        (sent,) = deliveries(home)
        assert (sent["email"], sent["date"], sent["status"]) == (ALICE, "2026-11-20", "sent")
        assert sent["sent_at"] == "2026-11-20T21:00"  # the clock's time, not the machine's
        assert archived(home, "2026-11-20") is None  # the day's records stay in the ledger

        clock.move_to("2026-11-21 21:00:00")
        assert run_now(home, fake)["sent"] == 0
        assert [d for d in deliveries(home) if d["status"] == "sent"] == []
        (line,) = archived(home, "2026-11-20") or [None]
        assert line is not None and line["email"] == ALICE and line["sent_at"] == "2026-11-20T21:00"

        clock.move_to("2026-12-04 21:00:00")  # 14 days after: still kept
        run_now(home, fake)
        assert archived(home, "2026-11-20") is not None

        clock.move_to("2026-12-05 21:00:00")  # 15 days after: gone
        run_now(home, fake)
        assert archived(home, "2026-11-20") is None
