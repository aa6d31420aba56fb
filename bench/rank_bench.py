#!/usr/bin/env python3
"""Ranking a listing for a whole lab (issue 12, point 5): what it adds to a run.

    .venv/bin/python bench/rank_bench.py                       # 2,000 papers, 10,000 readers
    .venv/bin/python bench/rank_bench.py --papers 2000 --readers 10000 --interests 20

Builds an instance whose one keyword is a listing (top 15) and whose readers each have
`--interests` arXiv ids drawn from a pool of 5,000 interest papers (held in
state/interests.json, as after their one fetch); the day's listing has `--papers` new papers.
Texts are sentences of the seed snapshots' real abstracts recombined, so the vocabulary is a
real one. Then times `rank_planned` (digestd/stages/follow.py) all in this process, the path a
run takes when it cannot fork (a run fits in a child while it plans: bench/rank_run.py):
fitting TF-IDF, the profiles, the sparse products in slices of readers and each reader's top
15, and prints the figures with the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import random
import re
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures import SEED_000, SEED_001, parse_seed

from digestd.config.settings import Config, Paths, Settings
from digestd.core.models import Keyword, Paper, Subscriber
from digestd.core.plan import PlannedDigest
from digestd.ops import heap
from digestd.stages.follow import rank_planned, ranking_inputs
from digestd.store.interests import InterestPaper, InterestStore

LISTING = "Computer Vision today"


def sentences() -> list[str]:
    out: list[str] = []
    for seed in (SEED_000, SEED_001):
        for papers in parse_seed(seed).values():
            for p in papers:
                out += [s.strip() for s in re.split(r"(?<=\.)\s+", p.summary) if len(s.split()) > 5]
    return out


def text(rng: random.Random, pool: list[str], n: int) -> str:
    return " ".join(rng.sample(pool, n))


def paper(i: int, rng: random.Random, pool: list[str]) -> Paper:
    stamp = f"2026-11-20T{23 - i // 3600 % 24:02d}:{59 - i // 60 % 60:02d}:{59 - i % 60:02d}Z"
    return Paper(id=f"2611.{i:05d}", version=1, title=text(rng, pool, 1)[:120], link=f"https://arxiv.org/abs/2611.{i:05d}v1",
                 pdf=None, updated=stamp, published=stamp, authors=("A. Author",), summary=text(rng, pool, 6),
                 comment=None, categories=("cs.CV",), primary_category="cs.CV")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--papers", type=int, default=2000)
    ap.add_argument("--readers", type=int, default=10_000)
    ap.add_argument("--interests", type=int, default=20)
    ap.add_argument("--pool", type=int, default=5000)
    args = ap.parse_args()
    heap.return_large_buffers()  # as `digestd run` does
    rng = random.Random(12)
    pool = sentences()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "state").mkdir()
        store = InterestStore(Paths(home).interests_db)
        ids = [f"2601.{i:05d}" for i in range(args.pool)]
        store.add(InterestPaper(i, text(rng, pool, 1), text(rng, pool, 6)) for i in ids)
        store.commit()
        store.close()
        listing = [paper(i, rng, pool) for i in range(args.papers)]
        kw = Keyword(LISTING, listing=("cs.CV",), top=15)
        subs = tuple(Subscriber(email=f"r{n}@example.org", interests=tuple(rng.sample(ids, args.interests)))
                     for n in range(args.readers))
        cfg = Config(paths=Paths(home), keywords=(kw,), subscribers=subs, settings=Settings(), smtp=None,
                     sender="papers@example.org")
        held = {LISTING: [(2, p) for p in listing]}
        day = tuple(p.id for p in listing)  # as core/plan.py gives it: one tuple for all readers
        planned = [PlannedDigest(s.email, None, {LISTING: day}) for s in subs]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t0 = time.perf_counter()
        inputs = ranking_inputs(cfg, held, {}, seq=2, start_seq=1, today=date(2026, 11, 20))  # all new
        ranked = rank_planned(cfg, planned, inputs)
        took = time.perf_counter() - t0
    marked = sum(len(r.for_you) for r in ranked) / len(ranked)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"listing: {args.papers} papers; readers: {args.readers} with {args.interests} interests each "
          f"(pool {args.pool})")
    print(f"rank_planned: {took:.2f} s  (each reader: top {kw.top}, {marked:.1f} marked for you on average)")
    print(f"peak RSS of this process: {before:.0f} MiB before ranking (the instance, the plan), "
          f"{rss:.0f} MiB after: ranking added {rss - before:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
