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

from digestd.core.links import code_link, safe_paper
from digestd.core.models import Paper
from digestd.core.tokens import make_token
from digestd.render.templates import TEXT_WIDTH, URL_RE, html_env, read_asset, text_env, wrap

MAX_AUTHORS = 5  # more than this: the first SHOWN_AUTHORS and "et al."
SHOWN_AUTHORS = 3
ABSTRACT_CHARS = 320
SLOT_NAMES = ("count_text", "keywords_text", "headline", "body", "email", "unsubscribe_url", "also")
_STOPWORDS = frozenset({"a", "an", "and", "for", "in", "of", "on", "or", "the", "to", "with", "via", "by"})


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


def shorten_authors(authors: Sequence[str], limit: int = MAX_AUTHORS) -> str:
    """All names up to `limit`; a longer list as its first few and "et al."."""
    if len(authors) <= limit:
        return ", ".join(authors)
    return ", ".join(authors[: min(SHOWN_AUTHORS, limit)]) + " et al."


def shorten(text: str, limit: int = ABSTRACT_CHARS) -> tuple[str, bool]:
    """The first few lines of an abstract, cut at a word; True when something was cut."""
    if len(text) <= limit:
        return text, False
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip(" ,;:") + "…", True


def highlighter(keyword: str) -> re.Pattern[str] | None:
    """Matches runs of the keyword's words (not its stopwords), whole words, any case."""
    words = [w for w in re.findall(r"[\w-]+", keyword) if w.lower() not in _STOPWORDS and len(w) > 1]
    if not words:
        return None
    alts = "|".join(sorted((re.escape(w) for w in set(words)), key=len, reverse=True))
    word = rf"(?<![\w-])(?:{alts})(?![\w-])"
    return re.compile(rf"{word}(?:\s+{word})*", re.IGNORECASE)


def highlight(text: str, pattern: re.Pattern[str] | None) -> Markup:
    """Escape each piece, then mark the keyword's words: arXiv text never becomes markup."""
    if pattern is None:
        return escape(text)
    out: list[str] = []
    pos = 0
    for m in pattern.finditer(text):
        out.append(str(escape(text[pos : m.start()])))
        out.append(f'<span class="hl">{escape(m.group(0))}</span>')
        pos = m.end()
    out.append(str(escape(text[pos:])))
    return Markup("".join(out))  # noqa: S704 - every piece of text was escaped above


def _link_label(url: str, limit: int = 48) -> str:
    """What a link in running text shows: the URL without its scheme, long ones cut with "…"."""
    label = re.sub(r"^https?://(www\.)?", "", url)
    return label if len(label) <= limit else label[: limit - 1] + "…"


def linkify(text: str) -> Markup:
    """Escape `text`; a URL in it becomes a link only on an allow-listed host, normalised
    (links.code_link); any other URL, `javascript:` and the like stay escaped text."""
    out: list[str] = []
    pos = 0
    for m in URL_RE.finditer(text):
        url = code_link(m.group(0))
        if url is None:
            continue
        out.append(f'{escape(text[pos : m.start()])}<a href="{escape(url)}">{escape(_link_label(url))}</a>')
        pos = m.end()
    out.append(str(escape(text[pos:])))
    return Markup("".join(out))  # noqa: S704 - every piece of text was escaped above


def text_references(text: str, label: str, refs: list[tuple[str, str]]) -> str:
    """For the text part: an allow-listed URL (links.code_link) too long for a line becomes a
    Markdown reference `[label-N]`, its normalised definition appended to `refs` (definitions
    may exceed the width). Any other URL stays in the running text, never a link definition."""

    def swap(m: re.Match[str]) -> str:
        url = code_link(m.group(0))  # only an allow-listed URL becomes a reference (a link)
        if url is None or len(m.group(0)) <= TEXT_WIDTH - 2:
            return m.group(0)
        refs.append((f"{label}-{len(refs) + 1}", url))
        return f"[{refs[-1][0]}]"

    return URL_RE.sub(swap, text)


_TAG_RE = re.compile(r"<(/?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?|!--.*?--)>")


def md_text(text: str) -> str:
    """arXiv text for the Markdown part: what looks like an HTML tag gets a backslash (`\\<b>`),
    so a Markdown viewer shows it as text instead of running it; `a<b` stays as it is."""
    return _TAG_RE.sub(r"\\<\1>", text)


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
    import jinja2

    from digestd.errors import ConfigError

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
    try:
        renderer = DigestRenderer(templates, date=date, list_name=list_name, sender=sender)
        renderer.render("check@example.org", [("Sample", [Entry(sample, ("Other",))])])
    except jinja2.TemplateSyntaxError as err:
        where = f"{err.filename or err.name}, line {err.lineno}"
        raise ConfigError(
            f"template {where}: {err.message}; fix it or delete it to use the default"
        ) from None
    except jinja2.TemplateError as err:
        raise ConfigError(f"a digest template in {templates} fails to render: {err}") from None
    except css_inline.InlineError as err:
        raise ConfigError(f"digest.css in {templates} cannot be inlined: {err}") from None
