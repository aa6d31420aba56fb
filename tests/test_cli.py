"""The CLI as a user meets it: real subprocesses, exit codes with meanings, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import cli, free_port, smtp_env, write_instance
from fakearxiv import FakeArxiv
from fixtures import make_paper, make_papers

from digestd.cli.run_cmd import exit_code
from digestd.core.models import KeywordFetch, RunReport
from digestd.errors import ExitCode

KW = "Video Anomaly Detection"


def no_traceback(proc: object) -> None:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout  # type: ignore[attr-defined]


def test_exit_code_mapping() -> None:
    ok = RunReport(date="2026-11-22", keywords=[KeywordFetch("a", fetched=3)])
    assert exit_code(ok) == ExitCode.OK == 0
    partial_kw = RunReport(date="2026-11-22", keywords=[KeywordFetch("a", error="HTTP 503")])
    assert exit_code(partial_kw) == ExitCode.TEMPFAIL == 75
    partial_mail = RunReport(date="2026-11-22", pending=2)
    assert exit_code(partial_mail) == 75
    fatal = RunReport(date="2026-11-22", pending=2, fatal="SMTP login refused")
    assert exit_code(fatal) == ExitCode.ERROR == 1


def test_init_creates_and_never_overwrites(tmp_path: Path) -> None:
    home = tmp_path / "inst"
    first = cli(home, "init")
    assert first.returncode == 0, first.stderr
    assert (home / "subscribers.yaml").exists() and (home / "templates" / "digest.html.j2").exists()
    (home / "subscribers.yaml").write_text((home / "subscribers.yaml").read_text() + "# mine\n")
    before = (home / "subscribers.yaml").read_bytes()
    again = cli(home, "init")
    assert again.returncode == 0 and "kept existing" in again.stdout
    assert (home / "subscribers.yaml").read_bytes() == before


def test_init_says_the_next_command_ready_to_paste(tmp_path: Path) -> None:
    """A folder with a space broke the printed command when pasted into a shell."""
    import shlex
    import subprocess

    home = tmp_path / "my lab's papers"
    out = cli(home, "init").stdout
    command = out.split("then `", 1)[1].split("`", 1)[0]
    assert shlex.split(command)[:3] == ["digestd", "--home", str(home.resolve())]
    assert subprocess.run(["sh", "-c", f"set -- {command}; test \"$3\" = {shlex.quote(str(home.resolve()))}"],
                          check=False).returncode == 0


def test_missing_instance_says_to_run_init(tmp_path: Path) -> None:
    proc = cli(tmp_path / "nowhere", "run")
    assert proc.returncode == 2
    assert "digestd init" in proc.stderr
    no_traceback(proc)


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "subscribers.yaml").write_text("keywords:\n  - A\nsubscribers:\n  - email: [oops\n")
    proc = cli(tmp_path, "run")
    assert proc.returncode == 2
    assert "subscribers.yaml" in proc.stderr and "line" in proc.stderr
    no_traceback(proc)


def test_invalid_config_values_are_named(tmp_path: Path) -> None:
    write_instance(tmp_path, [KW], [{"email": "bob@", "keywords": [KW]}])
    proc = cli(tmp_path, "status")
    assert (
        proc.returncode == 2 and "'bob@' is not an e-mail address" in proc.stderr and "line 6" in proc.stderr
    )
    write_instance(tmp_path, [KW], [{"email": "bob@example.org", "keywords": ["Nope"]}])
    proc = cli(tmp_path, "status")
    assert proc.returncode == 2 and "'Nope', which is not a configured keyword" in proc.stderr
    no_traceback(proc)


def test_keywords_add_list_remove(tmp_path: Path) -> None:
    cli(tmp_path, "init")
    yaml_before = (tmp_path / "subscribers.yaml").read_bytes()
    bad = cli(tmp_path, "keywords", "add", "two\nlines")
    assert bad.returncode == 2 and "newline" in bad.stderr
    assert (tmp_path / "subscribers.yaml").read_bytes() == yaml_before
    dup = cli(tmp_path, "keywords", "add", KW)
    assert dup.returncode == 2 and "already configured" in dup.stderr
    assert (
        cli(
            tmp_path,
            "keywords",
            "add",
            "Vision Language Model",
            "--category",
            "cs.CV",
            "--query",
            'ti:"vision language model" OR abs:"VLM"',
        ).returncode
        == 0
    )
    listed = json.loads(cli(tmp_path, "keywords", "list", "--json").stdout)
    assert listed == [
        {"name": KW},
        {
            "name": "Vision Language Model",
            "query": 'ti:"vision language model" OR abs:"VLM"',
            "categories": ["cs.CV"],
        },
    ]
    text = (tmp_path / "subscribers.yaml").read_text()
    assert "# each is one arXiv search and one README section" in text  # comments survive
    assert cli(tmp_path, "keywords", "remove", KW).returncode == 0
    assert [k["name"] for k in json.loads(cli(tmp_path, "keywords", "list", "--json").stdout)] == [
        "Vision Language Model"
    ]
    gone = cli(tmp_path, "keywords", "remove", KW)
    assert gone.returncode == 2 and "is not a configured keyword" in gone.stderr


def test_removing_and_adding_a_keyword_again_says_what_follows(tmp_path: Path) -> None:
    """Re-added, a keyword keeps its stored papers (no baseline, unlike what add used to say),
    and a reader left following nothing is told so."""
    write_instance(tmp_path, [KW, "Other"], [{"email": "alice@example.org", "keywords": [KW]}], timezone="UTC")
    with FakeArxiv({KW: make_papers(KW, 5, date="2026-11-19"), "Other": make_papers("Other", 2)}) as fake:
        assert cli(tmp_path, "run", env={"DIGESTD_ARXIV_API_URL": fake.url}).returncode == 0  # baseline
    gone = cli(tmp_path, "keywords", "remove", KW)
    assert gone.returncode == 0 and "alice@example.org no longer follows it; they follow no keyword now" in gone.stdout
    again = cli(tmp_path, "keywords", "add", KW)
    assert again.returncode == 0 and "runs kept 5 of its papers" in again.stdout and "(baseline)" not in again.stdout
    fresh = cli(tmp_path, "keywords", "add", "Brand New")
    assert fresh.returncode == 0 and "(baseline)" in fresh.stdout


def test_run_logs_plain_lines_and_summary(tmp_path: Path, smtp: tuple[object, object]) -> None:
    controller, inbox = smtp
    write_instance(tmp_path, [KW, "Vision Language Model"], [{"email": "alice@example.org"}], timezone="UTC")
    env = smtp_env(controller)
    with FakeArxiv(
        {
            KW: make_papers(KW, 5, date="2026-11-19"),
            "Vision Language Model": make_papers("Vision Language Model", 5, first=50, date="2026-11-19"),
        }
    ) as fake:
        env["DIGESTD_ARXIV_API_URL"] = fake.url
        first = cli(tmp_path, "run", env=env)
        assert first.returncode == 0, first.stderr
        assert f"{KW}: fetched 5, baseline stored" in first.stderr
        fake.feeds[KW] = [make_paper(900, KW, "2026-11-20"), *fake.feeds[KW]]
        second = cli(tmp_path, "run", env=env)
        assert second.returncode == 0, second.stderr
        lines = second.stderr.splitlines()
        assert f"{KW}: fetched 6, 1 new" in lines
        assert "Vision Language Model: fetched 5, 0 new" in lines
        assert any(
            line.startswith("run ") and "sent 1 digest(s), 0 pending, 0 failed" in line for line in lines
        )
        assert "\x1b[" not in second.stderr  # no colours when not on a terminal
        status = json.loads(cli(tmp_path, "status", "--json", env=env).stdout)
        assert status["last_run"]["outcome"] == "ok" and status["deliveries"]["sent"] == 1
    assert len(inbox.messages) == 1  # type: ignore[attr-defined]


def test_a_password_in_an_arxiv_or_imap_url_is_never_shown_or_stored(tmp_path: Path) -> None:
    """Was echoed in every fetch failure line, stored in papers.json (and so in `status` and
    alert mail), and in the refusal of a bad URL."""
    write_instance(tmp_path, [KW], [{"email": "alice@example.org"}], timezone="UTC")
    port = free_port()
    proc = cli(tmp_path, "run", env={"DIGESTD_ARXIV_API_URL": f"http://mirror:s3cr3t@127.0.0.1:{port}/api",
                                     "DIGESTD_ARXIV_TIMEOUT": "2"})
    assert proc.returncode == 75 and f"cannot reach arXiv at http://***@127.0.0.1:{port}/api" in proc.stderr
    for env in ({"DIGESTD_ARXIV_API_URL": "ftp://mirror:s3cr3t@127.0.0.1/api"},
                {"DIGESTD_BOUNCE_IMAP_URL": "imaps://bounces:s3cr3t@mail.example.org:99999/INBOX"}):
        refused = cli(tmp_path, "run", "--dry-run", env=env)
        assert refused.returncode == 2 and "***@" in refused.stderr
        proc.stderr += refused.stdout + refused.stderr
    status = cli(tmp_path, "status", "--json")
    said = proc.stdout + proc.stderr + status.stdout + status.stderr
    stored = "".join(p.read_text(errors="replace") for p in (tmp_path / "state").rglob("*") if p.is_file())
    assert "s3cr3t" not in said and "s3cr3t" not in stored


def test_unreachable_arxiv_and_smtp_exit_75_and_keep_state(tmp_path: Path) -> None:
    write_instance(tmp_path, [KW], [{"email": "alice@example.org"}], timezone="UTC")
    dead = f"http://127.0.0.1:{free_port()}/api/query"
    proc = cli(tmp_path, "run", env={"DIGESTD_ARXIV_API_URL": dead, "DIGESTD_ARXIV_TIMEOUT": "2"})
    assert proc.returncode == 75
    assert f"cannot reach arXiv at {dead}" in proc.stderr
    no_traceback(proc)
    with FakeArxiv({KW: make_papers(KW, 5, date="2026-11-19")}) as fake:
        env = {"DIGESTD_ARXIV_API_URL": fake.url}
        assert cli(tmp_path, "run", env=env).returncode == 0
        readme = (tmp_path / "README.md").read_bytes()
        fake.feeds[KW] = [make_paper(900, KW, "2026-11-20"), *fake.feeds[KW]]
        port = free_port()
        env.update(
            {
                "DIGESTD_SMTP_HOST": "127.0.0.1",
                "DIGESTD_SMTP_PORT": str(port),
                "DIGESTD_SMTP_SECURITY": "none",
                "DIGESTD_SMTP_RETRIES": "1",
                "DIGESTD_SMTP_BACKOFF": "0.01",
            }
        )
        proc = cli(tmp_path, "run", env=env)
    assert proc.returncode == 75, proc.stderr
    assert f"cannot reach SMTP server 127.0.0.1:{port}" in proc.stderr
    no_traceback(proc)
    status = json.loads(cli(tmp_path, "status", "--json").stdout)
    assert status["deliveries"]["pending"] == 1
    assert (tmp_path / "README.md").read_bytes() != readme  # the new paper is published even so


def test_help_and_bad_usage_exit_2(tmp_path: Path) -> None:
    proc = cli(tmp_path, "run", "--no-such-flag")
    assert proc.returncode == 2 and "No such option" in proc.stderr
    no_traceback(proc)


def test_secrets_never_printed_even_at_debug(tmp_path: Path, smtp: tuple[object, object]) -> None:
    controller, inbox = smtp
    write_instance(tmp_path, [KW], [{"email": "alice@example.org"}], timezone="UTC")
    secret = "hunter2-very-secret"
    with FakeArxiv({KW: make_papers(KW, 5, date="2026-11-19")}) as fake:
        env = {"DIGESTD_ARXIV_API_URL": fake.url}
        assert cli(tmp_path, "run", env=env).returncode == 0
        fake.feeds[KW] = [make_paper(900, KW, "2026-11-20"), *fake.feeds[KW]]
        env.update({"DIGESTD_SMTP_HOST": "127.0.0.1", "DIGESTD_SMTP_PORT": str(controller.port),  # type: ignore[attr-defined]
                    "DIGESTD_SMTP_SECURITY": "starttls", "DIGESTD_SMTP_USERNAME": "alice",
                    "DIGESTD_SMTP_PASSWORD": secret, "DIGESTD_SECRET": "hmac-" + secret})
        proc = cli(tmp_path, "--log-level", "debug", "run", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "127.0.0.1" in proc.stderr and "STARTTLS" in proc.stderr  # names host and cause
    assert secret not in proc.stderr and secret not in proc.stdout
    assert inbox.messages == []  # type: ignore[attr-defined]  # nothing sent in clear
    status = json.loads(cli(tmp_path, "status", "--json").stdout)
    assert status["deliveries"]["pending"] == 1
    assert secret not in json.dumps(status)


def _day2(tmp_path: Path, fake: FakeArxiv, env: dict[str, str]) -> None:
    assert cli(tmp_path, "run", env=env).returncode == 0
    fake.feeds[KW] = [make_paper(900, KW, "2026-11-20"), *fake.feeds[KW]]


def test_dry_run_exits_0_and_writes_nothing_not_even_a_corrupt_file_move(tmp_path: Path) -> None:
    write_instance(tmp_path, [KW], [{"email": "alice@example.org"}], timezone="UTC")
    with FakeArxiv({KW: make_papers(KW, 5, date="2026-11-19")}) as fake:
        env = {"DIGESTD_ARXIV_API_URL": fake.url}
        _day2(tmp_path, fake, env)
        before = {p.name: p.read_bytes() for p in (tmp_path / "state").iterdir() if p.is_file()}
        proc = cli(tmp_path, "run", "--dry-run", env=env)
        assert proc.returncode == 0, proc.stderr
        assert "would mail alice@example.org: 1 new paper" in proc.stderr and "would mail 1 digest(s)" in proc.stderr
        assert {p.name: p.read_bytes() for p in (tmp_path / "state").iterdir() if p.is_file()} == before
        (tmp_path / "state" / "outbox.json").write_text("garbage")
        proc = cli(tmp_path, "run", "--dry-run", env=env)
    assert proc.returncode == 1 and "outbox.json" in proc.stderr
    assert (tmp_path / "state" / "outbox.json").read_text() == "garbage"  # named, left in place
    assert not list((tmp_path / "state").glob("*.corrupt-*"))


def test_broken_template_is_named_before_anything_is_queued(tmp_path: Path) -> None:
    write_instance(tmp_path, [KW], [{"email": "alice@example.org"}], timezone="UTC")
    with FakeArxiv({KW: make_papers(KW, 5, date="2026-11-19")}) as fake:
        env = {"DIGESTD_ARXIV_API_URL": fake.url}
        _day2(tmp_path, fake, env)
        (tmp_path / "templates").mkdir()
        (tmp_path / "templates" / "paper.html.j2").write_text("<div>\n{% if %}\n</div>\n")
        proc = cli(tmp_path, "run", env=env)
        assert proc.returncode == 2, proc.stderr
        assert "paper.html.j2, line 2" in proc.stderr
        no_traceback(proc)
        status = json.loads(cli(tmp_path, "status", "--json").stdout)
        assert status["deliveries"]["pending"] == 0  # nothing was queued with a broken template
        (tmp_path / "templates" / "paper.html.j2").unlink()
        proc = cli(tmp_path, "run", env=env)
    assert proc.returncode == 0 and "wrote 1 digest(s) to the Maildir" in proc.stderr  # the paper is not lost
    text = cli(tmp_path, "status").stdout  # status says so too, not "sent 1"
    assert f"ok, wrote 1 to the Maildir at {tmp_path / 'state' / 'maildir'} (not sent)," in text, text
    assert json.loads(cli(tmp_path, "status", "--json").stdout)["last_run"]["written_to"].startswith("the Maildir")


def test_a_day_with_nothing_in_the_keywords_categories_is_not_a_failure(tmp_path: Path) -> None:
    write_instance(tmp_path, [{"name": KW, "categories": ["cs.CV"]}], [], timezone="UTC")
    with FakeArxiv({KW: make_papers(KW, 5, date="2026-11-19")}) as fake:
        env = {"DIGESTD_ARXIV_API_URL": fake.url}
        assert cli(tmp_path, "run", env=env).returncode == 0
        for p in fake.feeds[KW]:
            p.categories, p.primary_category = ["math.AG"], "math.AG"
        proc = cli(tmp_path, "run", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "empty page" not in proc.stderr


def test_unwritable_paths_get_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    proc = cli(tmp_path / "afile" / "inst", "init")
    assert proc.returncode == 1 and "afile" in proc.stderr and "Not a directory" in proc.stderr
    no_traceback(proc)
    write_instance(tmp_path / "i", [KW], [{"email": "alice@example.org"}])
    proc = cli(tmp_path / "i", "preview", "alice@example.org", "--output", str(tmp_path / "no" / "such" / "dir.html"))
    assert proc.returncode == 1 and "No such file or directory" in proc.stderr
    no_traceback(proc)


def test_preview_output_writes_through_what_is_not_a_plain_file(tmp_path: Path) -> None:
    """`--output` to a FIFO, a device or a symlink writes to it; it never replaces it with a file
    (as root, `--output /dev/full` replaced the device node), and `-` is stdout."""
    import os
    import stat
    import threading

    home = write_instance(tmp_path / "i", [KW], [{"email": "alice@example.org"}])
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    proc = cli(home, "preview", "alice@example.org", "--format", "text", "--output", str(fifo), timeout=30)
    reader.join(10)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode) and b"Daily Papers" in got[0]
    target, link = tmp_path / "target.html", tmp_path / "link.html"
    target.write_text("old")
    link.symlink_to(target)
    assert cli(home, "preview", "alice@example.org", "--output", str(link)).returncode == 0
    assert link.is_symlink() and "<html" in target.read_text()
    proc = cli(home, "preview", "alice@example.org", "--format", "text", "--output", "-")
    assert proc.returncode == 0 and "Daily Papers" in proc.stdout
    assert not (Path.cwd() / "-").exists()


def test_json_commands_print_json_even_when_they_fail(tmp_path: Path) -> None:
    """A script reading `--json` gets a JSON object on stdout on an error too, with the sentence
    and the exit code (the sentence stays on stderr)."""
    for args in (("status", "--json"), ("run", "--json", "--dry-run"), ("keywords", "list", "--json")):
        proc = cli(tmp_path / "none", *args)
        assert proc.returncode == 2 and "digestd init" in proc.stderr
        doc = json.loads(proc.stdout)
        assert doc["exit_code"] == 2 and "digestd init" in doc["error"]
    home = write_instance(tmp_path / "i", [KW], [{"email": "alice@example.org"}])
    (home / "state" / "papers.json").write_text("{broken")
    proc = cli(home, "status", "--json")
    assert proc.returncode == 1 and "papers.json" in json.loads(proc.stdout)["error"]
    proc = cli(home, "status")
    assert proc.returncode == 1 and proc.stdout == ""
