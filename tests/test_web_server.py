"""digestd.web.server as the base of an endpoint: what a new endpoint (manage page, sign-up)
gets without writing it. A tiny endpoint is built on Handler and Server here and met over real
sockets on 127.0.0.1; nothing of the server is mocked."""

from __future__ import annotations

import http.client
import logging
import re
import socket
import threading
from collections.abc import Iterator
from http import HTTPStatus

import pytest
from markupsafe import Markup

from digestd.errors import DigestdError
from digestd.web.pages import HEADERS, Page
from digestd.web.server import Handler, Server

WAIT = 30.0  # an upper bound only for a hang; every wait below ends on an event


class Echo(Handler):
    """A made-up endpoint: GET answers a page, POST echoes a small body; /secret/X is private."""

    secret_in_path = re.compile(r"(?<=secret/)[^\s?#'\"]+")

    def do_GET(self) -> None:
        self.send_page(Page(HTTPStatus.OK, "Hello <you>", Markup("<p>hi</p>")))

    def do_POST(self) -> None:
        body = self.read_body(limit=16)
        if body is not None:
            self.send_page(Page(HTTPStatus.OK, "Got", Markup("<p>{}</p>").format(body.decode())))


@pytest.fixture
def echo(caplog: pytest.LogCaptureFixture) -> Iterator[Server]:
    caplog.set_level(logging.DEBUG, logger="digestd.web.server")
    server = Server(("127.0.0.1", 0), Echo, name="echo", idle_timeout=0.5)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def request(server: Server, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=WAIT)
    try:
        conn.request(method, path, body=body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode("utf-8")
    finally:
        conn.close()


def raw(server: Server, data: bytes, *, half_close: bool = True) -> bytes:
    """Send `data`, optionally end the stream, and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=WAIT) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "digestd.web.server"]


def test_every_page_carries_the_security_headers_and_an_escaped_title(echo: Server) -> None:
    status, headers, page = request(echo, "GET", "/")
    assert status == 200
    for key, value in HEADERS.items():
        assert headers[key] == value
    assert "<title>Hello &lt;you&gt;</title>" in page and "<you>" not in page
    assert int(headers["Content-Length"]) == len(page.encode("utf-8"))


def test_a_body_over_the_endpoints_limit_is_refused_unread_and_a_small_one_is_escaped(echo: Server) -> None:
    status, _, page = request(echo, "POST", "/", b"x" * 17)
    assert status == 400 and "The request body is not valid." in page
    status, _, page = request(echo, "POST", "/", b"<b>hi</b>")
    assert status == 200 and "<p>&lt;b&gt;hi&lt;/b&gt;</p>" in page


@pytest.mark.parametrize(
    "cut",
    [b"POST /secret/tok.en HTTP/1.1\r\nHost: x\r\n",  # the header block never ends
     b"POST /secret/tok.en HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"],  # nor the body
)
def test_a_request_cut_short_gets_no_answer_and_one_line(
    echo: Server, caplog: pytest.LogCaptureFixture, cut: bytes
) -> None:
    assert raw(echo, cut) == b""  # closed without an answer: the request was never whole
    said = [m for m in lines(caplog) if "closed the connection before its request was complete" in m]
    assert said == ["echo: 127.0.0.1 closed the connection before its request was complete; nothing changed"]
    assert "Traceback" not in caplog.text


def test_a_silent_client_is_closed_after_the_idle_timeout(echo: Server, caplog: pytest.LogCaptureFixture) -> None:
    assert raw(echo, b"", half_close=False) == b""  # recv returns once the server closes it
    assert "echo: closed the connection from 127.0.0.1: nothing arrived for 0.5 s" in lines(caplog)


def test_the_secret_part_of_a_path_never_reaches_the_log(echo: Server, caplog: pytest.LogCaptureFixture) -> None:
    assert request(echo, "GET", "/secret/AbC.dEf?x=1")[0] == 200
    raw(echo, b"GET /secret/AbC.dEf HTTP/9.9\r\n\r\n")  # http.server's own error line (505)
    assert "AbC" not in caplog.text and "dEf" not in caplog.text
    assert any("/secret/…" in m for m in lines(caplog))


def test_a_header_block_over_64_kib_gets_431_unparsed(echo: Server, caplog: pytest.LogCaptureFixture) -> None:
    """http.server alone takes 100 header lines of 64 KiB each (6.5 MB, some 40 MB once parsed)
    per connection: a few dozen such clients would take the server's memory."""
    line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    assert raw(echo, b"GET / HTTP/1.1\r\n" + line * 70 + b"\r\n").startswith(b"HTTP/1.0 431 ")
    assert raw(echo, b"GET / HTTP/1.1\r\n" + line * 60 + b"\r\n").startswith(b"HTTP/1.0 200 ")
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize("data, status", [
    (b"BREW / HTTP/1.1\r\n\r\n", b"501"),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", b"414"),
    (b"GET / HTTP/1.1\r\nX-Pad: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
])
def test_http_servers_own_refusals_carry_the_security_headers(echo: Server, data: bytes, status: bytes) -> None:
    """http.server answers these before any route runs; they are still digestd's pages."""
    answer = raw(echo, data)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == status
    for key, value in HEADERS.items():
        assert f"{key}: {value}".encode() in head.split(b"\r\n")
    assert body.startswith(b"<!DOCTYPE html>") and b"<script" not in body


def test_a_port_in_use_is_one_sentence(echo: Server) -> None:
    port = echo.server_address[1]
    with pytest.raises(DigestdError, match=rf"^cannot listen on 127\.0\.0\.1:{port}: Address already in use$"):
        Server(("127.0.0.1", port), Echo, name="other")


def test_trickling_clients_cannot_hold_every_thread(caplog: pytest.LogCaptureFixture) -> None:
    """Clients that send one byte just inside the idle timeout, as many as there are threads:
    each connection is cut at the connection deadline, so a real request is still answered."""
    caplog.set_level(logging.INFO, logger="digestd.web.server")

    class Small(Server):
        max_connections = 4

    server = Small(("127.0.0.1", 0), Echo, name="echo", idle_timeout=0.5, connection_deadline=1.0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    stop = threading.Event()
    cut: list[bool] = []

    def trickle() -> None:
        with socket.create_connection(server.server_address[:2], timeout=WAIT) as s:
            try:
                for byte in b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 200:
                    if stop.wait(0.3):
                        return
                    s.sendall(bytes([byte]))
            except OSError:  # cut by the server: what this test is about
                cut.append(True)

    tricklers = [threading.Thread(target=trickle, daemon=True) for _ in range(Small.max_connections)]
    try:
        for t in tricklers:
            t.start()
        status, _, _ = request(server, "GET", "/real")  # waits in the backlog until a thread is free
        assert status == 200
        for t in tricklers:
            t.join(WAIT)  # each ends when the server cuts it (a whole trickle would take a minute)
        assert len(cut) == Small.max_connections
        assert any("it lasted over 1 s" in m for m in lines(caplog))
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def test_a_route_that_fails_unexpectedly_answers_500_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    """A bug in a route used to close the connection with no answer at all."""
    from digestd.web.app import AppServer, Request, Route

    def broken(request: Request) -> Page:
        raise RuntimeError(f"failed on {request.path}")

    server = AppServer(("127.0.0.1", 0), [Route(re.compile(r"^/secret/(.+)$"), get=broken,
                                                secret=re.compile(r"(?<=secret/)[^\s?#'\"]+"))])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        status, headers, page = request(server, "GET", "/secret/AbC.dEf")
    finally:
        server.shutdown()
        server.server_close()
    assert status == 500 and "Something went wrong" in page
    assert headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]
    assert "GET /secret/… failed: RuntimeError: failed on /secret/…" in caplog.text
    assert "AbC" not in caplog.text and "Traceback" not in caplog.text
