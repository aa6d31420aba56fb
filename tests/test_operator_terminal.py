"""The operator's terminal: progress on a TTY with the results staying on screen (a real
`digestd run` in a pseudo-terminal), plain lines off it, the first run and the Maildir said as
they are, a host name that does not resolve, shell completion, --help and errors in words."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from aiosmtpd.controller import Controller
from conftest import Inbox, cli, smtp_env, write_instance
from fakearxiv import FakeArxiv
from fixtures import FixturePaper, make_paper

KW, OTHER = "Video Anomaly Detection", "Vision Language Model"


def _papers(kw: str, day: str, first: int, n: int) -> list[FixturePaper]:
    return [make_paper(first + k, kw, day, time=f"{20 - k:02d}:00:00") for k in range(n)]


def run_in_pty(home: Path, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """`digestd run` with a pseudo-terminal as stdin, stdout and stderr; what it wrote, raw."""
    primary, secondary = pty.openpty()
    full_env = {**os.environ, "DIGESTD_ARXIV_DELAY": "0", "COLUMNS": "100", **env}
    full_env.pop("DIGESTD_HOME", None)
    proc = subprocess.Popen([sys.executable, "-m", "digestd", "--home", str(home), "run"],
                            stdin=secondary, stdout=secondary, stderr=secondary, env=full_env, close_fds=True)
    os.close(secondary)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(primary, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    return proc.wait(timeout=timeout), b"".join(chunks).decode("utf-8", "replace")


def screen(raw: str) -> list[str]:
    """What stays on a terminal: "\\r" returns to the line's start, ESC[2K erases the line."""
    lines: list[str] = []
    line: list[str] = []
    col = 0
    i = 0
    while i < len(raw):
        if raw.startswith("\x1b[2K", i):
            line, col = [], 0
            i += 4
            continue
        ch = raw[i]
        i += 1
        if ch == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    if "".join(line).strip():
        lines.append("".join(line).rstrip())
    return lines


def test_tty_progress_leaves_results_and_counts_on_screen(
    tmp_path: Path, smtp: tuple[Controller, Inbox]
) -> None:
    controller, inbox = smtp
    home = write_instance(tmp_path, [KW, OTHER], [{"email": "a@example.org"}, {"email": "b@example.org"}],
                          timezone="UTC")
    env = smtp_env(controller)
    with FakeArxiv({KW: _papers(KW, "2026-11-23", 100, 3), OTHER: _papers(OTHER, "2026-11-23", 200, 2)}) as fake:
        env["DIGESTD_ARXIV_API_URL"] = fake.url
        code, raw = run_in_pty(home, env)
        assert code == 0, raw
        shown = screen(raw)
        assert f"{KW}: fetched 3, baseline stored (nothing mailed for a new keyword)" in shown
        assert any(s.startswith("first run: stored the baseline") and "mailed nothing" in s for s in shown)
        fake.feeds[KW] = _papers(KW, "2026-11-24", 300, 2) + fake.feeds[KW]
        code, raw = run_in_pty(home, env)
    assert code == 0, raw
    assert "fetching: [" in raw and "sending: " in raw  # the progress was drawn...
    shown = screen(raw)
    assert not any(s.startswith(("fetching:", "sending:")) for s in shown), shown  # ...and erased
    assert f"{KW}: fetched 5, 2 new" in shown and f"{OTHER}: fetched 2, 0 new" in shown
    assert any("sent 2 digest(s), 0 pending, 0 failed" in s for s in shown), shown
    assert not any(s.startswith("first run") for s in shown)
    assert len(inbox.messages) == 2


def test_off_a_tty_plain_lines_and_the_maildir_is_not_called_sent(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW], [{"email": "a@example.org"}], timezone="UTC")
    with FakeArxiv({KW: _papers(KW, "2026-11-23", 100, 3)}) as fake:
        env = {"DIGESTD_ARXIV_API_URL": fake.url}
        first = cli(home, "run", env=env)
        assert first.returncode == 0, first.stderr
        assert "first run: stored the baseline" in first.stderr and "mailed nothing" in first.stderr
        fake.feeds[KW] = _papers(KW, "2026-11-24", 300, 1) + fake.feeds[KW]
        second = cli(home, "run", env=env)
    assert second.returncode == 0, second.stderr
    assert "\r" not in second.stderr and "\x1b" not in second.stderr
    assert f"{KW}: fetched 4, 1 new" in second.stderr.splitlines()
    assert "wrote 1 digest(s) to the Maildir at" in second.stderr
    assert "not sent (no SMTP server is set: see DIGESTD_SMTP_HOST)" in second.stderr
    assert " sent 1 digest" not in second.stderr
    assert len(list((home / "state" / "maildir" / "new").iterdir())) == 1


def test_init_explains_how_to_set_smtp(tmp_path: Path) -> None:
    proc = cli(tmp_path, "init")
    assert proc.returncode == 0, proc.stderr
    assert "not sent" in proc.stdout and "DIGESTD_SMTP_HOST=" in proc.stdout
    assert "DIGESTD_SMTP_SECURITY" in proc.stdout and "DIGESTD_SMTP_PASSWORD_FILE" in proc.stdout


def test_a_host_that_does_not_resolve_fails_fast_with_a_hint(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW], [{"email": "a@example.org"}])
    started = time.monotonic()
    proc = cli(home, "run", env={"DIGESTD_ARXIV_API_URL": "http://no-such-host.invalid/api/query"})
    took = time.monotonic() - started
    assert proc.returncode == 75, proc.stderr
    assert "cannot resolve the host name no-such-host.invalid" in proc.stderr
    assert "DIGESTD_ARXIV_API_URL" in proc.stderr and "Traceback" not in proc.stderr
    assert took < 50  # the bound is 10 s; five times that


def test_shell_completion_installs_and_completes(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "SHELL": "/bin/bash"}
    proc = cli(tmp_path, "--install-completion", env=env)
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / ".bash_completions" / "digestd.sh"
    assert script.is_file() and str(script) in (tmp_path / ".bashrc").read_text()
    done = subprocess.run([sys.executable, "-m", "digestd"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "_DIGESTD_COMPLETE": "complete_bash",
                               "COMP_WORDS": "digestd sta", "COMP_CWORD": "1"}, check=False)
    assert done.stdout.split() == ["status"]


COMMANDS = [(), ("run",), ("init",), ("status",), ("preview",), ("systemd",), ("serve",),
            ("keywords",), ("keywords", "add"), ("subscribers",), ("subscribers", "add"),
            ("subscribers", "set"), ("subscribers", "import"), ("subscribers", "export")]


def test_help_shows_no_python_types_and_no_cut_descriptions(tmp_path: Path) -> None:
    for cmd in COMMANDS:
        proc = cli(tmp_path, *cmd, "--help", env={"COLUMNS": "100"})
        assert proc.returncode == 0, (cmd, proc.stderr)
        for bad in ("<str>", "<list[", "<int>", "<float>", "<path>", "<bool>"):
            assert bad not in proc.stdout, (cmd, bad, proc.stdout)
        assert not any(line.rstrip().endswith("...") for line in proc.stdout.splitlines()
                       if not line.startswith("Usage")), (cmd, proc.stdout)


def test_errors_in_plain_words(tmp_path: Path) -> None:
    write_instance(tmp_path, [KW], [])
    proc = cli(tmp_path, "subscribers", "add", "x@example.org", "--frequency", "monthly")
    assert proc.returncode == 2 and "'monthly' is not a frequency: use daily or weekly" in proc.stderr
    (tmp_path / "subscribers.yaml").write_text("keywords: [a\nsubscribers: []\n")
    proc = cli(tmp_path, "status")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "line 2" in proc.stderr
