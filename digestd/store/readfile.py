"""Reading a file someone else put in place: only a regular file, only up to a limit.

A FIFO in its place would block the reader for ever and /dev/zero (its size reads 0) would
read without end. The file is opened without blocking and checked on its descriptor, so
nothing can be swapped in between the check and the read.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


def read_regular(path: Path, limit: int) -> bytes:
    """At most `limit` + 1 bytes of `path` (links followed): the caller tells "over the limit"
    by the length. OSError(EINVAL, "not a regular file") for a FIFO, a device or a folder."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    with os.fdopen(fd, "rb") as f:
        return f.read(limit + 1)
