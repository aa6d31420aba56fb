"""subscribers.yaml and the environment as one typed, validated Config: the rules a file must
meet, shared by every run and by every edit before it is written."""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from digestd.config.bounce_env import read_bounce_source
from digestd.config.env import read_environment
from digestd.config.follow import FOLLOW_KEYS, FieldProblem, follow_fields
from digestd.config.interests import interest_entries
from digestd.config.interests import resolve as resolve_interests
from digestd.config.invalid import Invalid, Where, only_known
from digestd.config.pauses import paused_until, paused_until_problem
from digestd.config.settings import Config, Paths, Settings
from digestd.config.settings_block import parse_settings
from digestd.config.values import (
    address_key,
    control_character,
    email_problem,
    keyword_key,
    keyword_name_problem,
)
from digestd.config.yamlread import parse_yaml, read_yaml_text
from digestd.core.models import Frequency, Keyword, Subscriber, SubscriberStatus
from digestd.errors import ConfigError

TOP_KEYS = ("keywords", "subscribers", "settings")
KEYWORD_KEYS = ("name", "query", "categories", *FOLLOW_KEYS)
SUBSCRIBER_KEYS = ("email", "name", "keywords", "frequency", "status", "updates", "interests", "paused_until")
_E = TypeVar("_E", bound=Enum)


def load_config(home: Path, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate the instance at `home`; raise ConfigError naming file and line."""
    env = os.environ if env is None else env
    paths = Paths(home)
    text = read_yaml_text(paths.subscribers)
    data = parse_yaml(text, paths.subscribers)
    try:
        settings, keywords, subscribers = _document(data)
    except Invalid as err:
        raise err.config_error(paths.subscribers, text) from None
    subscribers = resolve_interests(paths, subscribers, text)
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
        previous_secrets=environment.previous_secrets,
        bounce_source=read_bounce_source(env),
    )


def check_edit(path: Path, data: Any, old_text: str) -> None:
    """Raise ConfigError unless `data`, an edit's result, is a valid subscribers.yaml (the run
    path's rules). When the file already had that problem, the sentence names its line as the
    file is (an edit cannot be made until it is fixed)."""
    try:
        _document(data)
    except Invalid as err:
        try:
            _document(parse_yaml(old_text, path))
        except Invalid as old:
            if old.message == err.message:
                raise old.config_error(path, old_text, "; nothing was changed (fix that first)") from None
        except ConfigError:
            pass
        raise ConfigError(f"{path}: {err.message}; nothing was changed") from None


def _document(data: Any) -> tuple[Settings, tuple[Keyword, ...], tuple[Subscriber, ...]]:
    """The typed content of subscribers.yaml, or Invalid for the first rule it breaks."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise Invalid((), "the file must be a mapping with `keywords:` and `subscribers:`")
    _check_text(data)
    only_known((), data, TOP_KEYS, "unknown top-level key {key}")
    settings = parse_settings(data.get("settings"))
    keywords = _keywords(data.get("keywords"))
    return settings, keywords, _subscribers(data.get("subscribers"), keywords)


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
        if isinstance(value, str):  # checked here: most values are (200,000 interest ids)
            if char := control_character(value):
                return ((*where, key), char, False)
            continue
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
        raise Invalid(where, f"{what} must be one line of text without control characters (found {char})")


def _keywords(raw: Any) -> tuple[Keyword, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise Invalid(("keywords",), "`keywords` must be a list")
    out: list[Keyword] = []
    seen: dict[str, str] = {}  # keyword_key(name) -> the name as configured
    for i, item in enumerate(raw):
        keyword = _keyword(("keywords", i), item, seen)
        seen[keyword_key(keyword.name)] = keyword.name
        out.append(keyword)
    return tuple(out)


def _keyword(where: Where, item: Any, seen: dict[str, str]) -> Keyword:
    """One entry: a name (unique ignoring case among those `seen` before it), or a mapping
    with `name` and optional `query` and `categories`."""
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict):
        raise Invalid(where, "each keyword is a name or a mapping with `name`")
    only_known(where, item, KEYWORD_KEYS, "unknown key {key} in a keyword entry")
    name = item.get("name")
    problem = keyword_name_problem(name)
    if problem:
        raise Invalid(where, problem)
    assert isinstance(name, str)
    first = seen.get(keyword_key(name))
    if first is not None:
        same = "" if first == name else f" (as {first!r} too: names are compared ignoring case and spaces)"
        raise Invalid(where, f"keyword {name!r} is listed twice{same}")
    query = item.get("query")
    if query is not None and (not isinstance(query, str) or "\n" in query.strip()):
        raise Invalid(where, f"the query of {name!r} must be one line of text")
    try:
        f = follow_fields(item, name)
    except FieldProblem as err:
        raise Invalid((*where, *err.where), err.message) from None
    return Keyword(
        name=name, query=query.strip() if query else None, categories=f.categories,
        authors=f.authors, phrase=f.phrase, exclude=f.exclude, listing=f.listing,
        primary_only=f.primary_only, top=f.top,
    )


def _subscribers(raw: Any, keywords: tuple[Keyword, ...]) -> tuple[Subscriber, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise Invalid(("subscribers",), "`subscribers` must be a list")
    names = {keyword_key(k.name): k.name for k in keywords}
    out: list[Subscriber] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        sub = _subscriber(("subscribers", i), item, names)
        key = address_key(sub.email)
        if key in seen:
            raise Invalid(("subscribers", i), f"subscriber {sub.email} is listed twice")
        seen.add(key)
        out.append(sub)
    return tuple(out)


def _subscriber(where: Where, item: Any, names: dict[str, str]) -> Subscriber:
    """One entry; its keyword references, frequency and status are matched ignoring case and
    kept in the configured spelling (a wrong case must not cost mail)."""
    if not isinstance(item, dict):
        raise Invalid(where, "each subscriber is a mapping with `email`")
    only_known(where, item, SUBSCRIBER_KEYS, "unknown key {key} in a subscriber entry")
    email = item.get("email")
    problem = email_problem(email)
    if problem:
        raise Invalid(where, f"{email!r} is not an e-mail address: {problem}")
    assert isinstance(email, str)
    name = item.get("name")
    if name is not None and (not isinstance(name, str) or any(c in name for c in "\r\n")):
        raise Invalid((*where, "name"), f"the name of {email} must be one line of text")
    return Subscriber(
        email=email,
        name=name,
        keywords=_followed((*where, "keywords"), item.get("keywords", _ALL), names, email),
        frequency=_choice(item, "frequency", Frequency, where, email),
        status=_choice(item, "status", SubscriberStatus, where, email),
        updates=_updates(item, where, email),
        interests=_interests((*where, "interests"), item.get("interests"), email),
        paused_until=_paused_until(where, item, email),
    )


def _paused_until(where: Where, item: dict[str, Any], email: str) -> Any:
    """`paused_until: YYYY-MM-DD` (config/pauses.py)."""
    value = item.get("paused_until")
    if value is not None and paused_until_problem(value):
        raise Invalid((*where, "paused_until"), f"paused_until of {email} must be a date written YYYY-MM-DD")
    return paused_until(value)


def _interests(where: Where, raw: Any, email: str) -> tuple[str, ...]:
    """`interests:` ids and .bib paths (config/interests.py reads the files after the document)."""
    try:
        return interest_entries(raw, email)
    except FieldProblem as err:
        raise Invalid((*where, *err.where), err.message) from None


def _updates(item: dict[str, Any], where: Where, email: str) -> bool:
    """`updates: true|false` (default true): whether revised old papers are mailed."""
    value = item.get("updates", True)
    if not isinstance(value, bool):
        raise Invalid((*where, "updates"), f"updates of {email} must be true or false")
    return value


_ALL = object()  # no `keywords:` key: every keyword


def _followed(where: Where, kws: Any, names: dict[str, str], email: str) -> tuple[str, ...] | None:
    """The keywords a subscriber follows in their configured spelling; None: all of them (no
    `keywords:` key). An empty `keywords:` is refused: read as "all", a slip would mail every
    keyword, and `[]` already says "none"."""
    if kws is _ALL:
        return None
    if kws is None:
        raise Invalid(where, f"`keywords:` of {email} is empty: list keywords, write `[]` for none, or "
                              "remove the line to follow every keyword")
    if not isinstance(kws, list) or not all(isinstance(k, str) for k in kws):
        raise Invalid(where, f"the keywords of {email} must be a list of keyword names")
    missing = [k for k in kws if keyword_key(k) not in names]
    if missing:
        raise Invalid(where, f"{email} follows {missing[0]!r}, which is not a configured keyword")
    return tuple(dict.fromkeys(names[keyword_key(k)] for k in kws))


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
    raise Invalid((*where, key), f"{email}: {value!r} is not a {key}: use {allowed}")
