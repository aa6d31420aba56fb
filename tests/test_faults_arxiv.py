"""arXiv faults from the fake server (tests/fakearxiv.py): each keyword stands alone.

For every failure: the other keyword still succeeds, the failed keyword's stored papers and
README section are byte-identical to before, the run's exit code is 75, and once arXiv behaves
again a later run mails that keyword's additions (and nothing twice). The matrix runs in
process (two attempts per keyword); the real CLI (four attempts) is run for a stalled keyword.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import run_once
from fakearxiv import FakeArxiv, Fault
from faultkit import (
    KW_A,
    KW_B,
    additions,
    day_feeds,
    keyword_rows,
    read_json,
    readme_section,
    run_cli,
    two_keyword_home,
)
from fixtures import make_papers
from smtpfaults import FaultServer

from digestd.cli.run_cmd import exit_code
from digestd.core.models import Keyword
from digestd.errors import ExitCode, FetchError
from digestd.source.arxiv import ArxivSource

ALICE, BOB, CAROL = "alice@example.org", "bob@example.org", "carol@example.org"
TIMEOUT = 0.5  # DIGESTD_ARXIV_TIMEOUT for these runs

# name -> (faults for one in-process run, which makes 2 attempts; what the error says)
FAILURES: dict[str, tuple[Callable[[], list[Fault]], str]] = {
    "http_503_every_attempt": (lambda: [Fault.status(503)] * 2, "arXiv answered HTTP 503 (gave up after 2 attempts)"),
    "http_429_retry_after_too_long": (lambda: [Fault.status(429, retry_after=3600)], "asked to wait 3600 s"),
    "http_400_not_retried": (lambda: [Fault.status(400)], "HTTP 400; check the keyword's query"),
    "empty_page": (lambda: [Fault.empty()], "empty page for a keyword that has papers"),
    "html_error_page": (lambda: [Fault.html()], "not an Atom feed"),
    "truncated_xml": (lambda: [Fault.truncated()], "not well-formed XML"),
    "stalled_response": (lambda: [Fault.stall(30)] * 2, f"did not answer within {TIMEOUT:g} s"),
    "trickled_response": (lambda: [Fault.trickle(0.1)] * 2, f"did not finish answering within {TIMEOUT:g} s"),
    "entries_not_sorted": (lambda: [Fault.unsorted()], "not sorted by date"),
    "old_papers_as_new": (
        lambda: [Fault.old(make_papers(KW_A, 5, first=700, date="2019-03-04"))],
        "the response looks wrong",
    ),
}


@pytest.mark.parametrize("fault", list(FAILURES))
def test_failed_keyword_keeps_state_and_readme_others_succeed_later_run_mails_it(
    tmp_path: Path, fault: str
) -> None:
    make_faults, says = FAILURES[fault]
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer() as srv:
        env = {**srv.env(), "DIGESTD_ARXIV_TIMEOUT": str(TIMEOUT)}
        run_once(home, fake, env=env)  # day 1: the baseline of both keywords
        rows_a, section_a = keyword_rows(home, KW_A), readme_section(home, KW_A)
        rows_b, section_b = keyword_rows(home, KW_B), readme_section(home, KW_B)
        seen_before = read_json(home / "state" / "papers.json").get("seen")

        fake.feeds.update(day_feeds(2))
        fake.faults[KW_A] = make_faults()
        n_before = len(fake.requests_for(KW_A))
        t0 = time.monotonic()
        report = run_once(home, fake, env=env, timeout=TIMEOUT)
        # bounded by the timeouts, never hangs: measured 1.2 s for a stall (two attempts of
        # TIMEOUT), 0.2 s for the others; one stall left to run would take 30 s
        assert time.monotonic() - t0 < 15
        assert exit_code(report) == ExitCode.TEMPFAIL
        ka, kb = report.keywords
        assert ka.keyword == KW_A and ka.error and says in ka.error, ka
        assert kb.keyword == KW_B and kb.error is None and set(kb.new) == additions(2, KW_B)
        if fault == "http_400_not_retried":
            assert len(fake.requests_for(KW_A)) - n_before == 1
        # the failed keyword: state and README section byte-identical; the other moved on
        assert keyword_rows(home, KW_A) == rows_a
        assert readme_section(home, KW_A) == section_a
        assert read_json(home / "state" / "papers.json").get("seen") == seen_before
        assert keyword_rows(home, KW_B) != rows_b and readme_section(home, KW_B) != section_b
        assert srv.to(ALICE) == []  # alice follows only the failed keyword
        assert [m.paper_ids() for m in srv.to(BOB)] == [additions(2, KW_B)]
        assert [m.paper_ids() for m in srv.to(CAROL)] == [additions(2, KW_B)]
        status = read_json(home / "state" / "papers.json")["fetches"]
        (st_a,) = [s for s in status.values() if s["keyword"] == KW_A]
        assert st_a["error"] and says.split(" (")[0] in st_a["error"]

        fake.faults.clear()  # arXiv recovers
        report = run_once(home, fake, env=env, timeout=TIMEOUT)
        assert exit_code(report) == ExitCode.OK and not report.partial
        assert [m.paper_ids() for m in srv.to(ALICE)] == [additions(2, KW_A)]
        assert [m.paper_ids() for m in srv.to(BOB)] == [additions(2, KW_B), additions(2, KW_A)]
        assert [m.paper_ids() for m in srv.to(CAROL)] == [additions(2, KW_B)]
        assert readme_section(home, KW_A) != section_a


def test_503_then_success_is_retried_within_the_run(tmp_path: Path) -> None:
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer() as srv:
        run_once(home, fake, env=srv.env())
        fake.feeds.update(day_feeds(2))
        fake.faults[KW_A] = [Fault.status(503), Fault.status(502)]
        p = run_cli(home, fake, srv.env())
        assert p.returncode == 0, p.stdout + p.stderr
        assert len(fake.requests_for(KW_A)) == 1 + 3  # baseline, then 503, 502, 200
        assert [m.paper_ids() for m in srv.to(ALICE)] == [additions(2, KW_A)]


def test_the_last_failed_attempt_says_it_gives_up_not_that_it_retries(caplog: pytest.LogCaptureFixture) -> None:
    with FakeArxiv({KW_A: make_papers(KW_A, 3)}) as fake, caplog.at_level("INFO", logger="digestd"):
        fake.faults[KW_A] = [Fault.status(503)] * 3
        with pytest.raises(FetchError, match=r"HTTP 503 \(gave up after 3 attempts\)"):
            ArxivSource(fake.url, delay=0, retries=2).fetch(Keyword(KW_A), 10)
    assert caplog.text.count("retrying in") == 2  # after attempts 1 and 2, not after the last


def test_429_retry_after_is_honoured(tmp_path: Path) -> None:
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer() as srv:
        run_once(home, fake, env=srv.env())
        fake.feeds.update(day_feeds(2))
        fake.faults[KW_A] = [Fault.status(429, retry_after=1)]
        p = run_cli(home, fake, srv.env())
        assert p.returncode == 0, p.stdout + p.stderr
        first, second = fake.requests_for(KW_A)[-2:]
        assert first.fault is not None and first.fault.code == 429 and second.fault is None
        assert second.at - first.at >= 1.0, second.at - first.at
        # DIGESTD_ARXIV_DELAY is 0 here: the wait was Retry-After's, and only once
        (b,) = fake.requests_for(KW_B)[-1:]
        assert b.at - second.at < 1.0  # measured 0.01 s; waiting Retry-After again would be 1 s
        assert [m.paper_ids() for m in srv.to(ALICE)] == [additions(2, KW_A)]


def test_stalled_keyword_does_not_stop_the_others_and_the_run_ends_within_its_timeouts(tmp_path: Path) -> None:
    """One stall on the first attempt: the retry succeeds; the run took about one timeout."""
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer() as srv:
        env = {**srv.env(), "DIGESTD_ARXIV_TIMEOUT": "1"}
        run_once(home, fake, env=env)
        fake.feeds.update(day_feeds(2))
        fake.faults[KW_A] = [Fault.stall(60)]
        t0 = time.monotonic()
        p = run_cli(home, fake, env, timeout=90)
        assert p.returncode == 0, p.stdout + p.stderr
        assert len(fake.requests_for(KW_A)) == 1 + 2  # baseline, then the stall, then its retry
        # measured 2.5 s (start-up and one timeout); the stall alone would last 60 s
        assert 1.0 <= time.monotonic() - t0 < 30
        assert [m.paper_ids() for m in srv.to(ALICE)] == [additions(2, KW_A)]


def test_stalled_keyword_through_the_cli_exits_75_within_its_timeouts(tmp_path: Path) -> None:
    """A response that never arrives: DIGESTD_ARXIV_TIMEOUT bounds each of the 4 attempts."""
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer() as srv:
        env = {**srv.env(), "DIGESTD_ARXIV_TIMEOUT": str(TIMEOUT)}
        run_once(home, fake, env=env)
        section_a = readme_section(home, KW_A)
        fake.feeds.update(day_feeds(2))
        fake.faults[KW_A] = [Fault.stall(60)] * 4
        t0 = time.monotonic()
        p = run_cli(home, fake, env, timeout=90)
        out = p.stdout + p.stderr
        assert p.returncode == 75, out
        assert len(fake.requests_for(KW_A)) == 1 + 4  # baseline, then 4 attempts, each cut
        # measured 3.5 s (start-up and 4 timeouts of 0.5 s); one stall alone would last 60 s
        assert time.monotonic() - t0 < 30
        assert f"{KW_A}: FAILED, kept as it was: arXiv did not answer within {TIMEOUT:g} s" in out
        assert f"{KW_B}: fetched 13, 3 new" in out and "Traceback" not in out
        assert readme_section(home, KW_A) == section_a
        assert [m.paper_ids() for m in srv.to(CAROL)] == [additions(2, KW_B)]
