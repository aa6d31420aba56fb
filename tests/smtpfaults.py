"""Real SMTP servers (aiosmtpd on 127.0.0.1) that misbehave on purpose.

    with FaultServer(Faults(rcpt={"bob@example.org": "450 4.2.0 Greylisted"})) as srv:
        ...run digestd with srv.env()...
        assert srv.to("alice@example.org")

One server, several switchable faults (all may change while it runs):
- `rcpt`: a fixed reply (450 greylisting, 550 unknown user...) for chosen recipients;
- `limit_after`: a rate limit, 421 to every MAIL once that many transactions were started;
- `per_connection`: 421 and a closed connection after that many messages on one connection;
- `drop_data`: that many DATA transactions lose their connection half way through the message;
- `accept_delay`: seconds before each 250 after DATA (a slow server); `slow_data`: extra
  seconds for the next few DATAs (one each), to outlast the client's timeout;
- `refuse_auth`: AUTH always answers 535; `refuse_sender`: every MAIL FROM gets that reply.
TLS: `tls=certs` offers STARTTLS with a certificate signed by a test CA made with the openssl
CLI (`make_certs`); `require_starttls` refuses MAIL/AUTH before it; `implicit_tls` speaks TLS
from the first byte (port 465 style). `size_limit` announces SIZE and refuses larger messages. Without `tls` the server offers no STARTTLS at all, and
with `auth=` and `auth_in_clear=True` it even offers AUTH in clear, to prove a client never
uses it.

Everything the server saw is in `events` (("connect",), ("auth", login, ok, tls),
("mail", sender, tls), ("rcpt", address, reply), ("drop",), each ending with the
time.monotonic() it happened) and every accepted message in `messages`, with the time the
server accepted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import functools
import re
import socket
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

PAPER_REF = re.compile(r"^\[(\d{4}\.\d{5})\]: ", re.M)


@dataclass(frozen=True)
class Certs:
    ca: Path  # what digestd must trust (DIGESTD_SMTP_CA_FILE)
    cert: Path  # the server's certificate, for 127.0.0.1 and localhost
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def make_certs(folder: Path) -> Certs:
    """A throwaway CA and a server certificate it signed, made with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=digestd test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ]
    for argv in steps:
        subprocess.run([str(a) for a in argv], check=True, capture_output=True, timeout=30)
    return Certs(ca=ca, cert=cert, key=key)


@dataclass
class Faults:
    rcpt: dict[str, str] = field(default_factory=dict)  # lower-case address -> reply
    limit_after: int | None = None
    per_connection: int | None = None
    drop_data: int = 0
    accept_delay: float = 0.0
    slow_data: list[float] = field(default_factory=list)  # extra delays for the next DATAs, in turn
    refuse_auth: bool = False
    auth_reply: str | None = None  # with refuse_auth: the reply instead of 535 (e.g. a 454)
    refuse_sender: str | None = None  # a reply to every MAIL FROM (e.g. 553: not your address)
    refuse_size: int | None = None  # 552 to a MAIL FROM whose SIZE= is over this (no limit announced)
    final_reply: str | None = None  # the reply to the final "." instead of 250 (garbage, 251...)
    # Called at each MAIL FROM with the Message-IDs this connection has accepted so far (to
    # check, at that very event, what the client has recorded).
    on_mail: Callable[[list[str]], None] | None = None


@dataclass(frozen=True)
class Received:
    rcpt: str
    message_id: str
    at: float  # time.monotonic() when the server accepted it
    tls: bool
    data: bytes

    def paper_ids(self) -> set[str]:
        """The arXiv ids the digest lists (from the text/plain part's link references)."""
        return set(self._paper_ids)

    @functools.cached_property
    def _paper_ids(self) -> frozenset[str]:
        msg = email.message_from_bytes(self.data, policy=policy.default)
        body = msg.get_body(("plain",))  # type: ignore[attr-defined]
        return frozenset(PAPER_REF.findall(body.get_content()))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _FaultSMTP(SMTP):  # type: ignore[misc]
    """aiosmtpd's server, plus connection counting and a DATA that can vanish half way."""

    def __init__(self, handler: FaultHandler, **kwargs: Any) -> None:
        with warnings.catch_warnings():  # "AUTH without TLS" is the point of auth_in_clear
            warnings.simplefilter("ignore", UserWarning)
            super().__init__(handler, **kwargs)
        self.accepted_here = 0
        self.accepted_ids: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None:  # not the STARTTLS re-entry
            self.event_handler.record("connect")
        super().connection_made(transport)

    async def smtp_DATA(self, arg: str) -> None:
        handler: FaultHandler = self.event_handler
        if self.envelope is not None and self.envelope.rcpt_tos and handler.take_drop():
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            with contextlib.suppress(Exception):  # read a little of the message, then vanish
                await asyncio.wait_for(self._reader.readuntil(b"\r\n"), 2)
            handler.record("drop")
            if self.transport is not None:
                self.transport.abort()
            return
        await super().smtp_DATA(arg)


class FaultHandler:
    def __init__(self, faults: Faults, credentials: tuple[str, str] | None) -> None:
        self.faults = faults
        self.credentials = credentials
        self.lock = threading.Lock()
        self.events: list[tuple[Any, ...]] = []
        self.messages: list[Received] = []
        self.started = 0  # MAIL commands answered 250

    def record(self, *event: Any) -> None:
        """One event; its last element is the time.monotonic() it happened."""
        with self.lock:
            self.events.append((*event, time.monotonic()))

    def take_drop(self) -> bool:
        with self.lock:
            if self.faults.drop_data > 0:
                self.faults.drop_data -= 1
                return True
        return False

    def authenticate(
        self, server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        login = password = ""
        if isinstance(auth_data, LoginPassword):
            login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = not self.faults.refuse_auth and (login, password) == self.credentials
        self.record("auth", login, ok, _tls(server, session))
        message = None if ok else self.faults.auth_reply
        return AuthResult(success=ok, handled=False, message=message)

    async def handle_MAIL(
        self, server: _FaultSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.record("mail", address, _tls(server, session))
        f = self.faults
        if f.on_mail is not None:
            f.on_mail(list(server.accepted_ids))
        if f.refuse_sender:
            return f.refuse_sender
        size = next((int(o[5:]) for o in options if o.upper().startswith("SIZE=") and o[5:].isdigit()), 0)
        if f.refuse_size is not None and size > f.refuse_size:
            return "552 5.3.4 Message size exceeds fixed maximum message size"
        with self.lock:  # count transactions as they start, so parallel connections agree
            if f.limit_after is not None and self.started >= f.limit_after:
                return "421 4.7.0 Too many messages, slow down and try again later"
            self.started += 1
        if f.per_connection is not None and server.accepted_here >= f.per_connection:
            transport = server.transport
            if transport is not None:  # close right after the reply is written
                asyncio.get_running_loop().call_soon(transport.close)
            return "421 4.7.0 Connection message limit reached, closing"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.faults.rcpt.get(address.lower())
        self.record("rcpt", address, reply or "250 OK")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: _FaultSMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            delay = self.faults.accept_delay + (self.faults.slow_data.pop(0) if self.faults.slow_data else 0.0)
        if delay:
            await asyncio.sleep(delay)  # cancelled if the client hangs up meanwhile
        data = bytes(envelope.original_content or b"")
        head = email.message_from_bytes(data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n", policy=policy.compat32)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.messages.append(
                    Received(rcpt.lower(), str(head["Message-ID"]), time.monotonic(), _tls(server, session), data)
                )
        server.accepted_here += 1
        server.accepted_ids.append(str(head["Message-ID"]))
        return self.faults.final_reply or "250 2.0.0 Message accepted for delivery"


def _tls(server: Any, session: Session) -> bool:
    """STARTTLS done, or a connection that was TLS from the first byte."""
    transport = getattr(server, "transport", None)
    return session.ssl is not None or (transport is not None and transport.get_extra_info("sslcontext") is not None)


class _Controller(Controller):  # type: ignore[misc]
    def factory(self) -> SMTP:
        return _FaultSMTP(self.handler, **self.SMTP_kwargs)


class FaultServer:
    """A running fault-injecting SMTP server; use as a context manager."""

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        tls: Certs | None = None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
        auth: tuple[str, str] | None = None,
        auth_in_clear: bool = False,
        size_limit: int | None = None,
    ) -> None:
        self.faults = faults or Faults()
        self.handler = FaultHandler(self.faults, auth)
        self.certs = tls
        kwargs: dict[str, Any] = {}
        if size_limit is not None:  # announced as SIZE N; a larger MAIL FROM SIZE= gets 552
            kwargs["data_size_limit"] = size_limit
        if tls is not None and not implicit_tls:
            kwargs["tls_context"] = tls.server_context()
            kwargs["require_starttls"] = require_starttls
        if auth is not None:
            kwargs["authenticator"] = self.handler.authenticate
            kwargs["auth_required"] = True
            # aiosmtpd only counts STARTTLS as TLS; implicit TLS is TLS all along
            kwargs["auth_require_tls"] = not (auth_in_clear or implicit_tls)
        self.security = "tls" if implicit_tls else "starttls" if tls is not None else "none"
        self.controller = _Controller(
            self.handler, hostname="127.0.0.1", port=free_port(),
            ssl_context=tls.server_context() if (tls is not None and implicit_tls) else None,
            server_hostname="127.0.0.1", **kwargs,
        )

    def __enter__(self) -> FaultServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def env(self, **extra: str) -> dict[str, str]:
        """digestd's environment for this server (security as the server speaks it)."""
        env = {
            "DIGESTD_SMTP_HOST": "127.0.0.1",
            "DIGESTD_SMTP_PORT": str(self.port),
            "DIGESTD_SMTP_SECURITY": self.security,
            "DIGESTD_SMTP_BACKOFF": "0.05",
            "DIGESTD_SMTP_TIMEOUT": "5",
        }
        if self.certs is not None:
            env["DIGESTD_SMTP_CA_FILE"] = str(self.certs.ca)
        env.update(extra)
        return env

    # ---------------------------------------------------------------- what it saw
    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.messages)

    @property
    def events(self) -> list[tuple[Any, ...]]:
        with self.handler.lock:
            return list(self.handler.events)

    def kinds(self, kind: str) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[0] == kind]

    def to(self, addr: str) -> list[Received]:
        return [m for m in self.messages if m.rcpt == addr.lower()]


class SetupFaultServer:
    """A raw server that fails while a connection is set up: it greets, offers STARTTLS, and
    answers EHLO or STARTTLS with `ehlo` / `starttls`: a reply line, "drop" (close at once),
    "stall" (say nothing), "endless" (a multi-line reply that never ends, 1 MB a second) or
    "trickle" (the same, a byte every 0.1 s), or for STARTTLS "cut_handshake" / "eof_handshake"
    (220, then the end of the connection, after half a TLS record or none). Anything else gets 502. It never takes a message."""

    def __init__(self, *, ehlo: str | None = None, starttls: str = "454 4.7.0 TLS not available") -> None:
        self.ehlo, self.starttls = ehlo, starttls
        self.port = free_port()
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, action: str) -> bool:
        """Act; False when the connection is over."""
        if action == "drop":
            writer.close()
            return False
        if action == "stall":
            await asyncio.sleep(3600)
        if action in ("cut_handshake", "eof_handshake"):  # "go ahead", then the connection ends
            writer.write(b"220 2.0.0 go ahead\r\n")
            await writer.drain()
            await reader.read(512)  # the client's hello
            if action == "cut_handshake":  # half a TLS record first
                writer.write(b"\x16\x03\x03\x00\x40" + b"\x02" * 10)
                await writer.drain()
            writer.close()
            return False
        if action in ("endless", "trickle"):
            while True:  # until the client hangs up (then drain raises)
                for byte in b"250-and more\r\n" if action == "trickle" else [b"250-" + b"x" * 1000 + b"\r\n"]:
                    writer.write(bytes([byte]) if isinstance(byte, int) else byte)
                    await writer.drain()
                    await asyncio.sleep(0.1 if action == "trickle" else 0.001)
        writer.write(action.encode() + b"\r\n")
        await writer.drain()
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 fault ESMTP\r\n")
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while line := (await reader.readline()).upper():
                if line.startswith((b"EHLO", b"HELO")):
                    action = self.ehlo or "250-fault\r\n250-STARTTLS\r\n250 SIZE 1000000"
                elif line.startswith(b"STARTTLS"):
                    action = self.starttls
                else:
                    action = "502 5.5.1 not here"
                if not await self._answer(reader, writer, action):
                    return
        writer.close()

    def __enter__(self) -> SetupFaultServer:
        self._thread.start()
        start = asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
