"""The unsubscribe endpoint never loses a click (issue "Trust", point 9).

`digestd serve` runs as a real process on 127.0.0.1 and real HTTP clients (one connection each)
drive it: bursts of simultaneous one-click POSTs, CLI edits at the same time, silent clients,
clients that give up half-way. Tokens are checked for addresses in any decodable form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import http.client
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from conftest import REPO, free_port

from digestd.config import subscribers as subscriptions
from digestd.config.load import load_config
from digestd.core.tokens import Keys, make_token, read_token
from digestd.errors import ConfigError
from digestd.web import unsubscribe as unsubscribe_module
from digestd.web.unsubscribe import make_server

SECRET = "trust-point-9-secret-0123456789"
KEY = SECRET.encode()
BODY = b"List-Unsubscribe=One-Click"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def legacy_token(secret: bytes, email: str) -> str:
    """A link as digests were mailed before opaque ids: base64(address).HMAC (kept on purpose as
    its own copy, so a change to digestd.tokens cannot silently break links already sent)."""
    addr = email.strip().lower().encode("utf-8")
    mac = hmac.new(secret, b"unsubscribe:" + addr, hashlib.sha256).digest()[:18]

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    return f"{b64(addr)}.{b64(mac)}"


def addr(i: int) -> str:
    """The i-th subscriber as the file spells it (some in mixed case)."""
    return f"User{i:04d}@Example.org" if i % 7 == 0 else f"user{i:04d}@example.org"


def big_list(n: int) -> tuple[str, str, list[str]]:
    """(header, footer, one block per subscriber) of a hand-kept subscribers.yaml: comments above
    the list, between people, after addresses and at the end."""
    header = ("# Daily Papers: who gets what   (top comment)\n"
              "keywords:\n"
              "  - Video Anomaly Detection   # the only search\n"
              "subscribers:\n")
    blocks = []
    for i in range(n):
        block = f"  # --- group {i // 10} ---\n" if i % 10 == 0 else ""
        block += f"  - email: {addr(i)}" + (f"   # since day {i}\n" if i % 3 == 0 else "\n")
        if i % 4 == 0:
            block += f"    name: User {i}\n"
        if i % 5 == 0:
            block += "    frequency: weekly   # asked for less\n"
        blocks.append(block)
    footer = ("settings:\n"
              "  from: Daily Papers <papers@example.org>\n"
              "  list_name: Test Papers\n"
              "# end of file\n")
    return header, footer, blocks


def expected_after(header: str, footer: str, blocks: list[str], leaving: set[int]) -> str:
    """The file once `leaving` are gone: their lines cut, every standalone comment kept."""
    kept = []
    for i, block in enumerate(blocks):
        lines = block.splitlines(keepends=True)
        comment = [ln for ln in lines if ln.lstrip().startswith("#")]
        kept.extend(comment if i in leaving else lines)
    return header + "".join(kept) + footer


def listed(text: str) -> set[str]:
    """The addresses in a subscribers.yaml text, lower-cased."""
    return {m.group(1).lower() for m in re.finditer(r"^\s*- email: (\S+)", text, re.M)}


class Serve:
    """`digestd serve` in a subprocess; a thread collects its stderr lines as they come."""

    def __init__(self, home: Path, idle_timeout: float = 60.0) -> None:
        secret_file = home / "secret"
        secret_file.write_text(SECRET + "\n")
        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "digestd", "--home", str(home), "serve", "--host", "127.0.0.1",
             "--port", str(self.port), "--idle-timeout", str(idle_timeout)],
            env={"PATH": "/usr/bin:/bin", "DIGESTD_SECRET_FILE": str(secret_file)}, cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.wait_for(r"^serving unsubscribe links on ")

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, start: int = 0, timeout: float = 30.0) -> int:
        """The index of the first line from `start` on that matches (an event, not a sleep)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.lines)):
                    if re.search(pattern, self.lines[i]):
                        return i
                left = deadline - time.monotonic()
                assert left > 0 and self.proc.poll() is None, (
                    f"no line matching {pattern!r}; stderr so far: {self.lines}")
                self._cond.wait(min(left, 1.0))

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self._reader.join(30)
        return "\n".join(self.lines)

    def url(self, token: str) -> str:
        return f"/unsubscribe/{token}"


@contextmanager
def serving(home: Path, idle_timeout: float = 60.0) -> Iterator[Serve]:
    srv = Serve(home, idle_timeout)
    try:
        yield srv
    finally:
        srv.stop()


def post(port: int, path: str, timeout: float = 60.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=BODY, headers=FORM)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_200_simultaneous_one_click_posts_are_all_applied_each_on_disk_before_its_200(tmp_path: Path) -> None:
    n, clicks = 260, 200
    header, footer, blocks = big_list(n)
    path = tmp_path / "subscribers.yaml"
    path.write_text(header + "".join(blocks) + footer, encoding="utf-8")
    leaving = sorted(random.Random(9).sample(range(n), clicks))
    results: dict[int, tuple[int | str, bool]] = {}
    barrier = threading.Barrier(clicks)

    def click(i: int, port: int) -> None:
        # Half the links as mailed today, half as mailed before opaque ids.
        token = make_token(KEY, addr(i)) if i % 2 else legacy_token(KEY, addr(i))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # its own connection
        barrier.wait()
        try:
            conn.request("POST", f"/unsubscribe/{token}", body=BODY, headers=FORM)
            resp = conn.getresponse()
            resp.read()
            on_disk = path.read_text(encoding="utf-8")  # at once: the 200 must come after the write
            results[i] = (resp.status, addr(i).lower() not in listed(on_disk))
        except OSError as err:
            results[i] = (repr(err), False)
        finally:
            conn.close()

    with serving(tmp_path) as srv:
        threads = [threading.Thread(target=click, args=(i, srv.port)) for i in leaving]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        log = srv.stop()

    assert {i: r[0] for i, r in results.items() if r[0] != 200} == {}
    assert len(results) == clicks
    assert [i for i, (_, gone) in results.items() if not gone] == []  # each 200 came after its write
    assert path.read_text(encoding="utf-8") == expected_after(header, footer, blocks, set(leaving))
    kept = [addr(i) for i in range(n) if i not in set(leaving)]
    assert [s.email for s in load_config(tmp_path, {}).subscribers] == kept
    assert log.count("(one-click link)") == clicks and "Traceback" not in log


def test_one_click_posts_and_cli_edits_at_the_same_time_lose_nothing(tmp_path: Path) -> None:
    """The server's edits take the lock the CLI's edits take: clicks streaming in while
    `digestd subscribers add` runs in other processes lose neither side's change."""
    n = 120
    header, footer, blocks = big_list(n)
    path = tmp_path / "subscribers.yaml"
    path.write_text(header + "".join(blocks) + footer, encoding="utf-8")
    added = [f"new{j}@example.org" for j in range(6)]
    queue = list(range(n))
    queue_lock = threading.Lock()
    statuses: list[int] = []

    def clicker(port: int, cli_done: threading.Event) -> None:
        while True:
            with queue_lock:
                if not queue or (cli_done.is_set() and len(statuses) >= 60):
                    return
                i = queue.pop(0)
            status, _ = post(port, f"/unsubscribe/{make_token(KEY, addr(i))}")
            with queue_lock:
                statuses.append(status)

    with serving(tmp_path) as srv:
        cli_done = threading.Event()
        workers = [threading.Thread(target=clicker, args=(srv.port, cli_done)) for _ in range(8)]
        for w in workers:
            w.start()
        procs = [subprocess.Popen([sys.executable, "-m", "digestd", "--home", str(tmp_path), "subscribers",
                                   "add", a], cwd=REPO, env={"PATH": "/usr/bin:/bin"},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in added]
        outs = [p.communicate(timeout=120) for p in procs]
        cli_done.set()
        for w in workers:
            w.join(120)
    assert [p.returncode for p in procs] == [0] * len(added), outs
    assert statuses and set(statuses) == {200}
    on_disk = listed(path.read_text(encoding="utf-8"))
    clicked = {addr(i).lower() for i in range(n)} - {addr(i).lower() for i in queue}
    assert len(clicked) == len(statuses)
    assert on_disk.isdisjoint(clicked)  # every click that got 200 is applied
    assert set(added) <= on_disk  # and every CLI addition survived the server's writes
    assert on_disk == ({addr(i).lower() for i in queue} | set(added))


def closed_by_server(sock: socket.socket) -> bool:
    """Block until the server closes the connection (FIN or RST); False if it sent data."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_silent_client_is_disconnected_after_the_idle_timeout(tmp_path: Path) -> None:
    header, footer, blocks = big_list(3)
    (tmp_path / "subscribers.yaml").write_text(header + "".join(blocks) + footer, encoding="utf-8")
    before = (tmp_path / "subscribers.yaml").read_bytes()
    with serving(tmp_path, idle_timeout=1.0) as srv:
        start = srv.mark()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:  # sends nothing
            t0 = time.monotonic()
            assert closed_by_server(sock)
            assert time.monotonic() - t0 >= 0.5  # closed by the timeout, not at once
        srv.wait_for(r"closed the connection from 127\.0\.0\.1: nothing arrived for 1 s", start)

        # Half a request, then silence (slowloris): closed too, and nothing is done.
        start = srv.mark()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
            sock.sendall(f"POST /unsubscribe/{make_token(KEY, addr(0))} HTTP/1.1\r\nHost: x\r\n".encode())
            assert closed_by_server(sock)
        srv.wait_for(r"nothing arrived for 1 s", start)
        # The server still answers afterwards.
        assert get(srv.port, f"/unsubscribe/{make_token(KEY, addr(1))}")[0] == 200
        log = srv.stop()
    assert "Traceback" not in log
    assert (tmp_path / "subscribers.yaml").read_bytes() == before


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER with a zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


_CUT = {
    "in-the-request-line": (b"POST /unsubscribe/TOKEN HT", "fin"),
    "in-a-header": (b"POST /unsubscribe/TOKEN HTTP/1.1\r\nHost: x\r\nContent-Len", "fin"),
    # No Content-Length and no blank line: http.server alone would read this as a whole request.
    "before-the-blank-line": (b"POST /unsubscribe/TOKEN HTTP/1.1\r\nHost: x\r\n", "fin"),
    "in-the-body": (b"POST /unsubscribe/TOKEN HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\nList-Unsub", "fin"),
    "reset-in-a-header": (b"POST /unsubscribe/TOKEN HTTP/1.1\r\nHost: x\r\nContent-Le", "rst"),
}


@pytest.mark.parametrize("case", list(_CUT))
def test_a_client_that_gives_up_half_way_costs_one_log_line_and_changes_nothing(tmp_path: Path, case: str) -> None:
    header, footer, blocks = big_list(3)
    (tmp_path / "subscribers.yaml").write_text(header + "".join(blocks) + footer, encoding="utf-8")
    before = (tmp_path / "subscribers.yaml").read_bytes()
    data, how = _CUT[case]
    data = data.replace(b"TOKEN", make_token(KEY, addr(0)).encode())
    with serving(tmp_path) as srv:
        start = srv.mark()
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        sock.sendall(data)
        if how == "rst":
            _reset(sock)
        else:
            sock.shutdown(socket.SHUT_WR)
            assert closed_by_server(sock)  # no answer to half a request
            sock.close()
        first = srv.wait_for(r"closed the connection before its request was complete|went away", start)
        # A request that logs a known line after it: whatever the cut request logged is in by then.
        assert post(srv.port, "/unsubscribe/AAAA.BBBB")[0] == 403
        sentinel = srv.wait_for(r"refused a forged or altered token", start)
        assert srv.lines[start:sentinel] == [srv.lines[first]], srv.lines[start:]
        log = srv.stop()
    assert "Traceback" not in log and "Exception occurred" not in log
    assert (tmp_path / "subscribers.yaml").read_bytes() == before  # a cut request changes nothing


def test_a_client_that_resets_before_reading_the_answer_costs_one_line(tmp_path: Path) -> None:
    """The request is complete, so the unsubscribe stands; the answer finds the connection gone."""
    header, footer, blocks = big_list(3)
    (tmp_path / "subscribers.yaml").write_text(header + "".join(blocks) + footer, encoding="utf-8")
    with serving(tmp_path) as srv:
        start = srv.mark()
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        token = make_token(KEY, addr(1))
        sock.sendall(f"POST /unsubscribe/{token} HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\n".encode() + BODY)
        _reset(sock)
        done = srv.wait_for(r"unsubscribed user0001@example\.org \(one-click link\)", start)
        # The edit (fsync included) takes far longer than the RST takes to arrive: the answer fails.
        went = srv.wait_for(r"went away before the answer was complete \((ConnectionReset|BrokenPipe)Error\)", start)
        assert post(srv.port, "/unsubscribe/AAAA.BBBB")[0] == 403
        sentinel = srv.wait_for(r"refused a forged or altered token", went)
        log = srv.stop()
    assert sorted([done, went]) == [start, start + 1]  # those two lines and nothing else
    assert sentinel == start + 2 and "Traceback" not in log and "Exception occurred" not in log
    assert addr(1).lower() not in listed((tmp_path / "subscribers.yaml").read_text(encoding="utf-8"))


# --- tokens -----------------------------------------------------------------------------------

ADDRESSES = ["alice@example.org", "Bob.Smith+papers@Example.org", "x@y.io", "ünïcødé@example.org",
             "averyveryverylonglocalpartforsure@sub.domain.example.com"]


def _decodings(part: str) -> list[bytes]:
    """Every way a proxy-log reader might decode a token part."""
    out = []
    padded = part + "=" * (-len(part) % 4)
    for decode in (base64.urlsafe_b64decode, base64.b64decode, base64.b32decode, base64.b16decode):
        for text in (padded, padded.upper()):
            with suppress(ValueError, binascii.Error):
                out.append(decode(text))
    return out


@pytest.mark.parametrize("email", ADDRESSES)
def test_new_tokens_carry_no_address_in_any_decodable_form(email: str) -> None:
    token = make_token(KEY, email)
    local, domain = email.lower().split("@")
    assert "@" not in token and local not in token.lower() and domain not in token.lower()
    decoded = [d.lower() for part in token.split(".") for d in _decodings(part)]
    assert decoded  # the parts are base64url: the check below did decode them
    # Random bytes hold a 0x40 now and then, so look for the address's pieces, not for one byte.
    needles = [n.encode() for n in (email.lower(), "@" + domain, local, domain) if len(n) >= 3]
    for raw in decoded:
        assert not any(n in raw for n in needles), raw
    # The id is keyed: without the secret it cannot be computed from a guessed address.
    assert make_token(b"another secret", email).split(".")[0] != token.split(".")[0]
    assert make_token(KEY, email.upper()) == token
    # The old format, for contrast, is exactly what this test refuses.
    assert any(b"@" in d for d in _decodings(legacy_token(KEY, email).split(".")[0]))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """The server class on a real port (a thread): alice, Bob (mixed case in the file), carol."""
    (tmp_path / "subscribers.yaml").write_text(
        "# the list\nkeywords:\n  - VAD\nsubscribers:\n  - email: alice@example.org   # first\n"
        "  - email: Bob@Example.org\n  - email: carol@example.org\n"
        "settings:\n  from: Papers <papers@example.org>\n  list_name: Test Papers\n", encoding="utf-8")
    server = make_server(load_config(tmp_path, {"DIGESTD_SECRET": SECRET}), "127.0.0.1", 0, idle_timeout=10)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield tmp_path, server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(30)


def test_links_mailed_in_the_old_format_still_unsubscribe(served: tuple[Path, int]) -> None:
    home, port = served
    path = f"/unsubscribe/{legacy_token(KEY, 'bob@example.org')}"
    status, body = get(port, path)
    assert status == 200 and "Bob@Example.org" in body and "<form" in body
    status, body = post(port, path)
    assert status == 200 and "Unsubscribed" in body
    assert [s.email for s in load_config(home, {}).subscribers] == ["alice@example.org", "carol@example.org"]
    status, body = post(port, path)
    assert status == 200 and "Already unsubscribed" in body and "bob@example.org" in body


def test_a_genuine_token_for_someone_not_subscribed_is_already_unsubscribed(served: tuple[Path, int]) -> None:
    home, port = served
    before = (home / "subscribers.yaml").read_bytes()
    for token in (make_token(KEY, "dave@example.org"), legacy_token(KEY, "dave@example.org")):
        for method in (get, post):
            status, body = method(port, f"/unsubscribe/{token}")
            assert status == 200 and "Already unsubscribed" in body and "<form" not in body
    assert (home / "subscribers.yaml").read_bytes() == before


def test_a_subscriber_added_while_serving_is_found_by_id(served: tuple[Path, int]) -> None:
    """The id -> address table follows the file: a new subscriber's link works at once."""
    home, port = served
    assert post(port, f"/unsubscribe/{make_token(KEY, 'alice@example.org')}")[0] == 200  # table built
    subscriptions.add_subscriber(home, "dave@example.org", None, [])
    status, body = post(port, f"/unsubscribe/{make_token(KEY, 'Dave@example.org')}")
    assert status == 200 and "Unsubscribed" in body and "dave@example.org" in body
    assert [s.email for s in load_config(home, {}).subscribers] == ["Bob@Example.org", "carol@example.org"]


def test_a_stale_link_clicked_over_and_over_does_not_parse_the_file_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A genuine link of someone no longer subscribed (a clicker's own, after leaving) used to
    parse subscribers.yaml again under the directory's lock on every request: 0.3 s for 10,000
    subscribers, so a few clients repeating it held up every other click for seconds. The bytes
    are compared instead, and parsed again only when they changed."""
    (tmp_path / "subscribers.yaml").write_text(
        "keywords:\n  - VAD\nsubscribers:\n  - email: alice@example.org\n")
    loads: list[Path] = []

    def counted(home: Path, env: dict[str, str]) -> object:
        loads.append(home)
        return load_config(home, env)

    monkeypatch.setattr(unsubscribe_module, "load_config", counted)
    directory = unsubscribe_module.Directory(tmp_path, Keys(KEY))
    gone = read_token(KEY, make_token(KEY, "gone@example.org"))
    assert gone is not None
    assert [directory.find(gone.id) for _ in range(20)] == [None] * 20
    assert len(loads) == 1
    subscriptions.add_subscriber(tmp_path, "gone@example.org", None, [])  # back: found at once
    assert directory.find(gone.id) == "gone@example.org"
    assert len(loads) == 2


def test_a_subscribers_yaml_replaced_by_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    """The byte hash of the file (read before each parse and on a miss) read a FIFO as a file:
    it blocked for ever under the directory's lock, so every link of `digestd serve` hung."""
    path = tmp_path / "subscribers.yaml"
    path.write_text("keywords:\n  - VAD\nsubscribers:\n  - email: alice@example.org\n")
    directory = unsubscribe_module.Directory(tmp_path, Keys(KEY))
    gone = read_token(KEY, make_token(KEY, "gone@example.org"))
    assert gone is not None and directory.find(gone.id) is None
    path.unlink()
    os.mkfifo(path)
    outcome: list[BaseException | str | None] = []

    def find() -> None:
        try:
            outcome.append(directory.find(gone.id))
        except BaseException as err:  # the test looks at what it was
            outcome.append(err)

    thread = threading.Thread(target=find, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():  # release the blocked reader, so the test ends
        with open(path, "wb"):
            pass
        thread.join(5)
        pytest.fail("a FIFO in place of subscribers.yaml blocked the directory")
    assert len(outcome) == 1 and isinstance(outcome[0], ConfigError)
    assert "not a regular file" in str(outcome[0])


def _forged() -> dict[str, str]:
    alice, bob = make_token(KEY, "alice@example.org"), make_token(KEY, "bob@example.org")
    old_alice, old_bob = legacy_token(KEY, "alice@example.org"), legacy_token(KEY, "bob@example.org")
    b64 = base64.urlsafe_b64encode(b"Alice@example.org").rstrip(b"=").decode()
    upper_mac = hmac.new(KEY, b"unsubscribe:Alice@example.org", hashlib.sha256).digest()[:18]
    return {
        "new: another id, alice's mac": f"{bob.split('.')[0]}.{alice.split('.')[1]}",
        "new: mac cut": alice[:-3],
        "new: mac flipped": alice[:-1] + ("A" if alice[-1] != "A" else "B"),
        "new: another key": make_token(b"not the secret", "alice@example.org"),
        "new: the id alone twice": f"{alice.split('.')[0]}.{alice.split('.')[0]}",
        "old: another address, alice's mac": f"{old_bob.split('.')[0]}.{old_alice.split('.')[1]}",
        "old: another key": legacy_token(b"not the secret", "alice@example.org"),
        "old: an address spelt other than the key signed": f"{b64}.{base64.urlsafe_b64encode(upper_mac).decode()}",
        "old mac on a new id": f"{alice.split('.')[0]}.{old_alice.split('.')[1]}",
        "garbage": "AAAA.BBBB",
    }


@pytest.mark.parametrize("case", list(_forged()))
def test_forged_tokens_in_either_format_get_403(served: tuple[Path, int], case: str) -> None:
    home, port = served
    before = (home / "subscribers.yaml").read_bytes()
    token = _forged()[case]
    for method in (post, get):
        status, body = method(port, f"/unsubscribe/{token}")
        assert status == 403 and "not valid" in body
    assert (home / "subscribers.yaml").read_bytes() == before


def test_a_list_that_cannot_be_read_gets_503_and_no_traceback(tmp_path: Path) -> None:
    """A click while subscribers.yaml is broken is refused for now (503), never half-applied."""
    header, footer, blocks = big_list(3)
    path = tmp_path / "subscribers.yaml"
    path.write_text(header + "".join(blocks) + footer, encoding="utf-8")
    with serving(tmp_path) as srv:
        assert get(srv.port, f"/unsubscribe/{make_token(KEY, addr(1))}")[0] == 200
        path.write_text(header + "".join(blocks) + "settings: [unclosed\n", encoding="utf-8")
        broken = path.read_bytes()
        start = srv.mark()
        for token in (make_token(KEY, addr(1)), legacy_token(KEY, addr(2))):
            status, body = post(srv.port, f"/unsubscribe/{token}")
            assert status == 503 and "nothing was changed" in body
        assert get(srv.port, f"/unsubscribe/{make_token(KEY, addr(1))}")[0] == 503
        srv.wait_for(r"malformed YAML", start)
        log = srv.stop()
    assert path.read_bytes() == broken and "Traceback" not in log
