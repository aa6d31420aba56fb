"""Trust (issue 9), points 8 and 10.

8. subscribers.yaml is strict where a typo costs mail: unknown keys, anchors/aliases/merge keys
   and control characters are refused naming file and line; frequency, weekly_day, status and
   keyword references match ignoring case; keyword names are unique ignoring case.
10. A killed write's temp files are swept; a failed write (ENOSPC, EFBIG, EROFS) names the file,
   leaves the old file whole and no temp file.

Each rule is checked through load_config and through the real CLI (a subprocess: exit 2, one
sentence naming file and line, no traceback), and for both YAML readers: fast_yaml's subset and
ruamel's path (a tab in a trailing comment sends the same lines to ruamel).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Inbox, at, cli, run_once, smtp_env
from fakearxiv import FakeArxiv
from fixtures import make_paper, make_papers

from digestd.config import edit as subscriptions
from digestd.config.fastyaml import NOT_SIMPLE, fast_yaml
from digestd.config.load import SUBSCRIBER_KEYS, load_config
from digestd.core.models import Frequency, SubscriberStatus
from digestd.core.plan import last_weekly_day
from digestd.errors import ConfigError
from digestd.store.atomic import WriteError, sweep_leftovers, write_atomic

VU, VAD = "Video Understanding", "Video Anomaly Detection"
REPO = Path(__file__).resolve().parent.parent

BASE = """\
keywords:
  - Video Understanding
  - Video Anomaly Detection
subscribers:
  - email: alice@example.org
    name: Alice
    keywords: [Video Understanding]
settings:
  from: Daily Papers <papers@example.org>
"""


def instance(tmp_path: Path, text: str) -> Path:
    home = tmp_path / "home"
    (home / "state").mkdir(parents=True, exist_ok=True)
    (home / "subscribers.yaml").write_text(text, encoding="utf-8")
    return home


def via_ruamel(text: str) -> str:
    """The same document on the same lines, outside fast_yaml's subset (a tab in a comment)."""
    out = text + "# \t\n"
    assert fast_yaml(out) is NOT_SIMPLE
    return out


def refused(home: Path) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(home, {})
    return str(err.value)


def one_sentence(proc: subprocess.CompletedProcess[str]) -> str:
    """The CLI's stderr: a single `digestd: ...` line, no traceback."""
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digestd: "), proc.stderr
    return lines[0].removeprefix("digestd: ")


def both_readers(tmp_path: Path, text: str) -> list[Path]:
    """Two instances with the same lines: one read by fast_yaml, one by ruamel."""
    assert fast_yaml(text) is not NOT_SIMPLE
    return [instance(tmp_path / "fast", text), instance(tmp_path / "ruamel", via_ruamel(text))]


# ------------------------------------------------------------------------------ unknown keys

TYPOS = [
    # (what the line becomes, the line number, the message)
    (BASE.replace("    name: Alice\n", "    name: Alice\n    stauts: paused\n"), 7,
     "unknown key 'stauts' in a subscriber entry (did you mean 'status'?)"),
    (BASE.replace("    name: Alice\n", "    name: Alice\n    frequncy: weekly\n"), 7,
     "unknown key 'frequncy' in a subscriber entry (did you mean 'frequency'?)"),
    (BASE.replace("    keywords: [Video Understanding]\n", "    keyword: [Video Understanding]\n"), 7,
     "unknown key 'keyword' in a subscriber entry (did you mean 'keywords'?)"),
    (BASE.replace("    name: Alice\n", "    Name: Alice\n"), 6,
     "unknown key 'Name' in a subscriber entry (did you mean 'name'?)"),
    (BASE.replace("    name: Alice\n", "    colour: red\n"), 6,
     f"unknown key 'colour' in a subscriber entry (expected one of {', '.join(SUBSCRIBER_KEYS)})"),
    (BASE.replace("  - Video Anomaly Detection\n", "  - name: Video Anomaly Detection\n    querry: cat:cs.CV\n"), 4,
     "unknown key 'querry' in a keyword entry (did you mean 'query'?)"),
    (BASE + "  list_nam: Lab Papers\n", 10, "unknown setting 'list_nam' (did you mean 'list_name'?)"),
    (BASE + "  weeklyday: friday\n", 10, "unknown setting 'weeklyday' (did you mean 'weekly_day'?)"),
    (BASE.replace("settings:", "setings:"), 8, "unknown top-level key 'setings' (did you mean 'settings'?)"),
]


@pytest.mark.parametrize(("text", "line", "message"), TYPOS, ids=[m.split("'")[1] for _, _, m in TYPOS])
def test_a_typo_in_a_key_is_refused_with_file_line_and_the_key_it_meant(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    for home in both_readers(tmp_path, text):
        path = home / "subscribers.yaml"
        assert refused(home) == f"{path}, line {line}: {message}"
        proc = cli(home, "subscribers", "list")
        assert proc.returncode == 2
        assert one_sentence(proc) == f"{path}, line {line}: {message}"


def test_stauts_no_longer_costs_mail_silently(tmp_path: Path) -> None:
    """The reproduction from the issue: a paused subscriber whose `status` was misspelt."""
    home = instance(tmp_path, BASE.replace("    name: Alice\n", "    stauts: paused\n    frequncy: weekly\n"))
    proc = cli(home, "status")
    assert proc.returncode == 2
    said = one_sentence(proc)
    assert said.startswith(f"{home / 'subscribers.yaml'}, line 6: ")
    assert "'stauts'" in said and "did you mean 'status'?" in said


def test_a_cli_edit_of_a_file_with_a_typo_names_the_line_and_changes_nothing(tmp_path: Path) -> None:
    home = instance(tmp_path, BASE.replace("    name: Alice\n", "    name: Alice\n    stauts: paused\n"))
    before = (home / "subscribers.yaml").read_bytes()
    proc = cli(home, "subscribers", "add", "bob@example.org")
    assert proc.returncode == 2
    said = one_sentence(proc)
    assert said.startswith(f"{home / 'subscribers.yaml'}, line 7: unknown key 'stauts' in a subscriber entry")
    assert "nothing was changed" in said
    assert (home / "subscribers.yaml").read_bytes() == before


# ------------------------------------------------------------------ anchors, aliases, merges

REFERENCES = [
    ("keywords: &kws\n  - Video Understanding\nsubscribers:\n  - email: a@example.org\n    keywords: *kws\n",
     1, "YAML anchor '&kws'"),
    ("keywords:\n  - &vu Video Understanding\nsubscribers:\n  - email: a@example.org\n    keywords: [*vu]\n",
     2, "YAML anchor '&vu'"),
    ("keywords: [A]\nsubscribers:\n  - email: a@example.org\n    keywords: *undefined\n",
     4, "YAML alias '*undefined'"),
    ("keywords: [A]\nsubscribers:\n  - email: a@example.org\n    <<: {status: paused}\n",
     4, "YAML merge key '<<'"),
    ("keywords: [A]\nsettings:\n  !!merge x: {list_name: Lab}\n", 3, "YAML merge tag '!!merge'"),
]


@pytest.mark.parametrize(("text", "line", "what"), REFERENCES, ids=["anchor", "scalar-anchor", "alias", "merge", "tag"])
def test_anchors_aliases_and_merge_keys_are_refused_with_the_line(
    tmp_path: Path, text: str, line: int, what: str
) -> None:
    assert fast_yaml(text) is NOT_SIMPLE  # the fast reader never builds one: ruamel's path refuses
    home = instance(tmp_path, text)
    path = home / "subscribers.yaml"
    expected = f"{path}, line {line}: {what} is not allowed in this file; write the value out in full"
    assert refused(home) == expected
    proc = cli(home, "subscribers", "list")
    assert proc.returncode == 2 and one_sentence(proc) == expected
    edit = cli(home, "subscribers", "add", "bob@example.org")  # the round-trip editor refuses too
    assert edit.returncode == 2 and one_sentence(edit) == expected
    assert path.read_text() == text


BOMB = (
    "keywords: [A]\nsubscribers:\n  - email: [&a [lol,lol,lol,lol,lol,lol,lol,lol,lol], "
    + ", ".join(f"&{n} [{','.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
    + "]\n"
)
BOMB_CHILD = """\
import json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # a regression dies here, not the machine
from digestd.cli.app import main
sys.argv = ["digestd", "--home", sys.argv[1], "subscribers", "list"]
start = time.monotonic()
try:
    main()
    code = 0
except SystemExit as exc:
    code = exc.code
except MemoryError:
    code = "MemoryError"
seconds = time.monotonic() - start
# VmHWM: this process's own peak (ru_maxrss would keep the forking parent's peak across exec)
rss = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"code": code, "seconds": seconds, "maxrss_kib": rss}), file=sys.stdout)
"""


def test_a_400_byte_alias_bomb_is_refused_at_once_with_little_memory(tmp_path: Path) -> None:
    """Expanded, this file is 9**9 (387 million) strings; digestd before the check ran out of a
    2 GiB address space after 38 s. Now the first anchor ends it: 0.01 s, about 20 MiB of RSS
    for the whole CLI process (Python, ruamel, digestd)."""
    assert len(BOMB) < 400
    home = instance(tmp_path, BOMB)
    proc = subprocess.run([sys.executable, "-c", BOMB_CHILD, str(home)], capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO)
    result = json.loads(proc.stdout)
    assert result["code"] == 2, proc.stderr
    assert one_sentence(proc) == (f"{home / 'subscribers.yaml'}, line 3: YAML anchor '&a' is not allowed "
                                  "in this file; write the value out in full")
    assert result["maxrss_kib"] < 200 * 1024  # measured: ~20 MiB
    assert result["seconds"] < 5  # measured: 0.01 s


@pytest.mark.parametrize("text", [
    "keywords: " + "[" * 100 + "]" * 100 + "\n",
    "".join(" " * i + f"k{i}:\n" for i in range(2000)),  # block style: the fast reader's subset
], ids=["flow", "block"])
def test_deep_nesting_is_refused_by_line_not_a_recursion_error(tmp_path: Path, text: str) -> None:
    home = instance(tmp_path, text)
    said = refused(home)
    assert said.startswith(f"{home / 'subscribers.yaml'}, line ") and "nested more than 32 levels deep" in said
    proc = cli(home, "subscribers", "list")
    assert proc.returncode == 2 and "nested more than 32 levels deep" in one_sentence(proc)


# ------------------------------------------------------------------------ control characters

CONTROLS = {"NUL": "\\0", "BEL": "\\a", "TAB": "\\t", "LF": "\\n", "CR": "\\r", "ESC": "\\e", "DEL": "\\x7f",
            "NEL": "\\N", "CSI": "\\x9b", "LS": "\\L", "PS": "\\P"}
CODES = {"NUL": "U+0000", "BEL": "U+0007", "TAB": "U+0009", "LF": "U+000A", "CR": "U+000D", "ESC": "U+001B",
         "DEL": "U+007F", "NEL": "U+0085", "CSI": "U+009B", "LS": "U+2028", "PS": "U+2029"}
# Each field as a line of BASE with a double-quoted value; "{c}" is where the character goes.
FIELDS = {
    "name": ("    name: Alice\n", '    name: "Al{c}ice"\n', 6, "the name of alice@example.org"),
    "email": ("  - email: alice@example.org\n", '  - email: "alice{c}@example.org"\n', 5, "the email of a subscriber"),
    "keyword reference": ("    keywords: [Video Understanding]\n", '    keywords: ["Video{c}Understanding"]\n', 7,
                          "a keyword of alice@example.org"),
    "keyword name": ("  - Video Anomaly Detection\n", '  - "Video{c}Anomaly Detection"\n', 3, "a keyword name"),
    "query": ("  - Video Anomaly Detection\n", '  - name: Video Anomaly Detection\n    query: "cat:cs.CV{c}"\n', 4,
              "the query of a keyword"),
    "categories": ("  - Video Anomaly Detection\n",
                   '  - name: Video Anomaly Detection\n    categories: ["cs.CV{c}"]\n', 4,
                   "the categories of a keyword"),
    "list_name": ("settings:\n", 'settings:\n  list_name: "Daily{c}Papers"\n', 9, "settings.list_name"),
    "from": ("  from: Daily Papers <papers@example.org>\n", '  from: "Daily{c}Papers <papers@example.org>"\n', 9,
             "settings.from"),
    "timezone": ("settings:\n", 'settings:\n  timezone: "UTC{c}"\n', 9, "settings.timezone"),
    "frequency": ("    name: Alice\n", '    frequency: "daily{c}"\n', 6, "the frequency of alice@example.org"),
}
CASES = [(f, c) for f in FIELDS for c in (["BEL", "LF", "DEL", "CSI", "LS"] if f not in ("name", "list_name")
                                           else list(CONTROLS))]


@pytest.mark.parametrize(("field", "char"), CASES, ids=[f"{f}-{c}" for f, c in CASES])
def test_control_characters_are_refused_in_every_text_field(tmp_path: Path, field: str, char: str) -> None:
    old, new, line, label = FIELDS[field]
    text = BASE.replace(old, new.replace("{c}", CONTROLS[char]))
    assert text != BASE
    home = instance(tmp_path, text)
    assert refused(home) == (f"{home / 'subscribers.yaml'}, line {line}: {label} must be one line of text "
                             f"without control characters (found {CODES[char]})")


@pytest.mark.parametrize("char", ["\x85", "\x9b", "\u2028", "\u2029", "\x7f", "\x1b", "\x00", "\x0c", "\ufffe"])
@pytest.mark.parametrize("place", ["value", "comment"])
def test_raw_control_characters_in_the_file_are_refused_before_either_reader(
    tmp_path: Path, char: str, place: str
) -> None:
    """Raw, the readers would disagree: fast_yaml keeps NEL, U+2028 and U+2029 in a plain scalar,
    ruamel folds them into a space (and the editor would have rewritten "Al<NEL>ice" as "Al ice")."""
    line = f"    name: Al{char}ice\n" if place == "value" else f"    name: Alice   # {char}\n"
    text = BASE.replace("    name: Alice\n", line)
    home = instance(tmp_path, text)
    kind = "character" if char == "\ufffe" else "control character"  # U+FFFE: a non-character YAML refuses
    expected = (f"{home / 'subscribers.yaml'}, line 6: {kind} U+{ord(char):04X} is not allowed; "
                "text fields must be one line of printable text")
    assert refused(home) == expected
    for args in (["subscribers", "list"], ["subscribers", "add", "bob@example.org"])[: 2 if place == "value" else 1]:
        proc = cli(home, *args)
        assert proc.returncode == 2 and one_sentence(proc) == expected
    assert (home / "subscribers.yaml").read_text() == text


def test_a_control_character_in_a_key_is_refused_without_echoing_it(tmp_path: Path) -> None:
    home = instance(tmp_path, BASE + '  "list\\e[2Jname": x\n')
    said = refused(home)
    assert said == (f"{home / 'subscribers.yaml'}, line 10: a key must be one line of text without control "
                    "characters (found U+001B)")


def test_control_characters_reaching_headers_are_refused_through_the_cli(tmp_path: Path) -> None:
    home = instance(tmp_path, BASE.replace("settings:\n", 'settings:\n  list_name: "Lab\\r\\nBcc: x@evil.example"\n'))
    proc = cli(home, "subscribers", "list")
    assert proc.returncode == 2
    assert one_sentence(proc) == (f"{home / 'subscribers.yaml'}, line 9: settings.list_name must be one line of "
                                  "text without control characters (found U+000D)")
    home = instance(tmp_path / "2", BASE)
    before = (home / "subscribers.yaml").read_bytes()
    for args in (["subscribers", "add", "bob@example.org", "--name", "Bob\x1b[31m"],
                 ["subscribers", "add", "bob@example.org", "--name", "Bob\u2028Bcc: x@evil.example"],
                 ["subscribers", "set", "alice@example.org", "--name", "A\x7f"],
                 ["keywords", "add", "Vision\x07Language"],
                 ["keywords", "add", "Vision Language", "--query", "cat:cs.CV\u2029"],
                 ["keywords", "add", "Vision Language", "--category", "cs.CV\x85"]):
        proc = cli(home, *args)
        assert proc.returncode == 2, args
        said = one_sentence(proc)
        assert "control character" in said, said
        assert (home / "subscribers.yaml").read_bytes() == before
    with pytest.raises(ConfigError, match="DIGESTD_FROM must be one line of text without control characters"):
        load_config(home, {"DIGESTD_FROM": "Papers <p@example.org>\nBcc: x@evil.example"})


# ------------------------------------------------------------------------- ignoring case

CASED = """\
keywords:
  - Video Understanding
  - Video Anomaly Detection
subscribers:
  - email: alice@example.org
    keywords: [video understanding, VIDEO UNDERSTANDING]
    frequency: Weekly
  - email: bob@example.org
    status: Paused
    frequency: DAILY
settings:
  weekly_day: Monday
"""


def test_frequency_status_weekly_day_and_keyword_references_ignore_case(tmp_path: Path) -> None:
    for home in both_readers(tmp_path, CASED):
        cfg = load_config(home, {})
        alice, bob = cfg.subscribers
        assert alice.keywords == (VU,) and alice.frequency is Frequency.WEEKLY
        assert bob.status is SubscriberStatus.PAUSED and bob.frequency is Frequency.DAILY
        assert cfg.settings.weekly_day == "monday"
        assert last_weekly_day(at("2026-11-25").date(), cfg.settings.weekly_day).isoformat() == "2026-11-23"
        proc = cli(home, "subscribers", "list", "--json")
        assert proc.returncode == 0, proc.stderr
        rows = json.loads(proc.stdout)
        assert [(r["keywords"], r["frequency"], r["status"]) for r in rows] == [
            ([VU], "weekly", "active"), ([VU, VAD], "daily", "paused")]


def test_the_cli_matches_keywords_and_frequency_ignoring_case_and_writes_the_configured_spelling(
    tmp_path: Path,
) -> None:
    home = instance(tmp_path, CASED)
    add = cli(home, "subscribers", "add", "carol@example.org", "--frequency", "Weekly", "-k", "video anomaly detection")
    assert add.returncode == 0, add.stderr
    assert add.stdout == f"added carol@example.org ({VAD}; weekly)\n"
    text = (home / "subscribers.yaml").read_text()
    assert "- email: carol@example.org\n    keywords: [Video Anomaly Detection]\n    frequency: weekly\n" in text
    same = cli(home, "subscribers", "set", "alice@example.org", "--frequency", "WEEKLY", "-k", "Video understanding")
    assert same.stdout == "alice@example.org already has these settings; nothing changed\n", same.stderr
    pause = cli(home, "subscribers", "pause", "bob@example.org")
    assert pause.stdout == "bob@example.org is already paused; nothing changed\n"
    gone = cli(home, "keywords", "remove", "VIDEO UNDERSTANDING")
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.splitlines() == [
        f"removed keyword {VU!r}",
        "alice@example.org no longer follows it; they follow no keyword now and get no digest until "
        "`digestd subscribers set alice@example.org --keyword ...`",
    ]
    cfg = load_config(home, {})
    assert [k.name for k in cfg.keywords] == [VAD] and cfg.subscribers[0].keywords == ()


def test_a_subscriber_who_wrote_a_keyword_in_another_case_gets_mail_of_that_keyword(
    tmp_path: Path, smtp: tuple[Any, Inbox]
) -> None:
    controller, inbox = smtp
    home = instance(tmp_path, CASED.replace("    frequency: Weekly\n", "    frequency: Daily\n")
                    + "  timezone: UTC\n")
    env = smtp_env(controller)
    base = {VU: make_papers(VU, 3, first=0, date="2026-11-19"), VAD: make_papers(VAD, 3, first=500, date="2026-11-19")}
    with FakeArxiv(base) as fake:
        run_once(home, fake, env=env, now=at("2026-11-19"))  # baseline
        fake.feeds[VU] = [make_paper(100, VU, "2026-11-20"), *base[VU]]
        fake.feeds[VAD] = [make_paper(600, VAD, "2026-11-20"), *base[VAD]]
        report = run_once(home, fake, env=env, now=at("2026-11-20"))
    assert report.sent == 1 and report.failed == 0
    (msg,) = inbox.messages  # bob is paused (`status: Paused`)
    assert "alice@example.org" in str(msg["To"])
    part = msg.get_body(("plain",))
    assert part is not None
    body = part.get_content()
    assert "2611.00100" in body and "2611.00600" not in body


# --------------------------------------------------------------- keyword names are unique


def test_keyword_names_are_unique_ignoring_case_in_the_file(tmp_path: Path) -> None:
    text = BASE.replace("  - Video Anomaly Detection\n", "  - video understanding\n")
    for home in both_readers(tmp_path, text):
        expected = (f"{home / 'subscribers.yaml'}, line 3: keyword 'video understanding' is listed twice "
                    "(as 'Video Understanding' too: names are compared ignoring case and spaces)")
        assert refused(home) == expected
        proc = cli(home, "keywords", "list")
        assert proc.returncode == 2 and one_sentence(proc) == expected


def test_keywords_add_refuses_a_name_that_differs_only_in_case(tmp_path: Path) -> None:
    home = instance(tmp_path, BASE)
    before = (home / "subscribers.yaml").read_bytes()
    proc = cli(home, "keywords", "add", "video understanding")
    assert proc.returncode == 2
    assert one_sentence(proc) == ("keyword 'video understanding' is already configured as 'Video Understanding' "
                                  "(names are compared ignoring case and spaces)")
    assert (home / "subscribers.yaml").read_bytes() == before


def test_keyword_names_that_differ_only_in_spaces_are_one_keyword(tmp_path: Path) -> None:
    # "Video  Understanding" searched the same phrase as a second keyword: its own section,
    # the same papers twice; names are now told apart ignoring runs of spaces as well.
    home = instance(tmp_path, BASE)
    before = (home / "subscribers.yaml").read_bytes()
    proc = cli(home, "keywords", "add", "video  Understanding")
    assert proc.returncode == 2
    assert one_sentence(proc) == ("keyword 'video  Understanding' is already configured as 'Video Understanding' "
                                  "(names are compared ignoring case and spaces)")
    assert (home / "subscribers.yaml").read_bytes() == before
    text = BASE.replace("  - Video Anomaly Detection\n", "  - Video  Understanding\n")
    for home in both_readers(tmp_path / "file", text):
        assert refused(home) == (f"{home / 'subscribers.yaml'}, line 3: keyword 'Video  Understanding' is listed "
                                 "twice (as 'Video Understanding' too: names are compared ignoring case and spaces)")


# -------------------------------------------------------------------------- point 10: writes

KILLED_WRITER = """\
import os, sys
from pathlib import Path
from digestd.store.atomic import write_atomic
real = os.write
def stalled(fd, data):
    written = real(fd, bytes(data[:100]))
    print("temp file written in part", flush=True)
    sys.stdin.read()  # until killed
    return written
os.write = stalled
write_atomic(Path(sys.argv[1]), "new content " * 1000)
"""


def killed_write(target: Path) -> Path:
    """Kill a real `write_atomic(target)` in a child process half way; the temp file it left."""
    before = set(target.parent.iterdir())
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(target)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "temp file written in part\n"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        if child.stdin is not None:
            child.stdin.close()
        if child.stdout is not None:
            child.stdout.close()
    (left,) = set(target.parent.iterdir()) - before
    assert left.name.startswith(f".{target.name}.") and left.name.endswith(".tmp")
    return left


def test_sweep_removes_only_the_temp_files_write_atomic_made_for_those_targets(tmp_path: Path) -> None:
    home = instance(tmp_path, BASE)
    (home / "README.md").write_text("old readme\n")
    readme_tmp = killed_write(home / "README.md")
    yaml_tmp = killed_write(home / "subscribers.yaml")
    assert (home / "README.md").read_text() == "old readme\n" and (home / "subscribers.yaml").read_text() == BASE
    others = [home / n for n in (".README.md.tmp", ".README.md.notours!.tmp", ".README.md.abcdefgh.tmp.keep",
                                 "README.md.abcdefgh.tmp", ".NOTES.md.abcdefgh.tmp", ".README.md.ABCDEFGH.tmp")]
    for p in others:
        p.write_text("not ours")
    (home / ".README.md.0123abcd.tmp").mkdir()  # a folder is never removed
    assert sorted(sweep_leftovers(home / "README.md", home / "subscribers.yaml")) == sorted([readme_tmp, yaml_tmp])
    assert not readme_tmp.exists() and not yaml_tmp.exists()
    assert all(p.exists() for p in others) and (home / ".README.md.0123abcd.tmp").is_dir()
    assert sweep_leftovers(home / "README.md", tmp_path / "missing" / "x") == []


def test_subscribers_yaml_leftovers_are_swept_under_the_edit_lock(tmp_path: Path) -> None:
    home = instance(tmp_path, BASE)
    left = killed_write(home / "subscribers.yaml")
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # an edit is under way: its temp file must not be taken
        assert subscriptions.sweep_leftovers(home) == [] and left.exists()
    finally:
        os.close(fd)
    assert subscriptions.sweep_leftovers(home) == [left] and not left.exists()
    again = killed_write(home / "subscribers.yaml")
    proc = cli(home, "subscribers", "add", "bob@example.org")  # an edit sweeps before it writes
    assert proc.returncode == 0, proc.stderr
    assert not again.exists()
    assert [p.name for p in home.iterdir() if p.name.endswith(".tmp")] == []


def test_a_run_removes_the_leftovers_beside_readme_and_subscribers_yaml(tmp_path: Path) -> None:
    home = instance(tmp_path, BASE + "  timezone: UTC\n")
    (home / "README.md").write_text("old readme\n")
    left = [killed_write(home / "README.md"), killed_write(home / "subscribers.yaml")]
    with FakeArxiv({VU: make_papers(VU, 2), VAD: make_papers(VAD, 2, first=50)}) as fake:
        run_once(home, fake, now=at("2026-11-20"))
    assert not any(p.exists() for p in left)


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_enospc_names_the_file_removes_the_temp_file_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OS error is injected at os.write (what the kernel would answer on a full disk); what
    is tested is digestd's handling of it. test_a_full_disk_for_real does it without injection."""
    readme = tmp_path / "README.md"
    readme.write_text("old readme\n")
    real_write = os.write

    def full_disk(fd: int, data: Any) -> int:
        if fd > 2:
            raise OSError(28, os.strerror(28))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(WriteError) as err:
        write_atomic(readme, "new readme " * 100)
    monkeypatch.undo()
    assert str(err.value) == f"cannot write {readme}: no space left on device; free space and run again"
    assert err.value.exit_code == 1
    assert readme.read_text() == "old readme\n" and no_temp_files(tmp_path)


NAMESPACE_SCRIPT = """\
set -u
H=$1; OUT=$2; PY=$3
mount -t tmpfs -o size=64k digestd-test "$H" || exit 97
printf 'keywords: [A]\\nsubscribers: []\\n' > "$H/subscribers.yaml"
printf 'old readme\\n' > "$H/README.md"
mkdir "$H/state"
head -c 1000000 /dev/zero > "$H/filler" 2>/dev/null
DIGESTD_ARXIV_API_URL=http://127.0.0.1:9/ "$PY" -m digestd --home "$H" run >"$OUT/run.out" 2>"$OUT/run.err"; echo $? > "$OUT/run.rc"
"$PY" -m digestd --home "$H" subscribers add bob@example.org >"$OUT/add.out" 2>"$OUT/add.err"; echo $? > "$OUT/add.rc"
"$PY" -c 'import sys; from pathlib import Path; from digestd.render.readme import write_readme
try: write_readme(Path(sys.argv[1]) / "README.md", "new readme " * 1000)
except Exception as err: print(type(err).__name__, err)' "$H" > "$OUT/readme.out" 2>&1
rm "$H/filler"
mount -o remount,ro "$H"
"$PY" -m digestd --home "$H" subscribers add bob@example.org >"$OUT/ro.out" 2>"$OUT/ro.err"; echo $? > "$OUT/ro.rc"
cp "$H/subscribers.yaml" "$H/README.md" "$OUT/"
ls -a "$H" > "$OUT/ls"
"""


def test_a_full_disk_for_real(tmp_path: Path) -> None:
    """A 64 KiB tmpfs in a private mount namespace (unshare -Urm, no root needed where user
    namespaces are allowed), filled up, then a read-only remount: the real CLI and README writer
    name the file, the old files stay whole, and no temp file is left."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is not installed")
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    out.mkdir()
    proc = subprocess.run(["unshare", "-Urm", "sh", "-c", NAMESPACE_SCRIPT, "sh", str(home), str(out), sys.executable],
                          capture_output=True, text=True, timeout=120, check=False, cwd=REPO)
    if proc.returncode == 97 or not (out / "ls").exists():
        pytest.skip(f"no private tmpfs here: {proc.stderr.strip()[:200]}")
    path = home / "subscribers.yaml"
    assert (out / "add.rc").read_text() == "1\n"
    assert (out / "add.err").read_text() == f"digestd: cannot write {path}: no space left on device; free space and run again\n"
    assert (out / "readme.out").read_text() == (f"WriteError cannot write {home / 'README.md'}: no space left on "
                                                "device; free space and run again\n")
    assert (out / "ro.rc").read_text() == "1\n"
    assert (out / "ro.err").read_text() == (f"digestd: cannot write {path}: the file system is read-only; make it "
                                            "writable and run again\n")
    assert (out / "subscribers.yaml").read_text() == "keywords: [A]\nsubscribers: []\n"
    assert (out / "README.md").read_text() == "old readme\n"
    assert (out / "run.rc").read_text() == "1\n"  # the first write of a run is the lock's pid
    assert (out / "run.err").read_text() == (f"digestd: cannot write {home / 'state' / 'run.lock'}: No space left "
                                             "on device; free space and run again\n")
    assert (out / "ls").read_text().split() == [".", "..", "README.md", "state", "subscribers.yaml"]


FSIZE_CHILD = """\
import resource, sys
from pathlib import Path
from digestd.store.atomic import write_atomic
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # Python ignores SIGXFSZ: write() fails EFBIG
try:
    write_atomic(Path(sys.argv[1]), "x" * 100_000)
except Exception as err:
    print(type(err).__name__, err)
"""


def test_another_os_error_names_the_file_too(tmp_path: Path) -> None:
    """EFBIG for real: a file size limit (RLIMIT_FSIZE) in a child process."""
    target = tmp_path / "state" / "papers.json"
    target.parent.mkdir()
    target.write_text("{}")
    proc = subprocess.run([sys.executable, "-c", FSIZE_CHILD, str(target)], capture_output=True, text=True,
                          timeout=60, check=False, cwd=REPO)
    assert proc.stdout == (f"WriteError cannot write {target}: file too large for a file size limit in force; "
                           "raise the limit and run again\n"), proc.stderr
    assert target.read_text() == "{}" and no_temp_files(target.parent)


def test_write_atomic_still_writes_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "README.md"
    target.write_text("old")
    target.chmod(0o640)
    write_atomic(target, "new " * 100_000)
    assert target.read_text() == "new " * 100_000 and (target.stat().st_mode & 0o777) == 0o640
    write_atomic(tmp_path / "fresh.txt", b"bytes", mode=0o600)
    assert (tmp_path / "fresh.txt").read_bytes() == b"bytes" and ((tmp_path / "fresh.txt").stat().st_mode & 0o777) == 0o600
    assert no_temp_files(tmp_path)

