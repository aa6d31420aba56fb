"""Input that is valid syntax but the wrong shape or type: state files, subscribers.yaml,
the environment and the command line. Each is refused once, up front, with a sentence naming
the file, setting or variable, never a KeyError (or "internal error") later on.

Also the `digestd run` switches --no-readme, --json and --no-mail as a user meets them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import Inbox, at, cli, run_once, smtp_env, write_instance
from email_validator import EmailNotValidError, validate_email
from fakearxiv import FakeArxiv
from faultkit import run_cli
from fixtures import make_paper, make_papers
from smtpfaults import make_certs

from digestd.config.load import load_config
from digestd.config.settings import SmtpSettings
from digestd.config.values import looks_like_email
from digestd.errors import ConfigError, StateError
from digestd.mail.smtp import SmtpTransport
from digestd.mail.transport import make_transport
from digestd.pipeline import RunOptions
from digestd.store.outbox import Outbox
from digestd.store.papers import PaperStore

KW = "Video Anomaly Detection"
PAPER = {
    "id": "2611.00001", "version": 1, "title": "T", "link": "https://arxiv.org/abs/2611.00001v1",
    "pdf": None, "updated": "2026-11-20T12:00:00Z", "published": "2026-11-20T12:00:00Z",
    "authors": ["A"], "summary": "S", "comment": None, "categories": ["cs.CV"], "primary_category": "cs.CV",
}
DELIVERY = {
    "email": "alice@example.org", "date": "2026-11-20", "papers": {KW: ["2611.00001"]},
    "message_id": "<m1@example.org>", "status": "pending",
}


def no_traceback(proc: Any) -> None:
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------ state: the wrong shape

WRONG_PAPERS = {
    "doc_without_seq": {"papers": {"1": {"keyword": KW}}},
    "table_not_an_object": {"papers": [PAPER]},
    "paper_without_title": {"papers": {"1": {"keyword": KW, "seq": 1, "paper": {"id": "2611.00001"}}}},
    "paper_version_not_a_number": {"papers": {"1": {"keyword": KW, "seq": 1, "paper": {**PAPER, "version": "v1"}}}},
    "paper_not_an_object": {"papers": {"1": {"keyword": KW, "seq": 1, "paper": "2611.00001"}}},
    "seq_not_a_number": {"papers": {"1": {"keyword": KW, "seq": "1", "paper": PAPER}}},
    "title_not_text": {"papers": {"1": {"keyword": KW, "seq": 1, "paper": {**PAPER, "title": 7}}}},
    "doc_id_not_a_number": {"papers": {"one": {"keyword": KW, "seq": 1, "paper": PAPER}}},
    "meta_doc_a_list": {"meta": {"1": [1]}},
    "meta_seq_text": {"meta": {"1": {"seq": "many"}}},
    "meta_twice": {"meta": {"1": {"seq": 1}, "2": {"seq": 2}}},
    "meta_under_another_id": {"meta": {"2": {"seq": 1}}},
    "fetches_without_keyword": {"fetches": {"1": {"ok": True}}},
    "seen_without_map": {"seen": {"1": {"ids": {}}}},
    "unknown_table_of_numbers": {"other": {"1": 5}},
}
WRONG_OUTBOX = {
    "delivery_with_email_only": {"deliveries": {"1": {"email": "alice@example.org"}}},
    "delivery_papers_a_list": {"deliveries": {"1": {**DELIVERY, "papers": ["2611.00001"]}}},
    "delivery_status_unknown": {"deliveries": {"1": {**DELIVERY, "status": "queued"}}},
    "delivery_date_not_a_date": {"deliveries": {"1": {**DELIVERY, "date": "yesterday"}}},
    "delivery_message_id_missing": {"deliveries": {"1": {k: v for k, v in DELIVERY.items() if k != "message_id"}}},
    "delivery_a_string": {"deliveries": {"1": "alice@example.org"}},
    "cursors_without_map": {"cursors": {"1": {}}},
    "cursors_twice": {"cursors": {"1": {"map": {}}, "2": {"map": {}}}},
    "cursor_a_number": {"cursors": {"1": {"map": {"alice@example.org": 3}}}},
}


@pytest.mark.parametrize(
    ("name", "data"),
    [("papers.json", d) for d in WRONG_PAPERS.values()] + [("outbox.json", d) for d in WRONG_OUTBOX.values()],
    ids=[*WRONG_PAPERS, *WRONG_OUTBOX],
)
def test_valid_json_of_the_wrong_shape_is_moved_aside_on_open(tmp_path: Path, name: str, data: Any) -> None:
    path = tmp_path / "state" / name
    path.parent.mkdir()
    text = json.dumps(data)
    path.write_text(text)
    store = PaperStore if name == "papers.json" else Outbox
    with pytest.raises(StateError) as err:
        store(path)
    assert str(path) in str(err.value) and "unreadable" in str(err.value)
    (aside,) = path.parent.glob(f"{name}.corrupt-*")
    assert aside.read_text() == text and not path.exists()


def test_the_shape_check_accepts_what_digestd_writes(tmp_path: Path) -> None:
    path = tmp_path / "papers.json"
    path.write_text(json.dumps({
        "papers": {"1": {"keyword": KW, "seq": 1, "paper": PAPER}},
        "meta": {"1": {"seq": 1, "last_run": {"time": "2026-11-20T21:00:05Z", "date": "2026-11-20", "outcome": "ok",
                                              "sent": 1, "keywords": {KW: {"fetched": 5, "new": 1}}}}},
        "fetches": {"1": {"keyword": KW, "ok": True}},
        "seen": {"1": {"map": {KW: {"2611.00009": "2026-11-19"}}}},
    }))
    assert PaperStore(path).keyword_papers(KW)[0][1].title == "T"
    outbox = tmp_path / "outbox.json"
    outbox.write_text(json.dumps({"cursors": {"1": {"map": {"alice@example.org": {"queued_through": 1}}}},
                                  "deliveries": {"1": DELIVERY, "2": {**DELIVERY, "status": "sent"}}}))
    assert len(Outbox(outbox).pending()) == 1


def test_wrong_shape_papers_json_exits_1_naming_it_instead_of_a_key_error(tmp_path: Path) -> None:
    home = write_instance(tmp_path / "home", [KW], [{"email": "alice@example.org"}], timezone="UTC")
    path = home / "state" / "papers.json"
    path.write_text('{"papers":{"1":{"keyword":"x"}}}')
    with FakeArxiv({KW: make_papers(KW, 3)}) as fake:
        proc = run_cli(home, fake)
    assert proc.returncode == 1, proc.stderr
    assert str(path) in proc.stderr and "moved to papers.json.corrupt-" in proc.stderr
    no_traceback(proc)
    assert not path.exists() and len(list(path.parent.glob("papers.json.corrupt-*"))) == 1


def test_read_only_commands_name_a_wrong_shape_file_and_leave_it_in_place(tmp_path: Path) -> None:
    home = write_instance(tmp_path / "home", [KW], [{"email": "alice@example.org"}])
    path = home / "state" / "outbox.json"
    path.write_text('{"deliveries":{"1":{"email":"alice@example.org"}}}')
    proc = cli(home, "status")
    assert proc.returncode == 1, proc.stderr
    assert str(path) in proc.stderr and "unreadable" in proc.stderr
    no_traceback(proc)
    assert path.exists() and not list(path.parent.glob("*.corrupt-*"))


# ------------------------------------------------------- state: what losing each file costs


def test_the_corrupt_file_message_says_what_losing_that_file_costs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "papers.json").write_text("{not json")
    with pytest.raises(StateError) as papers:
        PaperStore(state / "papers.json")
    assert "baseline mode" in str(papers.value) and "cursor" not in str(papers.value)

    (state / "outbox.json").write_text("{not json")
    with pytest.raises(StateError) as outbox:
        Outbox(state / "outbox.json")
    said = str(outbox.value)
    assert "baseline" not in said
    assert "subscriber cursors and pending deliveries are lost" in said
    assert "starts every subscriber from that run's papers" in said
    assert "since each one's last digest are never mailed" in said
    assert "Restore it from a backup" in said


# ----------------------------------------------------------- state: a path we cannot read


@pytest.mark.parametrize("name", ["papers.json", "outbox.json"])
def test_state_path_that_is_a_folder_is_named_with_the_os_reason(tmp_path: Path, name: str) -> None:
    path = tmp_path / "state" / name
    path.mkdir(parents=True)
    store = PaperStore if name == "papers.json" else Outbox
    for read_only in (False, True):
        with pytest.raises(StateError) as err:
            store(path, read_only=read_only)
        assert str(err.value) == f"cannot read state file {path}: Is a directory"
        assert path.is_dir()  # not moved aside


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
@pytest.mark.parametrize("name", ["papers.json", "outbox.json", "suppressions.json"])
def test_a_state_path_that_is_a_fifo_or_a_device_is_named_not_read(tmp_path: Path, name: str, kind: str) -> None:
    """Was: a FIFO blocked `status` and `run` for ever, /dev/zero ended in "internal error:
    MemoryError"; nothing is moved aside (it is no file of ours)."""
    home = write_instance(tmp_path / "home", [KW], [{"email": "alice@example.org"}])
    path = home / "state" / name
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    for args in (("status",), ("run", "--no-mail")):
        proc = cli(home, *args, env={"DIGESTD_ARXIV_API_URL": "http://127.0.0.1:9/"}, timeout=20)
        assert proc.returncode == 1, proc.stderr
        assert f"cannot read state file {path}: not a regular file" in proc.stderr
        no_traceback(proc)
    assert path.is_fifo() if kind == "fifo" else path.is_symlink()


def test_state_folder_as_the_cli_sees_it(tmp_path: Path) -> None:
    home = write_instance(tmp_path / "home", [KW], [{"email": "alice@example.org"}])
    (home / "state" / "papers.json").mkdir()
    proc = cli(home, "status")
    assert proc.returncode == 1
    assert f"cannot read state file {home / 'state' / 'papers.json'}: Is a directory" in proc.stderr
    no_traceback(proc)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_state_file_is_named_with_the_os_reason(tmp_path: Path) -> None:
    path = tmp_path / "papers.json"
    path.write_text("{}")
    path.chmod(0)
    try:
        with pytest.raises(StateError, match="Permission denied"):
            PaperStore(path)
        assert path.exists()
    finally:
        path.chmod(0o644)


# ------------------------------------------------------------------ subscriber addresses


def test_address_email_validator_rejects_is_refused_by_run_with_file_and_line(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW], [{"email": "alice@example.org"}, {"email": "a..b@example.org"}])
    with FakeArxiv({KW: make_papers(KW, 3)}) as fake:
        proc = run_cli(home, fake)
    assert proc.returncode == 2, proc.stderr
    assert f"{home / 'subscribers.yaml'}, line " in proc.stderr
    assert "'a..b@example.org' is not an e-mail address" in proc.stderr and "two periods" in proc.stderr
    no_traceback(proc)
    assert not (home / "state" / "papers.json").exists()  # not even fetched


REJECTED = ["a..b@example.org", "x@[1.2.3.4]", "x@example", ".a@example.org", "a.@example.org",
            "a@-example.org", "a@ex_ample.org", "a@example.123", "a@example.local", "a@mail.example.test",
            "a@localhost", "a b@example.org", "a@ab--c.org", "a@xn--zz.org", "a@" + "x" * 64 + ".org"]
ACCEPTED = ["alice@example.org", "o'brien@example.org", "a+tag@mail.example.co.uk", "bücher@example.org",
            "a@bücher.de", "a@example.c", "A.B-C_D@Example.ORG", "a@xn--bcher-kva.de", "a@x1.museum"]


@pytest.mark.parametrize("addr", REJECTED + ACCEPTED)
def test_run_path_address_check_agrees_with_email_validator(addr: str) -> None:
    try:
        validate_email(addr, check_deliverability=False)
        expected = True
    except EmailNotValidError:
        expected = False
    assert expected == (addr in ACCEPTED)
    assert looks_like_email(addr) is expected


@pytest.mark.parametrize("addr", ["x@[1.2.3.4]", "x@example", "a@example.local"])
def test_load_config_refuses_addresses_email_validator_refuses(tmp_path: Path, addr: str) -> None:
    write_instance(tmp_path, [KW], [{"email": addr}])
    with pytest.raises(ConfigError, match=r"subscribers\.yaml, line \d+: .* is not an e-mail address"):
        load_config(tmp_path, {})


# ---------------------------------------------------------------------- string settings


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("list_name", "Daily\nPapers", "settings.list_name must be one line of text"),
        ("list_name", "Daily Papers\r", "settings.list_name must be one line of text"),
        ("list_name", 5, "settings.list_name must be text"),
        ("from", 5, "settings.from must be text"),
        ("from", "a@example.org, b@example.org", "names more than one address"),  # was: b dropped
        ("timezone", 1, "settings.timezone must be text"),
        ("weekly_day", 1, "settings.weekly_day must be text"),
        ("public_url", ["https://example.org"], "settings.public_url must be text"),
    ],
)
def test_string_settings_are_type_checked(tmp_path: Path, setting: str, value: Any, says: str) -> None:
    write_instance(tmp_path, [KW], [], **{setting: value})
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, {})
    assert says in str(err.value) and "subscribers.yaml, line " in str(err.value)


def test_list_name_of_one_line_is_accepted(tmp_path: Path) -> None:
    write_instance(tmp_path, [KW], [], list_name="Lab Papers")
    assert load_config(tmp_path, {}).settings.list_name == "Lab Papers"


# ------------------------------------------------------------------------- environment

SMTP = {"DIGESTD_SMTP_HOST": "mail.example.org"}


def test_smtp_username_without_a_password_is_refused(tmp_path: Path) -> None:
    write_instance(tmp_path, [KW], [])
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, {**SMTP, "DIGESTD_SMTP_USERNAME": "alice"})
    assert "set DIGESTD_SMTP_PASSWORD or DIGESTD_SMTP_PASSWORD_FILE" in str(err.value)


@pytest.mark.parametrize(
    "url", ["ftp://export.arxiv.org/api/query", "export.arxiv.org/api/query", "http://", "https://[::1/api",
            "http://export.arxiv.org/api query", "file:///etc/passwd"]
)
def test_arxiv_api_url_must_be_http(tmp_path: Path, url: str) -> None:
    write_instance(tmp_path, [KW], [])
    with pytest.raises(ConfigError, match="DIGESTD_ARXIV_API_URL must be an http"):
        load_config(tmp_path, {"DIGESTD_ARXIV_API_URL": url})


def test_arxiv_api_url_accepts_http_and_https(tmp_path: Path) -> None:
    write_instance(tmp_path, [KW], [])
    for url in ("http://127.0.0.1:8080/api/query", "https://export.arxiv.org/api/query"):
        assert load_config(tmp_path, {"DIGESTD_ARXIV_API_URL": url}).arxiv_url == url


@pytest.mark.parametrize(
    ("name", "value"),
    [("DIGESTD_SMTP_RETRIES", "three"), ("DIGESTD_SMTP_RETRIES", "-1"), ("DIGESTD_SMTP_RETRIES", "11"),
     ("DIGESTD_SMTP_RETRIES", "2.5"), ("DIGESTD_SMTP_BACKOFF", "fast"), ("DIGESTD_SMTP_BACKOFF", "-1"),
     ("DIGESTD_SMTP_CA_FILE", "/nonexistent/ca.pem"), ("DIGESTD_SMTP_CA_FILE", "EMPTY"),
     ("DIGESTD_SMTP_CA_FILE", "/etc/passwd")],
)
def test_smtp_tuning_variables_are_validated(tmp_path: Path, name: str, value: str) -> None:
    """A CA file that holds no certificate is refused at load, not at every delivery."""
    write_instance(tmp_path, [KW], [])
    if value == "EMPTY":
        value = str(tmp_path / "empty.pem")
        Path(value).write_text("")
    with pytest.raises(ConfigError, match=name):
        load_config(tmp_path, {**SMTP, name: value})


def test_smtp_tuning_reaches_the_transport_from_config_not_env(tmp_path: Path) -> None:
    write_instance(tmp_path, [KW], [])
    ca = make_certs(tmp_path / "certs").ca
    cfg = load_config(tmp_path, {**SMTP, "DIGESTD_SMTP_RETRIES": "0", "DIGESTD_SMTP_BACKOFF": "0.5",
                                 "DIGESTD_SMTP_CA_FILE": str(ca)})
    assert cfg.smtp is not None
    assert (cfg.smtp.retries, cfg.smtp.backoff, cfg.smtp.ca_file) == (0, 0.5, str(ca))
    # the transport takes its tuning from the config alone (make_transport has no env parameter)
    t = make_transport(cfg.smtp, tmp_path, connections=1, max_rate=None)
    assert isinstance(t, SmtpTransport) and (t.retries, t.backoff, t.ca_file) == (0, 0.5, str(ca))
    default = make_transport(SmtpSettings("h", 25, "none"), tmp_path, connections=1, max_rate=None)
    assert isinstance(default, SmtpTransport) and (default.retries, default.backoff) == (3, 2.0)


def test_a_typo_in_smtp_retries_is_a_usage_error_not_an_internal_error(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW], [{"email": "alice@example.org"}])
    with FakeArxiv({KW: make_papers(KW, 3)}) as fake:
        proc = run_cli(home, fake, {**SMTP, "DIGESTD_SMTP_RETRIES": "3x"})
    assert proc.returncode == 2, proc.stderr
    assert "DIGESTD_SMTP_RETRIES must be a whole number from 0 to 10, not '3x'" in proc.stderr
    no_traceback(proc)


# ------------------------------------------------------------------------------ systemd


def test_systemd_user_and_system_together_is_a_usage_error(tmp_path: Path) -> None:
    proc = cli(tmp_path, "systemd", "--user", "--system")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == "digestd: --user and --system cannot be used together; pass one of them."


# ------------------------------------------------------------------------ run switches


def test_run_no_readme_leaves_the_readme_alone_and_updates_state(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW], [{"email": "alice@example.org"}], timezone="UTC")
    readme = home / "README.md"
    readme.write_text("# my own README\n")
    with FakeArxiv({KW: make_papers(KW, 4)}) as fake:
        proc = run_cli(home, fake, None, "--no-readme")
    assert proc.returncode == 0, proc.stderr
    assert readme.read_text() == "# my own README\n"
    papers = json.loads((home / "state" / "papers.json").read_text())["papers"]
    assert sorted(d["paper"]["id"] for d in papers.values()) == [f"2611.{i:05d}" for i in range(4)]


def test_run_json_prints_the_report_as_json(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW], [{"email": "alice@example.org"}], timezone="UTC")
    with FakeArxiv({KW: make_papers(KW, 4)}) as fake:
        proc = run_cli(home, fake, None, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {"date", "keywords", "sent", "pending", "failed", "exit_code"} <= set(report)
    assert report["exit_code"] == proc.returncode == 0
    assert [k["keyword"] for k in report["keywords"]] == [KW] and report["keywords"][0]["baseline"]
    assert (report["sent"], report["pending"], report["failed"]) == (0, 0, 0)


def test_no_mail_then_a_normal_run_mails_those_papers(tmp_path: Path, smtp: tuple[Any, Inbox]) -> None:
    controller, inbox = smtp
    home = write_instance(tmp_path, [KW], [{"email": "alice@example.org"}], timezone="UTC")
    env = smtp_env(controller)
    base = make_papers(KW, 5, first=0, date="2026-11-19")
    with FakeArxiv({KW: base}) as fake:
        run_once(home, fake, env=env, now=at("2026-11-19"))  # baseline
        new = [make_paper(100, KW, "2026-11-20"), make_paper(101, KW, "2026-11-20", time="11:00:00")]
        fake.feeds[KW] = [*new, *base]
        quiet = run_once(home, fake, env=env, now=at("2026-11-20"), options=RunOptions(no_mail=True))
        assert set(quiet.keywords[0].new) == {"2611.00100", "2611.00101"}
        assert quiet.sent == 0 and quiet.pending == 0 and inbox.messages == []
        later = run_once(home, fake, env=env, now=at("2026-11-20", 18))
    assert later.sent == 1 and later.pending == 0 and later.failed == 0
    (msg,) = inbox.to("alice@example.org")
    body = msg.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    assert "[2611.00100]" in body and "[2611.00101]" in body
