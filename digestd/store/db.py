"""The state files as tinydb databases: a storage that writes atomically, a middleware that holds
every change in memory until we commit, and opening a file with its whole-file check (a broken
file is moved aside and named, never replaced silently).

Tables are read and changed through tinydb's public API (tables, documents, queries). The
single-document tables (meta, seen, cursors) keep their one document under id 1: digestd has
always inserted it into an empty table, which gives id 1.
"""

from __future__ import annotations

import errno
import json
import stat
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.middlewares import Middleware
from tinydb.storages import Storage
from tinydb.table import Document, Table

from digestd.core.fields import BadRecord
from digestd.errors import StateError
from digestd.store.atomic import write_atomic

ONE = 1  # the doc id of a single-document table's document


class _Corrupt(Exception):
    """Raised by the storage, caught by `open_db`: the file is not a JSON object of tables."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class AtomicJSONStorage(Storage):
    """tinydb storage that never leaves a half-written file: temp file, fsync, rename.

    tinydb's JSONStorage truncates and rewrites in place, so a kill mid-write breaks it.
    """

    def __init__(self, path: str, **_: Any) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            mode = self.path.stat().st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a folder: read_bytes says so
                raise OSError(errno.EINVAL, "not a regular file")  # a FIFO blocks, /dev/zero fills memory
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:  # a folder, or not ours to read: nothing to move aside
            raise StateError(f"cannot read state file {self.path}: {err.strerror or err}") from None
        if not raw.strip():  # digestd never writes an empty file: this one lost its content
            raise _Corrupt("the file is empty")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise _Corrupt(str(err)[:200]) from None
        if not isinstance(data, dict):
            raise _Corrupt("not a JSON object")
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        write_atomic(self.path, json_chunks(data))

    def close(self) -> None:
        pass


CHUNK_DOCS = 2000  # entries per json.dumps call when writing a state file


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _large(value: object) -> bool:
    """A dict worth writing in pieces: many entries, or a few that hold one (the cursors
    table's one document, whose map has an entry per subscriber)."""
    if not isinstance(value, dict):
        return False
    return len(value) > CHUNK_DOCS or (len(value) <= 8 and any(_large(v) for v in value.values()))


def json_chunks(data: Mapping[str, Any]) -> Iterator[bytes]:
    """The compact JSON of `data` in pieces of at most CHUNK_DOCS entries of any large object
    (a table's documents, the one cursors document's map of 100,000 subscribers).

    Why: one json.dumps of a 100,000-delivery outbox is an 81 MB string and 81 MB of bytes at
    once, which made the commit the run's memory peak (docs/benchmarks.md); in pieces, it is
    the same C encoder at the same speed, a few hundred KB at a time. The bytes are those of
    json.dumps(data, ensure_ascii=False, separators=(",", ":")) (tests/test_store.py)."""
    yield b"{"
    sep = ""
    batch: dict[str, Any] = {}
    for key, value in data.items():
        if _large(value):  # in pieces of its own
            if batch:
                yield (sep + _dumps(batch)[1:-1]).encode("utf-8")
                sep, batch = ",", {}
            yield (sep + _dumps({key: None})[1:-6] + ":").encode("utf-8")  # the key as json writes one
            yield from json_chunks(value)
            sep = ","
            continue
        batch[key] = value
        if len(batch) >= CHUNK_DOCS:
            yield (sep + _dumps(batch)[1:-1]).encode("utf-8")
            sep, batch = ",", {}
    if batch:
        yield (sep + _dumps(batch)[1:-1]).encode("utf-8")
    yield b"}"


class BufferedMiddleware(Middleware):
    """Keep the file in memory and every change there until `flush()`: we choose the commit
    points (tinydb's CachingMiddleware would write after N changes, mid-run)."""

    def __init__(self, storage_cls: type[Storage]) -> None:
        super().__init__(storage_cls)
        self.cache: dict[str, dict[str, Any]] | None = None
        self.dirty = False

    def read(self) -> dict[str, dict[str, Any]]:
        """The file is read once (by `open_db`, which checks it); a missing one is empty."""
        if self.cache is None:
            self.cache = self.storage.read() or {}
        return self.cache

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self.cache = data
        self.dirty = True

    def raw_table(self, name: str) -> dict[str, dict[str, Any]]:
        """A table's documents as stored (doc id as text -> document), to change in place:
        O(1) per document, where tinydb's `update` copies the whole table on every call (the
        outbox's hot path; see digestd/store/outbox.py for the measurement). Tables opened
        with `cache_size=0`, so no query result cached by tinydb goes stale."""
        return self.read().setdefault(name, {})

    def touch(self) -> None:
        """Changes were made in place: the next `flush()` must write them."""
        self.dirty = True

    def flush(self) -> None:
        if self.dirty and self.cache is not None:
            self.storage.write(self.cache)
        self.dirty = False

    def close(self) -> None:
        self.storage.close()


# Checks the shape of a whole state file once, on open: the reason it is malformed, or None.
ShapeCheck = Callable[[dict[str, Any]], str | None]


def open_db(path: Path, *, read_only: bool, check: ShapeCheck, afresh: str) -> TinyDB:
    """Open a state file; an unreadable or malformed one is moved aside and named, never
    replaced silently. `check` validates its shape; `afresh` says what losing it costs.

    `read_only` (status, preview) names the broken file but leaves it where it is."""
    if not read_only:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StateError(f"cannot create the state folder {path.parent}: {err.strerror or err}") from None
    db = TinyDB(str(path), storage=BufferedMiddleware(AtomicJSONStorage))
    try:
        data = db.storage.read()
        why = check(data) if data else None
        if why:
            raise _Corrupt(why)
    except _Corrupt as err:
        raise _broken(path, err.why, read_only=read_only, afresh=afresh) from None
    return db


def _broken(path: Path, why: str, *, read_only: bool, afresh: str) -> StateError:
    """The error for an unreadable file, moved aside first unless `read_only`."""
    if read_only:
        return StateError(
            f"state file {path} is unreadable ({why}); "
            "the next `digestd run` moves it aside and says what to do"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        path.replace(aside)
    except OSError as err:
        return StateError(
            f"state file {path} is unreadable ({why}) and could not be moved aside "
            f"({err.strerror or err}); move it away yourself. {afresh}"
        )
    return StateError(f"state file {path} is unreadable ({why}); it was moved to {aside.name}. {afresh}")


def buffered(db: TinyDB) -> BufferedMiddleware:
    storage = db.storage
    assert isinstance(storage, BufferedMiddleware)
    return storage


def commit(db: TinyDB) -> None:
    """Write every buffered change in one atomic write."""
    buffered(db).flush()


def single(table: Table) -> Document | None:
    """The one document of a single-document table, if it has one."""
    return table.get(doc_id=ONE)


def put_single(table: Table, fields: Mapping[str, Any]) -> None:
    """Set these fields of the table's one document (made if missing); other fields stay."""
    table.upsert(Document(fields, doc_id=ONE))


# --- the whole-file check, shared by both files ------------------------------------------------
# A check of one record raises BadRecord; these name the table and the record.

RecordCheck = Callable[[str, Any], object]


def check_tables(data: dict[str, Any]) -> str | None:
    """Every table is an object of documents keyed by tinydb's whole-number ids."""
    for name, docs in data.items():
        if not isinstance(docs, dict):
            return f"table {name!r} is not an object"
        for key, doc in docs.items():
            if not key.isdecimal() or not isinstance(doc, dict):
                return f"{name} record {key!r} is not an object with a numeric id"
    return None


def check_single(name: str, docs: dict[str, Any], *, mapped: bool = False) -> str | None:
    """A table of at most one document, under id 1; `mapped`: {"map": {key: {...}}}."""
    if len(docs) > 1:
        return f"table {name!r} holds {len(docs)} records, not one"
    for key, doc in docs.items():
        if key != str(ONE):
            return f"{name} record {key!r}: the table's one record has id '{ONE}'"
        table = doc.get("map")
        if mapped and (not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values())):
            return f"{name} record {key!r} is not an object with a `map` of objects"
    return None


def check_each(table: str, docs: dict[str, Any], check: RecordCheck) -> str | None:
    """Run `check` on every record; the first failure, naming table, record and field."""
    for key, doc in docs.items():
        try:
            check(key, doc)
        except BadRecord as err:
            return str(err.at(table, key))
    return None
