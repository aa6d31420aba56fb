"""The site from the archive: every file rendered (pure), then written file by file.

Rendering depends only on state/archive.json and the config, never on the clock, so
`digestd site build` writes byte for byte what the runs wrote. Each file is written atomically
(temp file, fsync, rename) and only when its bytes change; day pages and feeds go first and the
index last, and stale files leave only after it: a kill at any point leaves a site whose every
link works.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from digestd.config.settings import Config
from digestd.site import feeds
from digestd.site.days import feed_items, group_days, keyword_order, slugs
from digestd.site.markdown import day_markdown
from digestd.site.pages import PageContext, PageRenderer
from digestd.store import atomic
from digestd.store.archive import ArchiveEntry, ArchiveStore

_DAY_FILE = re.compile(r"\d{4}-\d{2}-\d{2}\.(html|md)")
_FEED_FILE = re.compile(r"[a-z0-9-]+\.atom")


@dataclass(frozen=True, slots=True)
class Built:
    """What a build changed: files written (their bytes differed) and stale files removed."""

    written: int
    removed: int
    days: int


def kept(entries: Sequence[ArchiveEntry], runs: Mapping[int, str], archive_days: int) -> list[ArchiveEntry]:
    """The entries of the last `archive_days` days before the newest run (not the clock)."""
    if not runs:
        return list(entries)
    cutoff = (date.fromisoformat(max(runs.values())) - timedelta(days=archive_days)).isoformat()
    return [e for e in entries if e.day > cutoff]


def render_site(cfg: Config, entries: Sequence[ArchiveEntry], runs: Mapping[int, str]) -> dict[str, str]:
    """Every file of site/ and archive/, by path relative to the instance, in write order."""
    s = cfg.settings
    entries = kept(entries, runs, s.archive_days)
    keywords = keyword_order([k.name for k in cfg.keywords], entries)
    names = slugs(keywords)
    days = group_days(entries, keywords)
    pages = PageRenderer(PageContext(cfg.paths.templates, s.list_name, cfg.sender, names,
                                     {k.name: k.highlight for k in cfg.keywords}))
    out: dict[str, str] = {}
    for i, day in enumerate(days):
        newer = days[i - 1].day if i > 0 else None
        older = days[i + 1].day if i + 1 < len(days) else None
        out[f"site/days/{day.day}.html"] = pages.day_page(day, newer, older)
        out[f"archive/{day.day}.md"] = day_markdown(day, s.list_name)
    base = s.public_url.rstrip("/") if s.public_url else None
    out["site/feeds/all.atom"] = _feed(cfg, base, "all", "all keywords", entries)
    for kw in keywords:
        mine = [e for e in entries if e.keyword == kw]
        out[f"site/feeds/{names[kw]}.atom"] = _feed(cfg, base, names[kw], kw, mine)
    out["site/index.html"] = pages.index_page(days, keywords)
    return out


def _feed(cfg: Config, base: str | None, name: str, title: str, entries: Sequence[ArchiveEntry]) -> str:
    items = feed_items(entries, cfg.settings.feed_entries)
    if base:
        self_href, feed_id, index = f"{base}/feeds/{name}.atom", f"{base}/feeds/{name}.atom", f"{base}/"
        day_href = {e.day: f"{base}/days/{e.day}.html" for e in items}
    else:
        self_href, feed_id, index = f"{name}.atom", f"urn:digestd:feed:{name}", "../index.html"
        day_href = {e.day: f"../days/{e.day}.html" for e in items}
    return feeds.render_feed(
        title=f"{cfg.settings.list_name}: {title}",
        feed_id=feed_id,
        self_href=self_href,
        index_href=index,
        author=cfg.settings.list_name,
        items=items,
        day_href=day_href,
        updated=max((e.paper.updated for e in items), default=None),
    )


def write_site(home: Path, files: Mapping[str, str]) -> Built:
    """Write the files that changed, in order, each atomically; then remove the day pages,
    day notes and feeds no longer built (only files digestd names, never anything else)."""
    written = 0
    for rel, content in files.items():
        path = home / rel
        data = content.encode("utf-8")
        try:
            if path.read_bytes() == data:
                continue
        except OSError:
            pass
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise atomic.WriteError(path, err) from None
        atomic.write_atomic(path, data, mode=0o644)
        written += 1
    removed = 0
    for folder, pattern in (("site/days", _DAY_FILE), ("archive", _DAY_FILE), ("site/feeds", _FEED_FILE)):
        for path in sorted((home / folder).glob("*")):
            rel = f"{folder}/{path.name}"
            if pattern.fullmatch(path.name) and rel not in files and path.is_file():
                with contextlib.suppress(OSError):  # the next build tries again
                    path.unlink(missing_ok=True)
                    removed += 1
    days = sum(1 for rel in files if rel.startswith("site/days/"))
    return Built(written, removed, days)


def sweep(home: Path) -> None:
    """Temp files a killed build left (the caller holds the run lock)."""
    for folder in ("site", "site/days", "site/feeds", "archive"):
        for tmp in (home / folder).glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def build(cfg: Config) -> Built:
    """Rebuild site/ and archive/ from state/archive.json (the caller holds the run lock)."""
    store = ArchiveStore(cfg.paths.archive_db, read_only=True)
    try:
        entries, runs = store.entries(), store.runs()
    finally:
        store.close()
    sweep(cfg.paths.home)
    return write_site(cfg.paths.home, render_site(cfg, entries, runs))
