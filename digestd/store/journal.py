"""outbox.journal: the delivery outcomes of a run in progress, one JSON line each, made durable
by an append and an fsync; replayed over outbox.json when it is next opened.

Why a journal and not tinydb for this hot path: an outcome must be on disk before the next
message goes out on its connection, and tinydb's unit of durability is the whole file. At
100,000 deliveries (outbox.json 49 MB), rewriting outbox.json atomically costs 0.76-0.91 s
per commit, where appending one outcome with its fsync costs 0.19-3.9 ms (median of 200):
per acceptance, the rewrite would make the ledger, not SMTP, the bottleneck. Measured with
`.venv/bin/python bench/ledger.py` (three runs on this 2-core machine while other jobs ran,
load average about 5: read the ratios, not the absolute times).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digestd.errors import StateError
from digestd.store.atomic import fsync_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    """One recorded outcome: these `fields` of delivery `key`, if it still has `message_id`."""

    key: int
    message_id: str | None
    fields: Mapping[str, Any]


def line(key: int, message_id: str | None, fields: Mapping[str, Any]) -> bytes:
    return json.dumps({"id": key, "mid": message_id, "set": dict(fields)}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def _entry(raw: bytes) -> Entry | None:
    """A line as written, or None for one a crash cut short (or anything else)."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict):
        return None
    key, mid, fields = record.get("id"), record.get("mid"), record.get("set")
    if not isinstance(key, int) or isinstance(key, bool) or not isinstance(fields, dict):
        return None
    if mid is not None and not isinstance(mid, str):
        return None
    return Entry(key, mid, fields)


class Journal:
    """Appends from one writer (a worker thread), read and removed by the run that owns it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0  # bytes this process knows are in the file: 0 means nothing to fold in

    def read(self) -> tuple[list[Entry], int]:
        """Every whole entry a killed run left, and how many lines were skipped as incomplete."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return [], 0
        except OSError as err:
            raise StateError(f"cannot read {self.path}: {err.strerror or err}") from None
        self.size = len(raw) or 1  # an empty file is still removed by the next commit
        entries: list[Entry] = []
        skipped = 0
        for chunk in raw.split(b"\n"):
            if chunk.strip():
                entry = _entry(chunk)
                if entry is None:
                    skipped += 1
                else:
                    entries.append(entry)
        return entries, skipped

    def append(self, lines: list[bytes]) -> None:
        """Make `lines` durable: one append and one fsync."""
        if not lines:
            return
        # Each batch starts on a fresh line, so a line a crash cut short stays a line of its own.
        data = b"\n" + b"\n".join(lines) + b"\n"
        try:
            self._write(data)
        except OSError as err:
            raise StateError(
                f"cannot record sent digests in {self.path}: {err.strerror or err}; "
                "sending stopped so that nothing is sent twice (free space and run again)"
            ) from None
        self.size += len(data)

    def _write(self, data: bytes) -> None:
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.path.parent)

    def clear(self) -> None:
        """outbox.json now holds everything the journal did. If the file cannot be removed, the
        next open replays it again, which changes nothing (each entry sets the same fields)."""
        if not self.size:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError as err:
            log.warning("cannot remove %s (%s); the next run reads it again, harmlessly", self.path, err)
            return
        fsync_dir(self.path.parent)
        self.size = 0
