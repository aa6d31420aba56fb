"""Pure: Atom 1.0 feeds (RFC 4287) of the archive, one per keyword and one of all keywords.

Ids: a feed's is its own URL under `public_url` (a `urn:digestd:feed:<slug>` without one);
an entry's is the paper's arXiv abstract URL without a version, so a new version keeps the
entry and only moves its `updated`. Every text from arXiv is XML-escaped, and characters XML
1.0 cannot hold are dropped: a feed reader never meets a malformed document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote
from xml.sax.saxutils import escape, quoteattr

from digestd.core.links import safe_paper
from digestd.store.archive import ArchiveEntry

ATOM_TYPE = "application/atom+xml"
EPOCH = "1970-01-01T00:00:00Z"
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def text(value: str) -> str:
    """Character data: escaped, with what XML 1.0 forbids dropped."""
    return escape(_NOT_XML.sub("", value))


def attr(value: str) -> str:
    return quoteattr(_NOT_XML.sub("", value))


def entry_id(paper_id: str) -> str:
    return f"https://arxiv.org/abs/{quote(paper_id, safe='/.-')}"


def _entry(e: ArchiveEntry, day_url: str) -> str:
    p = safe_paper(e.paper)
    parts = [
        "<entry>",
        f"<id>{text(entry_id(p.id))}</id>",
        f"<title type=\"text\">{text(p.title)}</title>",
        f"<updated>{text(p.updated)}</updated>",
        f"<published>{text(p.published)}</published>" if p.published else "",
        *(f"<author><name>{text(a)}</name></author>" for a in p.authors if a.strip()),
        *(f"<category term={attr(c)}/>" for c in p.categories if c.strip()),
        f"<link rel=\"alternate\" type=\"text/html\" href={attr(p.link)}/>",
        f"<link rel=\"related\" type=\"application/pdf\" href={attr(p.pdf)}/>" if p.pdf else "",
        f"<link rel=\"via\" type=\"text/html\" href={attr(day_url)}/>",
        f"<summary type=\"text\">{text(p.summary)}</summary>",
        "</entry>",
    ]
    return "\n".join(x for x in parts if x)


def render_feed(
    *,
    title: str,
    feed_id: str,
    self_href: str,
    index_href: str,
    author: str,
    items: Sequence[ArchiveEntry],
    day_href: dict[str, str],
    updated: str | None,
) -> str:
    """One feed document. `updated` is the newest run's time (EPOCH with none); `day_href` maps
    a day to its page's URL (absolute under public_url, else relative to the feed)."""
    head = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<feed xmlns="http://www.w3.org/2005/Atom">',
        f"<id>{text(feed_id)}</id>",
        f"<title type=\"text\">{text(title)}</title>",
        f"<updated>{text(updated or EPOCH)}</updated>",
        f"<author><name>{text(author)}</name></author>",
        "<generator>digestd</generator>",
        f"<link rel=\"self\" type=\"{ATOM_TYPE}\" href={attr(self_href)}/>",
        f"<link rel=\"alternate\" type=\"text/html\" href={attr(index_href)}/>",
    ]
    body = [_entry(e, day_href[e.day]) for e in items]
    return "\n".join([*head, *body, "</feed>"]) + "\n"
