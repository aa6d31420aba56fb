"""One run at a time: an flock on state/run.lock, released by the kernel when a run dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType

from digestd.errors import LockedError, StateError


class RunLock:
    """Exclusive, non-blocking. A stale lock file from a killed run blocks nothing:
    the kernel drops an flock with its process, so only a live run can hold it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):  # the OS says only "File exists"
            raise StateError(
                f"{self.path.parent} is not a folder: move that file away; digestd keeps its state there"
            ) from None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                pid = os.read(fd, 32).decode().strip() or "unknown"
            finally:
                os.close(fd)
            raise LockedError(f"another run is in progress (pid {pid})") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as err:  # a full disk shows here first: name the file, not just the errno
            os.close(fd)
            why = err.strerror or err
            raise StateError(f"cannot write {self.path}: {why}; free space and run again") from None
        self.fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None
