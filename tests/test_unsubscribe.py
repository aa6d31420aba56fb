"""One-click unsubscribe (RFC 8058): the headers and footer a digest carries, and the
`digestd serve` endpoint driven over real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import REPO, Inbox, at, free_port, run_once, smtp_env, write_instance
from fakearxiv import FakeArxiv
from fixtures import make_paper, make_papers

from digestd.config.load import load_config
from digestd.core.tokens import Token, address_id, make_token, read_token
from digestd.errors import ConfigError
from digestd.web.unsubscribe import make_server

KW = "Video Anomaly Detection"
SECRET = "0123456789abcdef-test-secret"

HAND = f"""\
# subscribers of the test list
keywords:
  - {KW}   # the only one
subscribers:
  - email: alice@example.org   # first
    name: Alice
  # bob came later
  - email: Bob@Example.org
settings:
  from: Daily Papers <papers@example.org>
  list_name: Test Papers
"""


def request(url: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=5)
    try:
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                     headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def one_click(url: str) -> tuple[int, dict[str, str], str]:
    """What a mail provider sends (RFC 8058 section 3.2)."""
    return request(url, "POST", b"List-Unsubscribe=One-Click",
                   {"Content-Type": "application/x-www-form-urlencoded"})


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """An instance and its endpoint at http://127.0.0.1:PORT (a thread; stopped afterwards)."""
    (tmp_path / "subscribers.yaml").write_text(HAND, encoding="utf-8")
    cfg = load_config(tmp_path, {"DIGESTD_SECRET": SECRET})
    server = make_server(cfg, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def link(base: str, email: str, secret: str = SECRET) -> str:
    return f"{base}/unsubscribe/{make_token(secret.encode(), email)}"


def test_tokens() -> None:
    key = SECRET.encode()
    token = make_token(key, "Alice@Example.org")
    assert token == make_token(key, "alice@example.org ")  # one token per address, any spelling
    assert read_token(key, token) == Token(id=address_id(key, "alice@example.org"))  # an id, no address
    addr, mac = token.split(".")
    other = make_token(key, "mallory@example.org").split(".")[0]
    for bad in (f"{other}.{mac}", f"{addr}.{mac[:-1]}", f"{addr}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
                addr, "", ".", "x.y", f"{addr}.{mac}.extra", token.replace(".", "")):
        assert read_token(key, bad) is None, bad
    assert read_token(b"another key", token) is None


def test_get_confirms_and_never_unsubscribes(served: tuple[Path, str]) -> None:
    home, base = served
    before = (home / "subscribers.yaml").read_bytes()
    status, headers, body = request(link(base, "alice@example.org"))
    assert status == 200
    assert "<form method=\"post\">" in body and "<button" in body and "alice@example.org" in body
    assert "Test Papers" in body and "<script" not in body
    assert headers["content-type"] == "text/html; charset=utf-8" and headers["cache-control"] == "no-store"
    assert "location" not in headers
    assert request(link(base, "alice@example.org"), "HEAD")[0] == 200
    assert (home / "subscribers.yaml").read_bytes() == before  # link scanners change nothing


def test_post_unsubscribes_keeping_the_file(served: tuple[Path, str]) -> None:
    home, base = served
    status, headers, body = one_click(link(base, "alice@example.org"))
    assert status == 200 and "location" not in headers
    assert "Unsubscribed" in body
    expected = HAND.replace("  - email: alice@example.org   # first\n    name: Alice\n", "")
    assert (home / "subscribers.yaml").read_text(encoding="utf-8") == expected
    assert [s.email for s in load_config(home, {}).subscribers] == ["Bob@Example.org"]

    # Again, or the page: 200 "already unsubscribed", nothing changes.
    status, _, body = one_click(link(base, "alice@example.org"))
    assert status == 200 and "Already unsubscribed" in body
    status, _, body = request(link(base, "alice@example.org"))
    assert status == 200 and "Already unsubscribed" in body and "<form" not in body
    assert (home / "subscribers.yaml").read_text(encoding="utf-8") == expected

    # The confirmation page's own button (a form post, any body), mixed-case address in the file,
    # and the endpoint mounted under a prefix by the proxy.
    status, _, _ = request(link(base + "/papers", "bob@example.org"), "POST", b"",
                           {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200
    assert load_config(home, {}).subscribers == ()
    assert (home / "subscribers.yaml").read_text(encoding="utf-8").startswith("# subscribers of the test list\n")


@pytest.mark.parametrize("tamper", ["other-address", "cut-mac", "flip-mac", "other-key", "garbage"])
def test_forged_tokens_get_403(served: tuple[Path, str], tamper: str) -> None:
    home, base = served
    before = (home / "subscribers.yaml").read_bytes()
    token = make_token(SECRET.encode(), "alice@example.org")
    addr, mac = token.split(".")
    forged = {
        "other-address": make_token(SECRET.encode(), "bob@example.org").split(".")[0] + "." + mac,
        "cut-mac": f"{addr}.{mac[:10]}",
        "flip-mac": f"{addr}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}",
        "other-key": make_token(b"not the secret", "alice@example.org"),
        "garbage": "AAAA.BBBB",
    }[tamper]
    for method in ("POST", "GET"):
        status, _, body = request(f"{base}/unsubscribe/{forged}", method, b"List-Unsubscribe=One-Click")
        assert status == 403 and "not valid" in body
    assert (home / "subscribers.yaml").read_bytes() == before


def test_other_requests(served: tuple[Path, str]) -> None:
    home, base = served
    before = (home / "subscribers.yaml").read_bytes()
    assert request(base + "/")[0] == 404
    assert request(base + "/unsubscribe/")[0] == 404
    assert request(base + "/unsubscribe/<script>.x")[0] == 404
    assert one_click(base + "/other")[0] == 404
    big = b"x" * (65 * 1024)
    assert request(link(base, "alice@example.org"), "POST", big)[0] == 400
    assert (home / "subscribers.yaml").read_bytes() == before


def test_digest_headers_and_footer_link_to_the_endpoint(tmp_path: Path, smtp: tuple[object, Inbox]) -> None:
    """A mailed digest's List-Unsubscribe URL, POSTed as a mail provider would, unsubscribes."""
    controller, inbox = smtp
    home = write_instance(tmp_path, [KW], [{"email": "alice@example.org"}, {"email": "bob+papers@example.org"}],
                          timezone="UTC")
    env = smtp_env(controller, DIGESTD_SECRET=SECRET)
    server = make_server(load_config(home, env), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    text = (home / "subscribers.yaml").read_text().replace('"settings": {', f'"settings": {{"public_url": "{base}/",')
    (home / "subscribers.yaml").write_text(text)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        with FakeArxiv({KW: make_papers(KW, 3, date="2026-11-19")}) as fake:
            run_once(home, fake, env=env, now=at("2026-11-19"))
            fake.feeds[KW] = [make_paper(900, KW, "2026-11-20"), *fake.feeds[KW]]
            run_once(home, fake, env=env, now=at("2026-11-20"))
            assert len(inbox.messages) == 2
            msg = inbox.to("bob+papers@example.org")[0]
            header = str(msg["List-Unsubscribe"])
            m = re.fullmatch(r"<(http://[^>]+)>, <(mailto:[^>]+)>", header)
            assert m, header
            url, mailto = m.groups()
            assert url == link(base, "bob+papers@example.org")
            assert mailto == "mailto:papers@example.org?subject=unsubscribe%20bob%2Bpapers@example.org"
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            html = msg.get_body(("html",)).get_content()
            assert f'<a href="{url}"' in html
            assert f"[unsubscribe]: {url}" in msg.get_body(("plain",)).get_content()

            status, headers, _ = one_click(url)
            assert status == 200 and "location" not in headers
            fake.feeds[KW] = [make_paper(901, KW, "2026-11-21"), *fake.feeds[KW]]
            run_once(home, fake, env=env, now=at("2026-11-21"))
        assert [str(m["To"]) for m in inbox.messages[2:]] == ["alice@example.org"]  # bob gets no more
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_without_public_url_everything_is_mailto(tmp_path: Path, smtp: tuple[object, Inbox]) -> None:
    controller, inbox = smtp
    home = write_instance(tmp_path, [KW], [{"email": "alice@example.org"}], timezone="UTC")
    env = smtp_env(controller, DIGESTD_SECRET=SECRET)  # a key alone turns nothing on
    with FakeArxiv({KW: make_papers(KW, 3, date="2026-11-19")}) as fake:
        run_once(home, fake, env=env, now=at("2026-11-19"))
        fake.feeds[KW] = [make_paper(900, KW, "2026-11-20"), *fake.feeds[KW]]
        run_once(home, fake, env=env, now=at("2026-11-20"))
    (msg,) = inbox.messages
    mailto = "mailto:papers@example.org?subject=unsubscribe%20alice@example.org"
    assert msg["List-Unsubscribe"] == f"<{mailto}>"
    assert msg["List-Unsubscribe-Post"] is None
    assert f'<a href="{mailto}"' in msg.get_body(("html",)).get_content()
    assert "http" not in msg.get_body(("plain",)).get_content().split("[unsubscribe]: ")[1]


def test_public_url_without_a_secret_stops_the_run(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [KW], [{"email": "alice@example.org"}], timezone="UTC",
                          public_url="https://papers.example.org")
    with FakeArxiv({KW: make_papers(KW, 3, date="2026-11-19")}) as fake:
        with pytest.raises(ConfigError, match="DIGESTD_SECRET_FILE"):
            run_once(home, fake, now=at("2026-11-19"))
        assert fake.requests == [] and not (home / "README.md").exists()  # stopped before anything
        from digestd.pipeline import RunOptions

        assert run_once(home, fake, now=at("2026-11-19"), options=RunOptions(no_mail=True)).keywords
    with pytest.raises(ConfigError, match="digestd serve needs"):
        make_server(load_config(home, {}), "127.0.0.1", 0)


def test_serve_command(tmp_path: Path) -> None:
    (tmp_path / "subscribers.yaml").write_text(HAND, encoding="utf-8")
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", "DIGESTD_SECRET_FILE": str(secret_file)}
    base_cmd = [sys.executable, "-m", "digestd", "--home", str(tmp_path), "serve", "--host", "127.0.0.1"]

    no_key = subprocess.run([*base_cmd, "--port", str(port)], capture_output=True, text=True, timeout=30,
                            env={"PATH": "/usr/bin:/bin"}, cwd=REPO, check=False)
    assert no_key.returncode == 2
    assert no_key.stderr.startswith("digestd: digestd serve needs the key") and "Traceback" not in no_key.stderr

    proc = subprocess.Popen([*base_cmd, "--port", str(port)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = link(f"http://127.0.0.1:{port}", "alice@example.org")
        deadline = time.monotonic() + 30  # it listens within 0.8-1.4 s (measured, loaded); 30 ends a hang
        while True:
            try:
                status, _, _ = request(url)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "digestd serve did not start"
                time.sleep(0.05)
        assert status == 200
        busy = subprocess.run([*base_cmd, "--port", str(port)], capture_output=True, text=True, timeout=30,
                              env=env, cwd=REPO, check=False)
        assert busy.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
        assert one_click(url)[0] == 200
        assert [s.email for s in load_config(tmp_path, {}).subscribers] == ["Bob@Example.org"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert f"serving unsubscribe links on http://127.0.0.1:{port}/" in err
    assert "unsubscribed alice@example.org" in err


def test_a_pending_digest_is_not_sent_after_unsubscribing(tmp_path: Path, smtp: tuple[object, Inbox]) -> None:
    controller, inbox = smtp
    home = write_instance(tmp_path, [KW], [{"email": "alice@example.org"}, {"email": "bob@example.org"}],
                          timezone="UTC", public_url="https://papers.example.org")
    up = smtp_env(controller, DIGESTD_SECRET=SECRET)
    down = smtp_env(controller, DIGESTD_SECRET=SECRET, DIGESTD_SMTP_PORT=str(free_port()))
    with FakeArxiv({KW: make_papers(KW, 3, date="2026-11-19")}) as fake:
        run_once(home, fake, env=up, now=at("2026-11-19"))
        fake.feeds[KW] = [make_paper(900, KW, "2026-11-20"), *fake.feeds[KW]]
        assert run_once(home, fake, env=down, now=at("2026-11-20")).pending == 2  # server down
        from digestd.config import subscribers as subscriptions

        assert subscriptions.unsubscribe_many(home, ["BOB@example.org"]) == {"bob@example.org"}  # what POST does
        assert subscriptions.unsubscribe_many(home, ["bob@example.org"]) == set()
        report = run_once(home, fake, env=up, now=at("2026-11-20", 18))
    assert [str(m["To"]) for m in inbox.messages] == ["alice@example.org"]
    assert report.sent == 1 and report.failed == 1
