"""Crash-safe file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from digestd.errors import DigestdError

# What to do about the usual reasons a write fails; any other says the OS's own words.
_REASONS = {
    errno.ENOSPC: "no space left on device; free space and run again",
    errno.EDQUOT: "disk quota exceeded; free space or raise the quota and run again",
    errno.EROFS: "the file system is read-only; make it writable and run again",
    errno.EFBIG: "file too large for a file size limit in force; raise the limit and run again",
    errno.EACCES: "permission denied; let the user running digestd write to {folder}",
    errno.EPERM: "operation not permitted; let the user running digestd write to {folder}",
}
# The temp files write_atomic makes: ".NAME.<8 random characters>.tmp" beside NAME (hex digits
# now; letters, digits and "_" from tempfile.mkstemp, which earlier versions used).
_TEMP_MIDDLE = r"\.[a-z0-9_]{8}\.tmp"


class WriteError(DigestdError):
    """A file could not be written (disk full, read-only, quota...); the old file is whole and
    no temp file is left. The sentence names the file the user knows, not the temp file."""

    def __init__(self, path: Path, err: OSError) -> None:
        self.path = path
        self.errno = err.errno
        reason = _REASONS.get(err.errno or 0, err.strerror or str(err))
        super().__init__(f"cannot write {path}: {reason.format(folder=path.parent)}")


def write_atomic(path: Path, data: bytes | str | Iterable[bytes], *, mode: int | None = None) -> None:
    """Write to a temp file beside `path`, fsync it, rename it over `path`, fsync the folder.

    `data` may come in chunks (an iterable of bytes), so a large file is never whole in
    memory. Any OSError (ENOSPC, EDQUOT, EROFS...) becomes a WriteError naming `path`, after
    the temp file is removed; `path` itself is never opened, so it stays as it was.
    """
    chunks: Iterable[bytes]
    if isinstance(data, str):
        chunks = (data.encode("utf-8"),)
    elif isinstance(data, bytes):
        chunks = (data,)
    else:
        chunks = data
    path = Path(path)
    tmp: Path | None = None
    try:
        if mode is None:
            try:
                mode = path.stat().st_mode & 0o777
            except FileNotFoundError:
                mode = 0o644
        fd, tmp = _create_temp(path)
        try:
            for raw in chunks:
                _write_all(fd, raw)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException as exc:
        if tmp is not None:
            _remove(tmp)
        if isinstance(exc, OSError):
            raise WriteError(path, exc) from exc
        raise
    fsync_dir(path.parent)


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, empty temp file beside `path` that no one else has open."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temp file name", str(path.parent))


def _write_all(fd: int, raw: bytes) -> None:
    """os.write until every byte is written (a write may take fewer bytes than given)."""
    view = memoryview(raw)
    while view:
        view = view[os.write(fd, view) :]


def _remove(tmp: Path) -> None:
    with contextlib.suppress(OSError):  # if it cannot be removed, the next sweep_leftovers tries
        tmp.unlink(missing_ok=True)


def sweep_leftovers(*targets: Path) -> list[Path]:
    """Remove the temp files a killed write_atomic left beside each target, and only those;
    the removed paths. The caller must hold the lock that every writer of those targets holds,
    or it could take a live write's temp file."""
    removed: list[Path] = []
    for target in map(Path, targets):
        pattern = re.compile(rf"\.{re.escape(target.name)}{_TEMP_MIDDLE}")
        try:
            with os.scandir(target.parent) as it:
                entries = [e for e in it if pattern.fullmatch(e.name)]
        except OSError:  # no folder, or not ours to read: nothing of ours is there
            continue
        for entry in entries:
            if not entry.is_file(follow_symlinks=False):
                continue
            try:
                Path(entry.path).unlink()
            except OSError:  # gone already, or not ours to remove: the next run tries again
                continue
            removed.append(Path(entry.path))
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename durable: the folder entry must reach the disk too."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
