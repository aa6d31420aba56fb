"""`digestd subscribers add|remove|pause|resume|set|import|export`: edits that keep the file.

Byte-level: an edit changes only the lines it must (comments, their columns, blank lines and
order stay), an edit undone gives back the very same bytes, and a refused edit (exit 2, one
sentence) leaves the file byte-identical.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
from datetime import date
from pathlib import Path

import pytest
from conftest import cli

from digestd.config.load import load_config

VAD, VLM, DP = "Video Anomaly Detection", "Vision Language Model", "Diffusion Policy"

# Hand-written, zero-offset sequences, comments everywhere (what a person keeps in git).
HAND = """\
# Who gets the Daily Papers digest.   (top comment)
keywords:        # three searches
- Video Anomaly Detection      # the first one
- name: Vision Language Model
  categories: [cs.CV, cs.CL]   # only these
- Diffusion Policy

# --- people ---
subscribers:
- email: alice@example.org     # since 2024
  name: Alice
  keywords: [Video Anomaly Detection]
# bob asked for everything
- email: bob@example.org
  frequency: weekly
settings:
  from: Daily Papers <papers@example.org>   # sender
  max_results: 100
# end of file
"""


def run_cli(capsys: pytest.CaptureFixture[str], home: Path, *args: str) -> tuple[int, str, str]:
    """`digestd --home HOME ARGS` in process (the same main() as the console script)."""
    from digestd.cli.app import main

    argv = sys.argv
    sys.argv = ["digestd", "--home", str(home), *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "subscribers.yaml").write_text(HAND, encoding="utf-8")
    return tmp_path


def yaml_bytes(home: Path) -> bytes:
    return (home / "subscribers.yaml").read_bytes()


def test_add_inserts_only_the_new_lines(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, out, _ = run_cli(capsys, home, "subscribers", "add", "Carol@Example.org", "--name", "Carol",
                           "--keyword", VLM, "--keyword", DP, "--frequency", "weekly")
    assert code == 0, out
    assert out == f"added Carol@example.org ({VLM}, {DP}; weekly)\n"
    new = "- email: Carol@example.org\n  name: Carol\n  keywords: [Vision Language Model, Diffusion Policy]\n" \
          "  frequency: weekly\n"
    assert yaml_bytes(home).decode() == HAND.replace("settings:\n", new + "settings:\n")

    code, out, _ = run_cli(capsys, home, "subscribers", "add", "dave@example.org")
    assert (code, out) == (0, "added dave@example.org (all keywords; daily)\n")
    code, out, _ = run_cli(capsys, home, "subscribers", "remove", "DAVE@example.org")
    assert (code, out) == (0, "removed dave@example.org\n")
    code, out, _ = run_cli(capsys, home, "subscribers", "remove", "carol@example.org")
    assert yaml_bytes(home).decode() == HAND  # add then remove: the very same bytes


def test_removing_keeps_every_other_line(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    alice = "- email: alice@example.org     # since 2024\n  name: Alice\n  keywords: [Video Anomaly Detection]\n"
    bob = "- email: bob@example.org\n  frequency: weekly\n"
    assert run_cli(capsys, home, "subscribers", "remove", "alice@example.org")[0] == 0
    assert yaml_bytes(home).decode() == HAND.replace(alice, "")  # "# bob asked ..." stays
    (home / "subscribers.yaml").write_text(HAND, encoding="utf-8")
    assert run_cli(capsys, home, "subscribers", "remove", "bob@example.org")[0] == 0
    assert yaml_bytes(home).decode() == HAND.replace(bob, "")
    (home / "subscribers.yaml").write_text(HAND, encoding="utf-8")
    code, out, _ = run_cli(capsys, home, "keywords", "remove", DP)
    assert code == 0, out
    assert yaml_bytes(home).decode() == HAND.replace("- Diffusion Policy\n", "")  # "# --- people" stays


def test_an_edit_of_a_symlinked_file_writes_its_target(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """subscribers.yaml kept elsewhere (a config repository) and linked in: the edit goes to the
    target and the link stays (was: the link replaced by a copy, the target never edited)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "subscribers.yaml").write_text(HAND, encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()
    (home / "subscribers.yaml").symlink_to(repo / "subscribers.yaml")
    assert run_cli(capsys, home, "subscribers", "add", "dave@example.org")[0] == 0
    assert (home / "subscribers.yaml").is_symlink()
    assert "- email: dave@example.org\n" in (repo / "subscribers.yaml").read_text()
    assert sorted(p.name for p in repo.iterdir()) == ["subscribers.yaml"]  # no temp file left


def test_an_edit_keeps_crlf_line_ends(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    """A file saved on Windows: every line used to come back with LF alone."""
    crlf = HAND.replace("\n", "\r\n").encode()
    (home / "subscribers.yaml").write_bytes(crlf)
    assert run_cli(capsys, home, "subscribers", "add", "dave@example.org")[0] == 0
    assert yaml_bytes(home) == crlf.replace(b"settings:", b"- email: dave@example.org\r\nsettings:")
    assert run_cli(capsys, home, "subscribers", "remove", "dave@example.org")[0] == 0
    assert yaml_bytes(home) == crlf


def test_add_to_a_new_instance_keeps_its_comments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from digestd.config.instance import INIT_YAML

    assert run_cli(capsys, tmp_path, "init")[0] == 0
    assert yaml_bytes(tmp_path).decode() == INIT_YAML
    code, out, _ = run_cli(capsys, tmp_path, "subscribers", "add", "ann@example.org", "-k", VAD)
    assert code == 0, out
    expected = INIT_YAML.replace(
        "subscribers: []\n", f"subscribers:\n  - email: ann@example.org\n    keywords: [{VAD}]\n"
    )
    assert yaml_bytes(tmp_path).decode() == expected
    cfg = load_config(tmp_path, {})
    assert [(s.email, s.keywords) for s in cfg.subscribers] == [("ann@example.org", (VAD,))]


def test_pause_resume_set(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    code, out, _ = run_cli(capsys, home, "subscribers", "pause", "alice@example.org")
    assert code == 0 and out.startswith("alice@example.org is now paused")
    assert yaml_bytes(home).decode() == HAND.replace(
        "  keywords: [Video Anomaly Detection]\n", "  keywords: [Video Anomaly Detection]\n  status: paused\n"
    )
    paused = yaml_bytes(home)
    code, out, _ = run_cli(capsys, home, "subscribers", "pause", "alice@example.org")
    assert code == 0 and "already paused; nothing changed" in out and yaml_bytes(home) == paused
    code, out, _ = run_cli(capsys, home, "subscribers", "list", "--json")
    assert [r["status"] for r in json.loads(out)] == ["paused", "active"]
    code, out, _ = run_cli(capsys, home, "subscribers", "resume", "alice@example.org")
    assert code == 0 and out.startswith("alice@example.org is now active")
    assert yaml_bytes(home).decode() == HAND

    code, out, _ = run_cli(capsys, home, "subscribers", "set", "alice@example.org",
                           "--keyword", VLM, "--keyword", DP, "--frequency", "weekly")
    assert code == 0
    assert out.splitlines() == [
        f"alice@example.org follows {VLM}, {DP} (was: {VAD})",
        "alice@example.org gets a weekly digest (was: daily)",
    ]
    assert yaml_bytes(home).decode() == HAND.replace(
        "  keywords: [Video Anomaly Detection]\n",
        "  keywords: [Vision Language Model, Diffusion Policy]\n  frequency: weekly\n",
    )
    before = yaml_bytes(home)
    code, out, _ = run_cli(capsys, home, "subscribers", "set", "alice@example.org", "-k", VLM, "-k", DP,
                           "--frequency", "weekly")
    assert (code, out) == (0, "alice@example.org already has these settings; nothing changed\n")
    assert yaml_bytes(home) == before
    code, out, _ = run_cli(capsys, home, "subscribers", "set", "bob@example.org", "--frequency", "daily")
    assert out == "bob@example.org gets a daily digest (was: weekly)\n"
    assert "  frequency: weekly\nsettings" not in yaml_bytes(home).decode()  # the default is not written
    assert [s.frequency.value for s in load_config(home, {}).subscribers] == ["weekly", "daily"]


BAD = [
    (["add", "not-an-address"], "is not a valid e-mail address"),
    (["add", "a@b@example.org"], "is not a valid e-mail address"),
    (["add", "ALICE@example.org"], "alice@example.org is already a subscriber"),
    (["add", "zed@example.org", "--keyword", "Quantum"], "'Quantum' is not a configured keyword"),
    (["add", "zed@example.org", "--frequency", "monthly"], "'monthly' is not a frequency: use daily or weekly"),
    (["remove", "nobody@example.org"], "nobody@example.org is not a subscriber"),
    (["pause", "nobody@example.org"], "nobody@example.org is not a subscriber"),
    (["resume", "nobody@example.org"], "nobody@example.org is not a subscriber"),
    (["set", "alice@example.org", "--keyword", "Quantum"], "'Quantum' is not a configured keyword"),
    (["set", "nobody@example.org", "--frequency", "weekly"], "nobody@example.org is not a subscriber"),
    (["set", "alice@example.org", "--name", " "], "a name must not be blank; leave the name out for none"),
    (["set", "alice@example.org", "--name", "A\x1bB"], "without control characters (found U+001B)"),
    (["export", "--format", "xml"], "use csv or json"),
    (["import", "missing.csv"], "cannot read"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_changes_nothing(capsys: pytest.CaptureFixture[str], home: Path, args: list[str],
                                   message: str) -> None:
    code, out, err = run_cli(capsys, home, "subscribers", *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert yaml_bytes(home).decode() == HAND


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("rows", "message"), [
    ("email,name\ncarol@example.org,Carol\nnot-an-address,X\n", "line 3: 'not-an-address' is not a valid"),
    ("carol@example.org,Carol,Quantum\n", "line 1: 'Quantum' is not a configured keyword"),
    ("carol@example.org,Carol,,monthly\n", "line 1: 'monthly' is not a frequency: use daily or weekly"),
    ("email,colour\ncarol@example.org,red\n", "line 1: unknown column 'colour'"),
    ("carol@example.org,Carol,,daily,active,extra\n", "line 1: 6 columns, expected at most 5"),
    ("email,name,Email\ncarol@example.org,Carol,dave@example.org\n", "line 1: column 'email' is named twice"),
])
def test_import_refuses_the_whole_file(capsys: pytest.CaptureFixture[str], home: Path, rows: str,
                                       message: str) -> None:
    path = write_csv(home / "people.csv", rows)
    code, _, err = run_cli(capsys, home, "subscribers", "import", str(path))
    assert code == 2
    assert f"{path}, {message}" in err and "nothing was imported" in err
    assert len(err.strip().splitlines()) == 1
    assert yaml_bytes(home).decode() == HAND


def test_import_then_export(capsys: pytest.CaptureFixture[str], home: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "people.csv", (
        "Email,Name,Keywords,Frequency\n"
        "# a comment row is skipped\n"
        "carol@example.org,\"Carol, PhD\",Vision Language Model;Diffusion Policy,weekly\n"
        "\n"
        "bob@example.org,Bob,,\n"
        "dan@example.org,,,\n"
        "dan@example.org,Dan again,,\n"
    ))
    code, out, _ = run_cli(capsys, home, "subscribers", "import", str(path))
    assert code == 0
    assert out.splitlines() == [
        f"added carol@example.org ({VLM}, {DP}; weekly)",
        "skipped bob@example.org (line 5): already a subscriber",
        "added dan@example.org (all keywords; daily)",
        "skipped dan@example.org (line 7): already a subscriber",
        f"imported 2 of 4 subscriber(s) from {path}",
    ]
    text = yaml_bytes(home).decode()
    assert text.startswith(HAND.split("settings:")[0])  # everything before stays as it was
    assert "- email: carol@example.org\n  name: Carol, PhD\n" in text

    code, out, _ = run_cli(capsys, home, "subscribers", "export")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [
        ["email", "name", "keywords", "frequency", "status"],
        ["alice@example.org", "Alice", VAD, "daily", "active"],
        ["bob@example.org", "", "", "weekly", "active"],
        ["carol@example.org", "Carol, PhD", f"{VLM};{DP}", "weekly", "active"],
        ["dan@example.org", "", "", "daily", "active"],
    ]
    code, js, _ = run_cli(capsys, home, "subscribers", "export", "--format", "json")
    data = json.loads(js)
    assert data[1] == {"email": "bob@example.org", "name": None, "keywords": [VAD, VLM, DP],
                       "all_keywords": True, "frequency": "weekly", "status": "active"}

    # What export writes, import reads: a second instance ends up with the same subscribers.
    other = tmp_path / "other"
    other.mkdir()
    (other / "subscribers.yaml").write_text(HAND.split("# --- people")[0] + "subscribers: []\n", encoding="utf-8")
    run_cli(capsys, home, "subscribers", "pause", "dan@example.org")
    code, out, _ = run_cli(capsys, home, "subscribers", "export")
    assert run_cli(capsys, other, "subscribers", "import", str(write_csv(tmp_path / "x.csv", out)))[0] == 0
    assert load_config(other, {}).subscribers == load_config(home, {}).subscribers

    # A cell a spreadsheet would run as a formula is exported after a ', and imported back.
    run_cli(capsys, home, "subscribers", "add", "=1+1@example.org", "--name", "@SUM(1)")
    code, out, _ = run_cli(capsys, home, "subscribers", "export")
    assert "'=1+1@example.org,'@SUM(1)," in out and "\n=" not in out and ",=" not in out and ",@" not in out
    third = tmp_path / "third"
    third.mkdir()
    (third / "subscribers.yaml").write_text(HAND.split("# --- people")[0] + "subscribers: []\n", encoding="utf-8")
    assert run_cli(capsys, third, "subscribers", "import", str(write_csv(tmp_path / "y.csv", out)))[0] == 0
    assert load_config(third, {}).subscribers == load_config(home, {}).subscribers

    # One person's export is JSON only: a CSV asked for is refused, not answered in JSON.
    code, out, err = run_cli(capsys, home, "subscribers", "export", "alice@example.org", "--format", "csv")
    assert code == 2 and out == "" and "JSON only" in err and "Traceback" not in err
    code, out, _ = run_cli(capsys, home, "subscribers", "export", "alice@example.org", "--format", "json")
    assert code == 0 and json.loads(out)


def test_set_says_what_its_options_do_and_refuses_to_change_nothing(
    capsys: pytest.CaptureFixture[str], home: Path
) -> None:
    code, out, _ = run_cli(capsys, home, "subscribers", "set", "--help")
    help_text = " ".join(out.split())
    assert code == 0 and "replaces the list" in help_text and "none means all" not in help_text
    before = yaml_bytes(home)
    code, _, err = run_cli(capsys, home, "subscribers", "set", "alice@example.org")
    assert code == 2 and "nothing to change: give --keyword, --frequency or --name" in err
    assert yaml_bytes(home) == before


def test_list_shows_a_pause_until_a_date(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    from digestd.config import subscribers as subscriptions

    subscriptions.pause_until(home, "alice@example.org", date(2099, 1, 15))
    code, out, _ = run_cli(capsys, home, "subscribers", "list")
    assert code == 0 and out.splitlines()[0] == f"alice@example.org (Alice)  paused until 2099-01-15, daily: {VAD}"
    code, out, _ = run_cli(capsys, home, "subscribers", "list", "--json")
    assert [(r["status"], r["paused_until"]) for r in json.loads(out)] == [("active", "2099-01-15"), ("active", None)]


def test_addresses_are_checked_for_syntax_only(capsys: pytest.CaptureFixture[str], home: Path) -> None:
    # No DNS: a domain that does not exist is accepted (the tests run without network anyway).
    code, out, _ = run_cli(capsys, home, "subscribers", "add", "x@no-such-domain-digestd-test.org")
    assert code == 0, out


def test_concurrent_edits_lose_nothing(home: Path) -> None:
    from digestd.config import subscribers as subscriptions

    errors: list[BaseException] = []

    def add(i: int) -> None:
        try:
            subscriptions.add_subscriber(home, f"user{i}@example.org", None, [])
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    emails = {s.email for s in load_config(home, {}).subscribers}
    assert {f"user{i}@example.org" for i in range(12)} <= emails
    assert yaml_bytes(home).decode().startswith(HAND.split("settings:")[0])


def test_real_command_exit_codes(home: Path) -> None:
    bad = cli(home, "subscribers", "add", "not an address")
    assert bad.returncode == 2
    assert bad.stderr.startswith("digestd: 'not an address' is not a valid e-mail address")
    assert len(bad.stderr.strip().splitlines()) == 1 and yaml_bytes(home).decode() == HAND
    ok = cli(home, "subscribers", "add", "erin@example.org", "--frequency", "weekly")
    assert ok.returncode == 0 and ok.stdout == "added erin@example.org (all keywords; weekly)\n"
