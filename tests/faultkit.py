"""Small helpers shared by the fault tests: an instance with two keywords, the state as the
files hold it, a README section, and the real CLI pointed at a fake arXiv and an SMTP server.

Runs use the real clock (the CLI has no other); the papers' own dates are what vary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import cli, write_instance
from fakearxiv import FakeArxiv
from fixtures import FixturePaper, make_papers

KW_A, KW_B = "Video Anomaly Detection", "Vision Language Model"


def two_keyword_home(tmp_path: Path, subscribers: list[dict[str, Any]] | None = None, **settings: Any) -> Path:
    """alice follows A, bob both, carol B (unless `subscribers` is given); UTC dates."""
    subs = subscribers if subscribers is not None else [
        {"email": "alice@example.org", "keywords": [KW_A]},
        {"email": "bob@example.org"},
        {"email": "carol@example.org", "keywords": [KW_B]},
    ]
    settings.setdefault("timezone", "UTC")
    return write_instance(tmp_path / "home", [KW_A, KW_B], subs, **settings)


def day_feeds(day: int, per_day: int = 3) -> dict[str, list[FixturePaper]]:
    """Cumulative feeds as of `day` (1-based): each day adds `per_day` newer papers per keyword.

    Day 1 holds 10 papers per keyword (the baseline); ids never repeat across keywords."""
    feeds: dict[str, list[FixturePaper]] = {}
    for j, kw in enumerate((KW_A, KW_B)):
        papers = make_papers(kw, 10, first=j * 1000, date="2026-11-10")
        for d in range(2, day + 1):
            fresh = make_papers(kw, per_day, first=j * 1000 + d * 10, date=f"2026-11-{10 + d:02d}")
            papers = fresh + papers
        feeds[kw] = papers
    return feeds


def additions(day: int, keyword: str, per_day: int = 3) -> set[str]:
    """The ids `day` adds to `keyword` (day >= 2)."""
    j = (KW_A, KW_B).index(keyword)
    return {f"2611.{j * 1000 + day * 10 + k:05d}" for k in range(per_day)}


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_bytes())
    assert isinstance(data, dict)
    return data


def keyword_rows(home: Path, keyword: str) -> dict[str, Any]:
    """A keyword's stored papers exactly as papers.json holds them (doc id -> row)."""
    papers = read_json(home / "state" / "papers.json").get("papers", {})
    return {k: v for k, v in papers.items() if v["keyword"] == keyword}


def deliveries(home: Path) -> list[dict[str, Any]]:
    path = home / "state" / "outbox.json"
    if not path.exists():
        return []
    return list(read_json(path).get("deliveries", {}).values())


def readme_section(home: Path, keyword: str) -> str:
    text = (home / "README.md").read_text(encoding="utf-8")
    head = f"## {keyword}\n"
    start = text.index(head)
    end = text.find("\n## ", start + len(head))
    return text[start:] if end < 0 else text[start : end + 1]


def state_snapshot(home: Path) -> dict[str, bytes]:
    """Every file under state/ and the README, byte for byte."""
    out = {str(p.relative_to(home)): p.read_bytes() for p in sorted((home / "state").rglob("*")) if p.is_file()}
    readme = home / "README.md"
    if readme.exists():
        out["README.md"] = readme.read_bytes()
    return out


def run_cli(home: Path, fake: FakeArxiv, env: dict[str, str] | None = None, *args: str, timeout: float = 60) -> Any:
    """`digestd --home HOME run ARGS` in a subprocess, against `fake` and the SMTP env given."""
    full = {"DIGESTD_ARXIV_API_URL": fake.url, "DIGESTD_ARXIV_DELAY": "0", "DIGESTD_ARXIV_TIMEOUT": "5", **(env or {})}
    return cli(home, "run", *args, env=full, timeout=timeout)


def spawn_run(home: Path, fake: FakeArxiv, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`digestd --home HOME run` started in the background (to kill it, or race it)."""
    full = {**os.environ, "DIGESTD_ARXIV_API_URL": fake.url, "DIGESTD_ARXIV_DELAY": "0",
            "DIGESTD_ARXIV_TIMEOUT": "5", **(env or {})}
    full.pop("DIGESTD_HOME", None)
    return subprocess.Popen(
        [sys.executable, "-m", "digestd", "--home", str(home), "run"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=full,
    )


def wait_for_lock(home: Path, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    """Until `proc` holds the run lock (its pid is in state/run.lock). Measured 1.7-2 s loaded;
    `timeout` only ends a wait that would otherwise never end."""
    lock = home / "state" / "run.lock"
    deadline = time.monotonic() + timeout
    while not (lock.exists() and lock.read_text().strip() == str(proc.pid)):
        assert proc.poll() is None, f"the run ended early: {proc.communicate()[1]}"
        assert time.monotonic() < deadline, "the run never took the lock"
        time.sleep(0.01)
