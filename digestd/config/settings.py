"""The typed configuration every other package reads: paths, settings and their defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from digestd.config.bounce_env import BounceSource
from digestd.core.models import Keyword, Subscriber

SUBSCRIBERS_FILE = "subscribers.yaml"
DEFAULT_ARXIV_URL = "https://export.arxiv.org/api/query"
DEFAULT_ARXIV_MAX_BYTES = 50_000_000  # an arXiv answer, once decompressed
DEFAULT_SENDER = "Daily Papers <digestd@localhost>"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(frozen=True, slots=True)
class Paths:
    """Every file of an instance; no other module builds these paths."""

    home: Path

    @property
    def subscribers(self) -> Path:
        return self.home / SUBSCRIBERS_FILE

    @property
    def templates(self) -> Path:
        return self.home / "templates"

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def papers_db(self) -> Path:
        return self.state_dir / "papers.json"

    @property
    def outbox_db(self) -> Path:
        return self.state_dir / "outbox.json"

    @property
    def suppressions_db(self) -> Path:
        return self.state_dir / "suppressions.json"

    @property
    def interests_db(self) -> Path:
        return self.state_dir / "interests.json"

    @property
    def lock(self) -> Path:
        return self.state_dir / "run.lock"

    @property
    def maildir(self) -> Path:
        return self.state_dir / "maildir"

    @property
    def readme(self) -> Path:
        return self.home / "README.md"

    @property
    def archive_db(self) -> Path:
        return self.state_dir / "archive.json"

    @property
    def site(self) -> Path:
        return self.home / "site"

    @property
    def archive(self) -> Path:
        return self.home / "archive"


@dataclass(frozen=True, slots=True)
class Settings:
    """The non-secret `settings:` block of subscribers.yaml."""

    sender: str | None = None
    timezone: str | None = None
    readme_rows: int = 20
    max_results: int = 100
    full_abstracts: bool = False
    weekly_day: str = "monday"
    public_url: str | None = None
    max_rate: float | None = None  # messages per second; None: as fast as the server takes them
    connections: int = 8
    pause_after_failures: int = 3
    stale_margin_days: int = 10
    list_name: str = "Daily Papers"
    open_signup: bool = False  # `digestd serve` offers /subscribe (double opt-in)
    feed_entries: int = 100  # papers per Atom feed
    archive_days: int = 365  # days the site and archive/ keep
    alert_to: str | None = None  # the operator, mailed once per incident (None: no alerts)
    silent_days: int = 5  # announcement days with nothing new before a keyword is flagged
    bounce_address: str | None = None  # VERP envelope sender base: bounces+<token>@domain
    soft_bounce_limit: int = 5  # transient failures within 14 days that suppress


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where mail goes; secrets come only from the environment."""

    host: str
    port: int
    security: str  # starttls | tls | none
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    retries: int = 3  # retries of a 4xx or dropped connection, per message
    backoff: float = 2.0  # seconds before the first retry, doubled for each next one
    ca_file: str | None = None  # CA bundle to trust instead of the system's
    data_timeout: float = 600.0  # wait for the reply to the final "." (RFC 5321 4.5.3.2.6)


@dataclass(frozen=True, slots=True)
class Config:
    """One instance as a run sees it: subscribers.yaml and the environment, both validated."""

    paths: Paths
    keywords: tuple[Keyword, ...]
    subscribers: tuple[Subscriber, ...]
    settings: Settings
    smtp: SmtpSettings | None  # None: deliver to the Maildir in state/
    sender: str
    arxiv_url: str = DEFAULT_ARXIV_URL
    arxiv_delay: float = 3.0
    arxiv_timeout: float = 30.0
    arxiv_max_bytes: int = DEFAULT_ARXIV_MAX_BYTES
    secret: bytes | None = field(default=None, repr=False)
    previous_secrets: tuple[bytes, ...] = field(default=(), repr=False)  # still accepted (rotation)
    bounce_source: BounceSource | None = None  # DIGESTD_BOUNCE_MAILDIR / DIGESTD_BOUNCE_IMAP_URL

    @property
    def tz(self) -> ZoneInfo | None:
        return ZoneInfo(self.settings.timezone) if self.settings.timezone else None

    def keyword(self, name: str) -> Keyword | None:
        return next((k for k in self.keywords if k.name == name), None)


def resolve_home(home: Path | None) -> Path:
    """--home, else $DIGESTD_HOME, else the current directory."""
    if home is None:
        env = os.environ.get("DIGESTD_HOME")
        home = Path(env) if env else Path.cwd()
    return home.expanduser().resolve()
