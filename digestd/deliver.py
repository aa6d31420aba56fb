"""Deliver prepared messages: SMTP over a few reused connections, or a local Maildir.

Each outcome is reported the moment it is known, so the ledger can record it within a
fraction of a second. Errors are sorted the way a mail admin would sort them: 4xx and
dropped connections are retried (then left pending), 5xx for a recipient fails that one
delivery, authentication or TLS trouble stops all sending at once.
"""

from __future__ import annotations

import asyncio
import logging
import mailbox
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosmtplib

from digestd.config import SmtpSettings
from digestd.message import Envelope

log = logging.getLogger(__name__)

SENT, FAILED, PENDING = "sent", "failed", "pending"


@dataclass(frozen=True, slots=True)
class Job:
    """One delivery to attempt: `key` is the ledger's id for it."""

    key: int
    envelope: Envelope


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str  # sent | failed | pending
    detail: str = ""


Report = Callable[[Job, Outcome], None]


class FatalSmtpError(Exception):
    """Authentication or TLS failed: nothing more can be sent this run."""


class UnreachableSmtpError(Exception):
    """The server could not be reached at all; everything stays pending."""


class Transport(Protocol):
    def describe(self) -> str: ...

    async def deliver(self, jobs: AsyncIterator[Job], report: Report) -> None: ...


class MaildirTransport:
    """The embedded default: each digest becomes a file in state/maildir/new."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return f"the Maildir at {self.path}"

    async def deliver(self, jobs: AsyncIterator[Job], report: Report) -> None:
        box = mailbox.Maildir(str(self.path), create=True)
        async for job in jobs:
            box.add(job.envelope.data)
            report(job, Outcome(SENT, "stored in Maildir"))


class RateLimiter:
    """At most `rate` messages a second across all connections (a relay's quota)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)


class SmtpTransport:
    """aiosmtplib, `connections` workers each reusing one connection."""

    def __init__(
        self,
        settings: SmtpSettings,
        *,
        connections: int = 4,
        max_rate: float | None = None,
        retries: int = 3,
        backoff: float = 2.0,
        ca_file: str | None = None,
    ) -> None:
        self.s = settings
        self.connections = max(1, connections)
        self.limiter = RateLimiter(max_rate)
        self.retries = retries
        self.backoff = backoff
        self.ca_file = ca_file
        self.fatal: str | None = None
        self.unreachable: str | None = None

    def describe(self) -> str:
        return f"SMTP server {self.s.host}:{self.s.port} ({self.s.security})"

    def _tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.s
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            validate_certs=True,
            tls_context=self._tls_context() if s.security != "none" else None,
        )
        where = f"{s.host}:{s.port}"
        try:
            await client.connect()
        except aiosmtplib.SMTPConnectTimeoutError:
            raise UnreachableSmtpError(f"SMTP server {where} did not answer in time") from None
        except aiosmtplib.SMTPConnectResponseError as err:
            raise UnreachableSmtpError(
                f"SMTP server {where} refused the connection: {err.code} {err.message}"
            ) from None
        except aiosmtplib.SMTPConnectError as err:
            if isinstance(err.__cause__, ssl.SSLError):
                raise FatalSmtpError(f"TLS with SMTP server {where} failed: {err.__cause__.reason}") from None
            raise UnreachableSmtpError(f"cannot reach SMTP server {where}: {_short(err)}") from None
        except ssl.SSLError as err:
            raise FatalSmtpError(f"TLS with SMTP server {where} failed: {err.reason or err}") from None
        except aiosmtplib.SMTPResponseException as err:
            if s.security == "starttls":
                raise FatalSmtpError(
                    f"SMTP server {where} cannot do STARTTLS ({err.code} {err.message}); refusing to "
                    "send without TLS (set DIGESTD_SMTP_SECURITY=none only for a local relay)"
                ) from None
            raise UnreachableSmtpError(f"SMTP server {where} answered {err.code} {err.message}") from None
        except aiosmtplib.SMTPException as err:
            raise FatalSmtpError(f"SMTP server {where}: {_short(err)}") from None
        except OSError as err:
            raise UnreachableSmtpError(f"cannot reach SMTP server {where}: {err.strerror or err}") from None
        if s.username and s.password:
            try:
                await client.login(s.username, s.password)
            except aiosmtplib.SMTPAuthenticationError as err:
                client.close()
                if 400 <= err.code < 500:  # 454 "temporary authentication failure": retry later
                    raise UnreachableSmtpError(
                        f"SMTP server {where} could not log in {s.username} for now: {err.code} {err.message}"
                    ) from None
                raise FatalSmtpError(
                    f"SMTP server {where} rejected the login for {s.username}: {err.code} {err.message}"
                ) from None
            except aiosmtplib.SMTPException as err:
                client.close()
                raise FatalSmtpError(f"SMTP login at {where} failed: {_short(err)}") from None
        return client

    async def deliver(self, jobs: AsyncIterator[Job], report: Report) -> None:
        queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=self.connections * 4)
        stop = asyncio.Event()

        async def produce() -> None:
            async for job in jobs:
                if stop.is_set():
                    report(job, Outcome(PENDING, self.fatal or self.unreachable or "not sent"))
                    continue
                await queue.put(job)
            for _ in range(self.connections):
                await queue.put(None)

        async def work() -> None:
            client: aiosmtplib.SMTP | None = None
            try:
                while (job := await queue.get()) is not None:
                    if stop.is_set():
                        report(job, Outcome(PENDING, self.fatal or self.unreachable or "not sent"))
                        continue
                    client = await self._send_one(client, job, report, stop)
            finally:
                if client is not None and client.is_connected:
                    try:
                        await asyncio.wait_for(client.quit(), 5)
                    except (aiosmtplib.SMTPException, OSError, TimeoutError):
                        client.close()

        await asyncio.gather(produce(), *(work() for _ in range(self.connections)))

    async def _send_one(
        self, client: aiosmtplib.SMTP | None, job: Job, report: Report, stop: asyncio.Event
    ) -> aiosmtplib.SMTP | None:
        env = job.envelope
        last = ""
        for attempt in range(self.retries + 1):
            if stop.is_set():
                break
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                if client is None or not client.is_connected:
                    client = await self._connect()
                await self.limiter.wait()
                await sendmail(client, env)
                report(job, Outcome(SENT, ""))
                return client
            except FatalSmtpError as err:
                self.fatal = str(err)
                stop.set()
                last = str(err)
                break
            except UnreachableSmtpError as err:
                last = str(err)
                if attempt == self.retries:
                    self.unreachable = last
                    stop.set()
                continue
            except aiosmtplib.SMTPRecipientsRefused as err:
                resp = err.recipients[0]
                last = f"{resp.code} {resp.message}"
                if 500 <= resp.code < 600:
                    report(job, Outcome(FAILED, last))
                    return await _reset(client)
                client = await _reset(client)
            except aiosmtplib.SMTPAuthenticationError as err:
                where = f"{self.s.host}:{self.s.port}"
                self.fatal = f"SMTP server {where} rejected authentication: {err.code} {err.message}"
                stop.set()
                last = self.fatal
                break
            except aiosmtplib.SMTPResponseException as err:
                last = f"{err.code} {err.message}"
                if isinstance(err, aiosmtplib.SMTPSenderRefused) and 500 <= err.code < 600:
                    # Our From address is refused: every digest alike. A setting to fix, not a
                    # permanent failure of each subscriber (that would drop every digest).
                    where = f"{self.s.host}:{self.s.port}"
                    self.fatal = f"SMTP server {where} refused the sender {env.sender}: {last}"
                    stop.set()
                    last = self.fatal
                    break
                if err.code == 421 or not 500 <= err.code < 600:
                    if err.code == 421 and client is not None:
                        client.close()
                        client = None
                    else:
                        client = await _reset(client)
                    continue
                report(job, Outcome(FAILED, last))
                return await _reset(client)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as err:
                last = f"connection lost: {_short(err)}"
                if client is not None:
                    client.close()
                client = None
            except aiosmtplib.SMTPException as err:
                last = _short(err)
                if client is not None:
                    client.close()
                client = None
            log.info("delivery to %s: %s (attempt %d)", env.recipient, last, attempt + 1)
        report(job, Outcome(PENDING, last))
        return client


async def sendmail(client: aiosmtplib.SMTP, env: Envelope) -> None:
    """`client.sendmail()` for prepared bytes, with the same errors.

    aiosmtplib's sendmail runs regular expressions over every message (line endings twice,
    for SIZE and for DATA, then dot-stuffing): a third of the CPU a digest costs. Our messages
    already have CRLF line ends, so dot-stuffing is one `bytes.replace`, and DATA goes
    through aiosmtplib's own protocol object. Anything unexpected (other line ends, an
    aiosmtplib whose protocol looks different) takes aiosmtplib's path unchanged.
    """
    data = env.data
    proto = client.protocol
    fast = _FAST_DATA and proto is not None and hasattr(proto, "_command_lock")
    if not (fast and (env.crlf or _crlf_only(data))):
        await client.sendmail(env.sender, [env.recipient], data)
        return
    size = not client.is_ehlo_or_helo_needed and client.supports_extension("size")
    options = [f"SIZE={len(data)}"] if size else []
    try:
        await client.mail(env.sender, options=options)
        try:
            await client.rcpt(env.recipient)
        except aiosmtplib.SMTPRecipientRefused as err:
            raise aiosmtplib.SMTPRecipientsRefused([err]) from None
        stuffed = data.replace(b"\r\n.", b"\r\n..")  # the same object when no line starts with "."
        await _data(client, b"." + stuffed if stuffed.startswith(b".") else stuffed)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        await _reset(client)  # as sendmail does: leave no half-made envelope behind
        raise


# _data is aiosmtplib's SMTPProtocol.execute_data_command minus its regular expressions. It
# uses the protocol's command lock, write and read_response, as in aiosmtplib 3.0 to 5.1 (5.x
# adds the reply flag `_response_pending`; setting it on older versions does nothing).
_FAST_DATA = hasattr(aiosmtplib, "SMTP") and hasattr(aiosmtplib.SMTP, "is_ehlo_or_helo_needed")


def _crlf_only(data: bytes) -> bool:
    crlf = data.count(b"\r\n")
    return data.endswith(b"\r\n") and data.count(b"\n") == crlf and data.count(b"\r") == crlf


async def _data(client: aiosmtplib.SMTP, wire: bytes) -> None:
    """DATA with `wire`: the message, dot-stuffed, ending in CRLF (the final "." is added)."""
    proto = client.protocol
    if proto is None or proto._command_lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    timeout = client.timeout
    try:
        async with proto._command_lock:
            proto._response_pending = True
            proto.write(b"DATA\r\n")
            start = await proto.read_response(timeout=timeout)
            if start.code != aiosmtplib.SMTPStatus.start_input:
                raise aiosmtplib.SMTPDataError(start.code, start.message)
            proto._response_pending = True
            proto.write(wire + b".\r\n")  # one write: a copy costs less than a second send()
            response = await proto.read_response(timeout=timeout)
            if response.code != aiosmtplib.SMTPStatus.completed:
                raise aiosmtplib.SMTPDataError(response.code, response.message)
    except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
        client.close()
        raise


async def _reset(client: aiosmtplib.SMTP | None) -> aiosmtplib.SMTP | None:
    """After a refused transaction, RSET so the connection can be reused; drop it if that fails."""
    if client is None:
        return None
    try:
        await client.rset()
        return client
    except (aiosmtplib.SMTPException, OSError):
        client.close()
        return None


def _short(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return text.splitlines()[0][:200]


def make_transport(
    smtp: SmtpSettings | None,
    maildir: Path,
    *,
    connections: int,
    max_rate: float | None,
    env: Mapping[str, str] | None = None,
) -> Transport:
    """SMTP when DIGESTD_SMTP_HOST is set, else the Maildir in state/ (the embedded default).

    Retries, backoff and CA file come from `smtp` (validated by config.py); `env` is unused,
    kept so that existing callers keep working."""
    del env
    if smtp is None:
        return MaildirTransport(maildir)
    return SmtpTransport(
        smtp,
        connections=connections,
        max_rate=max_rate,
        retries=smtp.retries,
        backoff=smtp.backoff,
        ca_file=smtp.ca_file,
    )
