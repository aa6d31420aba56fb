"""subscribers.yaml and the environment as one typed, validated Config: the rules a file must
meet, shared by every run and by every edit before it is written."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from email.utils import parseaddr
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digestd.config.env import read_environment
from digestd.config.settings import WEEKDAYS, Config, Paths, Settings
from digestd.config.values import (
    address_key,
    control_character,
    email_problem,
    keyword_name_problem,
    looks_like_email,
    url_problem,
)
from digestd.config.yamlread import line_of, parse_yaml, read_yaml_text
from digestd.core.models import Frequency, Keyword, Subscriber, SubscriberStatus
from digestd.errors import ConfigError

TOP_KEYS = ("keywords", "subscribers", "settings")
KEYWORD_KEYS = ("name", "query", "categories")
SUBSCRIBER_KEYS = ("email", "name", "keywords", "frequency", "status")
# The keys of `settings:` and the Settings attribute each fills.
_SETTING_KEYS = {
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
_TEXT_SETTINGS = ("from", "timezone", "weekly_day", "public_url", "list_name")
_INT_SETTINGS = {
    "readme_rows": (1, 2000),
    "max_results": (1, 2000),
    "connections": (1, 64),
    "pause_after_failures": (1, 1000),
    "stale_margin_days": (0, 3650),
}
_E = TypeVar("_E", bound=Enum)
Where = tuple[str | int, ...]  # keys and indexes from the top of the document to a node


def load_config(home: Path, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the instance at `home`; raise ConfigError naming file and line."""
    env = os.environ if env is None else env
    paths = Paths(home)
    text = read_yaml_text(paths.subscribers)
    data = parse_yaml(text, paths.subscribers)
    try:
        settings, keywords, subscribers = _document(data)
    except _Invalid as err:
        raise err.config_error(paths.subscribers, text) from None
    environment = read_environment(env, settings)
    return Config(
        paths=paths,
        keywords=keywords,
        subscribers=subscribers,
        settings=settings,
        smtp=environment.smtp,
        sender=environment.sender,
        arxiv_url=environment.arxiv_url,
        arxiv_delay=environment.arxiv_delay,
        arxiv_timeout=environment.arxiv_timeout,
        arxiv_max_bytes=environment.arxiv_max_bytes,
        secret=environment.secret,
    )


def check_edit(path: Path, data: Any, old_text: str) -> None:
    """Raise ConfigError unless `data`, an edit's result, is a valid subscribers.yaml (the run
    path's rules). When the file already had that problem, the sentence names its line as the
    file is (an edit cannot be made until it is fixed)."""
    try:
        _document(data)
    except _Invalid as err:
        try:
            _document(parse_yaml(old_text, path))
        except _Invalid as old:
            if old.message == err.message:
                raise old.config_error(path, old_text, "; nothing was changed (fix that first)") from None
        except ConfigError:
            pass
        raise ConfigError(f"{path}: {err.message}; nothing was changed") from None


class _Invalid(Exception):
    """A rule the data breaks, at `where`; turned into a ConfigError naming the line."""

    def __init__(self, where: Where, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message

    def config_error(self, path: Path, text: str, suffix: str = "") -> ConfigError:
        """The one sentence shown: file, line of the offending node in `text`, message."""
        line = line_of(path, self.where, text)
        where = f", line {line}" if line else ""
        return ConfigError(f"{path}{where}: {self.message}{suffix}")


def _document(data: Any) -> tuple[Settings, tuple[Keyword, ...], tuple[Subscriber, ...]]:
    """The typed content of subscribers.yaml, or _Invalid for the first rule it breaks."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise _Invalid((), "the file must be a mapping with `keywords:` and `subscribers:`")
    _check_text(data)
    _only_known((), data, TOP_KEYS, "unknown top-level key {key}")
    settings = _settings(data.get("settings"))
    keywords = _keywords(data.get("keywords"))
    return settings, keywords, _subscribers(data.get("subscribers"), keywords)


def _only_known(where: Where, mapping: dict[Any, Any], known: tuple[str, ...], what: str) -> None:
    """Refuse the first key of `mapping` not in `known`."""
    for key in mapping:
        if key not in known:
            raise _unknown_key(where, key, known, what)


def _unknown_key(where: Where, key: Any, known: tuple[str, ...], what: str) -> _Invalid:
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


def _field(data: Any, where: Where) -> str:
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


def _keywords(raw: Any) -> tuple[Keyword, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _Invalid(("keywords",), "`keywords` must be a list")
    out: list[Keyword] = []
    seen: dict[str, str] = {}  # casefolded name -> the name as configured
    for i, item in enumerate(raw):
        keyword = _keyword(("keywords", i), item, seen)
        seen[keyword.name.casefold()] = keyword.name
        out.append(keyword)
    return tuple(out)


def _keyword(where: Where, item: Any, seen: dict[str, str]) -> Keyword:
    """One entry: a name (unique ignoring case among those `seen` before it), or a mapping
    with `name` and optional `query` and `categories`."""
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        raise _Invalid(where, "each keyword is a name or a mapping with `name`")
    _only_known(where, item, KEYWORD_KEYS, "unknown key {key} in a keyword entry")
    name = item.get("name")
    problem = keyword_name_problem(name)
    if problem:
        raise _Invalid(where, problem)
    assert isinstance(name, str)
    first = seen.get(name.casefold())
    if first is not None:
        same = "" if first == name else f" (as {first!r} too: names are compared ignoring case)"
        raise _Invalid(where, f"keyword {name!r} is listed twice{same}")
    query = item.get("query")
    if query is not None and (not isinstance(query, str) or "\n" in query.strip()):
        raise _Invalid(where, f"the query of {name!r} must be one line of text")
    cats = item.get("categories") or []
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        raise _Invalid(where, f"the categories of {name!r} must be a list like [cs.CV]")
    return Keyword(name=name, query=query.strip() if query else None, categories=tuple(cats))


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
        key = address_key(sub.email)
        if key in seen:
            raise _Invalid(("subscribers", i), f"subscriber {sub.email} is listed twice")
        seen.add(key)
        out.append(sub)
    return tuple(out)


def _subscriber(where: Where, item: Any, names: dict[str, str]) -> Subscriber:
    """One entry; its keyword references, frequency and status are matched ignoring case and
    kept in the configured spelling (a wrong case must not cost mail)."""
    if not isinstance(item, dict):
        raise _Invalid(where, "each subscriber is a mapping with `email`")
    _only_known(where, item, SUBSCRIBER_KEYS, "unknown key {key} in a subscriber entry")
    email = item.get("email")
    problem = email_problem(email)
    if problem:
        raise _Invalid(where, f"{email!r} is not an e-mail address: {problem}")
    assert isinstance(email, str)
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or any(c in name for c in "\r\n")):
        raise _Invalid((*where, "name"), f"the name of {email} must be one line of text")
    return Subscriber(
        email=email,
        name=name,
        keywords=_followed((*where, "keywords"), item.get("keywords", _ALL), names, email),
        frequency=_choice(item, "frequency", Frequency, where, email),
        status=_choice(item, "status", SubscriberStatus, where, email),
    )


_ALL = object()  # no `keywords:` key: every keyword


def _followed(where: Where, kws: Any, names: dict[str, str], email: str) -> tuple[str, ...] | None:
    """The keywords a subscriber follows in their configured spelling; None: all of them (no
    `keywords:` key). An empty `keywords:` is refused: read as "all", a slip would mail every
    keyword, and `[]` already says "none"."""
    if kws is _ALL:
        return None
    if kws is None:
        raise _Invalid(where, f"`keywords:` of {email} is empty: list keywords, write `[]` for none, or "
                              "remove the line to follow every keyword")
    if not isinstance(kws, list) or not all(isinstance(k, str) for k in kws):
        raise _Invalid(where, f"the keywords of {email} must be a list of keyword names")
    missing = [k for k in kws if k.casefold() not in names]
    if missing:
        raise _Invalid(where, f"{email} follows {missing[0]!r}, which is not a configured keyword")
    return tuple(dict.fromkeys(names[k.casefold()] for k in kws))


def _choice(item: dict[str, Any], key: str, enum: type[_E], where: Where, email: str) -> _E:
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
    """The `settings:` block, every value checked for type and range."""
    if raw is None:
        return Settings()
    if not isinstance(raw, dict):
        raise _Invalid(("settings",), "`settings` must be a mapping")
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _SETTING_KEYS:
            raise _unknown_key(("settings",), key, tuple(_SETTING_KEYS), "unknown setting {key}")
        if key == "weekly_day" and isinstance(value, str):
            value = value.lower()  # Monday is monday
        kwargs[_SETTING_KEYS[key]] = value
    settings = Settings(**kwargs)
    _check_types(settings)
    _check_values(settings)
    return settings


def _value(s: Settings, key: str) -> Any:
    return getattr(s, _SETTING_KEYS[key])


def _check_types(s: Settings) -> None:
    """Text where text belongs, whole numbers in range, a boolean for full_abstracts."""
    for key in _TEXT_SETTINGS:
        if _value(s, key) is not None and not isinstance(_value(s, key), str):
            raise _Invalid(("settings", key), f"settings.{key} must be text")
    if not s.list_name.strip() or any(c in s.list_name for c in "\r\n"):
        raise _Invalid(("settings", "list_name"), "settings.list_name must be one line of text")
    for key, (lo, hi) in _INT_SETTINGS.items():
        v = _value(s, key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise _Invalid(("settings", key), f"settings.{key} must be a whole number from {lo} to {hi}")


def _check_values(s: Settings) -> None:
    """The values that must mean something: a timezone, a weekday, a rate, a URL, an address."""
    if s.timezone is not None:
        try:
            ZoneInfo(str(s.timezone))
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America", a long name
            raise _Invalid(
                ("settings", "timezone"), f"unknown timezone {s.timezone!r} (e.g. Europe/Berlin)"
            ) from None
    if s.weekly_day not in WEEKDAYS:
        raise _Invalid(
            ("settings", "weekly_day"), f"settings.weekly_day must be one of {', '.join(WEEKDAYS)}"
        )
    if s.max_rate is not None and (not isinstance(s.max_rate, int | float) or not s.max_rate > 0):  # NaN too
        raise _Invalid(
            ("settings", "max_rate"), "settings.max_rate must be a positive number of messages per second"
        )
    if s.public_url is not None and (why := url_problem(str(s.public_url))):
        raise _Invalid(("settings", "public_url"), f"settings.public_url {why}")
    if s.sender is not None and not looks_like_email(parseaddr(str(s.sender))[1]):
        raise _Invalid(("settings", "from"), f"settings.from {s.sender!r} has no valid address")
    if not isinstance(s.full_abstracts, bool):
        raise _Invalid(("settings", "full_abstracts"), "settings.full_abstracts must be true or false")

