"""The DIGESTD_* environment: SMTP, the sender, arXiv limits and secrets. Secrets live only
here (or in files named here), never in subscribers.yaml."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from urllib.parse import urlsplit

from digestd.config.secretfile import check_ca_file, read_secret_file
from digestd.config.settings import (
    DEFAULT_ARXIV_MAX_BYTES,
    DEFAULT_ARXIV_URL,
    DEFAULT_SENDER,
    Settings,
    SmtpSettings,
)
from digestd.config.values import control_character, looks_like_email
from digestd.core.links import shown_url
from digestd.errors import ConfigError

_SECURITY_PORTS = {"starttls": 587, "tls": 465, "none": 25}
# The longest wait any DIGESTD_* number of seconds may ask for: beyond it a timeout overflows
# the socket layer (1e300: "timestamp out of range") or a delay outlives the daily timer.
MAX_SECONDS = 86400.0


@dataclass(frozen=True, slots=True)
class Environment:
    """What a run takes from the environment, checked."""

    sender: str
    smtp: SmtpSettings | None
    arxiv_url: str
    arxiv_delay: float
    arxiv_timeout: float
    arxiv_max_bytes: int
    secret: bytes | None = field(default=None, repr=False)
    previous_secrets: tuple[bytes, ...] = field(default=(), repr=False)


def read_environment(env: Mapping[str, str], settings: Settings) -> Environment:
    """Every DIGESTD_* variable a run uses; ConfigError names the variable to fix."""
    sender = env.get("DIGESTD_FROM") or settings.sender or DEFAULT_SENDER
    char = control_character(sender)
    if char:
        raise ConfigError(f"DIGESTD_FROM must be one line of text without control characters (found {char})")
    address = parseaddr(sender)[1]
    if not looks_like_email(address) and not address.endswith("@localhost"):
        raise ConfigError(f"DIGESTD_FROM {sender!r} has no valid address")
    secret = read_secret(env, "DIGESTD_SECRET")
    return Environment(
        sender=sender,
        smtp=smtp_from_env(env),
        arxiv_url=_arxiv_url(env),
        arxiv_delay=_seconds(env, "DIGESTD_ARXIV_DELAY", 3.0),
        arxiv_timeout=_seconds(env, "DIGESTD_ARXIV_TIMEOUT", 30.0, timeout=True),
        arxiv_max_bytes=_positive_int(env, "DIGESTD_ARXIV_MAX_BYTES", DEFAULT_ARXIV_MAX_BYTES),
        secret=secret.encode("utf-8") if secret else None,
        previous_secrets=previous_secrets(env),
    )


def previous_secrets(env: Mapping[str, str]) -> tuple[bytes, ...]:
    """Keys replaced by DIGESTD_SECRET that links already mailed were signed with: from
    DIGESTD_SECRET_PREVIOUS (comma-separated) or the file DIGESTD_SECRET_PREVIOUS_FILE (commas
    or one a line). Links signed with them keep working until they are removed here."""
    text = read_secret(env, "DIGESTD_SECRET_PREVIOUS") or ""
    return tuple(k.strip().encode("utf-8") for k in re.split(r"[,\n]", text) if k.strip())


def read_secret(env: Mapping[str, str], name: str) -> str | None:
    """A secret from NAME, or from the file named by NAME_FILE (preferred: not in `ps`)."""
    file = env.get(f"{name}_FILE")
    if file:
        return read_secret_file(f"{name}_FILE", file)
    value = env.get(name)
    return value if value else None


def smtp_from_env(env: Mapping[str, str]) -> SmtpSettings | None:
    """The SMTP server, or None (no DIGESTD_SMTP_HOST: mail goes to the Maildir in state/)."""
    host = env.get("DIGESTD_SMTP_HOST", "").strip()
    if not host:
        return None
    security = env.get("DIGESTD_SMTP_SECURITY", "starttls").strip().lower()
    if security not in _SECURITY_PORTS:
        raise ConfigError("DIGESTD_SMTP_SECURITY must be starttls, tls or none")
    port_text = env.get("DIGESTD_SMTP_PORT", "").strip()
    port = _SECURITY_PORTS[security]
    if port_text:
        if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
            raise ConfigError(f"DIGESTD_SMTP_PORT must be a port number, not {port_text!r}")
        port = int(port_text)
    username = env.get("DIGESTD_SMTP_USERNAME") or None
    password = read_secret(env, "DIGESTD_SMTP_PASSWORD")
    _check_credentials(username, password, security)
    retries_text = env.get("DIGESTD_SMTP_RETRIES", "").strip() or "3"
    if not (retries_text.isascii() and retries_text.isdigit() and int(retries_text) <= 10):
        raise ConfigError(f"DIGESTD_SMTP_RETRIES must be a whole number from 0 to 10, not {retries_text!r}")
    ca_file = check_ca_file("DIGESTD_SMTP_CA_FILE", env.get("DIGESTD_SMTP_CA_FILE", "").strip() or None)
    return SmtpSettings(
        host,
        port,
        security,
        username,
        password,
        timeout=_seconds(env, "DIGESTD_SMTP_TIMEOUT", 30.0, timeout=True),
        retries=int(retries_text),
        backoff=_seconds(env, "DIGESTD_SMTP_BACKOFF", 2.0),
        ca_file=ca_file,
        data_timeout=_seconds(env, "DIGESTD_SMTP_DATA_TIMEOUT", 600.0, timeout=True),
    )


def _check_credentials(username: str | None, password: str | None, security: str) -> None:
    """Both or neither, and never in clear over the wire."""
    if password and not username:
        raise ConfigError("DIGESTD_SMTP_PASSWORD is set but DIGESTD_SMTP_USERNAME is not")
    if username and not password:
        raise ConfigError(
            "DIGESTD_SMTP_USERNAME is set but no password: "
            "set DIGESTD_SMTP_PASSWORD or DIGESTD_SMTP_PASSWORD_FILE"
        )
    if username and security == "none":
        raise ConfigError(
            "refusing to send SMTP credentials in clear: set DIGESTD_SMTP_SECURITY to starttls or tls"
        )


def _seconds(env: Mapping[str, str], name: str, default: float, *, timeout: bool = False) -> float:
    """A number of seconds up to MAX_SECONDS; a timeout must be more than 0 (0 means "do not
    wait at all" to sockets, so every fetch or delivery would fail at run time instead)."""
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {text!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a number of seconds, not {text!r}")
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    if timeout and value == 0:
        raise ConfigError(f"{name} must be more than 0 seconds")
    if value > MAX_SECONDS:
        raise ConfigError(f"{name} must be at most {MAX_SECONDS:.0f} seconds (a day), not {text!r}")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        raise ConfigError(f"{name} must be a positive whole number of bytes, not {text!r}")
    return int(text)


def _arxiv_url(env: Mapping[str, str]) -> str:
    url = env.get("DIGESTD_ARXIV_API_URL", "").strip()
    if not url:
        return DEFAULT_ARXIV_URL
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or IPv6 literal
        ok = False
    if not ok or any(c.isspace() for c in url):
        raise ConfigError(f"DIGESTD_ARXIV_API_URL must be an http(s) URL, not {shown_url(url)!r}")
    return url
