"""Work done in a forked child while the run goes on, on the machine's other core.

`Apart(work)` forks now; `result()` takes the child's answer back through a pipe. Arrays come
back as pickle protocol 5 out-of-band buffers, read straight into the memory they keep, so a
40 MB matrix costs the parent 40 MB, not a pickled copy besides. When the child cannot answer
(no fork, no pipe, killed, a value that does not pickle) `result()` does the work in process:
a child only ever changes where the time and memory go, never the result. The exceptions
named in `raises` are the answer too, raised again in the parent.

Callers: `digestd run` only, for reading a large subscribers.yaml (config/apart.py) and for
ranking (stages/follow.py). Forking is sound there because the run has no other thread then;
the child never logs, writes state or returns: it answers and leaves with os._exit.
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import pickle
import signal
import struct
from collections.abc import Callable
from types import TracebackType
from typing import Generic, TypeVar, cast

T = TypeVar("T")

_HEAD = struct.Struct("<QI")  # pickle bytes, out-of-band buffers
_SIZE = struct.Struct("<Q")


class Apart(Generic[T]):
    """`work()` started in a forked child; `result()` its value (or, failing that, work())."""

    def __init__(self, work: Callable[[], T], *, raises: tuple[type[BaseException], ...] = ()) -> None:
        self._work = work
        self._raises = raises
        self._pid = 0
        self._read = -1
        if not hasattr(os, "fork"):
            return
        try:
            read_end, write_end = os.pipe()
        except OSError:  # no file descriptor left: the work is done in process
            return
        try:
            pid = os.fork()
        except OSError:  # no process left (a unit's TasksMax, RLIMIT_NPROC) or no memory
            os.close(read_end)
            os.close(write_end)
            return
        if pid == 0:  # the child: answer through the pipe, then leave without any cleanup
            try:
                # The parent's objects are out of the collector's sight: a collection would
                # walk (and so copy, page by page) all of them for nothing (measured: the
                # ranking's child took 3.8 s instead of 2.5).
                gc.freeze()
                os.close(read_end)
                _answer(work, raises, write_end)
            finally:
                os._exit(0)
        os.close(write_end)
        self._pid, self._read = pid, read_end

    def result(self) -> T:
        """The child's answer; the work done here if it gave none."""
        answer = self._collect()
        if answer is not None:
            kind, value = answer
            if kind == "value":
                return cast(T, value)
            if kind == "error" and isinstance(value, self._raises):
                raise value
        return self._work()

    def close(self) -> None:
        """Stop a child whose answer is no longer wanted (the run failed before it asked)."""
        if self._pid:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
        self._collect()

    def __enter__(self) -> Apart[T]:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _collect(self) -> tuple[str, object] | None:
        """Read the answer (None if there is none) and reap the child; only once."""
        if not self._pid:
            return None
        pid, self._pid = self._pid, 0
        try:
            with os.fdopen(self._read, "rb") as pipe:
                return _receive(pipe)
        except Exception:  # the child died midway or answered nonsense: the work is done here
            return None
        finally:
            os.waitpid(pid, 0)


def _answer(work: Callable[[], object], raises: tuple[type[BaseException], ...], fd: int) -> None:
    """In the child: work, then write ("value", v) or ("error", e) with its buffers apart."""
    answer: tuple[str, object]
    try:
        answer = ("value", work())
    except raises as err:
        answer = ("error", err)
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(answer, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    with os.fdopen(fd, "wb") as out:
        out.write(_HEAD.pack(len(head), len(views)))
        for view in views:
            out.write(_SIZE.pack(view.nbytes))
        out.write(head)
        for view in views:
            out.write(view)


def _receive(pipe: io.BufferedReader) -> tuple[str, object] | None:
    size, count = _HEAD.unpack(_exactly(pipe, _HEAD.size))
    sizes = [_SIZE.unpack(_exactly(pipe, _SIZE.size))[0] for _ in range(count)]
    head = _exactly(pipe, size)
    buffers = []
    for n in sizes:
        buf = bytearray(n)  # the array's own memory, filled in place
        if pipe.readinto(buf) != n:
            return None
        buffers.append(buf)
    answer = pickle.loads(head, buffers=buffers)  # noqa: S301 - our own child, through our own pipe
    if not (isinstance(answer, tuple) and len(answer) == 2 and answer[0] in ("value", "error")):
        return None
    return answer


def _exactly(pipe: io.BufferedReader, n: int) -> bytes:
    data = pipe.read(n)
    if len(data) != n:
        raise EOFError("the child's answer ended early")
    return data
