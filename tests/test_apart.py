"""ops/apart.py: work in a forked child whose answer the parent takes back, or does itself.

A real fork and a real pipe in every test; the failures are real too (a child that exits
before answering, a fork the system refuses, an answer that does not pickle), and each must
give the parent the same result it would have made in process.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from digestd.errors import ConfigError
from digestd.ops.apart import Apart, ApartParts


def test_the_childs_value_comes_back_with_its_arrays_whole() -> None:
    parent = os.getpid()
    big = np.arange(3_000_000, dtype=np.float32).reshape(1000, 3000)  # 12 MB: many pipe buffers

    def work() -> dict[str, Any]:
        return {"pid": os.getpid(), "matrix": big * 2, "ids": ["2611.00001", "2611.00002"]}

    got = Apart(work).result()
    assert got["pid"] != parent  # made in the child
    assert got["ids"] == ["2611.00001", "2611.00002"]
    assert got["matrix"].dtype == np.float32 and np.array_equal(got["matrix"], big * 2)
    got["matrix"][0, 0] = -1  # the parent's own, writable memory
    assert got["matrix"][0, 0] == -1


def test_a_child_that_dies_before_answering_leaves_the_work_to_the_parent() -> None:
    parent = os.getpid()

    def work() -> int:
        if os.getpid() != parent:
            os._exit(9)
        return os.getpid()

    assert Apart(work).result() == parent


def test_a_refused_fork_does_the_work_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_process() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_process)
    assert Apart(os.getpid).result() == os.getpid()


def test_an_answer_that_does_not_pickle_is_made_again_here() -> None:
    parent = os.getpid()

    def work() -> object:
        return threading.Lock() if os.getpid() != parent else "made here"

    assert Apart(work).result() == "made here"


def test_a_named_error_is_raised_in_the_parent_and_others_are_retried_here() -> None:
    parent = os.getpid()

    def refused() -> int:
        raise ConfigError("subscribers.yaml line 3: not an address")

    with pytest.raises(ConfigError, match="line 3"):
        Apart(refused, raises=(ConfigError,)).result()

    def fails_there() -> str:
        if os.getpid() != parent:
            raise RuntimeError("only in the child")
        return "made here"

    assert Apart(fails_there, raises=(ConfigError,)).result() == "made here"


def test_closing_an_unwanted_child_stops_and_reaps_it() -> None:
    read_end, write_end = os.pipe()

    def work() -> None:
        os.write(write_end, b"x")  # the child is running
        signal.pause()  # and would wait for ever

    job = Apart(work)
    os.close(write_end)
    assert os.read(read_end, 1) == b"x"
    pid = job._pid  # the child this test must see gone
    job.close()
    os.close(read_end)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie left behind


def test_parts_arrive_while_the_child_makes_the_next() -> None:
    """The child waits for the parent to have the first part before it makes the second: if parts
    were held back until the end, this would never finish (an alarm fails it instead)."""
    go_read, go_write = os.pipe()

    def work() -> Iterator[str]:
        yield "first"
        os.read(go_read, 1)  # the parent writes only once it holds the first part
        yield "second"

    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the first part was held back"))
    signal.alarm(60)
    try:
        parts = ApartParts(work).parts()
        assert next(parts) == "first"
        os.write(go_write, b"x")
        assert list(parts) == ["second"]
    finally:
        signal.alarm(0)
        os.close(go_read)
        os.close(go_write)


def test_a_child_that_dies_between_parts_leaves_the_rest_to_the_parent() -> None:
    parent = os.getpid()

    def work() -> Iterator[object]:
        yield os.getpid()
        if os.getpid() != parent:
            os._exit(9)
        yield "made here"

    first, second = ApartParts(work).parts()
    assert first != parent  # the child's part is kept
    assert second == "made here"  # and the rest made in process


_HOLDER = """
import os, sys, time
from pathlib import Path
from digestd.store.lock import RunLock
from digestd.ops.apart import ApartParts

def work():
    Path(sys.argv[2]).write_text(str(os.getpid()))  # the child runs (the lock let go by now)
    time.sleep(600)
    yield 1

with RunLock(Path(sys.argv[1])):
    job = ApartParts(work)
    time.sleep(600)
"""


def _until(what: Any, seconds: float = 60.0) -> None:
    """Wait for `what()` to be true (a condition another process makes true), failing after
    `seconds`, many times what it takes."""
    import time

    end = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < end, "never happened"
        time.sleep(0.05)


def test_a_killed_run_leaves_no_child_and_no_lock_behind(tmp_path: Path) -> None:
    """SIGKILL the run while its child works: the child dies with it, and the next run gets the
    lock at once (the child let go of its copy of the lock's descriptor when it started)."""
    import subprocess
    import sys

    from digestd.store.lock import RunLock

    lock, child_pid = tmp_path / "run.lock", tmp_path / "child.pid"
    run = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock), str(child_pid)])
    try:
        _until(lambda: child_pid.exists() and child_pid.read_text())
        pid = int(child_pid.read_text())
        run.kill()
        run.wait()
        with RunLock(lock):  # the killed run's lock is not held by its child
            pass
        _until(lambda: not Path(f"/proc/{pid}").exists() or "Z" in _state(pid))
    finally:
        run.kill()
        run.wait()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def test_an_answer_is_taken_once() -> None:
    job = ApartParts(lambda: iter([1, 2, 3]))
    assert list(job.parts()) == [1, 2, 3]
    with pytest.raises(RuntimeError, match="once"):
        job.parts()
    single = Apart(lambda: 5)
    assert single.result() == 5
    with pytest.raises(RuntimeError, match="once"):
        single.result()


def test_a_child_that_says_nothing_in_time_is_killed_and_the_work_done_here() -> None:
    """A stuck child (here: one that never answers) is killed when its wait ends; the parent
    then does the work. The wait is the feature under test: 1 s against a child that would
    otherwise never answer."""
    parent = os.getpid()

    def work() -> str:
        if os.getpid() != parent:
            signal.pause()
        return "made here"

    job = Apart(work, wait=1.0)
    pid = job._pid  # the child this test must see gone
    assert pid and job.result() == "made here"
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # killed and reaped
