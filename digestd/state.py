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
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.middlewares import CachingMiddleware
from tinydb.storages import Storage

from digestd.atomic import fsync_dir, write_atomic
from digestd.errors import StateError
from digestd.models import Paper

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


class BufferedMiddleware(CachingMiddleware):
    """Keep every change in memory until `flush()`: we choose the commit points."""

    WRITE_CACHE_SIZE = 10**12

    @property
    def dirty(self) -> bool:
        return bool(self._cache_modified_count)

    def raw_table(self, name: str) -> dict[str, dict[str, Any]]:
        """A table's documents as stored (doc id as text -> document), to change in place:
        O(1) per document, where tinydb's `update` copies the whole table on every call."""
        data = self.read() or {}  # type: ignore[no-untyped-call]
        return data.get(name, {})  # type: ignore[no-any-return]

    def touch(self) -> None:
        """Changes were made in place: the next `flush()` must write them."""
        self._cache_modified_count += 1


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
    db = TinyDB(str(path), storage=BufferedMiddleware(AtomicJSONStorage))  # type: ignore[no-untyped-call]
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
        if name not in known:
            for key, doc in docs.items():
                if not key.isdecimal() or not isinstance(doc, dict):
                    return f"{name} record {key!r} is not an object with a numeric id"
    return None


def _map_doc(name: str, docs: dict[str, Any]) -> str | None:
    """A table of at most one document {"map": {key: {...}}} (cursors, seen ids)."""
    if len(docs) > 1:
        return f"table {name!r} holds {len(docs)} records, not one"
    for key, doc in docs.items():
        table = doc.get("map") if isinstance(doc, dict) else None
        if not key.isdecimal() or not isinstance(table, dict) or \
                not all(isinstance(v, dict) for v in table.values()):
            return f"{name} record {key!r} is not an object with a `map` of objects"
    return None


def _malformed(table: str, key: str, err: Exception) -> str:
    what = f"no {err}" if isinstance(err, KeyError) else "a bad id or a value of the wrong type"
    return f"{table} record {key!r} has {what}"


def check_papers(data: dict[str, Any]) -> str | None:
    """papers.json: papers {keyword, seq, paper}, meta {seq?, last_run?}, fetches {keyword},
    seen {map}."""
    why = _tables(data, ("papers", "meta", "fetches", "seen"))
    if why:
        return why
    table, key = "papers", ""
    try:
        for key, doc in data.get("papers", {}).items():
            p = Paper.from_dict(doc["paper"])
            if not (
                key.isdecimal()
                and isinstance(doc["keyword"], str)
                and isinstance(doc["seq"], int)
                and all(isinstance(v, str) for v in (p.id, p.title, p.link, p.updated, p.published))
            ):
                raise TypeError
        table = "meta"
        for key, doc in data.get("meta", {}).items():
            if not (key.isdecimal() and isinstance(doc.get("seq", 0), int)
                    and isinstance(doc.get("last_run") or {}, dict)):
                raise TypeError
        table = "fetches"
        for key, doc in data.get("fetches", {}).items():
            if not (key.isdecimal() and isinstance(doc["keyword"], str)):
                raise TypeError
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        return _malformed(table, key, err)
    return _map_doc("seen", data.get("seen", {}))


def check_outbox(data: dict[str, Any]) -> str | None:
    """outbox.json: at most one cursors {map} record; deliveries {email, status, date, papers,
    message_id}. One pass, no exception unless something is wrong: it runs on every open of
    a ledger that holds 100,000 deliveries."""
    why = _tables(data, ("deliveries", "cursors")) or _map_doc("cursors", data.get("cursors", {}))
    if why:
        return why
    statuses = {PENDING, SENT, FAILED}
    day = date.fromisoformat
    key = ""
    try:
        for key, d in data.get("deliveries", {}).items():
            if not (
                key.isdecimal()
                and isinstance(d["email"], str)
                and d["status"] in statuses
                and isinstance(d["papers"], dict)
                and isinstance(d["message_id"], str)
            ):
                raise TypeError
            day(d["date"])
    except (KeyError, TypeError, ValueError) as err:
        return _malformed("deliveries", key, err)
    return None


def commit(db: TinyDB) -> None:
    """Write every buffered change in one atomic write."""
    storage = db.storage
    assert isinstance(storage, BufferedMiddleware)
    storage.flush()  # type: ignore[no-untyped-call]


class PaperStore:
    """Papers per keyword plus the run counter: the input to diff, plan and the README."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.db = open_db(path, read_only=read_only, check=check_papers, afresh=PAPERS_AFRESH)
        self.papers = self.db.table("papers", cache_size=0)
        self.meta = self.db.table("meta", cache_size=0)
        self.fetches = self.db.table("fetches", cache_size=0)
        self.seen = self.db.table("seen", cache_size=0)

    def _meta(self) -> dict[str, Any]:
        docs = self.meta.all()
        return dict(docs[0]) if docs else {}

    def _set_meta(self, **fields: Any) -> None:
        if self.meta.all():
            self.meta.update(fields, doc_ids=[self.meta.all()[0].doc_id])
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

    def by_keyword(self) -> dict[str, list[tuple[int, Paper]]]:
        """Every stored paper as (seq, paper), grouped by keyword."""
        out: dict[str, list[tuple[int, Paper]]] = {}
        for doc in self.papers.all():
            out.setdefault(doc["keyword"], []).append((int(doc["seq"]), Paper.from_dict(doc["paper"])))
        return out

    def keyword_papers(self, keyword: str) -> list[tuple[int, Paper]]:
        return self.by_keyword().get(keyword, [])

    def seen_ids(self) -> dict[str, dict[str, str]]:
        """Per keyword, ids once stored and since dropped (id -> date dropped)."""
        docs = self.seen.all()
        return {k: dict(v) for k, v in docs[0]["map"].items()} if docs else {}

    def fetch_status(self) -> dict[str, dict[str, Any]]:
        return {d["keyword"]: dict(d) for d in self.fetches.all()}

    def apply(
        self,
        seq: int,
        stored: dict[str, list[tuple[int, Paper]]],
        fetch_status: dict[str, dict[str, Any]],
        seen: dict[str, dict[str, str]] | None = None,
    ) -> None:
        """Replace the papers of the keywords in `stored` and record the run seq: one write."""
        keep = {doc.doc_id for doc in self.papers.all() if doc["keyword"] not in stored}
        drop = [doc.doc_id for doc in self.papers.all() if doc.doc_id not in keep]
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
            docs = self.seen.all()
            if docs:
                self.seen.update({"map": seen}, doc_ids=[docs[0].doc_id])
            else:
                self.seen.insert({"map": seen})
        self._set_meta(seq=seq)
        commit(self.db)

    def close(self) -> None:
        self.db.close()


PENDING, SENT, FAILED = "pending", "sent", "failed"

# While outbox.json is smaller than this, each ledger flush rewrites it (a few ms). Past it,
# flushes append to the journal instead, and outbox.json is rewritten only once the journal
# has grown to 1/JOURNAL_RATIO of it, and at the end of the run: rewriting a 65 MB ledger
# (100,000 deliveries) four times a second would cost more than the sending itself.
JOURNAL_MIN_BYTES = 1 << 20
JOURNAL_RATIO = 4


def _append_gz(path: Path, data: bytes) -> None:
    """Add one gzip member (zcat and gzip.open read members as one stream). Written whole and
    atomically: a day's file is written once, when the next day's first run moves it out."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        before = path.read_bytes()
    except FileNotFoundError:
        before = b""
    write_atomic(path, before + gzip.compress(data, compresslevel=1, mtime=0))


class Outbox:
    """Subscriber cursors and the delivery ledger; ledger updates are batched per flush.

    Outcomes reach the disk either by an atomic rewrite of outbox.json, or (for a large
    ledger) by an fsynced append to outbox.journal, one JSON line per outcome naming the
    delivery's doc id and Message-ID. Opening the outbox replays the journal over
    outbox.json; the next full rewrite folds it in and removes it. A line cut short by a
    crash is skipped: that delivery stays pending and is resent with the same Message-ID.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.db = open_db(path, read_only=read_only, check=check_outbox, afresh=OUTBOX_AFRESH)
        self.path = path
        self.journal = path.with_suffix(".journal")
        self.cursors = self.db.table("cursors", cache_size=0)
        self.deliveries = self.db.table("deliveries", cache_size=0)
        self._buffer: dict[int, dict[str, Any]] = {}
        self._last_flush = time.monotonic()
        self._journal_bytes = self._replay()

    @property
    def _storage(self) -> BufferedMiddleware:
        storage = self.db.storage
        assert isinstance(storage, BufferedMiddleware)
        return storage

    # --- subscribers -------------------------------------------------------------------------
    # All cursors live in one document, so saving them costs one table rewrite, not one per
    # subscriber (tinydb rewrites a whole table for every update call).
    def load_cursors(self) -> dict[str, dict[str, Any]]:
        """Per subscriber e-mail (lower case): queued_through, last_queued, fail_streak, paused."""
        docs = self.cursors.all()
        return {k: dict(v) for k, v in docs[0]["map"].items()} if docs else {}

    def save_cursors(self, cursors: dict[str, dict[str, Any]]) -> None:
        """Buffer the cursors; they reach disk with the next commit."""
        docs = self.cursors.all()
        if docs:
            self.cursors.update({"map": cursors}, doc_ids=[docs[0].doc_id])
        else:
            self.cursors.insert({"map": cursors})

    # --- deliveries --------------------------------------------------------------------------
    def pending(self) -> list[dict[str, Any]]:
        return [{**d, "_id": d.doc_id} for d in self.deliveries.all() if d["status"] == PENDING]

    def all_deliveries(self) -> Iterator[dict[str, Any]]:
        for d in self.deliveries.all():
            yield {**d, "_id": d.doc_id}

    def add_deliveries(self, docs: Iterable[dict[str, Any]]) -> list[int]:
        return list(self.deliveries.insert_multiple(list(docs)))

    def prune(self, keep_days: int, today: str) -> None:
        """Keep the ledger the size of one day: sent records of earlier days move to
        state/sent/DAY.jsonl.gz (kept `keep_days`, for an operator asking "did she get it?"),
        failed ones are dropped after `keep_days`; pending ones always stay.

        Without this the ledger held `keep_days` days of every subscriber's deliveries:
        at 100,000 subscribers a 900 MB outbox.json, read and written by every run."""
        cutoff = datetime.fromisoformat(today).toordinal() - keep_days
        drop: list[int] = []
        archive: dict[str, list[bytes]] = {}
        for doc_id, d in self._storage.raw_table("deliveries").items():
            if d["status"] == SENT and d["date"] < today:
                archive.setdefault(d["date"], []).append(
                    json.dumps(d, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                )
                drop.append(int(doc_id))
            elif d["status"] == FAILED and datetime.fromisoformat(d["date"]).toordinal() < cutoff:
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

    def mark(self, doc_id: int, **fields: Any) -> None:
        """Record one delivery outcome in memory; `maybe_flush` writes it soon after."""
        self._buffer.setdefault(doc_id, {}).update(fields)

    def maybe_flush(self, interval: float) -> None:
        if self._buffer and time.monotonic() - self._last_flush >= interval:
            self.flush()

    def flush(self) -> None:
        """Apply buffered outcomes in place (O(outcomes), not O(ledger)) and make them durable:
        an fsynced journal append for a large ledger, else one atomic rewrite."""
        buffered, self._buffer = self._buffer, {}
        lines: list[bytes] = []
        if buffered:
            storage = self._storage
            docs = storage.raw_table("deliveries")
            for doc_id, fields in buffered.items():
                doc = docs.get(str(doc_id))
                if doc is None:
                    continue
                doc.update(fields)
                record = {"id": doc_id, "mid": doc.get("message_id"), "set": fields}
                lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
            storage.touch()
        if lines and self._journal_fits(sum(len(line) + 1 for line in lines)):
            self._append(lines)
        else:
            self._commit()
        self._last_flush = time.monotonic()

    def _journal_fits(self, more: int) -> bool:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        return size >= JOURNAL_MIN_BYTES and (self._journal_bytes + more) * JOURNAL_RATIO < size

    def _append(self, lines: list[bytes]) -> None:
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

    def _commit(self) -> None:
        """Rewrite outbox.json atomically if anything changed; it then holds the journal too."""
        storage = self._storage
        if not storage.dirty:  # nothing new: a reader (status, preview) never writes
            return
        commit(self.db)
        if self._journal_bytes:
            with contextlib.suppress(FileNotFoundError):
                self.journal.unlink()
            fsync_dir(self.journal.parent)
            self._journal_bytes = 0

    def _replay(self) -> int:
        """Apply the journal a killed run left over outbox.json (in memory); its size."""
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
                doc = docs.get(str(record["id"]))
                fields = dict(record["set"])
            except (ValueError, KeyError, TypeError):
                skipped += 1  # cut short by a crash: that delivery stays pending (resent)
                continue
            if doc is not None and doc.get("message_id") == record.get("mid"):
                doc.update(fields)
        if skipped:
            log.warning("%s: skipped %d incomplete line(s) left by an interrupted run", self.journal, skipped)
        return len(raw) or 1

    def close(self) -> None:
        """Record what is buffered, then fold the journal into outbox.json (if this process
        changed anything: a reader such as `digestd status` never writes)."""
        with contextlib.suppress(Exception):
            self.flush()
            self._commit()
        self.db.close()
