"""Deliver prepared messages over SMTP: aiosmtplib, a few reused connections, a rate limit.

Errors are sorted the way a mail admin would sort them: 4xx and dropped connections are
retried (then left pending), 5xx for a recipient fails that one delivery, no reply after the
final "." is "unknown" (never resent within the run), authentication or TLS trouble stops all
sending at once. Anything else that goes wrong with one message fails that one delivery,
never the run. How sending ended as a whole is the TransportResult `deliver` returns.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiosmtplib

from digestd.config.settings import SmtpSettings
from digestd.core.text import cut
from digestd.errors import DigestdError, StateError
from digestd.mail import smtpwire
from digestd.mail.message import Envelope
from digestd.mail.transport import FAILED, PENDING, SENT, UNKNOWN, Job, Outcome, Report, TransportResult

log = logging.getLogger(__name__)


class _Fatal(Exception):
    """Authentication or TLS failed: nothing more can be sent this run."""


class _Unreachable(Exception):
    """The server could not be reached at all; everything stays pending."""


class _SenderNeedsUtf8(Exception):
    """Our own From address needs SMTPUTF8 and the server lacks it: sending stops for all."""


class NoSmtpUtf8(DigestdError):
    """The address needs SMTPUTF8 and the server does not offer it: that delivery fails for good."""


class TooLarge(DigestdError):
    """The message is over the server's SIZE limit: that delivery waits (pending) while the
    others go. Not failed: a limit too small for every digest (SIZE 1) is the server's setting,
    and failing each would lose everyone's papers and, in three runs, pause them all."""


@dataclass
class _Halt:
    """Why sending stopped, shared by the workers of one `deliver` call (never by two calls)."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    fatal: str | None = None
    unreachable: str | None = None

    def fail(self, why: str) -> None:
        """A setting to fix (auth, TLS, our sender refused): every worker stops."""
        self.fatal = why
        self.event.set()

    def give_up(self, why: str) -> None:
        """The server cannot be reached: every worker stops, the rest stays pending."""
        self.unreachable = why
        self.event.set()

    @property
    def reason(self) -> str:
        return self.fatal or self.unreachable or "not sent"


def needs_utf8(env: Envelope) -> bool:
    """An address with a non-ASCII local part (an IDN domain alone goes as xn--)."""
    return env.utf8 or not (env.sender.isascii() and env.recipient.isascii())


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
        connections: int = 8,
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
            raise _Unreachable(f"SMTP server {where} did not answer in time") from None
        except aiosmtplib.SMTPConnectResponseError as err:
            raise _Unreachable(
                f"SMTP server {where} refused the connection: {_answer(err.code, err.message)}"
            ) from None
        except aiosmtplib.SMTPConnectError as err:
            if isinstance(err.__cause__, ssl.SSLError):
                raise _Fatal(f"TLS with SMTP server {where} failed: {err.__cause__.reason}") from None
            raise _Unreachable(f"cannot reach SMTP server {where}: {_short(err)}") from None
        except ssl.SSLError as err:
            raise _Fatal(f"TLS with SMTP server {where} failed: {err.reason or err}") from None
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as err:
            raise _Unreachable(_lost(where, err)) from None
        except aiosmtplib.SMTPResponseException as err:
            if err.code < 0:  # aiosmtplib's -1: over-long or not SMTP at all, not a refusal
                said = _answer(err.code, err.message)
                raise _Unreachable(f"SMTP server {where} sent a reply digestd cannot read ({said}): "
                                   f"is {where} an SMTP server?") from None
            if s.security == "starttls" and not 400 <= err.code < 500:
                raise _Fatal(
                    f"SMTP server {where} cannot do STARTTLS ({_answer(err.code, err.message)}); refusing to "
                    "send without TLS (set DIGESTD_SMTP_SECURITY=none only for a local relay)"
                ) from None
            raise _Unreachable(f"SMTP server {where} answered {_answer(err.code, err.message)}") from None
        except aiosmtplib.SMTPException as err:
            raise _Fatal(f"SMTP server {where}: {_short(err)}{_starttls_hint(s.security, err)}") from None
        except OSError as err:
            raise _Unreachable(f"cannot reach SMTP server {where}: {err.strerror or err}") from None
        if s.username and s.password:
            try:
                await client.login(s.username, s.password)
            except aiosmtplib.SMTPAuthenticationError as err:
                client.close()
                if 400 <= err.code < 500:  # 454 "temporary authentication failure": retry later
                    said = _answer(err.code, err.message)
                    raise _Unreachable(
                        f"SMTP server {where} could not log in {s.username} for now: {said}"
                    ) from None
                raise _Fatal(f"SMTP server {where} rejected the login for {s.username}: "
                             f"{_answer(err.code, err.message)}") from None
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError) as err:
                client.close()
                raise _Unreachable(_lost(where, err)) from None
            except aiosmtplib.SMTPException as err:
                client.close()
                raise _Fatal(f"SMTP login at {where} failed: {_short(err)}") from None
        return client

    async def deliver(self, jobs: AsyncIterator[Job], report: Report) -> TransportResult:
        smtpwire.check_version()
        queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=self.connections * 4)
        halt = _Halt()

        async def tell(job: Job, outcome: Outcome) -> None:
            try:
                await report(job, outcome)
            except StateError as err:  # outcomes cannot be recorded (a full disk): no new message
                halt.fail(str(err))  # goes out, and the ones in flight on other connections are still told

        async def produce() -> None:
            async for job in jobs:
                if halt.event.is_set():
                    await tell(job, Outcome(PENDING, halt.reason))
                    continue
                await queue.put(job)
            for _ in range(self.connections):
                await queue.put(None)

        async def work() -> None:
            client: aiosmtplib.SMTP | None = None
            try:
                while (job := await queue.get()) is not None:
                    if halt.event.is_set():
                        await tell(job, Outcome(PENDING, halt.reason))
                        continue
                    try:
                        client, outcome = await self._send_one(client, job, halt)
                    except smtpwire.SmtpWireError as err:
                        halt.fail(str(err))
                        client, outcome = _drop(client), Outcome(PENDING, str(err))
                    except Exception as err:  # one message's trouble fails that message only
                        log.warning("delivery to %r failed: %s", job.envelope.recipient, _short(err))
                        client, outcome = _drop(client), Outcome(FAILED, f"could not be sent: {_short(err)}")
                    await tell(job, outcome)
            finally:
                if client is not None and client.is_connected:
                    try:
                        await asyncio.wait_for(client.quit(), 5)
                    except (aiosmtplib.SMTPException, OSError, TimeoutError):
                        client.close()

        await asyncio.gather(produce(), *(work() for _ in range(self.connections)))
        return TransportResult(halt.fatal, halt.unreachable)

    async def _send_one(
        self, client: aiosmtplib.SMTP | None, job: Job, halt: _Halt
    ) -> tuple[aiosmtplib.SMTP | None, Outcome]:
        """Try one message, with retries of what may pass; the connection to keep, and how it
        ended. Reporting is the caller's, so an acceptance is durable before the next one."""
        env = job.envelope
        last = ""
        for attempt in range(self.retries + 1):
            if halt.event.is_set():
                break
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                if client is None or not client.is_connected:
                    client = await self._connect()
                await self.limiter.wait()
                await sendmail(client, env, timeout=self.s.timeout, final_timeout=self.s.data_timeout)
                return client, Outcome(SENT, "")
            except smtpwire.FinalReplyLost as err:
                # It may have been delivered: never resent in this run (a later run resends it
                # at most once, with the same Message-ID). A server that took a whole message
                # and then said nothing for data_timeout would do it again to every message:
                # stop sending (the rest stays pending), so a run never lasts hours.
                if err.timed_out:
                    where = f"{self.s.host}:{self.s.port}"
                    halt.give_up(
                        f"SMTP server {where} gave no reply to a message's final '.' within "
                        f"{self.s.data_timeout:g} s (DIGESTD_SMTP_DATA_TIMEOUT); sending stopped"
                    )
                return None, Outcome(UNKNOWN, f"no reply after the message was sent: {_short(err)}")
            except _SenderNeedsUtf8 as err:
                halt.fail(str(err))
                return await _reset(client), Outcome(PENDING, str(err))
            except NoSmtpUtf8 as err:
                return await _reset(client), Outcome(FAILED, str(err))
            except TooLarge as err:
                return await _reset(client), Outcome(PENDING, str(err))
            except _Fatal as err:
                last = str(err)
                halt.fail(last)
                break
            except _Unreachable as err:
                last = str(err)
                if attempt == self.retries:
                    halt.give_up(last)
                continue
            except aiosmtplib.SMTPRecipientsRefused as err:
                resp = err.recipients[0]
                last = f"{_answer(resp.code, resp.message)}"
                if 500 <= resp.code < 600:
                    return await _reset(client), Outcome(FAILED, last)
                client = await _reset(client)
            except aiosmtplib.SMTPAuthenticationError as err:
                where = f"{self.s.host}:{self.s.port}"
                last = f"SMTP server {where} rejected authentication: {_answer(err.code, err.message)}"
                halt.fail(last)
                break
            except aiosmtplib.SMTPResponseException as err:
                last = f"{_answer(err.code, err.message)}"
                if isinstance(err, aiosmtplib.SMTPSenderRefused) and 500 <= err.code < 600:
                    # Our From address is refused: every digest alike. A setting to fix, not a
                    # permanent failure of each subscriber (that would drop every digest).
                    where = f"{self.s.host}:{self.s.port}"
                    last = f"SMTP server {where} refused the sender {env.sender}: {last}"
                    halt.fail(last)
                    break
                if err.code == 421 or not 500 <= err.code < 600:
                    client = _drop(client) if err.code == 421 else await _reset(client)
                    continue
                return await _reset(client), Outcome(FAILED, last)
            except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as err:
                last = f"connection lost: {_short(err)}"
                client = _drop(client)
            except aiosmtplib.SMTPException as err:
                last = _short(err)
                client = _drop(client)
            log.info("delivery to %r: %s (attempt %d)", env.recipient, last, attempt + 1)
        return client, Outcome(PENDING, last)


async def sendmail(client: aiosmtplib.SMTP, env: Envelope, *, timeout: float, final_timeout: float) -> None:
    """MAIL, RCPT and DATA for prepared CRLF bytes, with aiosmtplib's errors.

    A non-ASCII address goes with SMTPUTF8 when the server offers it (RFC 6531); otherwise
    that delivery fails for good with a reason that says so (NoSmtpUtf8)."""
    data = env.data
    if not (env.crlf or _crlf_only(data)):
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    options: list[str] = []
    encoding = "ascii"
    if needs_utf8(env):
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        if not client.supports_extension("smtputf8"):
            if not env.sender.isascii():  # every digest alike: a setting to fix, not a subscriber
                raise _SenderNeedsUtf8(
                    f"the sender address {env.sender!r} needs SMTPUTF8, which the SMTP server does not "
                    "offer: use an ASCII address in settings.from (or DIGESTD_FROM)"
                )
            raise NoSmtpUtf8(
                f"the address {env.recipient!r} needs SMTPUTF8, which the SMTP server does not offer"
            )
        options.append("SMTPUTF8")
        encoding = "utf-8"
    sized = not client.is_ehlo_or_helo_needed and client.supports_extension("size")
    if sized:
        _check_size(client, len(data))
        options.append(f"SIZE={len(data)}")
    try:
        try:
            await client.mail(env.sender, options=options, encoding=encoding)
        except aiosmtplib.SMTPSenderRefused as err:
            if sized and _about_size(err):
                raise TooLarge(f"the digest ({len(data)} bytes) is larger than the SMTP server takes: "
                               f"{_answer(err.code, err.message)}") from None
            raise
        try:
            await client.rcpt(env.recipient, encoding=encoding)
        except aiosmtplib.SMTPRecipientRefused as err:
            raise aiosmtplib.SMTPRecipientsRefused([err]) from None
        stuffed = data.replace(b"\r\n.", b"\r\n..")  # the same object when no line starts with "."
        wire = b"." + stuffed if stuffed.startswith(b".") else stuffed
        await smtpwire.data(client, wire, timeout=timeout, final_timeout=final_timeout)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        await _reset(client)  # as sendmail does: leave no half-made envelope behind
        raise


def _check_size(client: aiosmtplib.SMTP, size: int) -> None:
    """Refuse a message over the limit the server announced (`SIZE N`; 0 or none: no limit)."""
    limit = client.esmtp_extensions.get("size", "").strip()
    if limit.isascii() and limit.isdigit() and 0 < int(limit) < size:
        raise TooLarge(f"the digest ({size} bytes) is larger than the SMTP server takes (SIZE {int(limit)})")


def _about_size(err: aiosmtplib.SMTPSenderRefused) -> bool:
    """A 552 to a MAIL FROM with SIZE= that says it is about the size (RFC 1870; 5.3.4 or 5.2.3,
    or the word): this message is too large. Any other 552 (a sending quota) stays the
    sender's problem, which stops sending rather than fail every subscriber."""
    text = err.message.lower()
    return err.code == 552 and ("5.3.4" in text or "5.2.3" in text or "size" in text)


def _lost(where: str, err: BaseException) -> str:
    """A connection dropped or silent while it was being set up (EHLO, STARTTLS, login): a
    passing fault like any other lost connection, retried later, not a setting to fix."""
    return f"SMTP server {where} closed or stalled the connection while it was being set up: {_short(err)}"


def _starttls_hint(security: str, err: Exception) -> str:
    """A server without STARTTLS: say which setting chooses how to speak TLS to it."""
    if security != "starttls" or "starttls" not in str(err).lower():
        return ""
    return ("; set DIGESTD_SMTP_SECURITY=tls if the server speaks TLS from the start (port 465), "
            "or none only for a local relay")


def _crlf_only(data: bytes) -> bool:
    crlf = data.count(b"\r\n")
    return data.endswith(b"\r\n") and data.count(b"\n") == crlf and data.count(b"\r") == crlf


def _drop(client: aiosmtplib.SMTP | None) -> aiosmtplib.SMTP | None:
    """Close a connection whose state is unknown; the next message opens a fresh one."""
    if client is not None:
        client.close()
    return None


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
    return _printable(text.splitlines()[0][:200])


MAX_ANSWER = 500  # characters of a server's reply kept: a 512-byte SMTP line, near enough


def _answer(code: int, message: str) -> str:
    """A server's reply as one line of printable text: it comes from a stranger's server (a
    relay passes the remote MX's words on) and reaches the terminal, status and alert mail,
    where an escape sequence (ESC ] ... BEL retitles a terminal) must not arrive whole. Cut at
    MAX_ANSWER: a multi-line reply can be 32 KB, and it was kept whole in every delivery's
    record (outbox.json, status, alerts)."""
    return f"{code} {cut(_printable(message), MAX_ANSWER)}"


def _printable(text: str) -> str:
    """Whitespace runs as one space, any other unprintable character as U+FFFD."""
    return "".join(c if c.isprintable() else "\ufffd" for c in " ".join(text.split()))
