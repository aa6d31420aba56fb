"""The changes the CLI and `digestd serve` make to subscribers.yaml: keywords and subscribers
added, removed, paused, changed and imported, each one edit through digestd.config.edit."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import SingleQuotedScalarString

from digestd.config.csvio import CsvRow, read_rows
from digestd.config.edit import edit
from digestd.config.tracked import Doc, append_item, delete_item, delete_key, set_key
from digestd.config.values import (
    check_name,
    control_character,
    keyword_key,
    keyword_name_problem,
    normalize_email,
)
from digestd.core.models import Frequency, SubscriberStatus
from digestd.errors import UsageError


def add_keyword(
    home: Path, name: str, query: str | None = None, categories: list[str] | None = None, *, held: int = 0
) -> list[str]:
    """Add a keyword. `held`: papers runs stored under this exact name before it was removed;
    they stay, so its next run is no baseline and mails what arrived since."""
    problem = keyword_name_problem(name)
    if problem:
        raise UsageError(problem)
    for what, text in [("--query", query or ""), *(("--category", c) for c in categories or [])]:
        char = control_character(text)
        if char:
            raise UsageError(f"{what} must be one line of text without control characters (found {char})")

    def change(data: Doc) -> list[str]:
        configured = _configured(data, name)
        if configured is not None:
            why = "names are compared ignoring case and spaces"
            same = "" if configured == name else f" as {configured!r} ({why})"
            raise UsageError(f"keyword {name!r} is already configured{same}")
        item: Any = name
        if query or categories:
            item = CommentedMap(name=name)
            if categories:
                item["categories"] = _flow(categories)
            if query:
                item["query"] = query
        append_item(_seq(data, "keywords"), item)
        if held:
            return [f"added keyword {name!r}; runs kept {held} of its papers from before it was removed, so "
                    "its next run is no baseline: it mails the papers that arrived since (up to max_results)"]
        return [f"added keyword {name!r}; its first run stores papers without mailing them (baseline)"]

    return edit(home, change)


def remove_keyword(home: Path, name: str) -> list[str]:
    """Remove a keyword and every subscriber's reference to it."""

    def change(data: Doc) -> list[str]:
        kws = _seq(data, "keywords")
        configured = _configured(data, name)
        if configured is None:
            raise UsageError(f"{name!r} is not a configured keyword")
        delete_item(kws, keyword_names(data).index(configured))
        said = [f"removed keyword {configured!r}"]
        for sub in _seq(data, "subscribers"):
            follows = sub.get("keywords") if isinstance(sub, dict) else None
            if not isinstance(follows, list):
                continue
            hits = [j for j, k in enumerate(follows) if keyword_key(str(k)) == keyword_key(configured)]
            for j in reversed(hits):
                del follows[j]
            if hits:
                alone = "" if follows else (f"; they follow no keyword now and get no digest until "
                                            f"`digestd subscribers set {sub['email']} --keyword ...`")
                said.append(f"{sub['email']} no longer follows it{alone}")
        return said

    return edit(home, change)


def add_subscriber(
    home: Path, email: str, name: str | None, keywords: list[str], frequency: Frequency | None = None
) -> list[str]:
    addr = normalize_email(email)
    check_name(name)

    def change(data: Doc) -> list[str]:
        subs = _seq(data, "subscribers")
        existing = _lookup(subs, addr)
        if existing is not None:
            raise UsageError(
                f"{existing['email']} is already a subscriber; use `digestd subscribers set` to change it"
            )
        item = _entry(data, addr, name, keywords, frequency or Frequency.DAILY, SubscriberStatus.ACTIVE)
        append_item(subs, item)
        return [f"added {addr} ({_describe(item)})"]

    return edit(home, change)


def remove_subscriber(home: Path, email: str) -> list[str]:
    def change(data: Doc) -> list[str]:
        subs = _seq(data, "subscribers")
        item = _find(subs, email)
        delete_item(subs, _index(subs, item))
        return [f"removed {item['email']}"]

    return edit(home, change)


def unsubscribe_many(home: Path, emails: Iterable[str]) -> set[str]:
    """Remove every listed address that is subscribed in one edit and one write (a burst of
    one-click unsubscribes); the lower-cased addresses that were removed."""
    wanted = {e.strip().lower() for e in emails}
    removed: set[str] = set()

    def change(data: Doc) -> list[str]:
        subs = data.get("subscribers")
        if not isinstance(subs, list):
            return []
        hits = [i for i, item in enumerate(subs)
                if isinstance(item, dict) and str(item.get("email", "")).lower() in wanted]
        for i in reversed(hits):  # from the end: the line numbers of the items before stay valid
            removed.add(str(subs[i]["email"]).lower())
            delete_item(subs, i)
        return [f"removed {len(hits)} subscriber(s)"]

    edit(home, change)
    return removed


def set_status(home: Path, email: str, status: SubscriberStatus) -> list[str]:
    """Pause (`paused`) or resume (`active`) a subscriber."""

    def change(data: Doc) -> list[str]:
        item = _find(_seq(data, "subscribers"), email)
        if status is SubscriberStatus.ACTIVE and "paused_until" in item:  # a dated pause ends too
            delete_key(item, "paused_until")
            if str(item.get("status", "active")).lower() == "active":
                return [f"{item['email']} is now active (digests again from the next run's new papers)"]
        if str(item.get("status", "active")).lower() == status.value:
            return [f"{item['email']} is already {status.value}; nothing changed"]
        if status is SubscriberStatus.ACTIVE:
            delete_key(item, "status")
        else:
            set_key(item, "status", status.value)
        return [f"{item['email']} is now {status.value}" + (
            " (no digests until `digestd subscribers resume`)" if status is SubscriberStatus.PAUSED else
            " (digests again from the next run's new papers)")]

    return edit(home, change)


def pause_until(home: Path, email: str, until: date) -> list[str]:
    """Pause a subscriber until a day (`paused_until`), after which digests resume by themselves."""

    def change(data: Doc) -> list[str]:
        item = _find(_seq(data, "subscribers"), email)
        if str(item.get("paused_until", "")) == until.isoformat():
            return [f"{item['email']} is already paused until {until.isoformat()}; nothing changed"]
        set_key(item, "paused_until", until.isoformat())
        return [f"{item['email']} is paused until {until.isoformat()} (no digests before that day)"]

    return edit(home, change)


def set_subscriber(
    home: Path, email: str, keywords: list[str] | None, frequency: Frequency | None, name: str | None = None,
    updates: bool | None = None,
) -> list[str]:
    """Change what is given; say what changed (and nothing for a value that is already so)."""
    check_name(name)

    def change(data: Doc) -> list[str]:
        item = _find(_seq(data, "subscribers"), email)
        addr = item["email"]
        said = []
        if keywords:
            said += _set_keywords(data, item, keywords)
        if frequency is not None and str(item.get("frequency", "daily")).lower() != frequency.value:
            old = item.get("frequency", "daily")
            if frequency is Frequency.DAILY and "frequency" in item:
                delete_key(item, "frequency")
            else:
                set_key(item, "frequency", frequency.value)
            said.append(f"{addr} gets a {frequency.value} digest (was: {old})")
        if name is not None and item.get("name") != name:
            set_key(item, "name", name)
            said.append(f"{addr} is named {name!r}")
        if updates is not None and item.get("updates", True) is not updates:
            if updates:
                delete_key(item, "updates")  # the default: left out, as documented
            else:
                set_key(item, "updates", False)
            said.append(f"{addr} {'gets' if updates else 'no longer gets'} revised papers")
        return said or [f"{addr} already has these settings; nothing changed"]

    return edit(home, change)


def import_csv(home: Path, csv_path: Path) -> list[str]:
    """Rows of email[,name[,keywords separated by ';'[,frequency[,status]]]]; an optional header
    row names the columns. Every row is checked before anything is written; an address already
    subscribed is skipped and said so."""
    rows = read_rows(csv_path)

    def change(data: Doc) -> list[str]:
        subs = _seq(data, "subscribers")
        said = []
        added = 0
        for row in rows:
            if _lookup(subs, row.email) is not None:
                said.append(f"skipped {row.email} (line {row.line}): already a subscriber")
                continue
            append_item(subs, item := _imported(data, row, csv_path))
            added += 1
            paused = "; paused" if row.status is SubscriberStatus.PAUSED else ""
            said.append(f"added {row.email} ({_describe(item)}{paused})")
        said.append(f"imported {added} of {len(rows)} subscriber(s) from {csv_path}")
        return said

    return edit(home, change)


def keyword_names(data: Doc) -> list[str]:
    """The configured keyword names, in file order."""
    return [k if isinstance(k, str) else str(k.get("name")) for k in _seq(data, "keywords")]


def _imported(data: Doc, row: CsvRow, csv_path: Path) -> CommentedMap:
    """The entry for one CSV row; an unknown keyword names the row."""
    try:
        return _entry(data, row.email, row.name, row.keywords, row.frequency, row.status)
    except UsageError as err:
        raise UsageError(f"{csv_path}, line {row.line}: {err}; nothing was imported") from None


def _entry(
    data: Doc,
    addr: str,
    name: str | None,
    keywords: Iterable[str],
    frequency: Frequency,
    status: SubscriberStatus,
) -> CommentedMap:
    """A new subscriber entry written the way the documentation shows it: defaults left out."""
    item = CommentedMap(email=addr)
    if name:
        item["name"] = name
    keywords = list(keywords)
    if keywords:
        item["keywords"] = _flow(_check_keywords(data, keywords))
    if frequency is not Frequency.DAILY:
        item["frequency"] = frequency.value
    if status is not SubscriberStatus.ACTIVE:
        item["status"] = status.value
    return item


def _set_keywords(data: Doc, item: Doc, keywords: list[str]) -> list[str]:
    """Make `item` follow exactly `keywords`; what changed, if anything."""
    wanted = _check_keywords(data, keywords)
    current = item.get("keywords")
    follows = current if isinstance(current, list) else []
    spelled = list(dict.fromkeys(_configured(data, str(k)) or str(k) for k in follows))
    if isinstance(current, list) and spelled == wanted:
        return []
    old = ", ".join(map(str, current)) if isinstance(current, list) else "all keywords"
    set_key(item, "keywords", _flow(wanted))
    return [f"{item['email']} follows {', '.join(wanted)} (was: {old})"]


def _flow(items: Iterable[str]) -> CommentedSeq:
    """A list written the way the documentation shows it: `[a, b]`. ruamel writes a name that
    starts with `?` or `:` bare in a flow list (`[? q]`), which reads back as a mapping: quoted."""
    seq = CommentedSeq(SingleQuotedScalarString(x) if x[:1] in "?:" else x for x in items)
    seq.fa.set_flow_style()
    return seq


def _seq(data: Doc, key: str) -> list[Any]:
    """data[key] as a list, made one (empty) if it is missing or not a list."""
    value = data.get(key)
    if not isinstance(value, list):
        value = CommentedSeq()
        data[key] = value
    return value


def _lookup(subs: list[Any], email: str) -> Any:
    low = email.strip().lower()
    for item in subs:
        if isinstance(item, dict) and str(item.get("email", "")).lower() == low:
            return item
    return None


def _index(seq: list[Any], item: Any) -> int:
    return next(i for i, x in enumerate(seq) if x is item)


def _find(subs: list[Any], email: str) -> Any:
    item = _lookup(subs, email)
    if item is None:
        raise UsageError(f"{email} is not a subscriber (see `digestd subscribers list`); nothing was changed")
    return item


def _configured(data: Doc, name: str) -> str | None:
    """The configured spelling of keyword `name`, matched ignoring case and spaces, or None."""
    return next((k for k in keyword_names(data) if keyword_key(k) == keyword_key(name)), None)


def _check_keywords(data: Doc, wanted: Iterable[str]) -> list[str]:
    """The keywords a subscriber follows, in their configured spelling (matched ignoring case)."""
    names = keyword_names(data)
    out = []
    for kw in wanted:
        configured = _configured(data, kw)
        if configured is None:
            raise UsageError(f"{kw!r} is not a configured keyword (configured: {', '.join(names) or 'none'})")
        out.append(configured)
    return list(dict.fromkeys(out))


def _describe(item: Any) -> str:
    kws = item.get("keywords")
    what = ", ".join(map(str, kws)) if isinstance(kws, list) else "all keywords"
    return f"{what}; {item.get('frequency', 'daily')}"
