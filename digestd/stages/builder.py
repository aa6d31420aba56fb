"""Messages built on the second core: a forked process renders digests and builds their bytes
while the main process speaks SMTP and records outcomes.

Why: rendering and building are about two thirds of the send stage's CPU, and the main process
also waits on the journal's fsyncs; on one core the two take turns. The child is forked with
what it needs (the config, the papers), so only delivery keys go in and message bytes come out.
A run too small to pay for the fork, or a machine without fork, builds in process as before;
a child that dies leaves the rest to be built in process. Either way the same bytes."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeAlias

from digestd.core.records import Delivery
from digestd.mail.message import Envelope
from digestd.ops.apart import as_child_of

Built: TypeAlias = Envelope | str | None  # the message; why it could not be built; no papers left
Build: TypeAlias = Callable[[Delivery], Envelope | None]

log = logging.getLogger(__name__)

MIN_FORK = 500  # fewer digests than this: building in process costs less than forking
CHUNK = 32  # deliveries per request to the child
AHEAD = 2  # chunks requested before the first is used: one a builder, so both keep working
# while the main process sends; each more holds another 32 finished messages (2.3 MB)
WORKERS = 2  # builder processes: the main process mostly waits (SMTP replies, fsyncs)

_build: Build | None = None  # set in the parent just before the fork; the child inherits it


def build_one(build: Build, d: Delivery) -> Built:
    """One digest: its envelope, None, or the reason it failed (one subscriber's data never
    stops the run)."""
    try:
        return build(d)
    except Exception as err:
        log.warning("cannot build the digest for %r: %s: %s", d.email, type(err).__name__, err)
        return f"the digest could not be built: {err}"


def _build_chunk(chunk: Sequence[Delivery]) -> list[Built]:
    """In the child: the inherited builder, applied to each delivery of `chunk`."""
    assert _build is not None
    return [build_one(_build, d) for d in chunk]


def _pool(build: Build) -> Executor | None:
    global _build
    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:  # no fork on this platform
        return None
    _build = build
    return ProcessPoolExecutor(
        max_workers=WORKERS, mp_context=ctx, initializer=as_child_of, initargs=(os.getpid(),)
    )


async def built(build: Build, deliveries: Sequence[Delivery]) -> AsyncIterator[tuple[Delivery, Built]]:
    """Each delivery with its message, in order; built in a child process when there are many."""
    pool = _pool(build) if len(deliveries) >= MIN_FORK else None
    if pool is None:
        for d in deliveries:
            yield d, build_one(build, d)
        return
    loop = asyncio.get_running_loop()
    chunks = [deliveries[i : i + CHUNK] for i in range(0, len(deliveries), CHUNK)]
    pending: list[asyncio.Future[list[Built]] | None]
    pending = [loop.run_in_executor(pool, _build_chunk, c) for c in chunks[:AHEAD]]
    try:
        for n, chunk in enumerate(chunks):
            if n + AHEAD < len(chunks):
                pending.append(loop.run_in_executor(pool, _build_chunk, chunks[n + AHEAD]))
            fut = pending[n]
            assert fut is not None
            try:
                results = await fut
            except BrokenProcessPool:  # the child died: the rest is built here
                log.warning("the message builder process stopped; building in process")
                results = [build_one(build, d) for d in chunk]
            for d, b in zip(chunk, results, strict=True):
                yield d, b
            pending[n] = None  # drop the done chunk's bytes
    finally:
        for f in pending:
            if f is not None:
                f.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
