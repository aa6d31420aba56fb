#!/usr/bin/env python3
"""What rebuilding the archive site costs: a year of days, the first build and a rebuild.

    .venv/bin/python bench/site_build.py                  # 365 days x 10 papers, 2 keywords
    .venv/bin/python bench/site_build.py --days 30 --per-day 40

Writes an instance (subscribers.yaml, state/archive.json) into a temp folder, then times
`digestd.site.build.build` twice: the first writes every file (each with its fsync), the
second finds every file unchanged and writes none (the cost every run that stores papers pays
on top of the writes of its own day).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from digestd.config.load import load_config
from digestd.site.build import build

KEYWORDS = ("Video Anomaly Detection", "Vision-Language Models")


def paper(n: int, day: str) -> dict[str, object]:
    pid = f"2611.{n:05d}"
    return {"id": pid, "version": 1, "title": f"A synthetic study number {n} of {KEYWORDS[n % 2]}",
            "link": f"https://arxiv.org/abs/{pid}v1", "pdf": f"https://arxiv.org/pdf/{pid}v1",
            "updated": f"{day}T12:00:00Z", "published": f"{day}T12:00:00Z",
            "authors": [f"Author {n}-{k}" for k in range(6)], "summary": "We study something. " * 60,
            "comment": "10 pages, 4 figures", "categories": ["cs.CV", "cs.LG"], "primary_category": "cs.CV"}


def instance(home: Path, days: int, per_day: int) -> None:
    (home / "state").mkdir(parents=True)
    doc = {"keywords": list(KEYWORDS), "subscribers": [],
           "settings": {"from": "Papers <p@example.org>", "public_url": "https://papers.example.org"}}
    (home / "subscribers.yaml").write_text(json.dumps(doc))
    runs, entries, n = {}, {}, 0
    start = date(2026, 1, 1)
    for d in range(days):
        day = (start + timedelta(days=d)).isoformat()
        runs[str(d + 1)] = {"seq": d + 1, "day": day}
        for _ in range(per_day):
            n += 1
            entries[str(n)] = {"day": day, "keyword": KEYWORDS[n % 2], "paper": paper(n, day)}
    (home / "state" / "archive.json").write_text(json.dumps({"runs": runs, "entries": entries}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--per-day", type=int, default=10)
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        home = Path(tmp) / "inst"
        instance(home, args.days, args.per_day)
        cfg = load_config(home, {})
        for label in ("first build", "rebuild, nothing changed"):
            t = time.perf_counter()
            built = build(cfg)
            took = time.perf_counter() - t
            print(f"{label}: {took:.2f} s ({built.days} days, {built.written} files written)")


if __name__ == "__main__":
    main()
