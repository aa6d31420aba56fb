"""Where bounces are read from: DIGESTD_BOUNCE_MAILDIR, or DIGESTD_BOUNCE_IMAP_URL with its
password and CA files. Checked here so a typo stops the run with the variable's name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from digestd.config.secretfile import check_ca_file, read_secret_file
from digestd.core.links import shown_url
from digestd.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ImapSource:
    """An IMAP folder over TLS (imaps://, certificate verified)."""

    host: str
    port: int
    user: str
    folder: str
    password: str = field(repr=False)
    ca_file: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class BounceSource:
    """Exactly one of a Maildir and an IMAP folder."""

    maildir: Path | None = None
    imap: ImapSource | None = None

    def describe(self) -> str:
        if self.imap is not None:
            i = self.imap
            return f"imaps://{i.user}@{i.host}:{i.port}/{i.folder}"
        return f"the Maildir {self.maildir}"


def read_bounce_source(env: Mapping[str, str]) -> BounceSource | None:
    """The configured bounce source, or None; ConfigError names the variable to fix."""
    maildir = env.get("DIGESTD_BOUNCE_MAILDIR", "").strip()
    url = env.get("DIGESTD_BOUNCE_IMAP_URL", "").strip()
    if maildir and url:
        raise ConfigError("set DIGESTD_BOUNCE_MAILDIR or DIGESTD_BOUNCE_IMAP_URL, not both")
    if maildir:
        return BounceSource(maildir=Path(maildir).expanduser())
    if url:
        return BounceSource(imap=_imap(env, url))
    return None


def _imap(env: Mapping[str, str], url: str) -> ImapSource:
    hint = "DIGESTD_BOUNCE_IMAP_URL must look like imaps://user@host:993/INBOX"
    try:
        parts = urlsplit(url)
        port = parts.port or 993
    except ValueError:
        raise ConfigError(f"{hint}, not {shown_url(url)!r}") from None
    if parts.scheme != "imaps" or not parts.hostname or not parts.username or parts.password:
        raise ConfigError(f"{hint} (the password goes in DIGESTD_BOUNCE_IMAP_PASSWORD_FILE)")
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if any(c in folder for c in '\r\n"\\') or len(folder) > 200:
        raise ConfigError(f"the folder in DIGESTD_BOUNCE_IMAP_URL is not a plain folder name: {folder!r}")
    pw_file = env.get("DIGESTD_BOUNCE_IMAP_PASSWORD_FILE", "").strip()
    if not pw_file:
        raise ConfigError("DIGESTD_BOUNCE_IMAP_URL is set but DIGESTD_BOUNCE_IMAP_PASSWORD_FILE is not")
    password = read_secret_file("DIGESTD_BOUNCE_IMAP_PASSWORD_FILE", pw_file)
    ca_file = check_ca_file("DIGESTD_BOUNCE_IMAP_CA_FILE",
                            env.get("DIGESTD_BOUNCE_IMAP_CA_FILE", "").strip() or None)
    return ImapSource(parts.hostname, port, unquote(parts.username), folder, password, ca_file)
