"""The one owner of paths and settings: defaults, then subscribers.yaml, then the environment."""

from __future__ import annotations

import difflib
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
from ruamel.yaml.composer import Composer
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionStartEvent, NodeEvent, ScalarEvent
from ruamel.yaml.nodes import MappingNode

from digestd.config.fastyaml import MAX_DEPTH, NOT_SIMPLE, fast_yaml
from digestd.core.models import Frequency, Keyword, Subscriber, SubscriberStatus
from digestd.errors import ConfigError

SUBSCRIBERS_FILE = "subscribers.yaml"
DEFAULT_ARXIV_URL = "https://export.arxiv.org/api/query"
DEFAULT_ARXIV_MAX_BYTES = 50_000_000  # an arXiv answer, once decompressed
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
# Characters no text field may hold: they would reach mail headers, the README and arXiv
# queries raw. C0 (tab and newline too), DEL, C1, and the Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Refused raw anywhere in the file, before either reader: what YAML allows nowhere (ruamel's
# reader refuses it, fast_yaml would keep it) and NEL, U+2028, U+2029 (ruamel folds them into
# a space, fast_yaml keeps them). Tab, \n and \r stay: YAML whitespace and line ends.
_RAW_CONTROL = re.compile("[^\t\n\r -~\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MERGE_TAG = "tag:yaml.org,2002:merge"
TOP_KEYS = ("keywords", "subscribers", "settings")
KEYWORD_KEYS = ("name", "query", "categories")
SUBSCRIBER_KEYS = ("email", "name", "keywords", "frequency", "status")


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
    data_timeout: float = 600.0  # wait for the reply to the final "." (RFC 5321 4.5.3.2.6)


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
    arxiv_max_bytes: int = DEFAULT_ARXIV_MAX_BYTES
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
    0.2 s instead of 5 s); anything else in the file takes ruamel's loader. A raw control
    character is refused first: the readers disagree on some (ruamel folds NEL, U+2028 and
    U+2029 into a space, fast_yaml keeps them) and no text field may hold one anyway.
    """
    raw = _RAW_CONTROL.search(text)
    if raw:
        line = text.count("\n", 0, raw.start()) + 1
        kind = "control character" if _CONTROL.match(raw.group()) else "character"
        raise ConfigError(
            f"{path}, line {line}: {kind} U+{ord(raw.group()):04X} is not allowed; "
            "text fields must be one line of printable text"
        )
    if not round_trip:
        data = fast_yaml(text)
        if data is not NOT_SIMPLE:
            return data
    yaml = YAML(typ="rt" if round_trip else "safe", pure=True)
    yaml.Composer = _StrictComposer
    try:
        return yaml.load(text)
    except _Refused as err:
        raise ConfigError(f"{path}, line {err.line}: {err.message}") from None
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: malformed YAML: {err.problem or err}") from None
    except YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None


class _Refused(Exception):
    def __init__(self, event: Any, message: str) -> None:
        super().__init__(message)
        self.line = event.start_mark.line + 1 if event.start_mark is not None else 0
        self.message = message


class _StrictComposer(Composer):
    """ruamel's composer, refusing anchors, aliases and merge keys on the parser event that
    opens them: composing comes before constructing and reads events lazily, so a 400-byte
    alias bomb (gigabytes once a loader or a walk follows its aliases) costs the bytes up to
    its first anchor. Also bounds the nesting depth: both loaders recurse once per level."""

    nesting = 0  # collections enclosing the node being composed

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        what = _reference(event, is_key=isinstance(parent, MappingNode) and index is None)
        if what:
            raise _Refused(event, f"YAML {what} is not allowed in this file; write the value out in full")
        if isinstance(event, CollectionStartEvent) and self.nesting >= MAX_DEPTH:
            raise _Refused(event, f"nested more than {MAX_DEPTH} levels deep")
        self.nesting += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.nesting -= 1


def _reference(event: Any, *, is_key: bool) -> str | None:
    """What makes `event` an anchor, an alias or a merge key, or None."""
    if isinstance(event, AliasEvent):
        return f"alias '*{event.anchor}'"
    if isinstance(event, NodeEvent) and event.anchor is not None:
        return f"anchor '&{event.anchor}'"
    if getattr(event, "tag", None) == _MERGE_TAG:
        return "merge tag '!!merge'"
    if is_key and isinstance(event, ScalarEvent) and event.value == "<<" and event.style is None:
        return "merge key '<<'"
    return None


def load_config(home: Path, env: dict[str, str] | None = None) -> Config:
    """Load and validate the instance at `home`; raise ConfigError naming file and line."""
    env = dict(os.environ) if env is None else env
    paths = Paths(home)
    text = read_yaml_text(paths.subscribers)
    data = parse_yaml(text, paths.subscribers)
    try:
        return _build(paths, data, env)
    except _Invalid as err:
        raise err.config_error(paths.subscribers, text) from None


class _Invalid(Exception):
    def __init__(self, where: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message

    def config_error(self, path: Path, text: str, suffix: str = "") -> ConfigError:
        """The one sentence shown: file, line of the offending node in `text`, message."""
        line = _line_of(path, self.where, text)
        where = f", line {line}" if line else ""
        return ConfigError(f"{path}{where}: {self.message}{suffix}")


def _line_of(path: Path, where: tuple[str | int, ...], text: str | None = None) -> int | None:
    """The 1-based line of a node, found by a round-trip load only when an error is shown."""
    try:
        if text is None:
            text = path.read_text(encoding="utf-8")
        node: Any = parse_yaml(text, path, round_trip=True)
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
    if control_character(name):
        raise ValueError(f"keyword {name!r} contains a newline or control character")
    if '"' in name:
        raise ValueError(f"keyword {name!r} contains a double quote; use `query:` for raw queries")
    if name != name.strip():
        raise ValueError(f"keyword {name!r} has leading or trailing spaces")
    return name


def control_character(text: str) -> str | None:
    """The first control character in `text` as "U+000A", or None."""
    m = _CONTROL.search(text)
    return f"U+{ord(m.group()):04X}" if m else None


def _unknown_key(where: tuple[str | int, ...], key: Any, known: tuple[str, ...], what: str) -> _Invalid:
    """A refusal naming the key and, for a near miss, the key it probably meant (a typo like
    `stauts:` must not silently cost mail). `what` is a sentence with a {key} field."""
    close = difflib.get_close_matches(str(key).lower(), known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(known)}"
    return _Invalid((*where, key), f"{what.format(key=repr(str(key)[:80]))} ({hint})")


def _control_in(node: Any, where: tuple[Any, ...] = ()) -> tuple[tuple[Any, ...], str, bool] | None:
    """(where, character, in a key?) of the first control character in any key or text value
    of the document, in file order; None if there is none. Depth is bounded by the loaders."""
    if isinstance(node, str):
        char = control_character(node)
        return (where, char, False) if char else None
    items: Any = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        if isinstance(key, str) and (char := control_character(key)):
            return ((*where, key), char, True)
        found = _control_in(value, (*where, key))
        if found:
            return found
    return None


def _field(data: Any, where: tuple[str | int, ...]) -> str:
    """How a message names the field at `where`: settings.list_name, the name of bob@..."""
    top, rest = (where[0], where[1:]) if where else ("", ())
    if top == "settings" and rest:
        return f"settings.{rest[0]}"
    if top == "keywords" and rest:
        return "a keyword name" if len(rest) == 1 or rest[1] == "name" else f"the {rest[1]} of a keyword"
    if top == "subscribers" and len(rest) >= 2:
        entries = data.get("subscribers")
        entry = entries[rest[0]] if isinstance(entries, list) and isinstance(rest[0], int) else None
        email = entry.get("email") if isinstance(entry, dict) else None
        who = email if isinstance(email, str) and not control_character(email) else "a subscriber"
        return f"a keyword of {who}" if rest[1] == "keywords" else f"the {rest[1]} of {who}"
    return "a value"


def _check_text(data: Any) -> None:
    """Every text field must be one line of printable text: names and list_name reach mail
    headers, keywords the README and arXiv queries."""
    found = _control_in(data)
    if found:
        where, char, in_key = found
        what = "a key" if in_key else _field(data, where)
        raise _Invalid(where, f"{what} must be one line of text without control characters (found {char})")


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
    seen: dict[str, str] = {}  # casefolded name -> the name as configured
    for i, item in enumerate(raw):
        where: tuple[str | int, ...] = ("keywords", i)
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict):
            raise _Invalid(where, "each keyword is a name or a mapping with `name`")
        for key in item:
            if key not in KEYWORD_KEYS:
                raise _unknown_key(where, key, KEYWORD_KEYS, "unknown key {key} in a keyword entry")
        try:
            name = check_keyword_name(item.get("name"))
        except ValueError as err:
            raise _Invalid(where, str(err)) from None
        first = seen.get(name.casefold())
        if first is not None:
            same = "" if first == name else f" (as {first!r} too: names are compared ignoring case)"
            raise _Invalid(where, f"keyword {name!r} is listed twice{same}")
        seen[name.casefold()] = name
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
    names = {k.name.casefold(): k.name for k in keywords}
    out: list[Subscriber] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        sub = _subscriber(("subscribers", i), item, names)
        if sub.email.lower() in seen:
            raise _Invalid(("subscribers", i), f"subscriber {sub.email} is listed twice")
        seen.add(sub.email.lower())
        out.append(sub)
    return tuple(out)


def _subscriber(where: tuple[str | int, ...], item: Any, names: dict[str, str]) -> Subscriber:
    """One entry; its keyword references, frequency and status are matched ignoring case and
    kept in the configured spelling (a wrong case must not cost mail)."""
    if not isinstance(item, dict):
        raise _Invalid(where, "each subscriber is a mapping with `email`")
    for key in item:
        if key not in SUBSCRIBER_KEYS:
            raise _unknown_key(where, key, SUBSCRIBER_KEYS, "unknown key {key} in a subscriber entry")
    email = item.get("email")
    problem = email_problem(email)
    if problem:
        raise _Invalid(where, f"{email!r} is not an e-mail address: {problem}")
    assert isinstance(email, str)
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or any(c in name for c in "\r\n")):
        raise _Invalid((*where, "name"), f"the name of {email} must be one line of text")
    kws = item.get("keywords")
    if kws is not None:
        if not isinstance(kws, list) or not all(isinstance(k, str) for k in kws):
            raise _Invalid((*where, "keywords"), f"the keywords of {email} must be a list of keyword names")
        missing = [k for k in kws if k.casefold() not in names]
        if missing:
            raise _Invalid(
                (*where, "keywords"), f"{email} follows {missing[0]!r}, which is not a configured keyword"
            )
        kws = list(dict.fromkeys(names[k.casefold()] for k in kws))
    return Subscriber(
        email=email,
        name=name,
        keywords=tuple(kws) if kws is not None else None,
        frequency=_choice(item, "frequency", Frequency, where, email),
        status=_choice(item, "status", SubscriberStatus, where, email),
    )


def _choice(item: dict[str, Any], key: str, enum: Any, where: tuple[str | int, ...], email: str) -> Any:
    """item[key] as a member of `enum` (its first member if absent), matched ignoring case."""
    members = list(enum)
    if key not in item:
        return members[0]
    value = item[key]
    for member in members:
        if isinstance(value, str) and value.lower() == member.value:
            return member
    allowed = " or ".join(m.value for m in members)
    raise _Invalid((*where, key), f"{email}: {value!r} is not a valid {key.capitalize()}; use {allowed}")


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
            raise _unknown_key(("settings",), key, tuple(known), "unknown setting {key}")
        if key == "weekly_day" and isinstance(value, str):
            value = value.lower()  # Monday is monday
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
        data_timeout=_float(env, "DIGESTD_SMTP_DATA_TIMEOUT", 600.0),
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


def _positive_int(env: dict[str, str], name: str, default: int) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit() and int(text) > 0):
        raise ConfigError(f"{name} must be a positive whole number of bytes, not {text!r}")
    return int(text)


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
    _check_text(data)
    for key in data:
        if key not in TOP_KEYS:
            raise _unknown_key((), key, TOP_KEYS, "unknown top-level key {key}")
    settings = _settings(data.get("settings"))
    keywords = _keywords(data.get("keywords"))
    subscribers = _subscribers(data.get("subscribers"), keywords)
    sender = env.get("DIGESTD_FROM") or settings.sender or "Daily Papers <digestd@localhost>"
    if control_character(sender):
        raise ConfigError(f"DIGESTD_FROM must be one line of text without control characters "
                          f"(found {control_character(sender)})")
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
        arxiv_max_bytes=_positive_int(env, "DIGESTD_ARXIV_MAX_BYTES", DEFAULT_ARXIV_MAX_BYTES),
        secret=secret.encode("utf-8") if secret else None,
    )
