"""One error family with exit codes, caught in one place by the CLI."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1  # something is wrong that a person must fix; the message says what and where
    USAGE = 2  # bad usage or bad input; nothing was changed
    TEMPFAIL = 75  # partly done (EX_TEMPFAIL): the next run retries what failed


class DigestdError(Exception):
    """An error a user can act on; str(err) is the one sentence shown to them."""

    exit_code: ExitCode = ExitCode.ERROR


class UsageError(DigestdError):
    """Bad input on the command line or in subscribers.yaml; nothing was changed."""

    exit_code = ExitCode.USAGE


class ConfigError(UsageError):
    """subscribers.yaml or the environment is missing or invalid."""


class StateError(DigestdError):
    """The state file cannot be read; it was moved aside, never silently replaced."""


class LockedError(DigestdError):
    """Another run holds the instance lock."""

    exit_code = ExitCode.TEMPFAIL


class FetchError(DigestdError):
    """This keyword could not be fetched now; its state stays as it was and the next run retries."""

    exit_code = ExitCode.TEMPFAIL


class MessageError(DigestdError, ValueError):
    """A value that cannot be written into a message (an address that is not one, a header
    line over 998 characters): that one delivery fails, the others go on."""


class SmtpFatalError(DigestdError):
    """Authentication or TLS failed: sending stops at once, deliveries stay pending."""
