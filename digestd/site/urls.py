"""Pure: the site's names and addresses, for the site itself and for the digest that links to it.

Kept free of other digestd imports so digestd/render can use it without a cycle.
"""

from __future__ import annotations

import hashlib
import re

_NOT_WORD = re.compile(r"[^a-z0-9]+")
MAX_SLUG = 80  # a feed's file name must fit a file system's 255 bytes, with room for "-N.atom"


def slug(keyword: str) -> str:
    """The keyword lowercased, every run of other characters one `-`: `video-anomaly-detection`.

    Cut at MAX_SLUG characters: a longer keyword name made a feed's file name too long to
    write, and the site stopped at that feed on every run (index and later feeds stale). A
    cut slug, or a name with no a-z0-9 at all (視覺語言模型), ends in a hash of the whole name:
    those all were `keyword`, `keyword-2`... in config order, so adding or removing one
    moved another keyword's feed to a URL readers followed for a different keyword."""
    words = _NOT_WORD.sub("-", keyword.lower()).strip("-")
    if words and len(words) <= MAX_SLUG:
        return words
    digest = hashlib.sha256(keyword.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{words[:MAX_SLUG - 9].strip('-') or 'keyword'}-{digest}"


def paper_anchor(keyword_slug: str, paper_id: str) -> str:
    """The id of a paper's card on its day page: unique per keyword (a paper may be under two)."""
    return f"{keyword_slug}--{_NOT_WORD.sub('-', paper_id.lower())}"


def day_url(public_url: str | None, day: str) -> str | None:
    """The day page's absolute URL under `public_url` (None without one: nothing to link to)."""
    if not public_url:
        return None
    return f"{public_url.rstrip('/')}/days/{day}.html"
