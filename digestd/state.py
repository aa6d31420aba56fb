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
import json
import os
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.middlewares import CachingMiddleware
from tinydb.storages import Storage

from digestd.atomic import write_atomic
from digestd.errors import StateError
from digestd.models import Paper


class AtomicJSONStorage(Storage):  # type: ignore[misc]
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
        if not raw.strip():
            return None
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


class BufferedMiddleware(CachingMiddleware):  # type: ignore[misc]
    """Keep every change in memory until `flush()`: we choose the commit points."""

    WRITE_CACHE_SIZE = 10**12


def open_db(path: Path) -> TinyDB:
    """Open a state file; an unreadable one is moved aside and named, never replaced silently."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = TinyDB(str(path), storage=BufferedMiddleware(AtomicJSONStorage))
    try:
        db.storage.read()
        db.tables()
    except CorruptState as err:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        aside = path.with_name(f"{path.name}.corrupt-{stamp}")
        os.replace(path, aside)
        raise StateError(
            f"state file {path} is unreadable ({err.why}); it was moved to {aside.name}. "
            "Restore it from a backup, or run again to start that file afresh "
            "(keywords then re-enter baseline mode: nothing is mailed for them that run)"
        ) from None
    return db


def commit(db: TinyDB) -> None:
    """Write every buffered change in one atomic write."""
    db.storage.flush()


class PaperStore:
    """Papers per keyword plus the run counter: the input to diff, plan and the README."""

    def __init__(self, path: Path) -> None:
        self.db = open_db(path)
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
        keep = {
            doc.doc_id for doc in self.papers.all() if doc["keyword"] not in stored
        }
        drop = [doc.doc_id for doc in self.papers.all() if doc.doc_id not in keep]
        if drop:
            self.papers.remove(doc_ids=drop)
        rows = [
            {"keyword": kw, "seq": s, "paper": p.to_dict()}
            for kw, items in stored.items()
            for s, p in items
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


class Outbox:
    """Subscriber cursors and the delivery ledger; ledger updates are batched per flush."""

    def __init__(self, path: Path) -> None:
        self.db = open_db(path)
        self.cursors = self.db.table("cursors", cache_size=0)
        self.deliveries = self.db.table("deliveries", cache_size=0)
        self._buffer: dict[int, dict[str, Any]] = {}
        self._last_flush = time.monotonic()

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
        """Drop sent and failed records older than `keep_days`; pending ones always stay."""
        cutoff = datetime.fromisoformat(today).toordinal() - keep_days
        old = [
            d.doc_id
            for d in self.deliveries.all()
            if d["status"] != PENDING and datetime.fromisoformat(d["date"]).toordinal() < cutoff
        ]
        if old:
            self.deliveries.remove(doc_ids=old)

    def mark(self, doc_id: int, **fields: Any) -> None:
        """Record one delivery outcome in memory; `maybe_flush` writes it soon after."""
        self._buffer.setdefault(doc_id, {}).update(fields)

    def maybe_flush(self, interval: float) -> None:
        if self._buffer and time.monotonic() - self._last_flush >= interval:
            self.flush()

    def flush(self) -> None:
        """Apply buffered outcomes (grouped so tinydb rewrites each table once) and commit."""
        groups: dict[str, tuple[dict[str, Any], list[int]]] = {}
        for doc_id, fields in self._buffer.items():
            key = json.dumps(fields, sort_keys=True)
            groups.setdefault(key, (fields, []))[1].append(doc_id)
        for fields, ids in groups.values():
            self.deliveries.update(fields, doc_ids=ids)
        self._buffer.clear()
        commit(self.db)
        self._last_flush = time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.flush()
        self.db.close()
