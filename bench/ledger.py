#!/usr/bin/env python3
"""The outbox's hot path at scale: why outcomes go to a journal and are applied in place.

    .venv/bin/python bench/ledger.py                 # 100,000 deliveries (about a minute)
    .venv/bin/python bench/ledger.py --n 10000 --dir /var/tmp

Builds outbox.json with N pending deliveries (1-5 keywords of 5 papers each, as a day of a
big instance), then times, on that ledger:
* tinydb `Table.update(fields, doc_ids=[key])` for one outcome (in memory, through the same
  BufferedMiddleware the outbox uses: no disk), the mean over --updates calls;
* the outbox's own path for one outcome: `mark` + `take` (in place, O(1)), the mean over
  10,000 outcomes;
* one journal append with its fsync (`Outbox.append` of one outcome), the median of 200;
* rewriting outbox.json atomically (temp file, fsync, rename: `Outbox.commit`), the median of 3;
* `all_deliveries()` once, and `pending()` (a tinydb query) against parsing every delivery
  and then filtering, on a ledger all pending and on one with 100 pending and the rest sent.
fsync times depend on the disk under --dir (default: the system temp folder).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from digestd.core.records import Delivery, DeliveryStatus, delivery_from_doc
from digestd.store.db import buffered
from digestd.store.outbox import Outbox

DAY = "2026-11-20"


def deliveries(n: int, seed: int = 7) -> list[Delivery]:
    rng = random.Random(seed)
    keywords = [f"Keyword number {i}" for i in range(50)]
    out = []
    for i in range(n):
        papers = {
            kw: tuple(f"2611.{rng.randrange(100000):05d}" for _ in range(5))
            for kw in rng.sample(keywords, rng.randint(1, 5))
        }
        out.append(Delivery(0, f"subscriber{i}@example.org", None, 2, DAY, f"{DAY}T21:00:00Z", papers,
                            f"<{DAY}.{i}.{rng.getrandbits(64):016x}@example.org>", DeliveryStatus.PENDING))
    return out


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def show(what: str, seconds: float, how: str = "") -> None:
    value = (f"{seconds * 1e3:9.3f} ms" if seconds < 1 else f"{seconds:9.2f} s" if seconds < 100
             else f"{seconds / 60:9.1f} min")
    print(f"{what:<56} {value}  {how}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--updates", type=int, default=50)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "state" / "outbox.json"
        outbox = Outbox(path)
        keys = [d.key for d in outbox.add_deliveries(deliveries(args.n))]
        outbox.commit()
        size = path.stat().st_size
        print(f"ledger: {args.n:,} deliveries, outbox.json {size / 1e6:.1f} MB, under {tmp}")

        fields = {"status": "sent", "error": None, "sent_at": f"{DAY}T21:00:01Z"}
        picks = random.Random(1).sample(keys, min(args.updates, len(keys)))
        updates = [timed(lambda k=k: outbox.deliveries.update(fields, doc_ids=[k])) for k in picks]
        tiny = statistics.mean(updates)
        show("tinydb Table.update, one outcome", tiny, f"(mean of {len(picks)})")

        sample = keys[: min(10_000, len(keys))]

        def in_place() -> None:
            for k in sample:
                outbox.mark(k, DeliveryStatus.SENT, sent_at=f"{DAY}T21:00:02Z")
                outbox.take()

        per = timed(in_place) / len(sample)
        show("mark + take (in place), one outcome", per, f"(mean of {len(sample)})")
        show("  one outcome for every delivery, tinydb update", tiny * args.n)
        show("  one outcome for every delivery, in place", per * args.n)

        appends = []
        for k in keys[:200]:
            outbox.mark(k, DeliveryStatus.SENT, sent_at=f"{DAY}T21:00:03Z")
            lines = outbox.take()
            appends.append(timed(lambda lines=lines: outbox.append(lines)))
        show("journal append + fsync, one outcome", statistics.median(appends), "(median of 200)")

        def rewrite() -> None:
            buffered(outbox.db).touch()
            outbox.commit()

        commits = [timed(rewrite) for _ in range(3)]
        show(f"rewrite outbox.json ({size / 1e6:.0f} MB), one commit", statistics.median(commits),
             "(median of 3)")
        show("all_deliveries()", timed(lambda: list(outbox.all_deliveries())))
        scans(outbox, "all pending")
        for k in keys[100:]:
            outbox.mark(k, DeliveryStatus.SENT, sent_at=f"{DAY}T21:00:04Z")
        outbox.take()
        scans(outbox, "100 pending")
        outbox.close()


def scans(outbox: Outbox, label: str) -> None:
    """pending() as a tinydb query, against parsing every delivery and then filtering."""
    raw = buffered(outbox.db).raw_table("deliveries")

    def parse_all() -> list[Delivery]:
        every = [delivery_from_doc(int(k), doc) for k, doc in raw.items()]
        return [d for d in every if d.status is DeliveryStatus.PENDING
                or (d.status is DeliveryStatus.UNKNOWN and not d.resends)]

    show(f"pending(), {label}: tinydb query", timed(outbox.pending))
    show(f"pending(), {label}: parse every delivery, then filter", timed(parse_all))


if __name__ == "__main__":
    main()
