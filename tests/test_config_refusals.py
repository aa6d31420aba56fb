"""Values from outside that used to escape as an OSError, a csv.Error or a silent NaN, each now
one sentence naming what to fix, with the exit code of a user's mistake (2) or an error (1)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import cli

from digestd.config.env import read_environment
from digestd.config.load import load_config
from digestd.config.settings import Settings
from digestd.errors import ConfigError, UsageError

BASE = "keywords: [A]\nsubscribers:\n  - email: a@example.org\nsettings:\n  list_name: L\n"


def _home(tmp_path: Path, text: str = BASE) -> Path:
    home = tmp_path / "home"
    (home / "state").mkdir(parents=True, exist_ok=True)
    (home / "subscribers.yaml").write_text(text, encoding="utf-8")
    return home


def _one_sentence(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digestd: ") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("zone", ["America", "x" * 300])
def test_a_timezone_that_names_a_folder_or_is_too_long_is_unknown(tmp_path: Path, zone: str) -> None:
    home = _home(tmp_path, BASE + f"  timezone: {zone}\n")
    with pytest.raises(ConfigError, match=r"subscribers.yaml, line 6: unknown timezone"):
        load_config(home, {})
    proc = cli(home, "status")
    assert proc.returncode == 2 and "unknown timezone" in _one_sentence(proc.stderr)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"DIGESTD_SMTP_PORT": "70000"}, "DIGESTD_SMTP_PORT must be a port number, not '70000'"),
        ({"DIGESTD_SMTP_PORT": "0"}, "DIGESTD_SMTP_PORT must be a port number, not '0'"),
        ({"DIGESTD_SMTP_TIMEOUT": "nan"}, "DIGESTD_SMTP_TIMEOUT must be a number of seconds, not 'nan'"),
        ({"DIGESTD_SMTP_BACKOFF": "inf"}, "DIGESTD_SMTP_BACKOFF must be a number of seconds, not 'inf'"),
        ({"DIGESTD_SMTP_TIMEOUT": "0"}, "DIGESTD_SMTP_TIMEOUT must be more than 0 seconds"),
        ({"DIGESTD_SMTP_DATA_TIMEOUT": "0"}, "DIGESTD_SMTP_DATA_TIMEOUT must be more than 0 seconds"),
        ({"DIGESTD_ARXIV_TIMEOUT": "0"}, "DIGESTD_ARXIV_TIMEOUT must be more than 0 seconds"),
        ({"DIGESTD_ARXIV_TIMEOUT": "1e300"}, "DIGESTD_ARXIV_TIMEOUT must be at most 86400 seconds (a day), not '1e300'"),
        ({"DIGESTD_SMTP_BACKOFF": "1e9"}, "DIGESTD_SMTP_BACKOFF must be at most 86400 seconds (a day), not '1e9'"),
        ({"DIGESTD_ARXIV_DELAY": "86401"}, "DIGESTD_ARXIV_DELAY must be at most 86400 seconds (a day), not '86401'"),
    ],
)
def test_smtp_numbers_out_of_range_are_refused(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as err:
        read_environment({"DIGESTD_SMTP_HOST": "127.0.0.1", **env}, Settings())
    assert str(err.value) == says


@pytest.mark.parametrize("env", [{"DIGESTD_ARXIV_TIMEOUT": "0"}, {"DIGESTD_ARXIV_TIMEOUT": "1e300"}])
def test_an_arxiv_timeout_no_fetch_can_use_is_refused_before_the_run(tmp_path: Path, env: dict[str, str]) -> None:
    """Was accepted, then every keyword failed at run time (ValueError, OverflowError), exit 75."""
    proc = cli(_home(tmp_path), "run", "--dry-run", env={"DIGESTD_ARXIV_API_URL": "http://127.0.0.1:9/", **env})
    assert proc.returncode == 2 and "DIGESTD_ARXIV_TIMEOUT must be" in _one_sentence(proc.stderr)


def test_a_secret_file_that_is_not_text_is_refused_without_showing_it(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"\xff\xfe s3cr3t")
    with pytest.raises(ConfigError) as err:
        read_environment({"DIGESTD_SECRET_FILE": str(secret)}, Settings())
    assert str(err.value) == f"cannot read DIGESTD_SECRET_FILE {secret}: it is not UTF-8 text"


@pytest.mark.parametrize("variable", ["DIGESTD_SECRET_FILE", "DIGESTD_SECRET_PREVIOUS_FILE",
                                      "DIGESTD_SMTP_PASSWORD_FILE", "DIGESTD_BOUNCE_IMAP_PASSWORD_FILE"])
@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "too_large"])
def test_a_secret_file_that_is_no_small_regular_file_is_refused(tmp_path: Path, variable: str, kind: str) -> None:
    """Was: a FIFO blocked every command for ever, /dev/zero ended in "internal error: MemoryError"."""
    path = tmp_path / "secret"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_text("k" * (64 * 1024 + 1))
    env = {"DIGESTD_SMTP_HOST": "127.0.0.1", "DIGESTD_SMTP_USERNAME": "u",
           "DIGESTD_BOUNCE_IMAP_URL": "imaps://bounces@mail.example.org/INBOX", variable: str(path)}
    if variable != "DIGESTD_SMTP_PASSWORD_FILE":
        env["DIGESTD_SMTP_PASSWORD"] = "p"
    says = f"{variable} {path} is larger than 64 KiB" if kind == "too_large" else \
        f"cannot read {variable} {path}: not a regular file"
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_config(_home(tmp_path), env)


@pytest.mark.parametrize("rate", [".nan", "true", "1e-300", "0.0009"])
def test_a_max_rate_that_is_not_a_number_is_refused(tmp_path: Path, rate: str) -> None:
    """1e-300 (or anything under MIN_RATE) made the run sleep for ever after its first message."""
    home = _home(tmp_path, BASE + f"  max_rate: {rate}\n")
    with pytest.raises(ConfigError, match=r"line 6: settings\.max_rate must be a positive number"):
        load_config(home, {})


def test_a_csv_cell_past_the_size_limit_is_one_sentence(tmp_path: Path) -> None:
    home = _home(tmp_path)
    big = tmp_path / "big.csv"
    big.write_text("email,name\nb@example.org," + "x" * 200_000 + "\n", encoding="utf-8")
    before = (home / "subscribers.yaml").read_bytes()
    proc = cli(home, "subscribers", "import", str(big))
    assert proc.returncode == 2
    assert _one_sentence(proc.stderr).endswith("field larger than field limit (131072); nothing was imported")
    assert (home / "subscribers.yaml").read_bytes() == before


def test_init_where_a_file_stands_names_the_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder", encoding="utf-8")
    proc = cli(tmp_path, "init", str(blocker / "home"))
    assert proc.returncode == 1
    assert _one_sentence(proc.stderr) == f"digestd: cannot create {blocker / 'home'}: Not a directory"


@pytest.mark.parametrize(
    "twin",
    ["J\u006f\u0308rg@example.org", "JÖRG@EXAMPLE.ORG", "jörg@xn--exmple-cua.org"],
    ids=["nfd", "case", "idna-domain"],
)
def test_one_mailbox_spelled_two_ways_is_listed_twice(tmp_path: Path, twin: str) -> None:
    """NFC/NFD, case and IDN/xn-- spellings of one address would mail that mailbox twice."""
    first = "jörg@exämple.org" if twin.endswith("xn--exmple-cua.org") else "jörg@example.org"
    home = _home(tmp_path, f"keywords: [A]\nsubscribers:\n  - email: {first}\n  - email: {twin}\n")
    with pytest.raises(ConfigError, match=r"line 4: subscriber .* is listed twice"):
        load_config(home, {})


def test_an_empty_keywords_key_is_refused_not_read_as_every_keyword(tmp_path: Path) -> None:
    home = _home(tmp_path, "keywords: [A, B]\nsubscribers:\n  - email: a@example.org\n    keywords:\n")
    with pytest.raises(ConfigError, match=r"line 4: `keywords:` of a@example.org is empty"):
        load_config(home, {})
    none = _home(tmp_path, "keywords: [A, B]\nsubscribers:\n  - email: a@example.org\n    keywords: []\n")
    assert load_config(none, {}).subscribers[0].keywords == ()  # `[]` says none, as before


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ('https://x.example.org/a"><script>', "characters a link cannot carry"),
        ("https://x.example.org/" + "p" * 300, "at most 200"),
        ("https://x.example.org/?a=1", "query"),
        ("ftp://x.example.org/", "http(s) URL"),
        ("https:///nohost", "http(s) URL"),
    ],
)
def test_a_public_url_that_cannot_go_into_headers_and_links_is_refused(tmp_path: Path, url: str, says: str) -> None:
    home = _home(tmp_path, BASE + f"  public_url: '{url}'\n")
    with pytest.raises(ConfigError, match=r"line 6: settings.public_url") as err:
        load_config(home, {"DIGESTD_SECRET": "s" * 32})
    assert says in str(err.value)


@pytest.mark.parametrize(
    ("value", "line"),
    [
        ("  - email: b@example.org\n    paused_until: 2026-02-30\n", 7),
        ("  - {email: b@example.org, paused_until: 2026-13-01}\n", 6),
        ("  - email: b@example.org\n    name: 0x_\n", 7),
        ("  - email: b@example.org\n    name: !!bool maybe\n", 7),
    ],
    ids=["feb30", "month13_flow", "hex_without_digits", "bool_tag"],
)
def test_a_value_yaml_cannot_build_is_refused_with_its_line(tmp_path: Path, value: str, line: int) -> None:
    """ruamel lets a bare ValueError, KeyError or IndexError out for these (was "internal error")."""
    text = "keywords: [A]\nsettings:\n  list_name: L\nsubscribers:\n  - email: a@example.org\n" + value
    home = _home(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"subscribers.yaml, line {line}: malformed YAML: cannot read the value"):
        load_config(home, {})
    for args in (("status",), ("subscribers", "add", "c@example.org")):
        proc = cli(home, *args)
        assert proc.returncode == 2 and f"line {line}: malformed YAML" in _one_sentence(proc.stderr)
    assert (home / "subscribers.yaml").read_text() == text


def _unbounded(path: Path, kind: str, text: str, shrink_limit: Callable[[], None]) -> str:
    """Put a FIFO, a link to /dev/zero, or `text` over a shrunk limit at `path`; the words the
    refusal must contain."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    else:
        shrink_limit()
        path.write_text(text, encoding="utf-8")
    return "is larger than" if kind == "too_large" else ": not a regular file"


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "too_large"])
def test_a_subscribers_yaml_that_is_no_bounded_file_is_refused(tmp_path: Path, kind: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: a FIFO blocked for ever, /dev/zero (or a runaway file) ran into "internal error:
    MemoryError"."""
    from digestd.config import yamlread

    home = _home(tmp_path)
    path = home / "subscribers.yaml"
    path.unlink()
    says = _unbounded(path, kind, BASE, lambda: monkeypatch.setattr(yamlread, "MAX_YAML_BYTES", 16))
    with pytest.raises(ConfigError, match=says):
        load_config(home, {})
    if kind != "too_large":
        proc = cli(home, "status", timeout=20)
        assert proc.returncode == 2 and says in _one_sentence(proc.stderr)


def test_crlf_line_ends_still_read_as_before(tmp_path: Path) -> None:
    home = _home(tmp_path, BASE.replace("\n", "\r\n"))
    assert load_config(home, {}).settings.list_name == "L"


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "too_large"])
def test_a_csv_to_import_that_is_no_bounded_file_is_refused(tmp_path: Path, kind: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: a FIFO blocked `subscribers import` for ever, /dev/zero ran into "internal error:
    MemoryError"."""
    from digestd.config import csvio

    home = _home(tmp_path)
    path = tmp_path / "in.csv"
    says = _unbounded(path, kind, "email\nb@example.org\nc@example.org\n",
                      lambda: monkeypatch.setattr(csvio, "MAX_CSV_BYTES", 16))
    with pytest.raises(UsageError, match=says):
        csvio.read_rows(path)
    if kind != "too_large":
        before = (home / "subscribers.yaml").read_bytes()
        proc = cli(home, "subscribers", "import", str(path), timeout=20)
        assert proc.returncode == 2 and says in _one_sentence(proc.stderr)
        assert (home / "subscribers.yaml").read_bytes() == before


def test_a_home_that_is_a_file_is_named_as_not_a_folder(tmp_path: Path) -> None:
    """Was "cannot read FILE/subscribers.yaml: [Errno 20] Not a directory: '...'"."""
    home = tmp_path / "home"
    home.write_text("not an instance")
    for args in (("status",), ("subscribers", "add", "b@example.org")):
        proc = cli(home, *args)
        assert proc.returncode == 2
        assert _one_sentence(proc.stderr) == f"digestd: {home} is not a folder: pass --home DIR, an instance's folder"
