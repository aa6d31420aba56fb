"""outbox.json: per-subscriber cursors and the delivery ledger (pending, sent, failed, unknown).

A delivery is derived from "papers with seq above the subscriber's cursor", never from "what
this fetch found new". So a crash after papers.json is written and before the outbox is,
loses nothing: the next run sees those papers above every cursor and mails them.

Tables: cursors, one document {map: email -> cursor, follows: shared follows maps}, and
deliveries, one document per digest. Reads and the once-a-run changes go through tinydb:
`pending()` and `prune()` are queries, `add_deliveries` is `insert_multiple`. Two paths are not:
- each outcome is made durable by an append to outbox.journal (digestd/store/journal.py says
  why, with the measurement), and folded into outbox.json by `commit()`;
- `take()` applies outcomes to the deliveries in place, through our middleware's `raw_table`,
  because tinydb's `update` rebuilds the whole table on every call: at 100,000 deliveries
  76-108 ms per outcome (over two hours for one outcome per delivery), against 6-10 us in
  place (under a second for all of them).
A query pays for tinydb's Document copies. With 100 of 100,000 deliveries pending (the usual
case: a run's first call, when yesterday's sent digests are still in the ledger), `pending()`
takes 94-198 ms where parsing every delivery and then filtering took 1.4-2.4 s; with all of
them pending it takes up to 37% longer than that.
Measured with `.venv/bin/python bench/ledger.py` (three runs on this 2-core machine while
other jobs ran, load average about 5: read the ratios, not the absolute times).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from tinydb import Query

from digestd.core.fields import BadRecord, is_day
from digestd.core.records import (
    Cursor,
    Delivery,
    DeliveryStatus,
    Follows,
    cursor_from_doc,
    delivery_from_doc,
    follows_from_value,
    follows_to_value,
)
from digestd.store import db, journal
from digestd.store.atomic import WriteError, write_atomic

log = logging.getLogger(__name__)

# What losing outbox.json costs, said when a broken one is moved aside.
OUTBOX_AFRESH = (
    "Restore it from a backup before the next run to avoid losing mail: without it, subscriber "
    "cursors and pending deliveries are lost, so the next run starts every subscriber from that "
    "run's papers and papers stored since each one's last digest are never mailed"
)

_Q = Query()
_UNKNOWN = _Q.status == DeliveryStatus.UNKNOWN
_RESENT = _UNKNOWN & _Q.resends.test(bool)  # `resends` missing, None or 0: not yet resent
# What to send: pending deliveries, and unknown ones not yet resent (at most once).
_SENDABLE = (_Q.status == DeliveryStatus.PENDING) | (_UNKNOWN & ~_RESENT)
# Nothing more will be done with these: failed, or unknown and already resent.
_FINISHED = (_Q.status == DeliveryStatus.FAILED) | _RESENT


# Delivery fields stored only when set; an outcome that clears one removes its key.
_ABSENT_WHEN_NONE = ("error", "last_attempt")


def _apply(doc: dict[str, Any], fields: Mapping[str, Any]) -> None:
    """Set an outcome's fields on a stored delivery. A field it clears loses its key, as
    to_doc writes it, so a sent document keeps the size it was made with."""
    for k in _ABSENT_WHEN_NONE:
        if k in fields and fields[k] is None:
            doc.pop(k, None)
    doc.update((k, v) for k, v in fields.items() if not (k in _ABSENT_WHEN_NONE and v is None))


def _shared_follows(doc: Mapping[str, Any]) -> dict[str, Follows]:
    spans: dict[Any, Any] = {}  # equal spans: one object across the maps
    return {ref: follows_from_value(m, spans) for ref, m in (doc.get("follows") or {}).items()}


def _check_cursors(doc: dict[str, Any], keep: dict[str, dict[str, Cursor]] | None) -> None:
    if not isinstance(doc.get("follows") or {}, dict):
        raise BadRecord("field 'follows' is not an object")
    shared = _shared_follows(doc)
    out: dict[str, Cursor] = {}
    for email, cur in doc["map"].items():
        try:
            out[email] = cursor_from_doc(cur, shared)
        except BadRecord as err:
            raise err.at("cursors", email) from None
    if keep is not None:
        keep["cursors"] = out


def check_outbox(data: dict[str, Any], keep: dict[str, dict[str, Cursor]] | None = None) -> str | None:
    """outbox.json: at most one cursors {map} record; deliveries as `records.Delivery`.
    `keep`: where to leave the cursors as read (so the outbox need not read them twice)."""
    return (
        db.check_tables(data)
        or db.check_single("cursors", data.get("cursors", {}), mapped=True)
        or db.check_each("cursors", data.get("cursors", {}), lambda _, doc: _check_cursors(doc, keep))
        or db.check_each("deliveries", data.get("deliveries", {}), lambda k, d: delivery_from_doc(int(k), d))
    )


def _line(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _archive(folder: Path, sent: Iterable[Mapping[str, Any]], cutoff: str) -> None:
    """Add sent records to folder/DAY.jsonl.gz (one gzip member per call; zcat and gzip.open
    read members as one stream), skipping days before `cutoff`; remove files before it."""
    by_day: dict[str, dict[str, bytes]] = {}
    for doc in sent:
        by_day.setdefault(doc["date"], {})[doc["message_id"]] = _line(doc)
    for day, lines in sorted(by_day.items()):
        if day >= cutoff:
            _append_gz(folder / f"{day}.jsonl.gz", lines)
    for old in folder.glob("*.jsonl.gz") if folder.is_dir() else ():
        day = old.name.split(".")[0]
        if is_day(day) and day < cutoff:
            with contextlib.suppress(OSError):  # one left is removed by the next run
                old.unlink()


def _append_gz(path: Path, lines: Mapping[str, bytes]) -> None:
    """Add one gzip member of `lines` (by Message-ID). Written whole and atomically: a day's
    file is written once, when the next day's first run moves that day out of the ledger;
    a run killed before its ledger was written moves them again, and the records the file
    already holds are left out (they were written twice)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            before = path.read_bytes()
        except FileNotFoundError:
            before = b""
    except OSError as err:
        raise WriteError(path, err) from None
    held = _message_ids(before)
    data = b"".join(line + b"\n" for mid, line in lines.items() if mid not in held)
    if data:
        write_atomic(path, before + gzip.compress(data, compresslevel=1, mtime=0))


def _message_ids(gz: bytes) -> set[str]:
    """The Message-IDs of a day's sent archive (none of a file that cannot be read)."""
    try:
        text = gzip.decompress(gz) if gz else b""
    except (OSError, EOFError, zlib.error):
        return set()
    out: set[str] = set()
    for raw in text.splitlines():
        with contextlib.suppress(ValueError, RecursionError):
            doc = json.loads(raw)
            if isinstance(doc, dict) and isinstance(doc.get("message_id"), str):
                out.add(doc["message_id"])
    return out


class Outbox:
    """Subscriber cursors and the delivery ledger.

    Outcomes are made durable by `sync()`: a journal append naming the delivery's doc id and
    Message-ID. A sender calls it (through a group commit) after each acceptance and before
    the next message on that connection. Opening the outbox replays the journal over
    outbox.json; `commit()` (end of a run) rewrites outbox.json and removes it. A line cut
    short by a crash is skipped: that delivery stays pending and is resent with the same
    Message-ID.
    """

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        checked: dict[str, dict[str, Cursor]] = {}  # the cursors as the whole-file check read them
        self.db = db.open_db(path, read_only=read_only, check=lambda data: check_outbox(data, checked),
                             afresh=OUTBOX_AFRESH)
        self.path = path
        self.read_only = read_only
        self.journal = journal.Journal(path.with_suffix(".journal"))
        self.cursors = self.db.table("cursors", cache_size=0)
        self.deliveries = self.db.table("deliveries", cache_size=0)
        self._buffer: dict[int, dict[str, Any]] = {}
        self._cursors: dict[str, Cursor] | None = checked.get("cursors")  # as read (None: not yet)
        self._unsaved = False  # the stored cursors document was let go and not saved since
        self._replay()

    # --- subscribers -------------------------------------------------------------------------
    # All cursors live in one document, so saving them costs one table rewrite, not one per
    # subscriber (tinydb rewrites a whole table for every update call).
    def load_cursors(self) -> dict[str, Cursor]:
        """Per subscriber e-mail (lower case).

        Once read, the stored document is let go (a writer's commit saves the cursors again
        if nothing did): at 100,000 subscribers it is 60 MB of parsed JSON held beside the
        same cursors as values, until the queue stage replaces it anyway."""
        if self._cursors is None:
            doc = db.single(self.cursors)
            if doc is None:
                return {}
            shared = _shared_follows(doc)
            self._cursors = {k: cursor_from_doc(v, shared) for k, v in doc["map"].items()}
            del doc, shared
        if not self.read_only and not self._unsaved and self._cursors:
            self._unsaved = True
            db.buffered(self.db).raw_table("cursors").clear()
        return dict(self._cursors)

    def save_cursors(self, cursors: Mapping[str, Cursor]) -> None:
        """Buffer the cursors; they reach disk with the next commit.

        Follows maps are stored once each and named by reference: 100,000 subscribers who
        follow 50 keywords share a handful of distinct maps, not five million entries.
        The document they replace is let go first, so the two are never held at once (40 MB
        at 100,000 subscribers); should building this one fail, commit() builds it again."""
        if not self.read_only:
            self._cursors, self._unsaved = dict(cursors), True
            db.buffered(self.db).raw_table("cursors").clear()
        refs: dict[int, str] = {}
        shared: dict[str, dict[str, list[list[int | None]]]] = {}
        spans: dict[Any, Any] = {}
        out: dict[str, Any] = {}
        for k, c in cursors.items():
            ref = None
            if c.follows is not None:
                ref = refs.get(id(c.follows))
                if ref is None:
                    body = follows_to_value(c.follows, spans)
                    digest = hashlib.sha1(json.dumps(body).encode("utf-8"), usedforsecurity=False)
                    ref = digest.hexdigest()[:12]
                    refs[id(c.follows)] = ref
                    shared[ref] = body
            out[k] = c.to_doc(ref)
        db.put_single(self.cursors, {"map": out, "follows": shared})
        self._cursors = None  # read again from the document if asked
        self._unsaved = False

    # --- deliveries --------------------------------------------------------------------------
    def all_deliveries(self) -> Iterator[Delivery]:
        for doc in self.deliveries:
            yield delivery_from_doc(doc.doc_id, doc)

    def pending(self) -> list[Delivery]:
        """What to send: pending deliveries, and unknown ones not yet resent (at most once)."""
        return [delivery_from_doc(doc.doc_id, doc) for doc in self.deliveries.search(_SENDABLE)]

    def add_deliveries(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        """Insert new deliveries (their `key` is ignored); the same, with their keys. A list is
        keyed in place and returned: 100,000 deliveries are never held twice."""
        items = deliveries if isinstance(deliveries, list) else list(deliveries)
        keys = self.deliveries.insert_multiple([d.to_doc() for d in items])
        for n, k in enumerate(keys):
            items[n] = replace(items[n], key=k)
        return items

    def prune(self, keep_days: int, today: str) -> None:
        """Keep the ledger the size of one day: sent records of earlier days move to
        state/sent/DAY.jsonl.gz (kept `keep_days`, for an operator asking "did she get it?"),
        failed and unknown ones are dropped after `keep_days`; pending ones always stay.

        Without this the ledger held `keep_days` days of every subscriber's deliveries:
        at 100,000 subscribers a 900 MB outbox.json, read and written by every run."""
        cutoff = date.fromordinal(date.fromisoformat(today).toordinal() - keep_days).isoformat()
        sent = self.deliveries.search((_Q.status == DeliveryStatus.SENT) & (_Q.date < today))
        _archive(self.path.parent / "sent", sent, cutoff)
        expired = self.deliveries.search(_FINISHED & (_Q.date < cutoff))
        if sent or expired:
            self.deliveries.remove(doc_ids=[doc.doc_id for doc in sent + expired])

    def mark(
        self,
        key: int,
        status: DeliveryStatus,
        *,
        error: str | None = None,
        sent_at: str | None = None,
        resends: int | None = None,
        attempts: int | None = None,
        last_attempt: str | None = None,
    ) -> None:
        """Record one delivery outcome in memory; `sync()` makes it durable."""
        fields: dict[str, Any] = {"status": status.value, "error": error}
        if attempts is not None:
            fields["attempts"] = attempts
        if status is DeliveryStatus.SENT:  # `sent_at` says when; the time of a try is for the others
            fields["last_attempt"] = None
        elif last_attempt is not None:
            fields["last_attempt"] = last_attempt
        if sent_at is not None:
            fields["sent_at"] = sent_at
        if resends is not None:
            fields["resends"] = resends
        self._buffer.setdefault(key, {}).update(fields)

    def take(self) -> list[bytes]:
        """Apply buffered outcomes to the in-memory ledger (in place: see the module docstring);
        the journal lines that record them. Runs in the event loop's thread; `append` (the disk
        part) may run in another."""
        marked, self._buffer = self._buffer, {}
        if not marked:
            return []
        storage = db.buffered(self.db)
        docs = storage.raw_table("deliveries")
        lines: list[bytes] = []
        for key, fields in marked.items():
            doc = docs.get(str(key))
            if doc is None:
                continue
            lines.append(journal.line(key, doc.get("message_id"), fields))  # it says null
            _apply(doc, fields)
        storage.touch()
        return lines

    def append(self, lines: list[bytes]) -> None:
        """Make `lines` durable: one append and one fsync (thread-safe against `take`).
        Raises StateError when the journal cannot be written: sending must stop."""
        self.journal.append(lines)

    def reserve(self) -> None:
        """Before sending: StateError when the journal has no room left to record outcomes."""
        self.journal.reserve()

    def sync(self) -> None:
        """Make every outcome marked so far durable (a journal append)."""
        self.append(self.take())

    def commit(self) -> None:
        """Rewrite outbox.json atomically with everything so far; the journal is then folded
        in and removed. A reader (status, preview) never writes."""
        self.take()
        storage = db.buffered(self.db)
        if self.read_only or not storage.dirty:  # nothing to write: the file keeps its cursors
            return
        if self._unsaved and self._cursors is not None:  # let go when read: written back first
            self.save_cursors(self._cursors)
        db.commit(self.db)
        self.journal.clear()

    def _replay(self) -> None:
        """Apply the journal a killed run left over outbox.json (in memory). Each entry is
        checked as on open: one that would make a delivery malformed is skipped like a torn
        line; one whose delivery is gone or has another Message-ID is ignored."""
        entries, skipped = self.journal.read()
        if not entries and not skipped:
            return
        storage = db.buffered(self.db)
        docs = storage.raw_table("deliveries")
        for entry in entries:
            doc = docs.get(str(entry.key))
            if doc is None or doc.get("message_id") != entry.message_id:
                continue
            try:
                delivery_from_doc(entry.key, {**doc, **entry.fields})
            except BadRecord:
                skipped += 1
                continue
            doc.update(entry.fields)  # as written: a file of an earlier version keeps its shape
        if skipped:  # cut short by a crash: that delivery stays pending (resent)
            log.warning("%s: skipped %d incomplete line(s) left by an interrupted run", self.journal.path,
                        skipped)
        storage.touch()

    def close(self) -> None:
        """Fold everything into outbox.json (unless read-only), then close."""
        if not self.read_only:
            self.commit()
        self.db.close()
