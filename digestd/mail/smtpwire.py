"""The one place that uses aiosmtplib's private protocol attributes: DATA without regexes, and
with a phase the caller can tell apart ("the final '.' went out, no reply came").

Why: aiosmtplib's `data()` runs regular expressions over every message (line ends, then
dot-stuffing), measured at a third of the CPU a digest costs (docs/benchmarks.md), and its
one timeout covers both the 354 and the final reply, so a lost final reply cannot be told
from a refused DATA. Our messages already have CRLF line ends, so dot-stuffing is one
`bytes.replace`.

The attributes used (`SMTPProtocol._command_lock`, `._response_pending`) exist in aiosmtplib
3.0 to 5.x; pyproject.toml pins that range. A version without them fails loudly with
`SmtpWireError` (tests/test_smtpwire.py), never silently falls back.
"""

from __future__ import annotations

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol

from digestd.errors import DigestdError, ExitCode

SUPPORTED = ((3, 0), (6, 0))  # [low, high): keep in step with pyproject.toml


class SmtpWireError(DigestdError):
    """aiosmtplib changed in a way the fast DATA path cannot follow: pin or update digestd."""


class FinalReplyLost(DigestdError):
    """The message and its final "." went out, but no reply came: it may have been delivered.
    digestd/mail/smtp.py marks it unknown; a later run resends it at most once."""

    exit_code = ExitCode.TEMPFAIL

    def __init__(self, why: str, *, timed_out: bool) -> None:
        super().__init__(why)
        self.timed_out = timed_out  # no reply within the time (not a dropped connection)


def check_version(version: str = aiosmtplib.__version__) -> None:
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if not SUPPORTED[0] <= parts < SUPPORTED[1]:
        raise SmtpWireError(
            f"aiosmtplib {version} is outside the range digestd's fast DATA path was checked "
            f"against ({SUPPORTED[0][0]}.x to {SUPPORTED[1][0] - 1}.x): install a version in it"
        )


def _protocol(client: aiosmtplib.SMTP) -> SMTPProtocol:
    proto = client.protocol
    if proto is None:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    if not hasattr(proto, "_command_lock") or not hasattr(proto, "_response_pending"):
        raise SmtpWireError(
            f"aiosmtplib {aiosmtplib.__version__} no longer has the protocol attributes digestd's "
            "fast DATA path uses: install a version in the range pyproject.toml pins"
        )
    if proto._command_lock is None:
        raise aiosmtplib.SMTPServerDisconnected("Server not connected")
    return proto


async def data(client: aiosmtplib.SMTP, wire: bytes, *, timeout: float, final_timeout: float) -> None:
    """DATA with `wire`: the message, dot-stuffed, ending in CRLF (the final "." is added).

    Waits `timeout` for the 354 and `final_timeout` for the reply to the final ".". A lost
    connection or no reply after the "." raises FinalReplyLost; a refusal, SMTPDataError."""
    proto = _protocol(client)
    lock = proto._command_lock
    assert lock is not None
    async with lock:
        try:
            proto._response_pending = True
            proto.write(b"DATA\r\n")
            start = await proto.read_response(timeout=timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            client.close()
            raise
        if start.code != aiosmtplib.SMTPStatus.start_input:
            raise aiosmtplib.SMTPDataError(start.code, start.message)
        proto._response_pending = True
        proto.write(wire + b".\r\n")  # one write: a copy costs less than a second send()
        try:
            response = await proto.read_response(timeout=final_timeout)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as err:
            client.close()
            timed_out = isinstance(err, aiosmtplib.SMTPTimeoutError)
            raise FinalReplyLost(str(err) or type(err).__name__, timed_out=timed_out) from None
        except aiosmtplib.SMTPResponseException as err:  # malformed or over-long: no reply we can read
            client.close()
            raise FinalReplyLost(f"unreadable reply: {err.message[:200]}", timed_out=False) from None
    _final_outcome(client, response)


def _final_outcome(client: aiosmtplib.SMTP, response: aiosmtplib.SMTPResponse) -> None:
    """2xx is accepted (RFC 5321 4.2.1, not only 250), 4xx/5xx refused; any other code says
    nothing: the server has the whole message, so it may deliver it and is never asked again
    in the run (before, such a reply was retried: four copies a run, and more every run)."""
    if 200 <= response.code < 300:
        return
    if 400 <= response.code < 600:
        raise aiosmtplib.SMTPDataError(response.code, response.message)
    client.close()
    said = f"{response.code} {response.message[:200]}"
    raise FinalReplyLost(f"a reply that is no answer: {said}", timed_out=False)
