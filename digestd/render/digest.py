"""Pure: turn additions into per-subscriber digests (HTML and Markdown text).

Cost is per paper, not per subscriber: each keyword section and each paper is rendered and
CSS-inlined once per run, the frame once per run with slots; a digest is string joins.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import quote

import css_inline
from markupsafe import Markup, escape

from digestd.core.links import safe_paper
from digestd.core.models import Paper
from digestd.core.tokens import make_token
from digestd.render.paper_text import (
    highlight,
    highlighter,
    linkify,
    md_text,
    shorten,
    shorten_authors,
    text_references,
)
from digestd.render.templates import html_env, read_asset, template_errors, text_env, wrap

SLOT_NAMES = ("count_text", "keywords_text", "headline", "body", "email", "unsubscribe_url", "also")


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
            if kw not in hits.setdefault(p.id, []):
                hits[p.id].append(kw)
    out: list[tuple[str, list[Entry]]] = []
    placed: set[str] = set()
    for kw in keywords_in_order:
        entries = []
        for p in additions.get(kw, ()):
            if hits[p.id][0] == kw and p.id not in placed:
                placed.add(p.id)
                entries.append(Entry(p, tuple(hits[p.id][1:])))
        if entries:
            out.append((kw, entries))
    return out


def count_papers(sections: Sections) -> int:
    return sum(len(entries) for _, entries in sections)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def mailto_unsubscribe(sender_addr: str, email: str) -> str:
    """The mailto: form of unsubscribing: a message to the sender naming the address."""
    return f"mailto:{quote(sender_addr, safe='@')}?subject={quote('unsubscribe ' + email, safe='@')}"


class _Slots:
    """Slot markers for one renderer. The random part means no text from arXiv or the config
    can pose as a slot and be replaced (or break a message)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(6)
        self.format = f"@@slot-{tag}:{{}}@@"
        self.pattern = re.compile(f"@@slot-{tag}:([a-z_]+)@@")

    def marker(self, name: str) -> str:
        return self.format.format(name)


class _Framed:
    """A template rendered once with slot markers, split so each message only joins strings."""

    def __init__(self, text: str, slots: _Slots) -> None:
        self.parts = slots.pattern.split(text)  # even: fixed text; odd: slot names
        self._empty: str | None = None

    def fill(self, values: Mapping[str, str]) -> str:
        parts = self.parts
        if len(parts) == 3:  # one slot (a paper's "also in"): the common case, kept cheap
            value = values[parts[1]]
            if not value:
                if self._empty is None:
                    self._empty = parts[0] + parts[2]
                return self._empty
            return parts[0] + value + parts[2]
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
        self._css = css
        inliner = css_inline.CSSInliner(extra_css=css, keep_style_tags=False, load_remote_stylesheets=False)
        self._slots = _Slots()
        slots = {name: Markup(self._slots.marker(name)) for name in SLOT_NAMES}  # noqa: S704 - fixed text
        common = {"date": date, "list_name": list_name, "slots": slots}
        frame = self._html.get_template("digest.html.j2").render(common)
        self._frame_html = self._framed(inliner.inline(frame))
        self._frame_text = self._framed(self._text.get_template("digest.txt.j2").render(common))
        self._paper_html_t = self._html.get_template("paper.html.j2")
        self._paper_text_t = self._text.get_template("paper.txt.j2")
        self._section_html_t = self._html.get_template("section.html.j2")
        self._section_text_t = self._text.get_template("section.txt.j2")
        also = '<p class="also">also in: ' + self._slots.marker("also") + "</p>"
        self._also_html = self._framed(self._fragment(also))
        self._papers_html: dict[tuple[str, str], _Framed] = {}
        self._papers_text: dict[tuple[str, str], _Framed] = {}
        self._sections: dict[tuple[str, int], tuple[str, str]] = {}
        self._patterns: dict[str, re.Pattern[str] | None] = {}
        self._also: dict[tuple[str, ...], tuple[str, str]] = {}
        self._headings: dict[tuple[int, tuple[str, ...]], tuple[dict[str, str], dict[str, str]]] = {}
        self.common = common

    def _framed(self, text: str) -> _Framed:
        return _Framed(text, self._slots)

    def _fragment(self, html: str) -> str:
        return css_inline.inline_fragment(html, self._css)

    @property
    def one_click(self) -> bool:
        """True when digests carry an HTTPS one-click link (public_url and a secret are set)."""
        return bool(self.public_url and self.secret)

    def mailto(self, email: str) -> str:
        return mailto_unsubscribe(self.sender_addr, email)

    def unsubscribe_url(self, email: str) -> str:
        """The footer's link: one-click page under public_url, else the mailto: form."""
        if self.public_url and self.secret:
            return f"{self.public_url}/unsubscribe/{make_token(self.secret, email)}"
        return self.mailto(email)

    def list_unsubscribe(self, email: str) -> str:
        """The List-Unsubscribe header value (RFC 2369; the https one first, RFC 8058)."""
        mailto = f"<{self.mailto(email)}>"
        return f"<{self.unsubscribe_url(email)}>, {mailto}" if self.one_click else mailto

    def _paper(self, keyword: str, paper: Paper) -> tuple[_Framed, _Framed]:
        key = (keyword, paper.id)
        if key not in self._papers_html:
            paper = safe_paper(paper)  # state from an older digestd may hold unchecked links
            if keyword not in self._patterns:
                self._patterns[keyword] = highlighter(keyword)
            pattern = self._patterns[keyword]
            abstract, truncated = (paper.summary, False) if self.full_abstracts else shorten(paper.summary)
            authors = shorten_authors(paper.authors)
            ctx = {
                **self.common,
                "paper": paper,
                "keyword": keyword,
                "authors": authors.replace(" et al.", "\u00a0et\u00a0al."),
                "title": highlight(paper.title, pattern),
                "abstract": highlight(abstract, pattern),
                "comment": linkify(paper.comment) if paper.comment else None,
                "truncated": truncated,
            }
            self._papers_html[key] = self._framed(self._fragment(self._paper_html_t.render(ctx)))
            refs: list[tuple[str, str]] = []
            comment = text_references(md_text(paper.comment), paper.id, refs) if paper.comment else None
            meta = " · ".join(x for x in (paper.date, paper.primary_category, comment) if x)
            text_abstract = text_references(md_text(abstract), paper.id, refs)
            if truncated:
                text_abstract += f" [more][{paper.id}]"
            text_ctx = {
                **ctx,
                "title": md_text(paper.title),
                "authors": md_text(authors),
                "comment": comment,
                "meta": meta,
                "abstract": text_abstract,
                "refs": refs,
            }
            self._papers_text[key] = self._framed(self._paper_text_t.render(text_ctx))
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

    def _also_parts(self, also: tuple[str, ...]) -> tuple[str, str]:
        if not also:
            return "", ""
        if also not in self._also:
            names = ", ".join(also)
            self._also[also] = (
                self._also_html.fill({"also": str(escape(names))}),
                wrap(f"Also in: {names}") + "\n",
            )
        return self._also[also]

    def _heading(self, n: int, keywords: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
        """The per-digest values that depend only on what it holds, not on whom it goes to."""
        key = (n, keywords)
        if key not in self._headings:
            joined = " · ".join(keywords)
            count_text = plural(n, "new paper")
            self._headings[key] = (
                {
                    "count_text": str(escape(count_text)),
                    "keywords_text": str(escape(joined)).replace(" · ", "\u00a0· "),
                    "headline": str(escape(f"{count_text}: {joined}")),
                },
                {
                    "count_text": count_text,
                    "keywords_text": wrap(joined),
                    "headline": wrap(f"{count_text}: {joined}"),
                },
            )
        return self._headings[key]

    def render(self, email: str, sections: Sections) -> tuple[str, str]:
        """(text, html) of one digest: string joins of fragments rendered once per run."""
        html_parts: list[str] = []
        text_parts: list[str] = []
        for keyword, entries in sections:
            sec_html, sec_text = self._section(keyword, len(entries))
            html_parts.append(sec_html)
            text_parts.append(sec_text)
            for entry in entries:
                p_html, p_text = self._paper(keyword, entry.paper)
                also_html, also_text = self._also_parts(entry.also)
                html_parts.append(p_html.fill({"also": also_html}))
                text_parts.append(p_text.fill({"also": also_text}))
        head_html, head_text = self._heading(count_papers(sections), tuple(kw for kw, _ in sections))
        url = self.unsubscribe_url(email)
        html = self._frame_html.fill(
            {
                **head_html,
                "email": str(escape(email)),
                "unsubscribe_url": str(escape(url)),
                "body": "".join(html_parts),
            }
        )
        text = self._frame_text.fill(
            {**head_text, "email": email, "unsubscribe_url": url, "body": "".join(text_parts)}
        )
        return text, html


def check_templates(templates: Path | None, *, date: str, list_name: str, sender: str) -> None:
    """Render a sample digest once, so a broken template is named before anything is queued
    or sent (and not met half way through the subscribers)."""
    sample = Paper(
        id="0000.00000",
        version=1,
        title="A sample title",
        link="https://arxiv.org/abs/0000.00000v1",
        pdf="https://arxiv.org/pdf/0000.00000v1",
        updated=f"{date}T00:00:00Z",
        published=f"{date}T00:00:00Z",
        authors=("A. Author",),
        summary="A sample abstract.",
        comment="a comment",
        categories=("cs.CV",),
        primary_category="cs.CV",
    )
    with template_errors(templates):
        renderer = DigestRenderer(templates, date=date, list_name=list_name, sender=sender)
        renderer.render("check@example.org", [("Sample", [Entry(sample, ("Other",))])])
