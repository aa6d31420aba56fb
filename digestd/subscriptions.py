"""Edits to subscribers.yaml that keep its comments and order, validate before writing, and
write atomically: a failed edit leaves the file byte-identical."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from digestd.atomic import write_atomic
from digestd.config import Config, check_keyword_name, load_config, parse_yaml, read_yaml_text
from digestd.errors import UsageError
from digestd.models import Frequency

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


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.indent(mapping=2, sequence=4, offset=2)
    y.width = 4096
    return y


def edit(home: Path, change: Callable[[CommentedMap], list[str]]) -> list[str]:
    """Load subscribers.yaml round-trip, apply `change`, validate the result, write atomically.

    `change` returns the sentences that say what changed; an empty list writes nothing.
    """
    path = home / "subscribers.yaml"
    text = read_yaml_text(path)
    data = parse_yaml(text, path, round_trip=True)
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise UsageError(f"{path}: the file must be a mapping with `keywords:` and `subscribers:`")
    said = change(data)
    if not said:
        return said
    buf = io.StringIO()
    _yaml().dump(data, buf)
    new_text = buf.getvalue()
    tmp_check = parse_yaml(new_text, path)
    from digestd.config import Paths, _build, _Invalid  # validation shared with the run path

    try:
        _build(Paths(home), tmp_check, {})
    except _Invalid as err:
        raise UsageError(f"{path}: {err.message}; nothing was changed") from None
    write_atomic(path, new_text)
    return said


def _seq(data: CommentedMap, key: str) -> CommentedSeq:
    value = data.get(key)
    if value is None or not isinstance(value, list):
        value = CommentedSeq()
        data[key] = value
    assert isinstance(value, CommentedSeq)
    return value


def _find(subs: CommentedSeq, email: str) -> Any:
    low = email.lower()
    for item in subs:
        if isinstance(item, dict) and str(item.get("email", "")).lower() == low:
            return item
    raise UsageError(f"{email} is not a subscriber (see `digestd subscribers list`)")


def keyword_names(data: CommentedMap) -> list[str]:
    return [k if isinstance(k, str) else str(k.get("name")) for k in _seq(data, "keywords")]


def _check_keywords(data: CommentedMap, wanted: Iterable[str]) -> list[str]:
    names = keyword_names(data)
    out = []
    for kw in wanted:
        if kw not in names:
            raise UsageError(f"{kw!r} is not a configured keyword (configured: {', '.join(names) or 'none'})")
        out.append(kw)
    return out


def add_keyword(home: Path, name: str, query: str | None = None, categories: list[str] | None = None) -> list[str]:
    try:
        check_keyword_name(name)
    except ValueError as err:
        raise UsageError(str(err)) from None

    def change(data: CommentedMap) -> list[str]:
        if name in keyword_names(data):
            raise UsageError(f"keyword {name!r} is already configured")
        item: Any = name
        if query or categories:
            item = CommentedMap(name=name)
            if categories:
                item["categories"] = categories
            if query:
                item["query"] = query
        _seq(data, "keywords").append(item)
        return [f"added keyword {name!r}; its first run stores papers without mailing them (baseline)"]

    return edit(home, change)


def remove_keyword(home: Path, name: str) -> list[str]:
    def change(data: CommentedMap) -> list[str]:
        kws = _seq(data, "keywords")
        idx = keyword_names(data).index(name) if name in keyword_names(data) else -1
        if idx < 0:
            raise UsageError(f"{name!r} is not a configured keyword")
        del kws[idx]
        said = [f"removed keyword {name!r}"]
        for sub in _seq(data, "subscribers"):
            if isinstance(sub, dict) and isinstance(sub.get("keywords"), list) and name in sub["keywords"]:
                sub["keywords"].remove(name)
                said.append(f"{sub['email']} no longer follows it")
        return said

    return edit(home, change)


def add_subscriber(
    home: Path, email: str, name: str | None, keywords: list[str], frequency: Frequency | None = None
) -> list[str]:
    addr = normalize_email(email)
    if name is not None and any(c in name for c in "\r\n"):
        raise UsageError("a name must be one line of text")

    def change(data: CommentedMap) -> list[str]:
        subs = _seq(data, "subscribers")
        try:
            _find(subs, addr)
        except UsageError:
            pass
        else:
            raise UsageError(f"{addr} is already a subscriber; use `digestd subscribers set` to change it")
        item = CommentedMap(email=addr)
        if name:
            item["name"] = name
        if keywords:
            item["keywords"] = _check_keywords(data, keywords)
        if frequency and frequency is not Frequency.DAILY:
            item["frequency"] = frequency.value
        subs.append(item)
        what = ", ".join(keywords) if keywords else "all keywords"
        return [f"added {addr} ({what}, {(frequency or Frequency.DAILY).value})"]

    return edit(home, change)


def remove_subscriber(home: Path, email: str) -> list[str]:
    def change(data: CommentedMap) -> list[str]:
        subs = _seq(data, "subscribers")
        item = _find(subs, email)
        subs.remove(item)
        return [f"removed {item['email']}"]

    return edit(home, change)


def set_status(home: Path, email: str, status: str) -> list[str]:
    def change(data: CommentedMap) -> list[str]:
        item = _find(_seq(data, "subscribers"), email)
        current = item.get("status", "active")
        if current == status:
            return []
        if status == "active":
            del item["status"]
        else:
            item["status"] = status
        return [f"{item['email']} is now {status}"]

    return edit(home, change)


def set_subscriber(
    home: Path, email: str, keywords: list[str] | None, frequency: Frequency | None, name: str | None = None
) -> list[str]:
    def change(data: CommentedMap) -> list[str]:
        item = _find(_seq(data, "subscribers"), email)
        said = []
        if keywords is not None:
            item["keywords"] = _check_keywords(data, keywords)
            said.append(f"{item['email']} follows {', '.join(keywords)}")
        if frequency is not None and item.get("frequency", "daily") != frequency.value:
            item["frequency"] = frequency.value
            said.append(f"{item['email']} gets a {frequency.value} digest")
        if name is not None:
            item["name"] = name
            said.append(f"{item['email']} is named {name!r}")
        return said

    return edit(home, change)


def import_csv(home: Path, csv_path: Path) -> list[str]:
    """Rows of email[,name[,keywords separated by ';'[,frequency]]]; a header row is optional.
    All rows are checked before anything is written."""
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as err:
        raise UsageError(f"cannot read {csv_path}: {err.strerror}") from None
    rows = list(csv.reader(io.StringIO(text)))
    if rows and rows[0] and rows[0][0].strip().lower() == "email":
        rows = rows[1:]
    parsed: list[tuple[str, str | None, list[str], Frequency]] = []
    for n, row in enumerate(rows, start=2 if text.lower().startswith("email") else 1):
        if not row or not row[0].strip():
            continue
        try:
            addr = normalize_email(row[0])
            freq = Frequency((row[3].strip() or "daily") if len(row) > 3 else "daily")
        except (UsageError, ValueError) as err:
            raise UsageError(f"{csv_path}, line {n}: {err}; nothing was imported") from None
        kws = [k.strip() for k in row[2].split(";") if k.strip()] if len(row) > 2 else []
        parsed.append((addr, (row[1].strip() or None) if len(row) > 1 else None, kws, freq))

    def change(data: CommentedMap) -> list[str]:
        subs = _seq(data, "subscribers")
        existing = {str(s.get("email", "")).lower() for s in subs if isinstance(s, dict)}
        said = []
        for addr, name, kws, freq in parsed:
            if addr.lower() in existing:
                said.append(f"skipped {addr}: already a subscriber")
                continue
            item = CommentedMap(email=addr)
            if name:
                item["name"] = name
            if kws:
                try:
                    item["keywords"] = _check_keywords(data, kws)
                except UsageError as err:
                    raise UsageError(f"{csv_path}: {addr}: {err}; nothing was imported") from None
            if freq is not Frequency.DAILY:
                item["frequency"] = freq.value
            subs.append(item)
            existing.add(addr.lower())
            said.append(f"added {addr}")
        return said

    return edit(home, change)


def export(cfg: Config, fmt: str) -> str:
    rows = [
        {
            "email": s.email,
            "name": s.name,
            "keywords": list(s.keywords) if s.keywords is not None else [k.name for k in cfg.keywords],
            "frequency": s.frequency.value,
            "status": s.status.value,
        }
        for s in cfg.subscribers
    ]
    if fmt == "json":
        return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["email", "name", "keywords", "frequency", "status"])
    for r in rows:
        w.writerow([r["email"], r["name"] or "", ";".join(r["keywords"]), r["frequency"], r["status"]])
    return buf.getvalue()


def init_instance(home: Path) -> list[str]:
    """Create what is missing; never overwrite a file."""
    from digestd.templates import DEFAULTS

    said = []
    home.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "templates"):
        (home / sub).mkdir(exist_ok=True)
    targets: list[tuple[Path, str | bytes]] = [(home / "subscribers.yaml", INIT_YAML)]
    targets += [(home / "templates" / f.name, f.read_bytes()) for f in sorted(DEFAULTS.iterdir()) if f.is_file()]
    for path, content in targets:
        if path.exists():
            said.append(f"kept existing {path}")
            continue
        write_atomic(path, content)
        said.append(f"created {path}")
    _ = load_config  # the CLI loads the new instance to prove it is valid
    return said
