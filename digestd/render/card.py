"""One paper's values for its templates: what a reader needs to decide "read it or not".

Pure: given a paper, the keyword's phrase pattern, the run date and how much room the digest
has (Mode), the values for paper.html.j2 / paper.txt.j2 (or their one-line forms).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from digestd.core.links import arxiv_link, safe_paper
from digestd.core.models import Paper
from digestd.core.versions import first_posted, is_update
from digestd.render.paper_text import (
    code_url,
    highlight,
    linkify,
    md_text,
    shorten,
    shorten_authors,
    text_references,
)


class Mode(StrEnum):
    """How much of a paper a digest shows, from most to least: the size rule steps down."""

    FULL = "full"  # the whole abstract
    SHORT = "short"  # the abstract's first lines and "more"
    BARE = "bare"  # no abstract
    LINE = "line"  # title, id and links on one line


def html_link(paper: Paper) -> str:
    """arXiv's HTML rendering of the paper, built from its id (links.arxiv_link)."""
    return arxiv_link(paper.id, paper.version, "html")


def contexts(paper: Paper, pattern: re.Pattern[str] | None, *, today: str, mode: Mode,
             more_url: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(HTML values, text values) for one paper; every link checked, every text escaped.
    `more_url`: where a shortened abstract's "more" goes (its card on the day page), else arXiv."""
    paper = safe_paper(paper)  # state from an older digestd may hold unchecked links
    if mode is Mode.FULL:
        abstract: str | None = paper.summary
        truncated = False
    elif mode is Mode.SHORT:
        abstract, truncated = shorten(paper.summary)
    else:
        abstract, truncated = None, False
    authors = shorten_authors(paper.authors)
    cross = tuple(c for c in paper.categories if c != paper.primary_category)
    update = is_update(paper, today)
    common = {
        "paper": paper,
        "update": update,
        "first_posted": first_posted(paper),
        "cross_lists": cross,
        "html_url": html_link(paper),
        "code_url": code_url(paper.summary, paper.comment),
        "truncated": truncated,
        "more_url": more_url or paper.link,
    }
    html = {
        **common,
        "authors": authors.replace(" et al.", "\u00a0et\u00a0al."),
        "title": highlight(paper.title, pattern),
        "abstract": None if abstract is None else highlight(abstract, pattern),
        "comment": linkify(paper.comment) if paper.comment else None,
    }
    refs: list[tuple[str, str]] = []
    comment = text_references(md_text(paper.comment), paper.id, refs) if paper.comment else None
    when = f"v{paper.version} · first posted {first_posted(paper)}" if update else paper.date
    cats = " ".join((paper.primary_category, *cross)).strip()
    meta = " · ".join(x for x in (f"arXiv:{paper.id}v{paper.version}", when, cats) if x)
    text_abstract = None
    if abstract is not None:
        text_abstract = text_references(md_text(abstract), paper.id, refs)
        if truncated and more_url:
            text_abstract += f" [more][{paper.id}-more]"
            refs.append((f"{paper.id}-more", more_url))
        elif truncated:
            text_abstract += f" [more][{paper.id}]"
    text = {
        **common,
        "title": md_text(paper.title),
        "authors": md_text(authors),
        "comment": comment,
        "meta": meta,
        "abstract": text_abstract,
        "refs": refs,
    }
    return html, text

