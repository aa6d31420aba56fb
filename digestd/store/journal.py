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

import ctypes
import errno
import functools
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

# Room kept allocated past the journal's end (fallocate, FALLOC_FL_KEEP_SIZE): the outcomes of
# one group commit (one acceptance per connection) always fit, so a disk that fills up stops
# sending while every accepted message can still be recorded, instead of after one that cannot.
RESERVE = 64 * 1024
_KEEP_SIZE = 0x01  # FALLOC_FL_KEEP_SIZE, linux/falloc.h
_FULL = (errno.ENOSPC, errno.EDQUOT)


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

    def reserve(self) -> None:
        """Before the first message: make sure RESERVE bytes past the end can be written, so a
        full disk stops sending before anything is sent."""
        self._append(b"")

    def append(self, lines: list[bytes]) -> None:
        """Make `lines` durable: one append and one fsync; then RESERVE bytes past the end are
        allocated again. When they cannot be (the disk is full), `lines` are durable and the
        StateError stops sending before a message is accepted that could not be recorded."""
        if not lines:
            return
        # Each batch starts on a fresh line, so a line a crash cut short stays a line of its own.
        self._append(b"\n" + b"\n".join(lines) + b"\n")

    def _append(self, data: bytes) -> None:
        try:
            self._write(data)
        except OSError as err:
            raise StateError(
                f"cannot record sent digests in {self.path}: {err.strerror or err}; "
                "sending stopped so that nothing is sent twice (free space and run again)"
            ) from None

    def _write(self, data: bytes) -> None:
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            self.size = (self.size + len(data)) or 1  # an empty file is still removed by the next commit
            _keep_room(fd, os.fstat(fd).st_size)
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


def _keep_room(fd: int, end: int) -> None:
    """Allocate RESERVE bytes past `end` without changing the file's size; OSError (ENOSPC,
    EDQUOT) when the disk cannot spare them. A file system or libc without fallocate keeps
    no room (the write itself then says the disk is full)."""
    fallocate = _fallocate()
    if fallocate is not None and fallocate(fd, _KEEP_SIZE, end, RESERVE) != 0:
        code = ctypes.get_errno()
        if code in _FULL:
            raise OSError(code, os.strerror(code))


@functools.cache
def _fallocate() -> Any:
    """libc's fallocate(2), looked up once; None where there is none."""
    try:
        fallocate = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):
        return None
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    return fallocate
