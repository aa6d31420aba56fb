"""A paper's arXiv text made fit for a digest: shortened, highlighted, linkified, never markup.

arXiv text is untrusted: every function here escapes it first (HTML) or defuses what a
Markdown viewer would run, and only an allow-listed URL (links.code_link) becomes a link.
Pure string functions, so DigestRenderer can call them once per paper and cache the result.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from digestd.core.links import code_link
from digestd.core.text import cut
from digestd.render.templates import TEXT_WIDTH, URL_RE

MAX_AUTHORS = 10  # more than this: the first ten and "et al."
ABSTRACT_CHARS = 320
CODE_HOSTS = frozenset({"github.com", "gitlab.com", "huggingface.co"})  # what a "Code" button names


def shorten_authors(authors: Sequence[str], limit: int = MAX_AUTHORS) -> str:
    """All names up to `limit`; a longer list as its first `limit` and "et al."."""
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
    """Matches the keyword's whole phrase, any case, a hyphen or space between its words
    ("vision-language model" for "Vision Language Model"), a plural "s" allowed at its end.
    A single word of a phrase alone is not a match: it says nothing about the topic."""
    words = re.findall(r"\w+", keyword)
    if not words:
        return None
    body = r"[\s\-\u2010\u2011]+".join(re.escape(w) for w in words)
    return re.compile(rf"(?<![\w-]){body}(?:e?s)?(?![\w-])", re.IGNORECASE)


def code_url(*texts: str | None) -> str | None:
    """The first github.com, gitlab.com or huggingface.co URL in an abstract or comment,
    normalised by links.code_link (so it is a link issue "Trust" allows); None without one."""
    for text in texts:
        for m in URL_RE.finditer(text or ""):
            url = code_link(m.group(0))
            if url is not None and urlsplit(url).hostname in CODE_HOSTS:
                return url
    return None


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
    return cut(re.sub(r"^https?://(www\.)?", "", url), limit)


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
