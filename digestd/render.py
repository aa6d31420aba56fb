"""Pure: turn additions into per-subscriber digests (HTML and Markdown text).

Cost is per paper, not per subscriber: each keyword section and each paper is rendered and
CSS-inlined once per run, the frame once per run with slots; a digest is string joins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

import css_inline
from markupsafe import Markup, escape

from digestd.models import Paper
from digestd.templates import html_env, read_asset, text_env, wrap
from digestd.tokens import make_token

MAX_AUTHORS = 5
ABSTRACT_CHARS = 360
_SLOT = "@@slot:{}@@"
_SLOT_RE = re.compile("@@slot:([a-z_]+)@@")
_STOPWORDS = frozenset({"a", "an", "and", "for", "in", "of", "on", "or", "the", "to", "with"})


@dataclass(frozen=True, slots=True)
class Entry:
    """A paper in one subscriber's digest, with the other keywords it also matched."""

    paper: Paper
    also: tuple[str, ...] = ()


Sections = Sequence[tuple[str, Sequence[Entry]]]


def group_for_subscriber(
    keywords_in_order: Sequence[str], additions: Mapping[str, Sequence[Paper]]
) -> list[tuple[str, list[Entry]]]:
    """Each paper once, under the first of the subscriber's keywords (config order) that has it."""
    hits: dict[str, list[str]] = {}
    for kw in keywords_in_order:
        for p in additions.get(kw, ()):
            hits.setdefault(p.id, []).append(kw)
    out: list[tuple[str, list[Entry]]] = []
    for kw in keywords_in_order:
        entries = [
            Entry(p, tuple(hits[p.id][1:])) for p in additions.get(kw, ()) if hits[p.id][0] == kw
        ]
        if entries:
            out.append((kw, entries))
    return out


def count_papers(sections: Sections) -> int:
    return sum(len(entries) for _, entries in sections)


def shorten_authors(authors: Sequence[str], limit: int = MAX_AUTHORS) -> str:
    if len(authors) <= limit:
        return ", ".join(authors)
    return ", ".join(authors[:limit]) + " et al."


def shorten(text: str, limit: int = ABSTRACT_CHARS) -> tuple[str, bool]:
    """The first few lines of an abstract, cut at a word; True when something was cut."""
    if len(text) <= limit:
        return text, False
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip(" ,;:") + "…", True


def highlighter(keyword: str) -> re.Pattern[str] | None:
    words = [w for w in re.findall(r"[\w-]+", keyword) if w.lower() not in _STOPWORDS and len(w) > 1]
    if not words:
        return None
    alts = "|".join(sorted((re.escape(w) for w in words), key=len, reverse=True))
    return re.compile(rf"(?<![\w-])({alts})(?![\w-])", re.IGNORECASE)


def highlight(text: str, pattern: re.Pattern[str] | None) -> Markup:
    """Escape first, then mark the keyword's words: arXiv text never becomes markup."""
    escaped = str(escape(text))
    if pattern is None:
        return Markup(escaped)  # noqa: S704 - escaped on the line above
    return Markup(pattern.sub(r"<mark>\1</mark>", escaped))  # noqa: S704 - escaped above


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class _Framed:
    """A template rendered once with slot markers, split so each message only joins strings."""

    def __init__(self, text: str) -> None:
        self.parts = _SLOT_RE.split(text)  # even: fixed text; odd: slot names

    def fill(self, values: Mapping[str, str]) -> str:
        parts = self.parts
        return "".join(part if i % 2 == 0 else values[part] for i, part in enumerate(parts))


class DigestRenderer:
    """Renders digests for one run; caches every per-paper fragment."""

    def __init__(
        self,
        templates: Path | None,
        *,
        date: str,
        list_name: str,
        sender: str,
        full_abstracts: bool = False,
        public_url: str | None = None,
        secret: bytes | None = None,
    ) -> None:
        self.date = date
        self.list_name = list_name
        self.full_abstracts = full_abstracts
        self.public_url = public_url.rstrip("/") if public_url else None
        self.secret = secret
        self.sender_addr = parseaddr(sender)[1]
        self._html = html_env(templates)
        self._text = text_env(templates)
        css = read_asset(templates, "digest.css")
        self._inliner = css_inline.CSSInliner(extra_css=css, keep_style_tags=False, load_remote_stylesheets=False)
        self._css = css
        slots = {name: Markup(_SLOT.format(name)) for name in
                 ("count_text", "keywords_text", "body", "email", "unsubscribe_url", "also")}
        common = {"date": date, "list_name": list_name, "slots": slots}
        self._frame_html = _Framed(self._inliner.inline(self._html.get_template("digest.html.j2").render(common)))
        self._frame_text = _Framed(self._text.get_template("digest.txt.j2").render(common))
        self._paper_html_t = self._html.get_template("paper.html.j2")
        self._paper_text_t = self._text.get_template("paper.txt.j2")
        self._section_html_t = self._html.get_template("section.html.j2")
        self._section_text_t = self._text.get_template("section.txt.j2")
        self._also_html = _Framed(self._fragment('<p class="also">also in: ' + _SLOT.format("also") + "</p>"))
        self._papers_html: dict[tuple[str, str], _Framed] = {}
        self._papers_text: dict[tuple[str, str], _Framed] = {}
        self._sections: dict[tuple[str, int], tuple[str, str]] = {}
        self._patterns: dict[str, re.Pattern[str] | None] = {}
        self.common = common

    def _fragment(self, html: str) -> str:
        return css_inline.inline_fragment(html, self._css)

    def unsubscribe_url(self, email: str) -> str:
        if self.public_url and self.secret:
            return f"{self.public_url}/unsubscribe/{make_token(self.secret, email)}"
        return f"mailto:{self.sender_addr}?subject=unsubscribe%20{email}"

    def _paper(self, keyword: str, paper: Paper) -> tuple[_Framed, _Framed]:
        key = (keyword, paper.id)
        if key not in self._papers_html:
            if keyword not in self._patterns:
                self._patterns[keyword] = highlighter(keyword)
            pattern = self._patterns[keyword]
            abstract, truncated = (paper.summary, False) if self.full_abstracts else shorten(paper.summary)
            ctx = {
                **self.common,
                "paper": paper,
                "keyword": keyword,
                "authors": shorten_authors(paper.authors),
                "title": highlight(paper.title, pattern),
                "abstract": highlight(abstract, pattern),
                "truncated": truncated,
            }
            self._papers_html[key] = _Framed(self._fragment(self._paper_html_t.render(ctx)))
            text_ctx = {**ctx, "title": paper.title, "abstract": abstract + (" (more at the link)" if truncated else "")}
            self._papers_text[key] = _Framed(self._paper_text_t.render(text_ctx))
        return self._papers_html[key], self._papers_text[key]

    def _section(self, keyword: str, count: int) -> tuple[str, str]:
        key = (keyword, count)
        if key not in self._sections:
            ctx = {**self.common, "keyword": keyword, "count": count}
            self._sections[key] = (
                self._fragment(self._section_html_t.render(ctx)),
                self._section_text_t.render(ctx),
            )
        return self._sections[key]

    def render(self, email: str, sections: Sections) -> tuple[str, str]:
        """(text, html) of one digest."""
        html_parts: list[str] = []
        text_parts: list[str] = []
        for keyword, entries in sections:
            sec_html, sec_text = self._section(keyword, len(entries))
            html_parts.append(sec_html)
            text_parts.append(sec_text)
            for entry in entries:
                p_html, p_text = self._paper(keyword, entry.paper)
                also = ", ".join(entry.also)
                html_parts.append(p_html.fill({"also": self._also_html.fill({"also": str(escape(also))}) if also else ""}))
                text_parts.append(p_text.fill({"also": wrap(f"Also in: {also}") + "\n" if also else ""}))
        n = count_papers(sections)
        keywords = " · ".join(kw for kw, _ in sections)
        url = self.unsubscribe_url(email)
        count_text = plural(n, "new paper")
        html = self._frame_html.fill({
            "count_text": str(escape(count_text)),
            "keywords_text": str(escape(keywords)),
            "email": str(escape(email)),
            "unsubscribe_url": str(escape(url)),
            "body": "".join(html_parts),
        })
        text = self._frame_text.fill({
            "count_text": count_text,
            "keywords_text": wrap(keywords),
            "email": email,
            "unsubscribe_url": url,
            "body": "".join(text_parts),
        })
        return text, html
