"""Subscribers as CSV (and JSON) in and out: `digestd subscribers import` reads what `export`
writes, and every row is checked before anything is imported."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from digestd.config.settings import Config
from digestd.config.values import check_name, normalize_email, parse_frequency
from digestd.core.models import Frequency, SubscriberStatus
from digestd.errors import UsageError
from digestd.store.readfile import read_regular

COLUMNS = ("email", "name", "keywords", "frequency", "status")
MAX_CSV_BYTES = 64 * 2**20  # 100,000 subscribers are about 5 MB of CSV


@dataclass(frozen=True, slots=True)
class CsvRow:
    """One checked row of an import: the address normalized, keywords as written (their
    spelling is matched against the configured ones when the row is added)."""

    line: int
    email: str
    name: str | None
    keywords: tuple[str, ...]
    frequency: Frequency
    status: SubscriberStatus


def read_rows(csv_path: Path) -> list[CsvRow]:
    """Every row of the file, checked; UsageError names the file and line of the first bad one."""
    out = []
    for line, row in _raw_rows(csv_path):
        try:
            out.append(_row(line, row))
        except UsageError as err:
            raise UsageError(f"{csv_path}, line {line}: {err}; nothing was imported") from None
    return out


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
    w.writerow(COLUMNS)
    for s in cfg.subscribers:
        kws = ";".join(s.keywords) if s.keywords is not None else ""
        w.writerow([_cell(s.email), _cell(s.name or ""), _cell(kws), s.frequency.value, s.status.value])
    return buf.getvalue()


# A cell starting with one of these is a formula to a spreadsheet (`=1+1@example.org` is a
# valid address, a name comes from whoever subscribed): export writes it after a `'`, as
# OWASP advises, and import takes that `'` off again, so what export writes, import reads.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _uncell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_START) else value


def _row(line: int, cells: dict[str, str]) -> CsvRow:
    row = {k: _uncell(v) for k, v in cells.items()}
    addr = normalize_email(row.get("email", ""))
    freq = parse_frequency(row.get("frequency", ""))
    name = row.get("name") or None
    check_name(name)
    status = (row.get("status") or "active").lower()
    if status not in ("active", "paused"):
        raise UsageError(f"the status must be active or paused, not {status!r}")
    kws = tuple(dict.fromkeys(k.strip() for k in row.get("keywords", "").split(";") if k.strip()))
    return CsvRow(line, addr, name, kws, freq, SubscriberStatus(status))


def _raw_rows(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """(line number, row by column name); columns by header if the first row names them, else
    in the order email, name, keywords, frequency, status."""
    reader = csv.reader(io.StringIO(_read_text(csv_path)))
    columns: tuple[str, ...] = COLUMNS
    out: list[tuple[int, dict[str, str]]] = []
    try:
        for row in reader:
            line = reader.line_num
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            cells = [c.strip() for c in row]
            if not out and columns is COLUMNS and cells[0].lower() == "email":
                columns = _header(csv_path, line, cells)
                continue
            if len(cells) > len(columns):
                raise UsageError(f"{csv_path}, line {line}: {len(cells)} columns, expected at most "
                                 f"{len(columns)} ({', '.join(columns)}); nothing was imported")
            out.append((line, dict(zip(columns, cells, strict=False))))
    except csv.Error as err:  # an unclosed quote, a cell past the field size limit
        raise UsageError(f"{csv_path}, line {reader.line_num}: {err}; nothing was imported") from None
    return out


def _read_text(csv_path: Path) -> str:
    """The file's text: only a regular file of at most MAX_CSV_BYTES (a FIFO would block for
    ever, /dev/zero would end in a MemoryError), UTF-8 with or without a BOM."""
    try:
        raw = read_regular(csv_path, MAX_CSV_BYTES)
        if len(raw) > MAX_CSV_BYTES:
            raise UsageError(f"{csv_path} is larger than {MAX_CSV_BYTES // 2**20} MiB; import it in parts")
        return raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")  # as read_text() reads
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) else "it is not UTF-8 text"
        raise UsageError(f"cannot read {csv_path}: {reason}") from None


def _header(csv_path: Path, line: int, cells: list[str]) -> tuple[str, ...]:
    """The columns a header row names; an unknown one is refused."""
    columns = tuple(c.lower() for c in cells)
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise UsageError(f"{csv_path}, line {line}: unknown column {unknown[0]!r} "
                         f"(known: {', '.join(COLUMNS)}); nothing was imported")
    twice = next((c for i, c in enumerate(columns) if c in columns[:i]), None)
    if twice:  # which of the two cells counts would be a guess (the last one did, silently)
        raise UsageError(f"{csv_path}, line {line}: column {twice!r} is named twice; nothing was imported")
    return columns
