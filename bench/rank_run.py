#!/usr/bin/env python3
"""A whole `digestd run` with a ranked listing (issue 12, point 5): what ranking adds to a run.

    .venv/bin/python bench/rank_run.py                 # 2,000-paper listing, 10,000 readers
    .venv/bin/python bench/rank_run.py --readers 2000  # quicker

One keyword, a listing of cs.CV with `top: 15`; every reader has `--interests` arXiv ids drawn
from a pool of 5,000 (texts recombined from the seeds' real abstracts). The fake arXiv of the
tests serves the listing (paged) and the interest papers (id_list); Postfix's smtp-sink takes
the mail. Day 1 stores the baseline and fetches the interest papers once; day 2 lists
`--papers` new papers, run twice from day 1's state as `digestd run` processes: once as is
(ranked for each reader) and once with the `interests:` lines taken out (newest first). The
difference is what ranking adds; peak RSS is the run process's own (ru_maxrss), PSS the run
and its child processes together (ranking's and the builders). Stage times come from the
timers of bench/run.py's --cli-run, which then calls digestd's own CLI entry.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from fakearxiv import FakeArxiv  # noqa: E402
from fixtures import make_paper  # noqa: E402
from rank_bench import sentences, text  # noqa: E402
from run import Sink, ensure_postfix, timed_cli_run  # noqa: E402

LISTING = "Computer Vision today"
STAGES = ("load", "diff", "queue", "send")  # seconds of each, in the `digestd run` process
DAY1, DAY2 = "2026-11-27", "2026-11-28"  # before today: `digestd run` dates its digests today


def write_instance(home: Path, readers: int, interests: int, pool: list[str], rng: random.Random) -> None:
    lines = ["keywords:", f"  - name: {LISTING}", "    listing: cs.CV", "    top: 15", "subscribers:"]
    for n in range(readers):
        lines.append(f"  - email: reader{n:06d}@example.org")
        ids = ", ".join(repr(i) for i in rng.sample(pool, interests))  # quoted: 2611.10000 is no number
        lines.append(f"    interests: [{ids}]")
    lines += ["settings:", "  from: Daily Papers <papers@example.org>", "  timezone: UTC", ""]
    home.mkdir(parents=True)
    (home / "state").mkdir()
    (home / "subscribers.yaml").write_text("\n".join(lines), encoding="utf-8")


def without_interests(home: Path) -> None:
    path = home / "subscribers.yaml"
    kept = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("interests:")]
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")


def digestd_run(home: Path, env: dict[str, str], spy_name: str = "") -> dict[str, Any]:
    """`digestd run`, timed from start to exit (bench/run.py's timed_cli_run), with its peak RSS
    and PSS; with BENCH_PYSPY=PREFIX and py-spy on PATH, sampled into PREFIX.SPY_NAME.txt."""
    spy_out = os.environ.get("BENCH_PYSPY")
    stages, err = timed_cli_run(home, {**os.environ, **env},
                                f"{spy_out}.{spy_name}.txt" if spy_out and spy_name else None)
    if err.strip():
        print(err.strip()[-2000:], file=sys.stderr)
    # the process's own peak (VmHWM), not wait4's, which is the largest of it and its children
    return {"seconds": stages["total"], "maxrss_mb": stages["maxrss_mb"], "pss_mb": stages["pss_mb"],
            "child_maxrss_mb": stages.get("builders_maxrss_mb", 0.0),
            "stages": {k: stages.get(k, 0.0) for k in STAGES}, "peaks": stages.get("peak_mb", {})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--papers", type=int, default=2000, help="new papers in the listing on day 2")
    ap.add_argument("--readers", type=int, default=10_000)
    ap.add_argument("--interests", type=int, default=20, help="interest papers per reader")
    ap.add_argument("--pool", type=int, default=5000, help="distinct interest papers")
    args = ap.parse_args()
    ensure_postfix()
    rng = random.Random(12)
    said = sentences()

    def paper(i: int, day: str, k: int) -> Any:
        """The k-th newest paper of `day` (one second apart: a feed is sorted newest first)."""
        t = 86399 - k
        stamp = f"{day}T{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}Z"
        return make_paper(i, LISTING, stamp, title=text(rng, said, 1)[:150], summary=text(rng, said, 6))

    baseline = [paper(i, DAY1, i) for i in range(100)]
    fresh = [paper(100 + i, DAY2, i) for i in range(args.papers)]
    pool = [paper(10_000 + i, "2026-10-01", i) for i in range(args.pool)]
    tmp = Path(tempfile.mkdtemp(prefix="digestd-rank-run-"))
    sink = Sink(tmp)
    try:
        with FakeArxiv() as fake:
            fake.extra = pool
            fake.feeds["cat:cs.CV"] = baseline
            env = {"DIGESTD_ARXIV_API_URL": fake.url, "DIGESTD_ARXIV_DELAY": "0",
                   "DIGESTD_SMTP_HOST": "127.0.0.1", "DIGESTD_SMTP_PORT": str(sink.port),
                   "DIGESTD_SMTP_SECURITY": "none"}
            home = tmp / "ranked"
            write_instance(home, args.readers, args.interests, [p.id for p in pool], rng)
            day1 = digestd_run(home, env)
            fake.feeds["cat:cs.CV"] = fresh + baseline
            plain = tmp / "newest-first"
            shutil.copytree(home, plain)
            without_interests(plain)
            ranked = digestd_run(home, env, "ranked")
            newest = digestd_run(plain, env, "newest")
        sent = sink.messages()
    finally:
        sink.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"listing: {args.papers} new papers (top 15); readers: {args.readers} with {args.interests} "
          f"interests each (pool {args.pool}); the sink got {sent} digests")
    print(f"day 1 (baseline, {args.pool} interest papers fetched once): {day1['seconds']:.2f} s")
    print("| day 2 `digestd run` | seconds | " + " | ".join(f"{k} s" for k in STAGES)
          + " | peak RSS MB (run process) | peak PSS MB (run and builders) |")
    print("| --- " * (len(STAGES) + 4) + "|")
    for name, r in (("ranked for each reader", ranked), ("newest first (no interests)", newest)):
        cells = " | ".join(f"{r['stages'][k]:.2f}" for k in STAGES)
        print(f"| {name} | {r['seconds']:.2f} | {cells} | {r['maxrss_mb']:.0f} | {r['pss_mb']:.0f} |")
    print("peak RSS MB by stage, ranked:", {k: round(v) for k, v in ranked["peaks"].items()},
          f"; the largest child's (ranking's or a builder's): {ranked['child_maxrss_mb']:.0f}")
    print(f"ranking added {ranked['seconds'] - newest['seconds']:.2f} s and "
          f"{ranked['maxrss_mb'] - newest['maxrss_mb']:.0f} MB of peak RSS")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
