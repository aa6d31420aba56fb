"""Bounces come back (VERP, Maildir, IMAP against a real dovecot), the policy, the
suppression list, and personal data (issue 14, points 1, 2, 3 and 7)."""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from conftest import at, cli, free_port, run_once, smtp_env, write_instance
from fakearxiv import FakeArxiv
from fixtures import make_papers
from smtpfaults import make_certs

from digestd.config.load import load_config
from digestd.core.bounce_policy import ActionKind, BounceKind, SoftBounce, decide
from digestd.core.records import Delivery, DeliveryStatus
from digestd.errors import StateError
from digestd.mail.bounces import classify
from digestd.mail.verp import make_verp_token, read_verp_token, verp_id, verp_sender
from digestd.stages.bounces import check_bounces
from digestd.stages.send import DigestBuilder
from digestd.store.suppressions import opened, status_view

DATA = Path(__file__).parent / "data" / "bounces"
SECRET = b"s" * 32
BOUNCES = "bounces@lab.example.org"
ENV = {"DIGESTD_SECRET": SECRET.decode()}


def fixture(name: str, email_addr: str = "gone@example.net", run: int = 7) -> bytes:
    text = (DATA / name).read_text()
    return text.replace("{TOKEN}", make_verp_token(SECRET, email_addr, run)).encode()


def instance(tmp_path: Path, *emails: str, **settings: object) -> Path:
    subs = [{"email": e} for e in emails]
    return write_instance(tmp_path / "home", ["Vision"], subs,
                          bounce_address=BOUNCES, **settings)


def maildir(root: Path, *messages: bytes) -> Path:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(messages):
        (root / "new" / f"1764483121.{i}.mx").write_bytes(raw)
    return root


# --- point 1: VERP and classification -----------------------------------------------------


def test_verp_token_names_subscriber_and_run_and_cannot_be_forged() -> None:
    token = make_verp_token(SECRET, "Ada@Example.org", 42)
    got = read_verp_token(SECRET, token.upper())  # a relay that folds case
    assert got is not None and got.run == 42 and got.address_id == verp_id(SECRET, "ada@example.org")
    assert "ada" not in token.lower() and "example" not in token.lower()
    assert read_verp_token(b"other" * 8, token) is None
    addr_id, _run, mac = token.split(".")
    assert read_verp_token(SECRET, f"{addr_id}.43.{mac}") is None
    sender = verp_sender(BOUNCES, SECRET, "ada@example.org", 42)
    assert sender == f"bounces+{token}@lab.example.org"


@pytest.mark.parametrize(
    ("name", "kind", "status", "words"),
    [
        ("postfix_permanent.eml", BounceKind.PERMANENT, "5.1.1", "User unknown"),
        ("postfix_transient.eml", BounceKind.TRANSIENT, "4.2.2", "Mailbox full"),
        ("gmail_permanent.eml", BounceKind.PERMANENT, "5.1.1", "does not exist"),
        ("outlook_permanent.eml", BounceKind.PERMANENT, "5.1.10", "RecipientNotFound"),
        ("exim_permanent.eml", BounceKind.PERMANENT, "", "non-standard bounce"),
        ("arf_complaint.eml", BounceKind.COMPLAINT, "", "abuse"),
    ],
)
def test_classifies_real_formats(name: str, kind: BounceKind, status: str, words: str) -> None:
    got = classify(fixture(name), BOUNCES)
    assert got is not None and got.kind is kind and got.status == status
    assert words in got.diagnostic
    assert got.tokens == (make_verp_token(SECRET, "gone@example.net", 7),)


@pytest.mark.parametrize("name", ["postfix_delayed.eml", "autoreply.eml"])
def test_a_delay_warning_or_auto_reply_is_not_a_bounce(name: str) -> None:
    assert classify(fixture(name), BOUNCES) is None


# --- point 2: policy ------------------------------------------------------------------------


def test_policy_permanent_at_once_transient_after_limit_in_window_complaint_unsubscribes() -> None:
    now = at("2026-11-30")
    assert decide(BounceKind.PERMANENT, "a@x.org", "5.1.1", [], now, 5).kind is ActionKind.SUPPRESS
    assert decide(BounceKind.COMPLAINT, "a@x.org", "abuse", [], now, 5).kind is ActionKind.UNSUBSCRIBE
    soft = [SoftBounce("a@x.org", (now - timedelta(days=d)).strftime("%Y-%m-%dT%H:%M:%SZ"), "4.2.2")
            for d in (1, 2, 3)]
    assert decide(BounceKind.TRANSIENT, "a@x.org", "4.2.2", soft, now, 5).kind is ActionKind.COUNT
    old = SoftBounce("a@x.org", (now - timedelta(days=15)).strftime("%Y-%m-%dT%H:%M:%SZ"), "4.2.2")
    assert decide(BounceKind.TRANSIENT, "a@x.org", "4.2.2", [*soft, old], now, 5).kind is ActionKind.COUNT
    fourth = SoftBounce("a@x.org", now.strftime("%Y-%m-%dT%H:%M:%SZ"), "4.2.2")
    action = decide(BounceKind.TRANSIENT, "a@x.org", "4.2.2 full", [*soft, fourth], now, 5)
    assert action.kind is ActionKind.SUPPRESS and "a@x.org" in action.line and "4.2.2 full" in action.line


# --- points 1 and 2: the Maildir source end to end ---------------------------------------


def test_maildir_check_suppresses_marks_read_and_leaves_unreadable_alone(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    home = instance(tmp_path, "gone@example.net", "full@example.net", "reader@example.net", soft_bounce_limit=2)
    box = maildir(tmp_path / "bounces",
                  fixture("postfix_permanent.eml"),
                  fixture("postfix_transient.eml", "full@example.net"),
                  fixture("postfix_transient.eml", "full@example.net", run=8),
                  fixture("arf_complaint.eml", "reader@example.net"),
                  fixture("postfix_permanent.eml").replace(b"bounces+", b"bounces+x"),  # forged token
                  fixture("autoreply.eml"))
    unreadable = box / "new" / "1764483121.99.mx"
    unreadable.write_bytes(b"x")
    unreadable.chmod(0)
    try:
        unreadable.read_bytes()
        unreadable.unlink()
        unreadable.mkdir()  # root reads anything: a folder where a message should be
    except PermissionError:
        pass
    env = {**ENV, "DIGESTD_BOUNCE_MAILDIR": str(box)}
    cfg = load_config(home, env)
    got = check_bounces(cfg, at("2026-11-30"))
    assert got.read == 6 and len(got.unreadable) == 1 and len(got.ignored) == 2
    with opened(cfg.paths.suppressions_db, read_only=True) as s:
        reasons = {x.email: x.reason.value for x in s.all()}
    assert reasons == {"gone@example.net": "bounce", "full@example.net": "soft-bounces",
                       "reader@example.net": "complaint"}
    assert "reader@example.net" not in (home / "subscribers.yaml").read_text()  # complaint unsubscribes
    assert "suppressed gone@example.net: permanent failure (5.1.1" in caplog.text
    assert sorted(p.name.endswith(":2,S") for p in (box / "cur").iterdir()) == [True] * 6
    assert [p.name for p in (box / "new").iterdir()] == [unreadable.name]  # left alone
    again = check_bounces(load_config(home, env), at("2026-11-30"))  # nothing counts twice
    assert again.read == 0 and again.actions == []
    entries, last = status_view(cfg.paths.state_dir)  # what `digestd status` reads
    assert last == "2026-11-30T12:00:00Z" and {e.email for e in entries} == set(reasons)


def test_a_message_nested_too_deep_to_parse_is_left_alone_and_the_others_count(tmp_path: Path) -> None:
    """A message nested 1,000 deep made the parser raise RecursionError, which stopped the
    check (and so every run) with "internal error", before any other bounce counted."""
    home = instance(tmp_path, "gone@example.net")
    head = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(1000))
    to = verp_sender(BOUNCES, SECRET, "gone@example.net", 7)
    deep = f"From: x@example.com\nTo: {to}\nSubject: deep\n{head}Content-Type: text/plain\n\nhi\n".encode()
    box = maildir(tmp_path / "bounces", deep, fixture("postfix_permanent.eml"))
    got = check_bounces(load_config(home, {**ENV, "DIGESTD_BOUNCE_MAILDIR": str(box)}), at("2026-11-30"))
    assert got.read == 1 and len(got.actions) == 1, got
    assert len(got.unreadable) == 1 and "cannot be parsed (RecursionError)" in got.unreadable[0]
    assert len(list((box / "new").iterdir())) == 1  # left where it is


def test_a_fifo_or_a_device_in_the_maildir_is_left_alone_not_read(tmp_path: Path) -> None:
    """A FIFO blocked the check for ever; a link to /dev/zero read without end."""
    home = instance(tmp_path, "gone@example.net")
    box = maildir(tmp_path / "bounces", fixture("postfix_permanent.eml"))
    os.mkfifo(box / "new" / "1764483122.fifo.mx")
    (box / "new" / "1764483123.zero.mx").symlink_to("/dev/zero")
    got = check_bounces(load_config(home, {**ENV, "DIGESTD_BOUNCE_MAILDIR": str(box)}), at("2026-11-30"))
    assert got.read == 1 and len(got.actions) == 1
    assert sorted(u.split(": ", 1)[1] for u in got.unreadable) == ["not a regular file"] * 2


def test_a_check_out_of_time_leaves_the_rest_for_the_next(tmp_path: Path) -> None:
    """Slow messages (a subscriber's own token in 5 MB of short lines) cannot hold a run's
    digests: past its budget a check stops, and the next reads what is left."""
    home = instance(tmp_path, "gone@example.net", "also@example.net")
    box = maildir(tmp_path / "bounces", fixture("postfix_permanent.eml"),
                  fixture("postfix_permanent.eml", "also@example.net"))
    cfg = load_config(home, {**ENV, "DIGESTD_BOUNCE_MAILDIR": str(box)})
    got = check_bounces(cfg, at("2026-11-30"), budget=0)
    assert got.read == 1 and got.deferred and "the rest wait for the next check" in got.summary()
    assert len(list((box / "new").iterdir())) == 1
    rest = check_bounces(cfg, at("2026-11-30"))
    assert rest.read == 1 and not rest.deferred and len(rest.actions) == 1
    assert not list((box / "new").iterdir())


def test_a_message_that_trips_a_bounce_detector_costs_one_line_not_a_traceback(tmp_path: Path) -> None:
    """A message without From: makes a flufl.bounce detector raise IndexError; flufl logged it
    with a full traceback, which `digestd bounces` (and every run) printed."""
    home = instance(tmp_path, "gone@example.net")
    to = verp_sender(BOUNCES, SECRET, "gone@example.net", 7)
    box = maildir(tmp_path / "bounces", f"To: {to}\nSubject: hi\n\ngarbage\n".encode())
    p = cli(home, "bounces", env={**ENV, "DIGESTD_BOUNCE_MAILDIR": str(box)})
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert "bounce detectors failed on a message: IndexError" in p.stderr


def test_a_message_without_our_token_is_not_parsed_so_a_stranger_cannot_stall_the_check() -> None:
    """5 MB of short lines kept flufl.bounce's detectors busy for about 17 s a message, and
    a check reads up to 2,000 before any digest goes out; with no token it names nobody."""
    slow = b"From: MAILER-DAEMON@example.com\nSubject: failure notice\n\n" + b"a@b.c\n" * 800_000
    started = time.monotonic()
    assert classify(slow, BOUNCES) is None
    assert time.monotonic() - started < 1.0


def test_a_malformed_suppression_record_is_named_and_moved_aside(tmp_path: Path) -> None:
    home = instance(tmp_path, "gone@example.net")
    path = home / "state" / "suppressions.json"
    path.write_text(json.dumps({"suppressed": {"1": {"email": "gone@example.net", "reason": "bored",
                                                     "diagnostic": "", "since": "2026-11-30T00:00:00Z"}}}))
    with pytest.raises(StateError, match=r"suppressions.json is unreadable \(suppressed record '1'.*reason"):
        opened(path).__enter__()
    assert not path.exists() and list(path.parent.glob("suppressions.json.corrupt-*"))


def test_a_bounce_signed_before_a_key_rotation_still_counts_and_a_second_keeps_since(tmp_path: Path) -> None:
    home = instance(tmp_path, "gone@example.net")
    box = maildir(tmp_path / "b", fixture("postfix_permanent.eml"))  # signed with SECRET
    env = {"DIGESTD_SECRET": "a-new-key-" * 4, "DIGESTD_SECRET_PREVIOUS": SECRET.decode(),
           "DIGESTD_BOUNCE_MAILDIR": str(box)}
    got = check_bounces(load_config(home, env), at("2026-11-30"))
    assert got.actions == [a for a in got.actions if a.startswith("suppressed gone@example.net")] != []
    (box / "new" / "again").write_bytes(fixture("gmail_permanent.eml"))
    again = check_bounces(load_config(home, env), at("2026-12-02"))
    (line,) = again.actions
    assert line.startswith("gone@example.net bounced again (5.1.1") and "NoSuchUser" in line
    assert line.endswith("suppressed since 2026-11-30")


# --- point 1: the IMAP source against a real dovecot ------------------------------------------


@pytest.fixture
def dovecot() -> Iterator[tuple[dict[str, str], Path]]:
    if shutil.which("dovecot") is None:
        pytest.fail("dovecot is not installed (apt-get install dovecot-imapd; .ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="digestd-dovecot-"))
    root.chmod(0o755)  # dovecot's unprivileged login process reaches its sockets here
    certs = make_certs(root / "certs")
    port = free_port()
    (root / "home").mkdir()
    shutil.chown(root / "home", "dovecot", "dovecot")
    (root / "passwd").write_text("bounces:{PLAIN}s3cret-imap\n")
    (root / "dovecot.conf").write_text(f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
instance_name = digestd-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{certs.cert}
ssl_key = <{certs.key}
auth_mechanisms = plain
first_valid_uid = 1
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={root}/home/%u
}}
mail_location = maildir:~/Maildir
""")
    proc = subprocess.Popen(["dovecot", "-F", "-c", str(root / "dovecot.conf")])
    try:
        deadline = time.monotonic() + 30
        while True:  # until the listener accepts (an event, bounded generously)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail(f"dovecot did not start: {(root / 'dovecot.log').read_text()}")
                time.sleep(0.05)
        (root / "pw").write_text("s3cret-imap\n")
        yield {"DIGESTD_BOUNCE_IMAP_URL": f"imaps://bounces@127.0.0.1:{port}/INBOX",
               "DIGESTD_BOUNCE_IMAP_PASSWORD_FILE": str(root / "pw"),
               "DIGESTD_BOUNCE_IMAP_CA_FILE": str(certs.ca)}, certs.ca
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        print((root / "dovecot.log").read_text())
        shutil.rmtree(root, ignore_errors=True)


def _imap(env: dict[str, str], ca: Path) -> imaplib.IMAP4_SSL:
    port = int(env["DIGESTD_BOUNCE_IMAP_URL"].rsplit(":", 1)[1].split("/")[0])
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ssl.create_default_context(cafile=str(ca)), timeout=10)
    m.login("bounces", "s3cret-imap")
    m.select("INBOX")
    return m


def test_imap_over_verified_tls_suppresses_and_marks_seen(tmp_path: Path,
                                                         dovecot: tuple[dict[str, str], Path]) -> None:
    env, ca = dovecot
    home = instance(tmp_path, "gone@example.net", "someone@contoso.example")
    m = _imap(env, ca)
    m.append("INBOX", None, None, fixture("gmail_permanent.eml"))
    m.append("INBOX", None, None, fixture("outlook_permanent.eml", "someone@contoso.example"))
    m.logout()
    result = cli(home, "bounces", env={**ENV, **env})
    assert result.returncode == 0, result.stderr
    assert "2 read, 2 action(s)" in result.stdout and "s3cret" not in result.stdout + result.stderr
    m = _imap(env, ca)  # a fresh session sees the flags as the server holds them
    typ, data = m.uid("SEARCH", "UNSEEN")
    assert typ == "OK" and data[0] == b""  # both \Seen
    typ, data = m.uid("SEARCH", "SEEN")
    assert len(data[0].split()) == 2
    m.logout()
    listed = cli(home, "subscribers", "list", env=ENV).stdout
    assert "gone@example.net" in listed and "SUPPRESSED since" in listed and "5.1.1" in listed


def test_imap_with_an_unknown_ca_fails_in_one_sentence(tmp_path: Path,
                                                      dovecot: tuple[dict[str, str], Path]) -> None:
    env, _ = dovecot
    other = make_certs(tmp_path / "other")
    home = instance(tmp_path, "gone@example.net")
    result = cli(home, "bounces", env={**ENV, **env, "DIGESTD_BOUNCE_IMAP_CA_FILE": str(other.ca)})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "TLS with the IMAP server" in result.stderr and "DIGESTD_BOUNCE_IMAP_CA_FILE" in result.stderr


# --- point 1 and 3: the run uses VERP, reads bounces first, never mails the suppressed --------


def test_verp_envelope_sender_of_a_digest(tmp_path: Path) -> None:
    cfg = load_config(instance(tmp_path, "ada@example.org"), ENV)
    d = Delivery(1, "ada@example.org", None, 9, "2026-11-30", "2026-11-30T06:00:00Z", {}, "<m@x>",
                 DeliveryStatus.PENDING)
    env = DigestBuilder(cfg).message(d, "s", "t", "<p>h</p>")
    local, _, domain = env.sender.partition("@")
    assert domain == "lab.example.org" and local.startswith("bounces+")
    got = read_verp_token(SECRET, local.removeprefix("bounces+"))
    assert got is not None and got.run == 9 and got.address_id == verp_id(SECRET, "ada@example.org")
    assert b"bounces+" not in env.data  # the token is in the envelope, not in the headers


class Envelopes:
    """An SMTP server's handler that keeps each envelope (MAIL FROM, RCPT TO)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        self.seen.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"


@contextlib.contextmanager
def gone_and_ada(tmp_path: Path) -> Iterator[tuple[Path, Envelopes, dict[str, str]]]:
    """An instance mailing gone@ and ada@ with a bounce address, and an SMTP server that
    records each envelope: (home, the recorder, the environment that sends to it)."""
    home = write_instance(tmp_path / "home", ["Vision"], [{"email": "gone@example.net"},
                                                         {"email": "ada@example.org"}],
                          bounce_address=BOUNCES, timezone="UTC")
    handler = Envelopes()
    server = Controller(handler, hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        yield home, handler, {**ENV, **smtp_env(server)}
    finally:
        server.stop()


def test_run_reads_bounces_first_sends_with_verp_and_skips_suppressed(tmp_path: Path) -> None:
    with gone_and_ada(tmp_path) as (home, handler, env):
        env["DIGESTD_BOUNCE_MAILDIR"] = str(maildir(tmp_path / "b"))
        with FakeArxiv({"Vision": make_papers("Vision", 3, date="2026-11-19")}) as fake:
            run_once(home, fake, env=env, now=at("2026-11-19"))  # the baseline
            (tmp_path / "b" / "new" / "1").write_bytes(fixture("postfix_permanent.eml"))
            fake.feeds["Vision"] = [*make_papers("Vision", 2, first=50, date="2026-11-20"),
                                    *fake.feeds["Vision"]]
            report = run_once(home, fake, env=env, now=at("2026-11-20"))
    assert any("suppressed gone@example.net: permanent failure" in m for m in report.messages)
    assert [rcpt for _, rcpt in handler.seen] == [["ada@example.org"]]
    sender = handler.seen[0][0]
    got = read_verp_token(SECRET, sender.removeprefix("bounces+").removesuffix("@lab.example.org"))
    assert got is not None and got.address_id == verp_id(SECRET, "ada@example.org")


@pytest.mark.parametrize("with_source", [False, True], ids=["no_bounce_source", "bounce_source"])
def test_a_broken_suppression_list_stops_the_run_before_anyone_is_mailed(tmp_path: Path, with_source: bool) -> None:
    """Was: without a bounce source every run failed read-only, saying "the next run moves it
    aside" (it never did); with one, the bounce check moved it aside and the same run mailed
    the addresses it held. Now the run moves it aside and stops, like papers.json."""
    with gone_and_ada(tmp_path) as (home, handler, env):
        if with_source:
            env["DIGESTD_BOUNCE_MAILDIR"] = str(maildir(tmp_path / "b"))
        with FakeArxiv({"Vision": make_papers("Vision", 3, date="2026-11-19")}) as fake:
            run_once(home, fake, env=env, now=at("2026-11-19"))  # the baseline
            _suppress(home, "gone@example.net")
            path = home / "state" / "suppressions.json"
            path.write_text(path.read_text()[:40])  # cut short
            fake.feeds["Vision"] = [*make_papers("Vision", 2, first=50, date="2026-11-20"),
                                    *fake.feeds["Vision"]]
            with pytest.raises(StateError, match=r"suppressions.json is unreadable .* moved to .*Restore it"):
                run_once(home, fake, env=env, now=at("2026-11-20"))
            assert handler.seen == [] and list(path.parent.glob("suppressions.json.corrupt-*"))
            run_once(home, fake, env=env, now=at("2026-11-20", 13))  # the next run starts afresh
    assert sorted(r for _, rcpt in handler.seen for r in rcpt) == ["ada@example.org", "gone@example.net"]


# --- point 3 and 7: the CLI --------------------------------------------------------------------


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def incli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """`digestd --home HOME ARGS` in process (the console script's main()): fast, same exits."""
    from digestd.cli.app import main

    monkeypatch.setenv("DIGESTD_SECRET", SECRET.decode())

    def run(home: Path, *args: str) -> Ran:
        monkeypatch.setattr(sys, "argv", ["digestd", "--home", str(home), *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return run


def _suppress(home: Path, addr: str) -> None:
    box = maildir(home.parent / "b", fixture("postfix_permanent.eml", addr))
    check_bounces(load_config(home, {**ENV, "DIGESTD_BOUNCE_MAILDIR": str(box)}), at("2026-11-30"))


def test_add_refused_unless_force_and_unsuppress(tmp_path: Path, incli: Callable[..., Ran]) -> None:
    home = instance(tmp_path, "gone@example.net")
    _suppress(home, "gone@example.net")
    incli(home, "subscribers", "remove", "gone@example.net")
    refused = incli(home, "subscribers", "add", "gone@example.net")
    assert refused.returncode == 2 and "suppressed since 2026-11-30 (bounce: 5.1.1" in refused.stderr
    assert "--force" in refused.stderr and "Traceback" not in refused.stderr
    forced = incli(home, "subscribers", "add", "gone@example.net", "--force")
    assert forced.returncode == 0 and "lifted the suppression" in forced.stdout
    _suppress(home, "gone@example.net")
    assert "SUPPRESSED" in incli(home, "subscribers", "list").stdout
    assert "no longer suppressed" in incli(home, "subscribers", "unsuppress", "gone@example.net").stdout
    assert "SUPPRESSED" not in incli(home, "subscribers", "list").stdout


def test_export_and_forget_personal_data(tmp_path: Path, incli: Callable[..., Ran]) -> None:
    home = instance(tmp_path, "gone@example.net", "ada@example.org")
    _suppress(home, "gone@example.net")
    out = incli(home, "subscribers", "export", "gone@example.net")
    held = json.loads(out.stdout)
    assert held["subscriber"]["email"] == "gone@example.net" and held["suppression"]["reason"] == "bounce"
    forgot = incli(home, "subscribers", "forget", "gone@example.net")
    assert forgot.returncode == 0 and "salted hash" in forgot.stdout
    state = (home / "state" / "suppressions.json").read_text()
    assert "gone@example.net" not in state and "gone@" not in (home / "subscribers.yaml").read_text()
    held = json.loads(incli(home, "subscribers", "export", "gone@example.net").stdout)
    assert held["subscriber"] is None and held["suppression"] == {"hashed": True}
    # a stale copy of the YAML cannot mail it again: re-adding is refused
    refused = incli(home, "subscribers", "add", "Gone@Example.net")
    assert refused.returncode == 2 and "forgotten" in refused.stderr


def test_a_line_of_the_sent_archive_that_is_not_json_is_named(tmp_path: Path, incli: Callable[..., Ran]) -> None:
    """Was "internal error: JSONDecodeError" from export and forget."""
    import gzip

    home = instance(tmp_path, "ada@example.org")
    sent = home / "state" / "sent"
    sent.mkdir(parents=True)
    (sent / "2026-11-01.jsonl.gz").write_bytes(gzip.compress(b'{"email":"ada@example.org"}\n{"email":"ad\n'))
    for command in ("export", "forget"):
        got = incli(home, "subscribers", command, "ada@example.org")
        assert got.returncode == 1 and "Traceback" not in got.stderr
        assert f"cannot read the sent archive {sent / '2026-11-01.jsonl.gz'}, line 2: it is not a JSON record" \
            in got.stderr


def test_forget_while_a_run_holds_the_lock_changes_nothing(tmp_path: Path, incli: Callable[..., Ran]) -> None:
    """Was: the address left subscribers.yaml first, then the lock was refused (exit 75) and its
    state stayed, without a word about the half that was done."""
    from digestd.store.lock import RunLock

    home = instance(tmp_path, "ada@example.org")
    before = (home / "subscribers.yaml").read_bytes()
    with RunLock(home / "state" / "run.lock"):
        got = incli(home, "subscribers", "forget", "ada@example.org")
    assert got.returncode == 75 and "another run is in progress" in got.stderr
    assert (home / "subscribers.yaml").read_bytes() == before
    done = incli(home, "subscribers", "forget", "ada@example.org")
    assert done.returncode == 0 and "removed ada@example.org from subscribers.yaml" in done.stdout
