"""Work done in a forked child while the run goes on, on the machine's other core.

`Apart(work)` forks now; `result()` takes the child's answer back through a pipe. Arrays come
back as pickle protocol 5 out-of-band buffers, read straight into the memory they keep, so a
40 MB matrix costs the parent 40 MB, not a pickled copy besides. When the child cannot answer
(no fork, no pipe, killed, a value that does not pickle) `result()` does the work in process:
a child only ever changes where the time and memory go, never the result. The exceptions
named in `raises` are the answer too, raised again in the parent.

Callers: `digestd run` only, for reading a large subscribers.yaml (config/apart.py, before the
run has any other thread) and for ranking (stages/follow.py, whose inputs are read before the
fork). A fork keeps only the calling thread, so the child must not need a lock another thread
could hold: it only computes, never logs, writes state or returns; it answers through its
pipe and leaves with os._exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import io
import logging
import os
import pickle
import select
import signal
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Generic, TypeVar, cast

T = TypeVar("T")
log = logging.getLogger(__name__)

WAIT = 1800.0  # seconds a child may take for each part: its work takes seconds, so one that
# says nothing for half an hour is stuck (a lock held at the fork), and is killed
_HEAD = struct.Struct("<QI")  # pickle bytes, out-of-band buffers
_SIZE = struct.Struct("<Q")


class _Child:
    """A forked child running `body(fd)` (it writes its answer to fd), and the parent's end."""

    def __init__(self, body: Callable[[int], None], wait: float = WAIT) -> None:
        parent = os.getpid()
        self._taken = False
        self._wait = wait
        self._pid = 0
        self._pipe: int | None = None  # the read end
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
                as_child_of(parent)
                body(write_end)
            finally:
                os._exit(0)
        os.close(write_end)
        self._pid, self._pipe = pid, read_end

    def _message(self) -> tuple[str, object] | None:
        """The child's next message, or None (the child stopped and reaped) when it has no more
        to give; a child that did not answer is named in the log, its work then done here."""
        if self._pipe is None:
            return None
        try:
            got = _receive(self._pipe, time.monotonic() + self._wait)
        except Exception:  # the child died midway, answered nonsense or took longer than
            got = None  # `wait` (stuck: the work takes seconds): the work is done here
        if got is not None and got[0] == "end":
            self._reap()
        elif got is None:
            pid = self._pid
            status = self.close()
            log.warning("a forked child (pid %d) gave no answer (%s); its work is done in process",
                        pid, _status_text(status))
        return got

    def close(self) -> int | None:
        """Stop a child whose answer is no longer wanted (the run failed before it asked, or
        it answered nonsense); its wait status, None if there was none to stop."""
        if self._pid:
            with contextlib.suppress(OSError):
                os.kill(self._pid, signal.SIGKILL)
        return self._reap()

    def _take(self) -> None:
        """The answer is read once: a second reader would get the rest of a half-read pipe."""
        if self._taken:
            raise RuntimeError("a forked child's answer can be taken once")
        self._taken = True

    def _reap(self) -> int | None:
        pid, pipe, self._pid, self._pipe = self._pid, self._pipe, 0, None
        if pipe is not None:
            os.close(pipe)
        return os.waitpid(pid, 0)[1] if pid else None

    def __enter__(self) -> _Child:
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Apart(_Child, Generic[T]):
    """`work()` started in a forked child; `result()` its value (or, failing that, work())."""

    def __init__(self, work: Callable[[], T], *, raises: tuple[type[BaseException], ...] = (),
                 wait: float = WAIT) -> None:
        self._work = work
        self._raises = raises
        super().__init__(lambda fd: _answer(lambda: iter((work(),)), raises, fd), wait)

    def result(self) -> T:
        """The child's answer; the work done here if it gave none. Once only."""
        self._take()
        got = self._message()
        self.close()
        if got is not None:
            kind, value = got
            if kind == "value":
                return cast(T, value)
            if kind == "error" and isinstance(value, self._raises):
                raise value
        return self._work()


class ApartParts(_Child, Generic[T]):
    """`work()`, a generator, started in a forked child; `parts()` yields each part as the child
    sends it, so the parent can use the first while the child makes the next. If the child
    stops answering, the generator runs here and the parts not yet received come from it."""

    def __init__(self, work: Callable[[], Iterator[T]], *, wait: float = WAIT) -> None:
        self._work = work
        super().__init__(lambda fd: _answer(work, (), fd), wait)

    def parts(self) -> Iterator[T]:
        """Each part as the child sends it (once only: the parts are the pipe's)."""
        self._take()
        return self._parts()

    def _parts(self) -> Iterator[T]:
        received = 0
        while (got := self._message()) is not None and got[0] == "value":
            received += 1
            yield cast(T, got[1])
        if got is not None and got[0] == "end":
            return
        self.close()
        for n, part in enumerate(self._work()):
            if n >= received:
                yield part


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def as_child_of(parent: int) -> None:
    """In a forked child: die with the parent (a SIGKILLed run leaves no child behind), and let
    go of the run lock inherited from it, so the next run is never refused by a leftover
    child. Closing the descriptor never unlocks: the parent's lock stays held."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's pipe closing ends the child
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)
    fds = Path("/proc/self/fd")
    for fd in list(fds.iterdir()) if fds.is_dir() else []:
        try:
            if str(fd.readlink()).endswith("/run.lock"):
                os.close(int(fd.name))
        except (OSError, ValueError):
            continue


def _status_text(status: int | None) -> str:
    if status is None:
        return "no child"
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _answer(work: Callable[[], Iterator[object]], raises: tuple[type[BaseException], ...], fd: int) -> None:
    """In the child: each part as ("value", part), then ("end", None); or ("error", e) for an
    exception of `raises`. Each message's arrays are written apart from its pickle."""
    with os.fdopen(fd, "wb") as out:
        try:
            for part in work():
                _send(out, ("value", part))
        except raises as err:
            _send(out, ("error", err))
            return
        _send(out, ("end", None))


def _send(out: io.BufferedWriter, message: tuple[str, object]) -> None:
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    out.write(_HEAD.pack(len(head), len(views)))
    for view in views:
        out.write(_SIZE.pack(view.nbytes))
    out.write(head)
    for view in views:
        out.write(view)
    out.flush()  # the parent may use this part while the next is made


def _receive(fd: int, deadline: float) -> tuple[str, object] | None:
    size, count = _HEAD.unpack(_exactly(fd, _HEAD.size, deadline))
    sizes = [_SIZE.unpack(_exactly(fd, _SIZE.size, deadline))[0] for _ in range(count)]
    head = _exactly(fd, size, deadline)
    buffers = [_exactly(fd, n, deadline) for n in sizes]  # each array's own memory, filled in place
    answer = pickle.loads(head, buffers=buffers)  # noqa: S301 - our own child, through our own pipe
    if not (isinstance(answer, tuple) and len(answer) == 2 and answer[0] in ("value", "error", "end")):
        return None
    return answer


def _exactly(fd: int, n: int, deadline: float) -> bytearray:
    """`n` bytes from the pipe, or TimeoutError at `deadline`, or EOFError if it ends first."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    ready = select.poll()  # poll, not select: any descriptor number
    ready.register(fd, select.POLLIN)
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0 or not ready.poll(max(1, int(left * 1000))):
            raise TimeoutError("the child did not answer in time")
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise EOFError("the child's answer ended early")
        got += k
    return buf
