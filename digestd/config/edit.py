"""Edits to subscribers.yaml that keep its comments and order, validate before writing, and
write atomically: a failed edit leaves the file byte-identical."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from digestd.config.load import (
    Config,
    Paths,
    _build,
    _Invalid,
    check_keyword_name,
    control_character,
    load_config,
    parse_yaml,
    read_yaml_text,
)
from digestd.core.models import Frequency
from digestd.errors import ConfigError, UsageError
from digestd.store import atomic
from digestd.store.atomic import write_atomic

INIT_YAML = """\
# digestd instance: the keywords to follow and who gets the digests.
# Secrets (SMTP password, unsubscribe secret) never go here: see digestd.env.example.
keywords:                      # each is one arXiv search and one README section
  - Video Anomaly Detection
subscribers: []
  # - email: alice@example.org
  #   name: Alice                 # optional
  #   keywords: [Video Anomaly Detection]   # optional; omitted means all keywords
  #   frequency: daily            # or weekly
settings:
  from: Daily Papers <papers@example.org>
  readme_rows: 20               # rows per keyword in the README
  max_results: 100              # papers fetched and retained per keyword
"""


def normalize_email(addr: str) -> str:
    """Syntax check only (no DNS): a clear sentence for an address that cannot be one."""
    try:
        return validate_email(addr.strip(), check_deliverability=False).normalized
    except EmailNotValidError as err:
        raise UsageError(f"{addr!r} is not a valid e-mail address: {err}") from None


_SEQ_ITEM = re.compile(r"^( *)- ")
_MAP_KEY = re.compile(r"^( +)[^\s#-][^:]*:(\s|$)")
_BLOCK_PARENT = re.compile(r"^\S[^#]*:\s*(#.*)?$")


def guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) indentation as the file already uses it, so a dump changes
    only what an edit changed (ruamel re-indents a whole file to its configured style).
    Defaults: the style of `digestd init` (2, 4, 2)."""
    mapping = offset = None
    prev = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if _BLOCK_PARENT.match(prev):
            if offset is None and (m := _SEQ_ITEM.match(line)):
                offset = len(m.group(1))
            elif mapping is None and (m := _MAP_KEY.match(line)):
                mapping = len(m.group(1))
        prev = line
    offset = 2 if offset is None else offset
    return (mapping or 2), offset + 2, offset


def _yaml(text: str = "") -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    mapping, sequence, offset = guess_indent(text)
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    y.width = 4096
    return y


def _dump(data: Any, text: str) -> str:
    buf = io.StringIO()
    _yaml(text).dump(data, buf)
    return buf.getvalue()


@contextmanager
def _edit_lock(home: Path, *, wait: bool = True) -> Iterator[bool]:
    """One edit at a time per instance (CLI, `digestd serve` threads and processes alike):
    an flock on the instance folder itself, so no lock file is left behind. Yields whether
    the lock is held (False only with wait=False while another edit holds it)."""
    try:
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # a missing folder: reading subscribers.yaml will say so
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def sweep_leftovers(home: Path) -> list[Path]:
    """Remove the temp files a killed edit left beside subscribers.yaml, under the edit lock so
    a live edit's temp file is never taken; skipped (next time) while another edit runs."""
    with _edit_lock(home, wait=False) as held:
        return atomic.sweep_leftovers(home / "subscribers.yaml") if held else []


def edit(home: Path, change: Callable[[CommentedMap], list[str]]) -> list[str]:
    """Load subscribers.yaml round-trip, apply `change`, validate the result, write atomically.

    `change` returns the sentences that say what it did (or why nothing changed). The file is
    written only when the document changed, and only if the result is a valid instance; a
    refused edit raises UsageError and leaves the file byte-identical.
    """
    path = home / "subscribers.yaml"
    with _edit_lock(home):
        text = read_yaml_text(path)
        data = parse_yaml(text, path, round_trip=True)
        if data is None:
            data = CommentedMap()
        if not isinstance(data, CommentedMap):
            raise UsageError(f"{path}: the file must be a mapping with `keywords:` and `subscribers:`")
        before = _dump(data, text)
        deletions: list[tuple[int, int]] = []
        tokens = _DELETIONS.set(deletions), _LINES.set(text.splitlines(keepends=True))
        try:
            said = change(data)
        finally:
            _DELETIONS.reset(tokens[0])
            _LINES.reset(tokens[1])
        new_text = _dump(data, text)
        if new_text == before:
            return said
        if deletions:
            # Deleting only: cut the very lines from the file, if that provably gives the same data
            # (ruamel would drop a comment trailing the deleted node, or mangle an emptied list).
            cut = _cut(text, deletions)
            try:
                if _norm(parse_yaml(cut, path)) == _norm(data):
                    new_text = cut
            except ConfigError:
                pass
        try:
            check = parse_yaml(new_text, path)
        except ConfigError:
            raise UsageError(
                f"{path}: this edit cannot be written without breaking the file's layout; "
                "nothing was changed (make it by hand)"
            ) from None
        try:
            _build(Paths(home), check, {})  # validation shared with the run path
        except _Invalid as err:
            raise _refusal(err, home, text) from None
        atomic.sweep_leftovers(path)  # a killed edit's temp files (we hold the edit lock)
        write_atomic(path, new_text)
        return said


def _refusal(err: _Invalid, home: Path, text: str) -> ConfigError:
    """The sentence for an edit whose result is invalid: with the line in the file as it is
    when the file already has that problem (an edit cannot be made until it is fixed)."""
    path = home / "subscribers.yaml"
    try:
        _build(Paths(home), parse_yaml(text, path), {})
    except _Invalid as old:
        if old.message == err.message:
            return old.config_error(path, text, "; nothing was changed (fix that first)")
    except ConfigError:
        pass
    return ConfigError(f"{path}: {err.message}; nothing was changed")


# While edit() runs a change: the file's lines, and the line spans of the nodes it deletes.
_LINES: ContextVar[list[str] | None] = ContextVar("digestd_yaml_lines", default=None)
_DELETIONS: ContextVar[list[tuple[int, int]] | None] = ContextVar("digestd_yaml_deletions", default=None)


def _span(lines: list[str], start: int, col: int, bound: int) -> tuple[int, int] | None:
    """Lines [start, end) of a node whose first line is `start` and which is indented past
    `col`: continuation lines and comments deeper than `col`; not trailing blank lines or
    comments at `col` or less (those belong to what follows)."""
    if start >= len(lines):
        return None
    end = start + 1
    for j in range(start + 1, min(bound, len(lines))):
        stripped = lines[j].strip()
        if not stripped:
            continue
        if len(lines[j]) - len(lines[j].lstrip(" ")) <= col:
            break
        end = j + 1
    return start, end


def _delete_item(seq: CommentedSeq, index: int) -> None:
    """`del seq[index]`, and note the item's lines so edit() can cut exactly those from the file
    (ruamel drops a comment that trails a deleted node)."""
    deletions = _DELETIONS.get()
    lines = _LINES.get()
    if deletions is not None and lines is not None and not seq.fa.flow_style():
        line, _col = seq.lc.item(index)
        dash = lines[line].find("-") if line < len(lines) else -1
        if dash >= 0 and not lines[line][:dash].strip():
            bound = seq.lc.item(index + 1)[0] if index + 1 < len(seq) else len(lines)
            span = _span(lines, line, dash, bound)
            if span:
                deletions.append(span)
    del seq[index]


def _delete_key(mapping: CommentedMap, key: str) -> None:
    """`del mapping[key]`, noting the key's lines like _delete_item."""
    deletions = _DELETIONS.get()
    lines = _LINES.get()
    if deletions is not None and lines is not None and not mapping.fa.flow_style():
        line, col = mapping.lc.key(key)
        if line < len(lines) and not lines[line][:col].strip():
            span = _span(lines, line, col, len(lines))
            if span:
                deletions.append(span)
    del mapping[key]


def _norm(value: Any) -> Any:
    """Plain data for comparing documents; an empty list or mapping counts as nothing."""
    if isinstance(value, dict):
        out = {str(k): _norm(v) for k, v in value.items()}
        return out or None
    if isinstance(value, list):
        return [_norm(v) for v in value] or None
    return value


def _cut(text: str, deletions: list[tuple[int, int]]) -> str:
    lines = text.splitlines(keepends=True)
    drop = {i for start, end in deletions for i in range(start, end)}
    return "".join(line for i, line in enumerate(lines) if i not in drop)


def _flow(items: Iterable[str]) -> CommentedSeq:
    """A list written the way the documentation shows it: `[a, b]`."""
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


def _seq(data: CommentedMap, key: str) -> CommentedSeq:
    value = data.get(key)
    if value is None or not isinstance(value, list):
        value = CommentedSeq()
        data[key] = value
    assert isinstance(value, CommentedSeq)
    return value


def _lookup(subs: CommentedSeq, email: str) -> Any:
    low = email.strip().lower()
    for item in subs:
        if isinstance(item, dict) and str(item.get("email", "")).lower() == low:
            return item
    return None


def _index(seq: CommentedSeq, item: Any) -> int:
    return next(i for i, x in enumerate(seq) if x is item)


def _find(subs: CommentedSeq, email: str) -> Any:
    item = _lookup(subs, email)
    if item is None:
        raise UsageError(f"{email} is not a subscriber (see `digestd subscribers list`); nothing was changed")
    return item


def keyword_names(data: CommentedMap) -> list[str]:
    return [k if isinstance(k, str) else str(k.get("name")) for k in _seq(data, "keywords")]


def _configured(data: CommentedMap, name: str) -> str | None:
    """The configured spelling of keyword `name`, matched ignoring case, or None."""
    return next((k for k in keyword_names(data) if k.casefold() == name.casefold()), None)


def _check_keywords(data: CommentedMap, wanted: Iterable[str]) -> list[str]:
    """The keywords a subscriber follows, in their configured spelling (matched ignoring case)."""
    names = keyword_names(data)
    out = []
    for kw in wanted:
        configured = _configured(data, kw)
        if configured is None:
            raise UsageError(f"{kw!r} is not a configured keyword (configured: {', '.join(names) or 'none'})")
        out.append(configured)
    return list(dict.fromkeys(out))


def add_keyword(
    home: Path, name: str, query: str | None = None, categories: list[str] | None = None
) -> list[str]:
    try:
        check_keyword_name(name)
    except ValueError as err:
        raise UsageError(str(err)) from None
    for what, text in [("--query", query or ""), *(("--category", c) for c in categories or [])]:
        char = control_character(text)
        if char:
            raise UsageError(f"{what} must be one line of text without control characters (found {char})")

    def change(data: CommentedMap) -> list[str]:
        configured = _configured(data, name)
        if configured is not None:
            same = "" if configured == name else f" as {configured!r} (names are compared ignoring case)"
            raise UsageError(f"keyword {name!r} is already configured{same}")
        item: Any = name
        if query or categories:
            item = CommentedMap(name=name)
            if categories:
                item["categories"] = _flow(categories)
            if query:
                item["query"] = query
        _seq(data, "keywords").append(item)
        return [f"added keyword {name!r}; its first run stores papers without mailing them (baseline)"]

    return edit(home, change)


def remove_keyword(home: Path, name: str) -> list[str]:
    def change(data: CommentedMap) -> list[str]:
        kws = _seq(data, "keywords")
        configured = _configured(data, name)
        if configured is None:
            raise UsageError(f"{name!r} is not a configured keyword")
        _delete_item(kws, keyword_names(data).index(configured))
        said = [f"removed keyword {configured!r}"]
        for sub in _seq(data, "subscribers"):
            follows = sub.get("keywords") if isinstance(sub, dict) else None
            if not isinstance(follows, list):
                continue
            hits = [j for j, k in enumerate(follows) if str(k).casefold() == configured.casefold()]
            for j in reversed(hits):
                del follows[j]
            if hits:
                said.append(f"{sub['email']} no longer follows it")
        return said

    return edit(home, change)


def _check_name(name: str | None) -> None:
    if name is not None and (not name.strip() or control_character(name)):
        raise UsageError("a name must be one line of text without control characters")


def _frequency(value: str) -> Frequency:
    try:
        return Frequency(value.strip().lower() or "daily")
    except ValueError:
        raise UsageError(f"the frequency must be daily or weekly, not {value!r}") from None


def _describe(item: Any) -> str:
    kws = item.get("keywords")
    what = ", ".join(map(str, kws)) if isinstance(kws, list) else "all keywords"
    return f"{what}; {item.get('frequency', 'daily')}"


def add_subscriber(
    home: Path, email: str, name: str | None, keywords: list[str], frequency: Frequency | None = None
) -> list[str]:
    addr = normalize_email(email)
    _check_name(name)

    def change(data: CommentedMap) -> list[str]:
        subs = _seq(data, "subscribers")
        existing = _lookup(subs, addr)
        if existing is not None:
            raise UsageError(
                f"{existing['email']} is already a subscriber; use `digestd subscribers set` to change it"
            )
        item = CommentedMap(email=addr)
        if name:
            item["name"] = name
        if keywords:
            item["keywords"] = _flow(_check_keywords(data, keywords))
        if frequency and frequency is not Frequency.DAILY:
            item["frequency"] = frequency.value
        subs.append(item)
        return [f"added {addr} ({_describe(item)})"]

    return edit(home, change)


def remove_subscriber(home: Path, email: str) -> list[str]:
    def change(data: CommentedMap) -> list[str]:
        subs = _seq(data, "subscribers")
        item = _find(subs, email)
        _delete_item(subs, _index(subs, item))
        return [f"removed {item['email']}"]

    return edit(home, change)


def unsubscribe(home: Path, email: str) -> bool:
    """Remove `email` if it is subscribed (what a one-click link does); False if it was not."""
    removed: list[str] = []

    def change(data: CommentedMap) -> list[str]:
        subs = data.get("subscribers")
        item = _lookup(subs, email) if isinstance(subs, CommentedSeq) else None
        if item is None:
            return [f"{email} is not subscribed"]
        _delete_item(subs, _index(subs, item))
        removed.append(str(item["email"]))
        return [f"removed {item['email']}"]

    edit(home, change)
    return bool(removed)


def unsubscribe_many(home: Path, emails: Iterable[str]) -> set[str]:
    """Remove every listed address that is subscribed in one edit and one write (a burst of
    one-click unsubscribes); the lower-cased addresses that were removed."""
    wanted = {e.strip().lower() for e in emails}
    removed: set[str] = set()

    def change(data: CommentedMap) -> list[str]:
        subs = data.get("subscribers")
        if not isinstance(subs, CommentedSeq):
            return []
        hits = [i for i, item in enumerate(subs)
                if isinstance(item, dict) and str(item.get("email", "")).lower() in wanted]
        for i in reversed(hits):  # from the end: the line numbers of the items before stay valid
            removed.add(str(subs[i]["email"]).lower())
            _delete_item(subs, i)
        return [f"removed {len(hits)} subscriber(s)"]

    edit(home, change)
    return removed


def set_status(home: Path, email: str, status: str) -> list[str]:
    """Pause (`paused`) or resume (`active`) a subscriber."""

    def change(data: CommentedMap) -> list[str]:
        item = _find(_seq(data, "subscribers"), email)
        if str(item.get("status", "active")).lower() == status:
            return [f"{item['email']} is already {status}; nothing changed"]
        if status == "active":
            _delete_key(item, "status")
        else:
            item["status"] = status
        return [f"{item['email']} is now {status}" + (
            " (no digests until `digestd subscribers resume`)" if status == "paused" else
            " (digests again from the next run's new papers)")]

    return edit(home, change)


def set_subscriber(
    home: Path, email: str, keywords: list[str] | None, frequency: Frequency | None, name: str | None = None
) -> list[str]:
    """Change what is given; say what changed (and nothing for a value that is already so)."""
    _check_name(name)

    def change(data: CommentedMap) -> list[str]:
        item = _find(_seq(data, "subscribers"), email)
        addr = item["email"]
        said = []
        if keywords:
            wanted = _check_keywords(data, keywords)
            current = item.get("keywords")
            follows = current if isinstance(current, list) else []
            spelled = list(dict.fromkeys(_configured(data, str(k)) or str(k) for k in follows))
            if not isinstance(current, list) or spelled != wanted:
                old = ", ".join(map(str, current)) if isinstance(current, list) else "all keywords"
                item["keywords"] = _flow(wanted)
                said.append(f"{addr} follows {', '.join(wanted)} (was: {old})")
        if frequency is not None and str(item.get("frequency", "daily")).lower() != frequency.value:
            old = item.get("frequency", "daily")
            if frequency is Frequency.DAILY and "frequency" in item:
                _delete_key(item, "frequency")
            else:
                item["frequency"] = frequency.value
            said.append(f"{addr} gets a {frequency.value} digest (was: {old})")
        if name is not None and item.get("name") != name:
            item["name"] = name
            said.append(f"{addr} is named {name!r}")
        return said or [f"{addr} already has these settings; nothing changed"]

    return edit(home, change)


_CSV_COLUMNS = ("email", "name", "keywords", "frequency", "status")


def _csv_rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row by column name); columns by header if the first row names them, else
    in the order email, name, keywords, frequency, status."""
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "it is not UTF-8 text"
        raise UsageError(f"cannot read {csv_path}: {reason}") from None
    reader = csv.reader(io.StringIO(text))
    columns: tuple[str, ...] = _CSV_COLUMNS
    out: list[tuple[int, dict[str, str]]] = []
    for row in reader:
        line = reader.line_num
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if not out and columns is _CSV_COLUMNS and cells[0].lower() == "email":
            columns = tuple(c.lower() for c in cells)
            unknown = [c for c in columns if c not in _CSV_COLUMNS]
            if unknown:
                raise UsageError(f"{csv_path}, line {line}: unknown column {unknown[0]!r} "
                                 f"(known: {', '.join(_CSV_COLUMNS)}); nothing was imported")
            continue
        if len(cells) > len(columns):
            raise UsageError(f"{csv_path}, line {line}: {len(cells)} columns, expected at most "
                             f"{len(columns)} ({', '.join(columns)}); nothing was imported")
        out.append((line, dict(zip(columns, cells, strict=False))))
    return out


def import_csv(home: Path, csv_path: Path) -> list[str]:
    """Rows of email[,name[,keywords separated by ';'[,frequency[,status]]]]; an optional header
    row names the columns. Every row is checked before anything is written; an address already
    subscribed is skipped and said so."""
    parsed: list[tuple[int, str, str | None, list[str], Frequency, str]] = []
    for line, row in _csv_rows(csv_path):
        try:
            addr = normalize_email(row.get("email", ""))
            freq = _frequency(row.get("frequency", ""))
            name = row.get("name") or None
            _check_name(name)
            status = (row.get("status") or "active").lower()
            if status not in ("active", "paused"):
                raise UsageError(f"the status must be active or paused, not {status!r}")
        except UsageError as err:
            raise UsageError(f"{csv_path}, line {line}: {err}; nothing was imported") from None
        kws = list(dict.fromkeys(k.strip() for k in row.get("keywords", "").split(";") if k.strip()))
        parsed.append((line, addr, name, kws, freq, status))

    def change(data: CommentedMap) -> list[str]:
        subs = _seq(data, "subscribers")
        said = []
        added = 0
        for line, addr, name, kws, freq, status in parsed:
            if _lookup(subs, addr) is not None:
                said.append(f"skipped {addr} (line {line}): already a subscriber")
                continue
            item = CommentedMap(email=addr)
            if name:
                item["name"] = name
            if kws:
                try:
                    item["keywords"] = _flow(_check_keywords(data, kws))
                except UsageError as err:
                    raise UsageError(f"{csv_path}, line {line}: {err}; nothing was imported") from None
            if freq is not Frequency.DAILY:
                item["frequency"] = freq.value
            if status != "active":
                item["status"] = status
            subs.append(item)
            added += 1
            said.append(f"added {addr} ({_describe(item)}{'; paused' if status != 'active' else ''})")
        said.append(f"imported {added} of {len(parsed)} subscriber(s) from {csv_path}")
        return said

    return edit(home, change)


def export(cfg: Config, fmt: str) -> str:
    """Every subscriber as CSV (the columns `import` reads; empty keywords: all of them) or JSON
    (like `subscribers list --json`, keywords spelled out)."""
    if fmt == "json":
        rows = [
            {
                "email": s.email,
                "name": s.name,
                "keywords": list(s.keywords) if s.keywords is not None else [k.name for k in cfg.keywords],
                "all_keywords": s.keywords is None,
                "frequency": s.frequency.value,
                "status": s.status.value,
            }
            for s in cfg.subscribers
        ]
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_CSV_COLUMNS)
    for s in cfg.subscribers:
        kws = ";".join(s.keywords) if s.keywords is not None else ""
        w.writerow([s.email, s.name or "", kws, s.frequency.value, s.status.value])
    return buf.getvalue()


def init_instance(home: Path) -> list[str]:
    """Create what is missing; never overwrite a file."""
    from digestd.render.templates import DEFAULTS

    said = []
    home.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "templates"):
        (home / sub).mkdir(exist_ok=True)
    targets: list[tuple[Path, str | bytes]] = [(home / "subscribers.yaml", INIT_YAML)]
    targets += [
        (home / "templates" / f.name, f.read_bytes()) for f in sorted(DEFAULTS.iterdir()) if f.is_file()
    ]
    for path, content in targets:
        if path.exists():
            said.append(f"kept existing {path}")
            continue
        write_atomic(path, content)
        said.append(f"created {path}")
    _ = load_config  # the CLI loads the new instance to prove it is valid
    return said
