"""Issue 13: messages built in a forked process (digestd/stages/builder.py) come back in order,
the same as built in process; a digest that cannot be built fails alone; a small run never forks."""

from __future__ import annotations

import asyncio
import os

from digestd.core.records import Delivery, DeliveryStatus
from digestd.mail.message import Envelope
from digestd.stages import builder


def deliveries(n: int) -> list[Delivery]:
    return [Delivery(key=i + 1, email=f"r{i}@example.org", name=None, run=1, date="2026-11-30",
                     created="2026-11-30T08:00:00Z", papers={"kw": (f"2411.{i:05d}",)},
                     message_id=f"<{i}@example.org>", status=DeliveryStatus.PENDING) for i in range(n)]


def build(d: Delivery) -> Envelope | None:
    """The pid of the process that built it goes into the bytes, so the test sees where."""
    if d.key % 97 == 0:
        raise ValueError(f"bad data for {d.email}")
    if d.key % 89 == 0:
        return None
    return Envelope("list@example.org", d.email, f"{os.getpid()} {d.key}".encode(), d.message_id)


def collect(ds: list[Delivery]) -> list[tuple[Delivery, builder.Built]]:
    async def go() -> list[tuple[Delivery, builder.Built]]:
        return [x async for x in builder.built(build, ds)]
    return asyncio.run(go())


def test_a_big_run_is_built_in_another_process_in_order_with_failures_alone() -> None:
    ds = deliveries(builder.MIN_FORK + 3 * builder.CHUNK + 5)
    out = collect(ds)
    assert [d.key for d, _ in out] == [d.key for d in ds]
    pids = set()
    for d, b in out:
        if d.key % 97 == 0:
            assert b == f"the digest could not be built: bad data for {d.email}"
        elif d.key % 89 == 0:
            assert b is None
        else:
            assert isinstance(b, Envelope) and b.recipient == d.email
            pid, key = b.data.decode().split()
            assert int(key) == d.key
            pids.add(int(pid))
    assert pids and os.getpid() not in pids


def test_a_small_run_is_built_in_process() -> None:
    out = collect(deliveries(builder.MIN_FORK - 1))
    pids = {int(b.data.split()[0]) for _, b in out if isinstance(b, Envelope)}
    assert pids == {os.getpid()}
