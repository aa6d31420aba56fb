"""The arXiv query of a keyword entry, and the same exclusions checked locally.

A keyword is a phrase (the name, or `phrase:`), optionally a list of authors (any of them),
optionally a list of phrases to exclude. arXiv stems words, so an excluded paper may still come
back under another form; `excluded` checks each phrase again, at the start of a word, in the
title and abstract, so that "survey" also drops "Surveys of ..." as arXiv would.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache


def phrase_query(phrase: str) -> str:
    """Title or abstract search for one phrase (AND for one word: digestd's historic form)."""
    joiner = "AND" if len(phrase.split()) == 1 else "OR"
    return f'ti:"{phrase}" {joiner} abs:"{phrase}"'


def build_query(
    name: str,
    *,
    query: str | None = None,
    authors: Sequence[str] = (),
    phrase: str | None = None,
    exclude: Sequence[str] = (),
    listing: Sequence[str] = (),
) -> str:
    """The arXiv search_query of one entry. A raw `query` wins over name and phrase; with
    `authors` or a `listing` of categories, the name is only a label and `phrase` (if any) is
    required as well (AND)."""
    if query:
        base = query
    elif listing:
        base = " OR ".join(f"cat:{c}" for c in listing)
        if phrase:
            base = f"({base}) AND ({phrase_query(phrase)})"
    elif authors:
        base = " OR ".join(f'au:"{a}"' for a in authors)
        if phrase:
            base = f"({base}) AND ({phrase_query(phrase)})"
    else:
        base = phrase_query(phrase or name)
    if not exclude:
        return base
    banned = " OR ".join(f'ti:"{x}" OR abs:"{x}"' for x in exclude)
    return f"({base}) ANDNOT ({banned})"


@lru_cache(maxsize=256)
def _pattern(phrases: tuple[str, ...]) -> re.Pattern[str]:
    """One case-insensitive pattern: any phrase at a word start, any run of spaces between words."""
    alts = [r"\s+".join(re.escape(w) for w in p.split()) for p in phrases]
    return re.compile(r"(?<!\w)(?:" + "|".join(alts) + ")", re.IGNORECASE)


def excluded(title: str, summary: str, exclude: Sequence[str]) -> bool:
    """True when one of the `exclude` phrases starts a word of the title or the abstract."""
    if not exclude:
        return False
    pattern = _pattern(tuple(exclude))
    return bool(pattern.search(title) or pattern.search(summary))


def kept(
    primary: str, title: str, summary: str, *, exclude: Sequence[str], primary_in: Sequence[str]
) -> bool:
    """The local checks after a fetch: no excluded phrase; with `primary_in` (a listing with
    `primary_only`), a primary category among them (arXiv's API cannot ask for that)."""
    if primary_in and primary not in primary_in:
        return False
    return not excluded(title, summary, exclude)
