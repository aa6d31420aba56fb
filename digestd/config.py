"""The one owner of paths and settings: defaults, then subscribers.yaml, then the environment."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from digestd.errors import ConfigError
from digestd.fastyaml import NOT_SIMPLE, fast_yaml
from digestd.models import Frequency, Keyword, Subscriber, SubscriberStatus

SUBSCRIBERS_FILE = "subscribers.yaml"
DEFAULT_ARXIV_URL = "https://export.arxiv.org/api/query"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_SECURITY_PORTS = {"starttls": 587, "tls": 465, "none": 25}
# Addresses in the plain shape nearly every subscriber has, which email-validator always
# accepts: an ASCII dot-atom local part, LDH labels without "--", a TLD of letters. They skip
# email-validator (0.26 s per 10,000 addresses, 2.9 s per 100,000: too slow for every run);
# any other address gets its full check, so the run path accepts what the CLI accepts.
_PLAIN_EMAIL_RE = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
# Domains email-validator refuses (local, test, localhost, ...) and their subdomains.
_SPECIAL_SUFFIXES = tuple("." + d.lower() for d in SPECIAL_USE_DOMAIN_NAMES)


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
    def lock(self) -> Path:
        return self.state_dir / "run.lock"

    @property
    def maildir(self) -> Path:
        return self.state_dir / "maildir"

    @property
    def readme(self) -> Path:
        return self.home / "README.md"


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
    connections: int = 4
    pause_after_failures: int = 3
    stale_margin_days: int = 10
    list_name: str = "Daily Papers"


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


@dataclass(frozen=True, slots=True)
class Config:
    paths: Paths
    keywords: tuple[Keyword, ...]
    subscribers: tuple[Subscriber, ...]
    settings: Settings
    smtp: SmtpSettings | None  # None: deliver to the Maildir in state/
    sender: str
    arxiv_url: str = DEFAULT_ARXIV_URL
    arxiv_delay: float = 3.0
    arxiv_timeout: float = 30.0
    secret: bytes | None = field(default=None, repr=False)

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


def read_yaml_text(path: Path) -> str:
    """The text of subscribers.yaml, or a sentence saying how to create it."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist: run `digestd init` to create an instance there, or pass --home DIR"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read {path}: {err}") from None


def parse_yaml(text: str, path: Path, *, round_trip: bool = False) -> Any:
    """Parse YAML, naming the file and line of a syntax error.

    A safe load first tries `fast_yaml`, which reads the plain block style subscribers.yaml
    is written in about 30 times faster than ruamel's pure-Python loader (10,000 subscribers:
    0.2 s instead of 5 s); anything else in the file takes ruamel's loader.
    """
    if not round_trip:
        data = fast_yaml(text)
        if data is not NOT_SIMPLE:
            return data
    yaml = YAML(typ="rt" if round_trip else "safe", pure=True)
    try:
        return yaml.load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: malformed YAML: {err.problem or err}") from None
    except YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None


def load_config(home: Path, env: dict[str, str] | None = None) -> Config:
    """Load and validate the instance at `home`; raise ConfigError naming file and line."""
    env = dict(os.environ) if env is None else env
    paths = Paths(home)
    data = parse_yaml(read_yaml_text(paths.subscribers), paths.subscribers)
    try:
        return _build(paths, data, env)
    except _Invalid as err:
        line = _line_of(paths.subscribers, err.where)
        where = f", line {line}" if line else ""
        raise ConfigError(f"{paths.subscribers}{where}: {err.message}") from None


class _Invalid(Exception):
    def __init__(self, where: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def _line_of(path: Path, where: tuple[str | int, ...]) -> int | None:
    """The 1-based line of a node, found by a round-trip load only when an error is shown."""
    try:
        node: Any = parse_yaml(path.read_text(encoding="utf-8"), path, round_trip=True)
    except Exception:
        return None
    line: int | None = None
    for key in where:
        try:
            line = (node.lc.item(key) if isinstance(key, int) else node.lc.key(key))[0] + 1
            node = node[key]
        except (AttributeError, KeyError, IndexError, TypeError):
            break
    return line


def check_keyword_name(name: object) -> str:
    """A keyword is one line of text: it becomes a README heading and an arXiv phrase."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a keyword must be non-empty text")
    if any(c in name for c in "\r\n\t\x00"):
        raise ValueError(f"keyword {name!r} contains a newline or control character")
    if '"' in name:
        raise ValueError(f"keyword {name!r} contains a double quote; use `query:` for raw queries")
    if name != name.strip():
        raise ValueError(f"keyword {name!r} has leading or trailing spaces")
    return name


def email_problem(addr: object) -> str | None:
    """Why `addr` is not an e-mail address by email-validator's syntax check (no DNS), or None;
    plain addresses take a fast path that gives the same answer."""
    if not isinstance(addr, str):
        return "not text"
    if _PLAIN_EMAIL_RE.fullmatch(addr) and len(addr) <= 254:
        domain = "." + addr.rpartition("@")[2].lower()
        if "--" not in domain and not domain.endswith(_SPECIAL_SUFFIXES):
            return None
    try:
        validate_email(addr, check_deliverability=False)
    except EmailNotValidError as err:
        return str(err)
    return None


def looks_like_email(addr: object) -> bool:
    return email_problem(addr) is None


def _keywords(raw: Any) -> tuple[Keyword, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _Invalid(("keywords",), "`keywords` must be a list")
    out: list[Keyword] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where: tuple[str | int, ...] = ("keywords", i)
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise _Invalid(where, "each keyword is a name or a mapping with `name`")
        unknown = set(item) - {"name", "query", "categories"}
        if unknown:
            raise _Invalid(where, f"unknown keyword field(s): {', '.join(sorted(map(str, unknown)))}")
        try:
            name = check_keyword_name(item.get("name"))
        except ValueError as err:
            raise _Invalid(where, str(err)) from None
        if name in seen:
            raise _Invalid(where, f"keyword {name!r} is listed twice")
        seen.add(name)
        query = item.get("query")
        if query is not None and (not isinstance(query, str) or "\n" in query.strip()):
            raise _Invalid(where, f"the query of {name!r} must be one line of text")
        cats = item.get("categories") or []
        if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
            raise _Invalid(where, f"the categories of {name!r} must be a list like [cs.CV]")
        out.append(Keyword(name=name, query=query.strip() if query else None, categories=tuple(cats)))
    return tuple(out)


def _subscribers(raw: Any, keywords: tuple[Keyword, ...]) -> tuple[Subscriber, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _Invalid(("subscribers",), "`subscribers` must be a list")
    names = {k.name for k in keywords}
    out: list[Subscriber] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        where: tuple[str | int, ...] = ("subscribers", i)
        if not isinstance(item, dict):
            raise _Invalid(where, "each subscriber is a mapping with `email`")
        email = item.get("email")
        problem = email_problem(email)
        if problem:
            raise _Invalid(where, f"{email!r} is not an e-mail address: {problem}")
        assert isinstance(email, str)
        if email.lower() in seen:
            raise _Invalid(where, f"subscriber {email} is listed twice")
        seen.add(email.lower())
        name = item.get("name")
        if name is not None and (not isinstance(name, str) or any(c in name for c in "\r\n")):
            raise _Invalid(where, f"the name of {email} must be one line of text")
        kws = item.get("keywords")
        if kws is not None:
            if not isinstance(kws, list) or not all(isinstance(k, str) for k in kws):
                raise _Invalid(where, f"the keywords of {email} must be a list of keyword names")
            missing = [k for k in kws if k not in names]
            if missing:
                raise _Invalid(where, f"{email} follows {missing[0]!r}, which is not a configured keyword")
        try:
            freq = Frequency(item.get("frequency", "daily"))
            status = SubscriberStatus(item.get("status", "active"))
        except ValueError as err:
            raise _Invalid(where, f"{email}: {err}") from None
        out.append(
            Subscriber(
                email=email,
                name=name,
                keywords=tuple(kws) if kws is not None else None,
                frequency=freq,
                status=status,
            )
        )
    return tuple(out)


def _settings(raw: Any) -> Settings:
    if raw is None:
        return Settings()
    if not isinstance(raw, dict):
        raise _Invalid(("settings",), "`settings` must be a mapping")
    known = {
        "from": "sender",
        "timezone": "timezone",
        "readme_rows": "readme_rows",
        "max_results": "max_results",
        "full_abstracts": "full_abstracts",
        "weekly_day": "weekly_day",
        "public_url": "public_url",
        "max_rate": "max_rate",
        "connections": "connections",
        "pause_after_failures": "pause_after_failures",
        "stale_margin_days": "stale_margin_days",
        "list_name": "list_name",
    }
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise _Invalid(("settings", key), f"unknown setting {key!r}")
        kwargs[known[key]] = value
    s = Settings(**kwargs)
    for attr in ("sender", "timezone", "weekly_day", "public_url", "list_name"):
        if getattr(s, attr) is not None and not isinstance(getattr(s, attr), str):
            key = next(k for k, a in known.items() if a == attr)
            raise _Invalid(("settings", key), f"settings.{key} must be text")
    if not s.list_name.strip() or any(c in s.list_name for c in "\r\n"):
        raise _Invalid(("settings", "list_name"), "settings.list_name must be one line of text")
    ints = {
        "readme_rows": (1, 2000),
        "max_results": (1, 2000),
        "connections": (1, 64),
        "pause_after_failures": (1, 1000),
        "stale_margin_days": (0, 3650),
    }
    for attr, (lo, hi) in ints.items():
        v = getattr(s, attr)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            key = next(k for k, a in known.items() if a == attr)
            raise _Invalid(("settings", key), f"settings.{key} must be a whole number from {lo} to {hi}")
    if s.timezone is not None:
        try:
            ZoneInfo(str(s.timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise _Invalid(
                ("settings", "timezone"), f"unknown timezone {s.timezone!r} (e.g. Europe/Berlin)"
            ) from None
    if s.weekly_day not in WEEKDAYS:
        raise _Invalid(
            ("settings", "weekly_day"), f"settings.weekly_day must be one of {', '.join(WEEKDAYS)}"
        )
    if s.max_rate is not None and (not isinstance(s.max_rate, int | float) or s.max_rate <= 0):
        raise _Invalid(
            ("settings", "max_rate"), "settings.max_rate must be a positive number of messages per second"
        )
    if s.public_url is not None and not re.match(r"^https?://[^\s]+$", str(s.public_url)):
        raise _Invalid(("settings", "public_url"), "settings.public_url must be an http(s) URL")
    if s.sender is not None and not looks_like_email(parseaddr(str(s.sender))[1]):
        raise _Invalid(("settings", "from"), f"settings.from {s.sender!r} has no valid address")
    if not isinstance(s.full_abstracts, bool):
        raise _Invalid(("settings", "full_abstracts"), "settings.full_abstracts must be true or false")
    return s


def _read_secret(env: dict[str, str], name: str) -> str | None:
    """A secret from NAME, or from the file named by NAME_FILE (preferred: not in `ps`)."""
    file = env.get(f"{name}_FILE")
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ConfigError(f"cannot read {name}_FILE {file}: {err.strerror}") from None
    value = env.get(name)
    return value if value else None


def smtp_from_env(env: dict[str, str]) -> SmtpSettings | None:
    host = env.get("DIGESTD_SMTP_HOST", "").strip()
    if not host:
        return None
    security = env.get("DIGESTD_SMTP_SECURITY", "starttls").strip().lower()
    if security not in _SECURITY_PORTS:
        raise ConfigError("DIGESTD_SMTP_SECURITY must be starttls, tls or none")
    port_text = env.get("DIGESTD_SMTP_PORT", "").strip()
    try:
        port = int(port_text) if port_text else _SECURITY_PORTS[security]
    except ValueError:
        raise ConfigError(f"DIGESTD_SMTP_PORT must be a port number, not {port_text!r}") from None
    username = env.get("DIGESTD_SMTP_USERNAME") or None
    password = _read_secret(env, "DIGESTD_SMTP_PASSWORD")
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
    retries_text = env.get("DIGESTD_SMTP_RETRIES", "").strip() or "3"
    if not (retries_text.isascii() and retries_text.isdigit() and int(retries_text) <= 10):
        raise ConfigError(f"DIGESTD_SMTP_RETRIES must be a whole number from 0 to 10, not {retries_text!r}")
    ca_file = env.get("DIGESTD_SMTP_CA_FILE", "").strip() or None
    if ca_file is not None and not Path(ca_file).is_file():
        raise ConfigError(f"DIGESTD_SMTP_CA_FILE {ca_file} is not a file")
    return SmtpSettings(
        host,
        port,
        security,
        username,
        password,
        timeout=_float(env, "DIGESTD_SMTP_TIMEOUT", 30.0),
        retries=int(retries_text),
        backoff=_float(env, "DIGESTD_SMTP_BACKOFF", 2.0),
        ca_file=ca_file,
    )


def _float(env: dict[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {text!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _arxiv_url(env: dict[str, str]) -> str:
    url = env.get("DIGESTD_ARXIV_API_URL", "").strip()
    if not url:
        return DEFAULT_ARXIV_URL
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:  # a bad port or IPv6 literal
        ok = False
    if not ok or any(c.isspace() for c in url):
        raise ConfigError(f"DIGESTD_ARXIV_API_URL must be an http(s) URL, not {url!r}")
    return url


def _build(paths: Paths, data: Any, env: dict[str, str]) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _Invalid((), "the file must be a mapping with `keywords:` and `subscribers:`")
    unknown = set(data) - {"keywords", "subscribers", "settings"}
    if unknown:
        key = sorted(map(str, unknown))[0]
        raise _Invalid((key,), f"unknown top-level key {key!r} (expected keywords, subscribers, settings)")
    settings = _settings(data.get("settings"))
    keywords = _keywords(data.get("keywords"))
    subscribers = _subscribers(data.get("subscribers"), keywords)
    sender = env.get("DIGESTD_FROM") or settings.sender or "Daily Papers <digestd@localhost>"
    if not looks_like_email(parseaddr(sender)[1]) and not parseaddr(sender)[1].endswith("@localhost"):
        raise ConfigError(f"DIGESTD_FROM {sender!r} has no valid address")
    secret = _read_secret(env, "DIGESTD_SECRET")
    return Config(
        paths=paths,
        keywords=keywords,
        subscribers=subscribers,
        settings=settings,
        smtp=smtp_from_env(env),
        sender=sender,
        arxiv_url=_arxiv_url(env),
        arxiv_delay=_float(env, "DIGESTD_ARXIV_DELAY", 3.0),
        arxiv_timeout=_float(env, "DIGESTD_ARXIV_TIMEOUT", 30.0),
        secret=secret.encode("utf-8") if secret else None,
    )
