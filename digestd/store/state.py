"""The run's memory, in two tinydb files under state/, each written atomically.

papers.json  the papers per keyword (with the run `seq` that first stored them),
             the run counter and per-keyword fetch status.
outbox.json  per-subscriber cursors and the delivery ledger (pending, sent, failed).

A delivery is derived from "papers with seq above the subscriber's cursor", never from
"what this fetch found new". So a crash after papers.json is written and before the
outbox is, loses nothing: the next run sees those papers above every cursor and mails them.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.middlewares import Middleware
from tinydb.storages import Storage

from digestd.core.models import Paper
from digestd.core.records import (
    BadRecord,
    Cursor,
    Delivery,
    DeliveryStatus,
    Dropped,
    cursor_from_doc,
    delivery_from_doc,
    dropped_from_value,
    follows_from_value,
    stored_paper_from_doc,
)
from digestd.errors import StateError
from digestd.store.atomic import fsync_dir, write_atomic

log = logging.getLogger(__name__)


class AtomicJSONStorage(Storage):
    """tinydb storage that never leaves a half-written file: temp file, fsync, rename.

    tinydb's JSONStorage truncates and rewrites in place, so a kill mid-write breaks it.
    """

    def __init__(self, path: str, **_: Any) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:  # a folder, or not ours to read: nothing to move aside
            raise StateError(f"cannot read state file {self.path}: {err.strerror or err}") from None
        if not raw.strip():  # digestd never writes an empty file: this one lost its content
            raise CorruptState(self.path, "the file is empty")
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as err:
            raise CorruptState(self.path, str(err)) from None
        if not isinstance(data, dict):
            raise CorruptState(self.path, "not a JSON object")
        return data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        write_atomic(self.path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    def close(self) -> None:
        pass


class CorruptState(Exception):
    def __init__(self, path: Path, why: str) -> None:
        super().__init__(why)
        self.path = path
        self.why = why


class BufferedMiddleware(Middleware):
    """Keep the file in memory and every change there until `flush()`: we choose the commit
    points (tinydb's CachingMiddleware would write after N changes, mid-run)."""

    def __init__(self, storage_cls: type[Storage]) -> None:
        super().__init__(storage_cls)
        self.cache: dict[str, dict[str, Any]] | None = None
        self.dirty = False

    def read(self) -> dict[str, dict[str, Any]] | None:
        if self.cache is None:
            self.cache = self.storage.read()
        return self.cache

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self.cache = data
        self.dirty = True

    def raw_table(self, name: str) -> dict[str, dict[str, Any]]:
        """A table's documents as stored (doc id as text -> document), to change in place:
        O(1) per document, where tinydb's `update` copies the whole table on every call."""
        data = self.read()
        if data is None:
            data = self.cache = {}
        return data.setdefault(name, {})

    def touch(self) -> None:
        """Changes were made in place: the next `flush()` must write them."""
        self.dirty = True

    def flush(self) -> None:
        if self.dirty and self.cache is not None:
            self.storage.write(self.cache)
        self.dirty = False

    def close(self) -> None:
        self.storage.close()


# What starting a state file afresh costs, said when a broken one is moved aside.
PAPERS_AFRESH = (
    "Restore it from a backup, or run again to start that file afresh "
    "(keywords then re-enter baseline mode: nothing is mailed for them that run)"
)
OUTBOX_AFRESH = (
    "Restore it from a backup before the next run to avoid losing mail: without it, subscriber "
    "cursors and pending deliveries are lost, so the next run starts every subscriber from that "
    "run's papers and papers stored since each one's last digest are never mailed"
)

# Checks the shape of a whole state file once, on open: the reason it is malformed, or None.
ShapeCheck = Callable[[dict[str, Any]], str | None]


def open_db(
    path: Path, *, read_only: bool = False, check: ShapeCheck | None = None, afresh: str = PAPERS_AFRESH
) -> TinyDB:
    """Open a state file; an unreadable or malformed one is moved aside and named, never
    replaced silently. `check` validates its shape; `afresh` says what losing it costs.

    `read_only` (status, preview) names the broken file but leaves it where it is."""
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    db = TinyDB(str(path), storage=BufferedMiddleware(AtomicJSONStorage))
    try:
        data = db.storage.read()
        why = check(data) if check is not None and data else None
        if why:
            raise CorruptState(path, why)
        db.tables()
    except CorruptState as err:
        if read_only:
            raise StateError(
                f"state file {path} is unreadable ({err.why}); "
                "the next `digestd run` moves it aside and says what to do"
            ) from None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        path.replace(aside)
        raise StateError(
            f"state file {path} is unreadable ({err.why}); it was moved to {aside.name}. {afresh}"
        ) from None
    return db


def _tables(data: dict[str, Any], known: tuple[str, ...]) -> str | None:
    """Every table is an object; the documents of tables other than `known` (whose own
    checks cover them, in the same pass) are objects keyed by tinydb's whole-number ids."""
    for name, docs in data.items():
        if not isinstance(docs, dict):
            return f"table {name!r} is not an object"
        for key, doc in docs.items():
            if not key.isdecimal() or not isinstance(doc, dict):
                return f"{name} record {key!r} is not an object with a numeric id"
    return None


def _map_doc(name: str, docs: dict[str, Any]) -> str | None:
    """A table of at most one document {"map": {key: {...}}} (cursors, seen ids)."""
    if len(docs) > 1:
        return f"table {name!r} holds {len(docs)} records, not one"
    for key, doc in docs.items():
        table = doc.get("map")
        if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
            return f"{name} record {key!r} is not an object with a `map` of objects"
    return None


def _each(table: str, docs: dict[str, Any], check: Callable[[str, Any], object]) -> str | None:
    """Run `check` on every record; the first failure, naming table, record and field."""
    for key, doc in docs.items():
        try:
            check(key, doc)
        except BadRecord as err:
            return str(err)
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            return str(BadRecord(table, key, str(err)))
    return None


def _check_meta(key: str, doc: dict[str, Any]) -> None:
    if not isinstance(doc.get("seq", 0), int) or not isinstance(doc.get("last_run") or {}, dict):
        raise ValueError("seq is not a number or last_run is not an object")


def _check_fetch(key: str, doc: dict[str, Any]) -> None:
    if not isinstance(doc.get("keyword"), str):
        raise ValueError("no field 'keyword'")
    for name in ("last_attempt", "last_success", "error"):
        if not isinstance(doc.get(name) or "", str):
            raise ValueError(f"field {name!r} is not text")
    for name in ("fetched", "new"):
        if not isinstance(doc.get(name) or 0, int):
            raise ValueError(f"field {name!r} is not a number")


def _check_seen(key: str, doc: dict[str, Any]) -> None:
    for kw, ids in doc["map"].items():
        for pid, value in ids.items():
            try:
                dropped_from_value(value)
            except (ValueError, TypeError):
                raise ValueError(f"the dropped paper {pid!r} of {kw!r} has no date") from None


def check_papers(data: dict[str, Any]) -> str | None:
    """papers.json: papers {keyword, seq, paper}, meta {seq?, last_run?}, fetches {keyword},
    seen {map}: every record, every field."""
    return (
        _tables(data, ())
        or _map_doc("seen", data.get("seen", {}))
        or _each("papers", data.get("papers", {}), lambda k, d: stored_paper_from_doc(d))
        or _each("meta", data.get("meta", {}), _check_meta)
        or _each("fetches", data.get("fetches", {}), _check_fetch)
        or _each("seen", data.get("seen", {}), _check_seen)
    )


def _shared_follows(doc: dict[str, Any]) -> dict[str, Mapping[str, int]]:
    return {ref: follows_from_value(m) for ref, m in (doc.get("follows") or {}).items()}


def _check_cursors(key: str, doc: dict[str, Any]) -> None:
    if not isinstance(doc.get("follows") or {}, dict):
        raise ValueError("field 'follows' is not an object")
    shared = _shared_follows(doc)
    for email, cur in doc["map"].items():
        try:
            cursor_from_doc(cur, shared)
        except ValueError as err:
            raise BadRecord("cursors", email, str(err)) from None


def check_outbox(data: dict[str, Any]) -> str | None:
    """outbox.json: at most one cursors {map} record; deliveries as `records.Delivery`."""
    return (
        _tables(data, ())
        or _map_doc("cursors", data.get("cursors", {}))
        or _each("cursors", data.get("cursors", {}), _check_cursors)
        or _each("deliveries", data.get("deliveries", {}), lambda k, d: delivery_from_doc(int(k), d))
    )


def commit(db: TinyDB) -> None:
    """Write every buffered change in one atomic write."""
    storage = db.storage
    assert isinstance(storage, BufferedMiddleware)
    storage.flush()


Held = dict[str, list[tuple[int, Paper]]]


class PaperStore:
    """Papers per keyword plus the run counter: the input to diff, plan and the README.

    The papers are parsed once, on open, and kept in memory beside tinydb's table: every
    stage of a run reads `by_keyword()` without rebuilding a Paper."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.db = open_db(path, read_only=read_only, check=check_papers, afresh=PAPERS_AFRESH)
        self.papers = self.db.table("papers", cache_size=0)
        self.meta = self.db.table("meta", cache_size=0)
        self.fetches = self.db.table("fetches", cache_size=0)
        self.seen = self.db.table("seen", cache_size=0)
        self._held: Held = {}
        for doc in self.papers.all():
            sp = stored_paper_from_doc(doc)
            self._held.setdefault(sp.keyword, []).append((sp.seq, sp.paper))

    def _meta(self) -> dict[str, Any]:
        docs = self.meta.all()
        return dict(docs[0]) if docs else {}

    def _set_meta(self, **fields: Any) -> None:
        docs = self.meta.all()
        if docs:
            self.meta.update(fields, doc_ids=[docs[0].doc_id])
        else:
            self.meta.insert(fields)

    @property
    def seq(self) -> int:
        """The number of the last run that stored papers."""
        return int(self._meta().get("seq", 0))

    def last_run(self) -> dict[str, Any] | None:
        run = self._meta().get("last_run")
        return dict(run) if run else None

    def record_run(self, summary: dict[str, Any]) -> None:
        self._set_meta(last_run=summary)
        commit(self.db)

    def by_keyword(self) -> Held:
        """Every stored paper as (seq, paper), grouped by keyword (read-only: do not change)."""
        return self._held

    def keyword_papers(self, keyword: str) -> list[tuple[int, Paper]]:
        return self._held.get(keyword, [])

    def seen_ids(self) -> dict[str, dict[str, Dropped]]:
        """Per keyword, ids once stored and since dropped."""
        docs = self.seen.all()
        if not docs:
            return {}
        return {kw: {i: dropped_from_value(v) for i, v in ids.items()} for kw, ids in docs[0]["map"].items()}

    def history(self) -> dict[str, dict[str, int]]:
        """Per paper id, the seq it has (or had) under each keyword that stored it with a seq:
        how the planner knows a paper was already mailed under another keyword."""
        out: dict[str, dict[str, int]] = {}
        for kw, ids in self.seen_ids().items():
            for pid, dropped in ids.items():
                if dropped.seq:
                    out.setdefault(pid, {})[kw] = dropped.seq
        for kw, items in self._held.items():
            for s, p in items:
                if s:
                    out.setdefault(p.id, {})[kw] = s
        return out

    def fetch_status(self) -> dict[str, dict[str, Any]]:
        return {d["keyword"]: dict(d) for d in self.fetches.all()}

    def apply(
        self,
        seq: int,
        stored: Held,
        fetch_status: dict[str, dict[str, Any]],
        seen: dict[str, dict[str, Dropped]] | None = None,
    ) -> None:
        """Replace the papers of the keywords in `stored` and record the run seq: one write."""
        drop = [doc.doc_id for doc in self.papers.all() if doc["keyword"] in stored]
        if drop:
            self.papers.remove(doc_ids=drop)
        rows = [
            {"keyword": kw, "seq": s, "paper": p.to_dict()} for kw, items in stored.items() for s, p in items
        ]
        if rows:
            self.papers.insert_multiple(rows)
        current = {d["keyword"]: d.doc_id for d in self.fetches.all()}
        for kw, status in fetch_status.items():
            doc = {"keyword": kw, **status}
            if kw in current:
                self.fetches.update(doc, doc_ids=[current[kw]])
            else:
                self.fetches.insert(doc)
        if seen is not None:
            raw = {kw: {i: [d.day, d.seq] for i, d in ids.items()} for kw, ids in seen.items()}
            docs = self.seen.all()
            if docs:
                self.seen.update({"map": raw}, doc_ids=[docs[0].doc_id])
            else:
                self.seen.insert({"map": raw})
        self._set_meta(seq=seq)
        commit(self.db)
        self._held.update({kw: list(items) for kw, items in stored.items()})

    def close(self) -> None:
        self.db.close()


def _append_gz(path: Path, data: bytes) -> None:
    """Add one gzip member (zcat and gzip.open read members as one stream). Written whole and
    atomically: a day's file is written once, when the next day's first run moves it out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        before = path.read_bytes()
    except FileNotFoundError:
        before = b""
    write_atomic(path, before + gzip.compress(data, compresslevel=1, mtime=0))


def _finished(doc: dict[str, Any]) -> bool:
    """Failed, or unknown and already resent: nothing more will be done with it."""
    status = doc["status"]
    return status == DeliveryStatus.FAILED or (status == DeliveryStatus.UNKNOWN and bool(doc.get("resends")))


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Outbox:
    """Subscriber cursors and the delivery ledger.

    Outcomes are made durable by `sync()`: an fsynced append to outbox.journal, one JSON
    line per outcome naming the delivery's doc id and Message-ID. A sender calls it (through
    a group commit) after each acceptance and before the next message on that connection.
    The journal, not tinydb, is the store for this hot path: rewriting outbox.json (65 MB at
    100,000 deliveries) per acceptance would cost more than the sending; an append of a few
    lines and one fsync costs about a millisecond here. Opening the outbox replays the journal
    over outbox.json; `commit()` (end of a run) rewrites outbox.json and removes it. A line
    cut short by a crash is skipped: that delivery stays pending and is resent with the same
    Message-ID.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.db = open_db(path, read_only=read_only, check=check_outbox, afresh=OUTBOX_AFRESH)
        self.path = path
        self.read_only = read_only
        self.journal = path.with_suffix(".journal")
        self.cursors = self.db.table("cursors", cache_size=0)
        self.deliveries = self.db.table("deliveries", cache_size=0)
        self._buffer: dict[int, dict[str, Any]] = {}
        self._journal_bytes = self._replay()

    @property
    def _storage(self) -> BufferedMiddleware:
        storage = self.db.storage
        assert isinstance(storage, BufferedMiddleware)
        return storage

    # --- subscribers -------------------------------------------------------------------------
    # All cursors live in one document, so saving them costs one table rewrite, not one per
    # subscriber (tinydb rewrites a whole table for every update call).
    def load_cursors(self) -> dict[str, Cursor]:
        """Per subscriber e-mail (lower case)."""
        docs = self.cursors.all()
        if not docs:
            return {}
        shared = _shared_follows(docs[0])
        return {k: cursor_from_doc(v, shared) for k, v in docs[0]["map"].items()}

    def save_cursors(self, cursors: Mapping[str, Cursor]) -> None:
        """Buffer the cursors; they reach disk with the next commit.

        Follows maps are stored once each and named by reference: 100,000 subscribers who
        follow 50 keywords share a handful of distinct maps, not five million entries."""
        refs: dict[int, str] = {}
        shared: dict[str, dict[str, int]] = {}
        out: dict[str, Any] = {}
        for k, c in cursors.items():
            ref = None
            if c.follows is not None:
                ref = refs.get(id(c.follows))
                if ref is None:
                    body = dict(sorted(c.follows.items()))
                    digest = hashlib.sha1(json.dumps(body).encode("utf-8"), usedforsecurity=False)
                    ref = digest.hexdigest()[:12]
                    refs[id(c.follows)] = ref
                    shared[ref] = body
            out[k] = c.to_doc(ref)
        doc = {"map": out, "follows": shared}
        docs = self.cursors.all()
        if docs:
            self.cursors.update(doc, doc_ids=[docs[0].doc_id])
        else:
            self.cursors.insert(doc)

    # --- deliveries --------------------------------------------------------------------------
    def all_deliveries(self) -> Iterator[Delivery]:
        for key, doc in self._storage.raw_table("deliveries").items():
            yield delivery_from_doc(int(key), doc)

    def pending(self) -> list[Delivery]:
        """What to send: pending deliveries, and unknown ones not yet resent (at most once)."""
        return [
            d
            for d in self.all_deliveries()
            if d.status is DeliveryStatus.PENDING or (d.status is DeliveryStatus.UNKNOWN and not d.resends)
        ]

    def add_deliveries(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        """Insert new deliveries (their `key` is ignored); the same, with their keys."""
        items = list(deliveries)
        keys = self.deliveries.insert_multiple([d.to_doc() for d in items])
        return [replace(d, key=k) for d, k in zip(items, keys, strict=True)]

    def prune(self, keep_days: int, today: str) -> None:
        """Keep the ledger the size of one day: sent records of earlier days move to
        state/sent/DAY.jsonl.gz (kept `keep_days`, for an operator asking "did she get it?"),
        failed and unknown ones are dropped after `keep_days`; pending ones always stay.

        Without this the ledger held `keep_days` days of every subscriber's deliveries:
        at 100,000 subscribers a 900 MB outbox.json, read and written by every run."""
        cutoff = datetime.fromisoformat(today).toordinal() - keep_days
        drop: list[int] = []
        archive: dict[str, list[bytes]] = {}
        for doc_id, d in self._storage.raw_table("deliveries").items():
            if d["status"] == DeliveryStatus.SENT and d["date"] < today:
                archive.setdefault(d["date"], []).append(_line(d))
                drop.append(int(doc_id))
            elif _finished(d) and datetime.fromisoformat(d["date"]).toordinal() < cutoff:
                drop.append(int(doc_id))
        folder = self.path.parent / "sent"
        for day, lines in sorted(archive.items()):
            if datetime.fromisoformat(day).toordinal() >= cutoff:
                _append_gz(folder / f"{day}.jsonl.gz", b"\n".join(lines) + b"\n")
        if folder.is_dir():
            for old in folder.glob("*.jsonl.gz"):
                with contextlib.suppress(ValueError, OSError):
                    if datetime.fromisoformat(old.name.split(".")[0]).toordinal() < cutoff:
                        old.unlink()
        if drop:
            self.deliveries.remove(doc_ids=drop)

    def mark(
        self,
        key: int,
        status: DeliveryStatus,
        *,
        error: str | None = None,
        sent_at: str | None = None,
        resends: int | None = None,
    ) -> None:
        """Record one delivery outcome in memory; `sync()` makes it durable."""
        fields: dict[str, Any] = {"status": status.value, "error": error}
        if sent_at is not None:
            fields["sent_at"] = sent_at
        if resends is not None:
            fields["resends"] = resends
        self._buffer.setdefault(key, {}).update(fields)

    def take(self) -> list[bytes]:
        """Apply buffered outcomes to the in-memory ledger; the journal lines that record them.
        Runs in the event loop's thread; `append` (the disk part) may run in another."""
        buffered, self._buffer = self._buffer, {}
        if not buffered:
            return []
        storage = self._storage
        docs = storage.raw_table("deliveries")
        lines: list[bytes] = []
        for key, fields in buffered.items():
            doc = docs.get(str(key))
            if doc is None:
                continue
            doc.update(fields)
            lines.append(_line({"id": key, "mid": doc.get("message_id"), "set": fields}))
        storage.touch()
        return lines

    def append(self, lines: list[bytes]) -> None:
        """Make `lines` durable: one append and one fsync (thread-safe against `take`)."""
        if not lines:
            return
        # Each batch starts on a fresh line, so a line a crash cut short stays a line of its own.
        data = b"\n" + b"\n".join(lines) + b"\n"
        new = not self.journal.exists()
        fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.journal.parent)
        self._journal_bytes += len(data)

    def sync(self) -> None:
        """Make every outcome marked so far durable (a journal append)."""
        self.append(self.take())

    def commit(self) -> None:
        """Rewrite outbox.json atomically with everything so far; the journal is then folded
        in and removed. A reader (status, preview) never writes."""
        self.take()
        storage = self._storage
        if self.read_only or not storage.dirty:
            return
        commit(self.db)
        if self._journal_bytes:
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()
            fsync_dir(self.journal.parent)
            self._journal_bytes = 0

    def _replay(self) -> int:
        """Apply the journal a killed run left over outbox.json (in memory); its size.
        Each replayed record is checked as on open: a line that would make a delivery
        malformed is skipped like a torn one."""
        try:
            raw = self.journal.read_bytes()
        except FileNotFoundError:
            return 0
        docs = self._storage.raw_table("deliveries")
        skipped = 0
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = int(record["id"])
                doc = docs.get(str(key))
                fields = dict(record["set"])
                if doc is not None and doc.get("message_id") == record.get("mid"):
                    delivery_from_doc(key, {**doc, **fields})
                    doc.update(fields)
            except (ValueError, KeyError, TypeError, AttributeError):
                skipped += 1  # cut short by a crash: that delivery stays pending (resent)
        if skipped:
            log.warning("%s: skipped %d incomplete line(s) left by an interrupted run", self.journal, skipped)
        if raw.strip():
            self._storage.touch()
        return len(raw) or 1

    def close(self) -> None:
        """Fold everything into outbox.json (unless read-only), then close."""
        if not self.read_only:
            self.commit()
        self.db.close()
