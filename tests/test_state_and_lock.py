"""One run at a time, unreadable state files, and bad input that must change nothing.

All through the real CLI (`python -m digestd`), as a user or systemd would meet them.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import cli, run_once, write_instance
from fakearxiv import FakeArxiv, Fault
from faultkit import (
    KW_A,
    additions,
    day_feeds,
    deliveries,
    run_cli,
    spawn_run,
    state_snapshot,
    two_keyword_home,
    wait_for_lock,
)
from smtpfaults import FaultServer

# ---------------------------------------------------------------------------------- the lock


def test_second_concurrent_run_exits_75_at_once_naming_the_pid(tmp_path: Path) -> None:
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1), faults={KW_A: [Fault.stall(300)]}) as fake:
        first = spawn_run(home, fake, {"DIGESTD_ARXIV_TIMEOUT": "240"})  # stalls in its fetch
        try:
            wait_for_lock(home, first)
            before = state_snapshot(home)
            second = run_cli(home, fake)
            assert second.returncode == 75, second.stderr
            # at once, not after the first run: that one is still stalled in its fetch (an
            # event, where a bound on the time a busy machine takes to start Python is not)
            assert first.poll() is None
            assert f"another run is in progress (pid {first.pid})" in second.stderr
            assert "Traceback" not in second.stderr
            assert state_snapshot(home) == before
            assert first.poll() is None  # the first run was not disturbed
        finally:
            first.kill()
            first.communicate()


def test_stale_lock_from_a_killed_run_does_not_block(tmp_path: Path) -> None:
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1), faults={KW_A: [Fault.stall(30)]}) as fake:
        proc = spawn_run(home, fake, {"DIGESTD_ARXIV_TIMEOUT": "20"})
        wait_for_lock(home, proc)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        lock = home / "state" / "run.lock"
        assert lock.read_text().strip() == str(proc.pid)  # left behind by the dead run
        p = run_cli(home, fake)
        assert p.returncode == 0, p.stderr
        assert "another run" not in p.stderr


# --------------------------------------------------------------------------- corrupted state


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


CORRUPTIONS = {
    "papers_garbage": ("papers.json", lambda data: b"\x00\x17garbage{{{ not json"),
    "papers_truncated": ("papers.json", _truncated),
    "outbox_truncated": ("outbox.json", _truncated),
    "outbox_not_an_object": ("outbox.json", lambda data: b"[1, 2, 3]"),
    "papers_empty": ("papers.json", lambda data: b""),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupted_state_file_exits_1_naming_it_and_moves_it_aside(tmp_path: Path, case: str) -> None:
    name, corrupt = CORRUPTIONS[case]
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer() as srv:
        run_once(home, fake, env=srv.env())
        fake.feeds.update(day_feeds(2))
        run_once(home, fake, env=srv.env())
        assert len(srv.messages) == 3
        path = home / "state" / name
        bad = corrupt(path.read_bytes())
        path.write_bytes(bad)
        before = state_snapshot(home)
        fake.feeds.update(day_feeds(3))

        p = run_cli(home, fake, srv.env())
        assert p.returncode == 1, p.stderr
        assert str(path) in p.stderr and "unreadable" in p.stderr
        assert "Traceback" not in p.stderr
        (aside,) = (home / "state").glob(f"{name}.corrupt-*")
        assert aside.read_bytes() == bad  # kept for a person to look at
        assert not path.exists()  # not silently replaced by an empty state
        after = state_snapshot(home)
        assert after.pop(f"state/{aside.name}") == before.pop(f"state/{name}")
        assert after == before  # nothing else changed: no README, no other state file
        assert len(srv.messages) == 3  # nothing mailed

        # The operator was told; the next run starts that file afresh and re-mails nothing.
        report = run_once(home, fake, env=srv.env())
        assert report.fatal is None and not report.partial
        for m in srv.messages[3:]:
            assert not m.paper_ids() & (additions(2, KW_A) | additions(2, "Vision Language Model"))


# --------------------------------------------------------------- subscribers.yaml bad input

YAML = """\
# digestd instance for the fault tests
keywords:                      # one arXiv search each
  - Video Anomaly Detection
  - Vision Language Model
subscribers:
  - email: alice@example.org   # follows one keyword
    keywords: [Video Anomaly Detection]
  - email: bob@example.org
settings:
  timezone: UTC
  from: Daily Papers <papers@example.org>
"""

HALF_WRITTEN = {  # what an editor or a copy cut short might leave behind -> the line to name
    "cut_inside_a_quoted_string": (YAML.split("  - email: bob")[0] + '  - email: "bob@exa', 8),
    "cut_inside_a_flow_list": (YAML.split("Anomaly Detection]")[0], 7),
    "cut_mid_address": (YAML.split("  - email: bob")[0] + "  - email: bob@exa\n", 8),
    "bad_indentation": (YAML.replace("  - Vision Language Model", " - Vision Language Model"), 4),
    "tab_indentation": (YAML.replace("  timezone: UTC", "\ttimezone: UTC"), 10),
}


@pytest.mark.parametrize("case", list(HALF_WRITTEN))
def test_half_written_subscribers_yaml_exits_2_with_file_and_line_and_changes_nothing(
    tmp_path: Path, case: str
) -> None:
    text, line = HALF_WRITTEN[case]
    home = tmp_path / "home"
    (home / "state").mkdir(parents=True)
    cfg = home / "subscribers.yaml"
    cfg.write_text(YAML)
    with FakeArxiv(day_feeds(1)) as fake:
        run_once(home, fake)
        fake.feeds.update(day_feeds(2))
        cfg.write_text(text)
        before = state_snapshot(home)
        p = run_cli(home, fake)
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr
        assert f"{cfg}, line {line}:" in p.stderr, p.stderr
        assert state_snapshot(home) == before
        assert fake.requests_for(KW_A)[-1:] == fake.requests_for(KW_A)[:1]  # not even fetched


BAD_EDITS = {
    "invalid_address": (["subscribers", "add", "bob(at)example.org"], "is not a valid e-mail address"),
    "duplicate_subscriber": (["subscribers", "add", "Alice@Example.org"], "already a subscriber"),
    "unknown_keyword": (["subscribers", "add", "dave@example.org", "--keyword", "Quantum Gravity"],
                        "'Quantum Gravity' is not a configured keyword"),
    "keyword_with_newline": (["keywords", "add", "Line one\nline two"], "contains a newline"),
    "duplicate_keyword": (["keywords", "add", KW_A], "already configured"),
    "remove_unknown_subscriber": (["subscribers", "remove", "nobody@example.org"], "is not a subscriber"),
}


@pytest.mark.parametrize("case", list(BAD_EDITS))
def test_failed_cli_edit_leaves_subscribers_yaml_byte_identical(tmp_path: Path, case: str) -> None:
    args, says = BAD_EDITS[case]
    (tmp_path / "state").mkdir()
    cfg = tmp_path / "subscribers.yaml"
    cfg.write_text(YAML)
    p = cli(tmp_path, *args)
    assert p.returncode == 2, p.stderr
    assert says in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert cfg.read_text() == YAML
    assert sorted(f.name for f in tmp_path.iterdir()) == ["state", "subscribers.yaml"]  # no temp files


def test_good_cli_edit_keeps_comments_and_order(tmp_path: Path) -> None:
    cfg = tmp_path / "subscribers.yaml"
    cfg.write_text(YAML)
    p = cli(tmp_path, "subscribers", "add", "dave@example.org", "--keyword", KW_A)
    assert p.returncode == 0, p.stderr
    text = cfg.read_text()
    assert text.startswith(YAML.split("settings:")[0].rstrip("\n"))  # comments and order kept
    assert "# follows one keyword" in text and "dave@example.org" in text
    listed = json.loads(cli(tmp_path, "subscribers", "list", "--json").stdout)
    assert [s["email"] for s in listed] == ["alice@example.org", "bob@example.org", "dave@example.org"]
    assert deliveries(tmp_path) == []


def test_a_state_path_that_is_a_file_is_named_as_not_a_folder(tmp_path: Path) -> None:
    """Was "digestd: HOME/state: File exists" (the OS's words for mkdir over a file)."""
    home = write_instance(tmp_path / "home", ["A"], [{"email": "a@example.org"}])
    (home / "state").rmdir()
    (home / "state").write_text("")
    for args in (("run", "--no-mail"), ("site", "build"), ("subscribers", "forget", "a@example.org")):
        proc = cli(home, *args, env={"DIGESTD_ARXIV_API_URL": "http://127.0.0.1:9/"})
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert f"{home / 'state'} is not a folder: move that file away" in proc.stderr
    assert "a@example.org" in (home / "subscribers.yaml").read_text()
