"""An instance with two days in its archive, made by real runs against the fake arXiv.

Day 0 (2026-11-18) is the baseline (nothing new, no page); day 1 (2026-11-19) adds three
papers to KW_A and one to KW_B; day 2 (2026-11-20) adds a paper whose title holds markup and
stores version 2 of a day-1 paper (its feed entry keeps its id and moves `updated`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import at, run_once, write_instance
from fakearxiv import FakeArxiv
from fixtures import make_paper, make_papers

KW_A, KW_B = "Video Anomaly Detection", "Vision-Language Models (VLM)"
SLUG_A, SLUG_B = "video-anomaly-detection", "vision-language-models-vlm"
DAY1, DAY2 = "2026-11-19", "2026-11-20"
PUBLIC = "https://papers.example.org/daily"
SECRET_ENV = {"DIGESTD_SECRET": "s" * 40}
EVIL_TITLE = '<script>alert("x")</script> & Video Anomaly <b>Detection</b>'
LONG_AUTHORS = [f"Author{n} With-A-Rather-Long-Hyphenated-Surname" for n in range(14)]


def seed(home: Path, **settings: Any) -> Path:
    """Three real runs (baseline, day 1, day 2) into a new instance at `home`."""
    settings.setdefault("public_url", PUBLIC)
    write_instance(home, [KW_A, KW_B], [{"email": "alice@example.org"}], timezone="UTC", **settings)
    feeds = {KW_A: make_papers(KW_A, 5, date="2026-11-18"), KW_B: make_papers(KW_B, 5, first=100, date="2026-11-18")}
    with FakeArxiv(feeds) as fake:
        run_once(home, fake, env=SECRET_ENV, now=at("2026-11-18"))
        fake.feeds[KW_A] = [
            make_paper(10, KW_A, DAY1, comment="Code: https://github.com/example/vad " + "x" * 90),
            make_paper(11, KW_A, DAY1, authors=LONG_AUTHORS),
            make_paper(12, KW_A, DAY1, title="Unbroken" + "W" * 90),
            *fake.feeds[KW_A],
        ]
        fake.feeds[KW_B] = [make_paper(111, KW_B, DAY1), *fake.feeds[KW_B]]
        run_once(home, fake, env=SECRET_ENV, now=at(DAY1))
        fake.feeds[KW_A] = [
            make_paper(20, KW_A, DAY2, title=EVIL_TITLE),
            make_paper(10, KW_A, DAY2, version=2),
            *[p for p in fake.feeds[KW_A] if p.id != "2611.00010"],
        ]
        run_once(home, fake, env=SECRET_ENV, now=at(DAY2))
    return home


def site_files(home: Path) -> dict[str, bytes]:
    """Every file under site/ and archive/, by path relative to `home`."""
    return {
        str(p.relative_to(home)): p.read_bytes()
        for folder in ("site", "archive")
        for p in sorted((home / folder).rglob("*"))
        if p.is_file()
    }


def write_archive(home: Path, days: int, per_day: int, start: str = "2025-01-01") -> list[str]:
    """Replace state/archive.json with `days` days of `per_day` papers each (for a slow build);
    the days, oldest first."""
    import json
    from datetime import date, timedelta

    entries: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    out: list[str] = []
    n = 0
    for d in range(days):
        day = (date.fromisoformat(start) + timedelta(days=d)).isoformat()
        out.append(day)
        runs[str(d + 1)] = {"seq": d + 1, "day": day}
        for k in range(per_day):
            n += 1
            kw = KW_A if k % 2 else KW_B
            p = make_paper(5000 + n, kw, day)
            doc = {"id": p.id, "version": 1, "title": p.title, "link": f"https://arxiv.org/abs/{p.id}v1",
                   "pdf": f"https://arxiv.org/pdf/{p.id}v1", "updated": p.updated, "published": p.published,
                   "authors": p.authors, "summary": p.summary, "comment": None, "categories": p.categories,
                   "primary_category": p.primary_category}
            entries[str(n)] = {"day": day, "keyword": kw, "paper": doc}
    (home / "state" / "archive.json").write_text(json.dumps({"runs": runs, "entries": entries}))
    return out
