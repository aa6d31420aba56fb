"""The engine every change to subscribers.yaml goes through: one edit at a time (the edit
lock), comments and order kept, the run path's validation before writing, and an atomic
write, so a failed edit leaves the file byte-identical.

An edit is written on the file's lines alone when it can be (config.linedit: well under a
second for 10,000 subscribers), else by ruamel's round trip (config.roundtrip: about 10 s)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from digestd.config.linedit import line_edit
from digestd.config.load import check_edit
from digestd.config.roundtrip import round_trip_edit
from digestd.config.settings import Paths
from digestd.config.tracked import Change, Edited
from digestd.config.yamlread import parse_yaml, read_yaml_file
from digestd.errors import ConfigError, DigestdError, UsageError
from digestd.store import atomic
from digestd.store.atomic import write_atomic


def edit(home: Path, change: Change) -> list[str]:
    """Read subscribers.yaml, apply `change`, validate the result, write it atomically.

    `change` edits the document through digestd.config.tracked and returns the sentences that
    say what it did (or why nothing changed); it may run twice (the second time on a fresh
    document, when the line edit gives up). The file is written only when the document
    changed, and only if the result is a valid instance; a refused edit raises UsageError and
    leaves the file byte-identical.
    """
    path = _followed(Paths(home).subscribers)
    with _edit_lock(home):
        text, crlf = read_yaml_file(path)
        done = line_edit(path, text, change) or round_trip_edit(path, text, change)
        if done.text is None:
            return done.said
        check_edit(path, _read_back(path, done), text)  # validation shared with the run path
        atomic.sweep_leftovers(path)  # a killed edit's temp files (we hold the edit lock)
        write_atomic(path, done.text.replace("\n", "\r\n") if crlf else done.text)
        return done.said


def _followed(path: Path) -> Path:
    """The file a symlinked subscribers.yaml points to (kept in a config repository, say): the
    edit replaces that file, so the link stays a link and the next read sees the edit."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _read_back(path: Path, done: Edited) -> Any:
    """The new text's data, as the next run will read it."""
    if done.data is not None:
        return done.data
    assert done.text is not None
    try:
        return parse_yaml(done.text, path)
    except ConfigError:
        raise UsageError(
            f"{path}: this edit cannot be written without breaking the file's layout; "
            "nothing was changed (make it by hand)"
        ) from None


def sweep_leftovers(home: Path) -> list[Path]:
    """Remove the temp files a killed edit left beside subscribers.yaml, under the edit lock so
    a live edit's temp file is never taken; skipped (next time) while another edit runs."""
    with _edit_lock(home, wait=False) as held:
        return atomic.sweep_leftovers(Paths(home).subscribers) if held else []


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
        except OSError as err:  # ENOLCK and the like: no edit without the lock
            raise DigestdError(f"cannot lock {home} for an edit: {err.strerror or err}") from None
        yield True
    finally:
        os.close(fd)  # closing releases the lock
