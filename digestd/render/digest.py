"""Pure: turn additions into per-subscriber digests (HTML and Markdown text).

Cost is per paper, not per subscriber: each keyword section and each paper is rendered and
CSS-inlined once per run, the frame once per run with slots; a digest is string joins.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import quote

import css_inline
from markupsafe import Markup, escape

from digestd.core.models import Paper
from digestd.core.tokens import make_token, manage_link
from digestd.core.versions import is_update
from digestd.render.card import Mode, contexts
from digestd.render.fit import MAX_PAPERS, Size, choose_modes, left_out
from digestd.render.frames import Framed, Slots
from digestd.render.paper_text import highlighter
from digestd.render.templates import html_env, read_asset, template_errors, text_env, wrap
from digestd.site.urls import day_url, paper_anchor, slug

SLOT_NAMES = ("count_text", "keywords_text", "headline", "body", "email", "unsubscribe_url", "also",
              "period", "top", "manage_url", "online_url", "for_you", "more_like")
PART_NAMES = ("paper", "paper_line", "section", "updated", "top", "more")  # <name>.html.j2 and .txt.j2
PER_READER = ("also", "for_you", "more_like")  # a paper's slots, filled per subscriber
FOR_YOU_TEXT = "For you: close to your interests\n"


@dataclass(frozen=True, slots=True)
class Entry:
    """A paper in one subscriber's digest, with the other keywords it also matched, whether
    it is above the reader's relevance bar, and the reader's signed "more like this" link."""

    paper: Paper
    also: tuple[str, ...] = ()
    for_you: bool = False
    more_like: str | None = None


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


def count_new_updated(sections: Sections, today: str) -> tuple[int, int]:
    """(new, updated) papers in a digest: an update is a revision of an older paper."""
    updated = sum(1 for _, entries in sections for e in entries if is_update(e.paper, today))
    return count_papers(sections) - updated, updated


def counts_text(new: int, updated: int) -> str:
    """"18 new papers, 3 updated" (the updated part only when there are some)."""
    text = plural(new, "new paper")
    return f"{text}, {updated} updated" if updated else text


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def mailto_unsubscribe(sender_addr: str, email: str) -> str:
    """The mailto: form of unsubscribing: a message to the sender naming the address."""
    return f"mailto:{quote(sender_addr, safe='@')}?subject={quote('unsubscribe ' + email, safe='@')}"


@dataclass(frozen=True, slots=True)
class _Listed:
    """One paper as placed in one digest: its keyword, whether it is an update, its entry."""

    keyword: str
    update: bool
    entry: Entry


class DigestRenderer:
    """Renders digests for one run; caches every per-paper fragment (per keyword and Mode).

    `paper_html` gives one paper's HTML fragment alone, as it looks in the digest (the web
    archive shows papers with it).
    """

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
        slugs: Mapping[str, str] | None = None,
        paper_days: Mapping[tuple[str, str], str] | None = None,
        highlights: Mapping[str, str | None] | None = None,
    ) -> None:
        self.date = date
        self.highlights = highlights or {}  # keyword -> the phrase to highlight (None: nothing)
        self.slugs = slugs or {}  # keyword -> the site's slug (site.days.slugs); else urls.slug
        self.paper_days = paper_days or {}  # (keyword, id) -> the day page holding it; else `date`
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
        self._slots = Slots()
        slots = {name: Markup(self._slots.marker(name)) for name in SLOT_NAMES}  # noqa: S704 - fixed text
        # `manage`: digests carry a "Manage your subscription" link (public_url and a key set)
        common = {"date": date, "list_name": list_name, "slots": slots, "manage": self.one_click,
                  "day_url": day_url(self.public_url, date)}  # the archive's page of this day, or None
        frame = self._html.get_template("digest.html.j2").render(common)
        dark = read_asset(templates, "digest-dark.css")
        dark = dark.replace("</", "<\\/")  # an instance's CSS cannot end the <style> block
        style = f'<style type="text/css">\n{dark}</style>\n' if dark.strip() else ""
        self._frame_html = self._framed(inliner.inline(frame).replace("</head>", style + "</head>", 1))
        self._frame_text = self._framed(self._text.get_template("digest.txt.j2").render(common))
        self._parts = {  # loaded up front, so a broken template is named before any digest
            name: (self._html.get_template(f"{name}.html.j2"), self._text.get_template(f"{name}.txt.j2"))
            for name in PART_NAMES
        }
        also = '<p class="also">also in: ' + self._slots.marker("also") + "</p>"
        self._also_html = self._framed(self._fragment(also))
        self._for_you_html = self._fragment('<span class="foryou">For you</span> ')
        like = '<a class="button" href="' + self._slots.marker("more_like") + '">More like this</a>'
        self._like_html = self._framed(self._fragment(like))
        self._papers: dict[tuple[str, str, Mode], tuple[Framed, Framed]] = {}
        self._fragments: dict[tuple[str, str], str] = {}
        self._patterns: dict[str, re.Pattern[str] | None] = {}
        self._also: dict[tuple[str, ...], tuple[str, str]] = {}
        self._sizes: dict[tuple[str, str, Mode, tuple[str, ...], bool, bool], tuple[int, int]] = {}
        self._updates: dict[str, bool] = {}
        self.common = common

    def _framed(self, text: str) -> Framed:
        return Framed(text, self._slots)

    def _fragment(self, html: str) -> str:
        return css_inline.inline_fragment(html, self._css)

    def _once(self, name: str, ctx: Mapping[str, object]) -> tuple[str, str]:
        """(inlined HTML, text) of a small template pair, rendered once per distinct values."""
        key = (name, repr(sorted(ctx.items())))
        if key not in self._fragments:
            full = {**self.common, **ctx}
            html_t, text_t = self._parts[name]
            self._fragments[key] = self._fragment(html_t.render(full))
            self._fragments[(name + ".txt", key[1])] = text_t.render(full)
        return self._fragments[key], self._fragments[(name + ".txt", key[1])]

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

    def manage_url(self, email: str) -> str:
        """The link to the subscriber's manage page (`digestd serve`), or "" without public_url."""
        if self.public_url and self.secret:
            return manage_link(self.public_url, self.secret, email)
        return ""

    def list_unsubscribe(self, email: str) -> str:
        """The List-Unsubscribe header value (RFC 2369; the https one first, RFC 8058)."""
        mailto = f"<{self.mailto(email)}>"
        return f"<{self.unsubscribe_url(email)}>, {mailto}" if self.one_click else mailto

    def _paper(self, keyword: str, paper: Paper, mode: Mode) -> tuple[Framed, Framed]:
        key = (keyword, paper.id, mode)
        if key not in self._papers:
            if keyword not in self._patterns:
                phrase = self.highlights.get(keyword, keyword)
                self._patterns[keyword] = highlighter(phrase) if phrase else None
            html_ctx, text_ctx = contexts(paper, self._patterns[keyword], today=self.date, mode=mode,
                                          more_url=self._more_url(keyword, paper.id))
            name = "paper_line" if mode is Mode.LINE else "paper"
            html_t, text_t = self._parts[name]
            html = html_t.render({**self.common, **html_ctx})
            text = text_t.render({**self.common, **text_ctx})
            self._papers[key] = (self._framed(self._fragment(html)), self._framed(text))
        return self._papers[key]

    def _more_url(self, keyword: str, paper_id: str) -> str | None:
        """A paper's card on its day page (issue "Archive"), None without public_url."""
        page = day_url(self.public_url, self.paper_days.get((keyword, paper_id), self.date))
        if page is None:
            return None
        return f"{page}#{paper_anchor(self.slugs.get(keyword) or slug(keyword), paper_id)}"

    def paper_html(self, keyword: str, paper: Paper) -> str:
        """One paper's HTML fragment (CSS inlined) as the digest shows it, with nothing per reader."""
        return self._paper(keyword, paper, self._start_mode)[0].fill(dict.fromkeys(PER_READER, ""))

    def paper_line_check(self, paper: Paper) -> None:
        """Render the one-line form once (check_templates: a broken one is named up front)."""
        self._paper("Sample", paper, Mode.LINE)

    @property
    def _start_mode(self) -> Mode:
        return Mode.FULL if self.full_abstracts else Mode.SHORT

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

    def _filled(self, item: _Listed, mode: Mode) -> tuple[str, str]:
        """One paper's fragments with this reader's values in its slots."""
        e = item.entry
        p_html, p_text = self._paper(item.keyword, e.paper, mode)
        also_html, also_text = self._also_parts(e.also)
        like = e.more_like if e.more_like and self.public_url else None
        like_html = self._like_html.fill({"more_like": str(escape(like))}) if like else ""
        html = p_html.fill({"also": also_html, "for_you": self._for_you_html if e.for_you else "",
                            "more_like": like_html})
        text = p_text.fill({"also": also_text, "for_you": FOR_YOU_TEXT if e.for_you else "",
                            "more_like": f"More like this: {like}\n" if like else ""})
        return html, text

    def _listed(self, sections: Sections, cap: int) -> tuple[list[tuple[str, list[_Listed]]], int]:
        """Per keyword, new papers then updates, at most `cap` in all; and how many more."""
        out: list[tuple[str, list[_Listed]]] = []
        room = cap
        for keyword, entries in sections:
            flags = [self._is_update(e.paper) for e in entries]
            items = [_Listed(keyword, False, e) for e, u in zip(entries, flags, strict=True) if not u]
            items += [_Listed(keyword, True, e) for e, u in zip(entries, flags, strict=True) if u]
            if items[:room]:
                out.append((keyword, items[:room]))
            room -= len(items[:room])
        return out, count_papers(sections) - sum(len(items) for _, items in out)

    def _is_update(self, paper: Paper) -> bool:
        if paper.id not in self._updates:
            self._updates[paper.id] = is_update(paper, self.date)
        return self._updates[paper.id]

    def _skeleton(self, listed: list[tuple[str, list[_Listed]]], more: Mapping[str, int],
                  ) -> tuple[list[tuple[str, str]], list[int]]:
        """The section and "updated" headings in order, where each paper goes among them, and
        under a listing's papers how many more it had today (issue "Follow")."""
        parts: list[tuple[str, str]] = []
        slots: list[int] = []
        for n, (keyword, items) in enumerate(listed, 1):
            new = sum(1 for it in items if not it.update)
            parts.append(self._once("section", {"keyword": keyword, "anchor": f"kw-{n}", "count": len(items),
                                                "counts": counts_text(new, len(items) - new)}))
            for j in range(len(items)):
                if j == new:  # items hold the new papers first, then the updates
                    parts.append(self._once("updated", {"count": len(items) - new}))
                slots.append(len(parts))
                parts.append(("", ""))
            if more.get(keyword, 0) > 0:
                when = "" if keyword.lower().endswith("today") else " today"  # "Computer Vision today"
                text = f"{more[keyword]} more in {keyword}{when}"
                parts.append(self._once("more", {"text": text, "url": day_url(self.public_url, self.date)}))
        return parts, slots

    def render(self, email: str, sections: Sections, *, period: str | None = None,
               more_in: Mapping[str, int] | None = None) -> tuple[str, str]:
        """(text, html) of one digest: string joins of fragments rendered once per run, sized
        to fit (render.fit); `period` names a weekly digest's week (default: the date);
        `more_in`: per listing keyword, how many papers its `top` left out for this reader."""
        updated = sum(1 for _, entries in sections for e in entries if self._is_update(e.paper))
        new = count_papers(sections) - updated
        cap = MAX_PAPERS
        while True:
            listed, more = self._listed(sections, cap)
            items = [it for _, its in listed for it in its]
            parts, slots = self._skeleton(listed, more_in or {})
            toc = tuple((f"kw-{n}", kw, counts_text(sum(1 for i in its if not i.update),
                                                    sum(1 for i in its if i.update)))
                        for n, (kw, its) in enumerate(listed, 1)) if len(listed) > 1 else ()
            fixed = self._assemble(email, parts, (new, updated), tuple(kw for kw, _ in listed), period,
                                   self._once("top", {"toc": toc, "notes": (), "online": None}))
            size = self._sizer(items)
            fixed_sizes = (len(fixed[1].encode()), len(fixed[0].encode()))
            modes, fit = choose_modes(len(items), self._start_mode, fixed_sizes, size)
            if fit == len(items) or cap <= 1:
                break
            cap = max(1, fit)  # a pathological day: list fewer papers, each on one line
        for i, slot in enumerate(slots):
            parts[slot] = self._filled(items[i], modes[i])
        notes = []
        if left_out(modes):
            notes.append(f"{plural(left_out(modes), 'abstract')} left out to keep this mail small.")
        if more:
            notes.append(f"{plural(more, 'more paper')} not listed: this mail lists the first {len(items)}.")
        online = self._online(period) if notes else None
        top = self._once("top", {"toc": toc, "notes": tuple(notes), "online": online})
        return self._assemble(email, parts, (new, updated), tuple(kw for kw, _ in listed), period, top)

    def _sizer(self, items: Sequence[_Listed]) -> Size:
        """Each listed paper's (HTML, text) bytes in a mode, cached per run across readers."""

        def size(i: int, mode: Mode) -> tuple[int, int]:
            it = items[i]
            e = it.entry  # a reader's link differs only in its fixed-length reader id
            key = (it.keyword, e.paper.id, mode, e.also, e.for_you, bool(e.more_like))
            if key not in self._sizes:  # per run, like the fragments: subscribers share them
                h, t = self._filled(it, mode)
                self._sizes[key] = (len(h.encode()), len(t.encode()))
            return self._sizes[key]

        return size

    def _online(self, period: str | None) -> str | None:
        """Where the whole digest can be read (issue "Archive"): the day's page, or for a
        weekly digest the archive's index; None without public_url."""
        if not self.public_url:
            return None
        if period in (None, self.date):
            return day_url(self.public_url, self.date)
        return f"{self.public_url}/index.html"

    def _assemble(self, email: str, parts: Sequence[tuple[str, str]], counts: tuple[int, int],
                  keywords: tuple[str, ...], period: str | None, top: tuple[str, str]) -> tuple[str, str]:
        count_text = counts_text(*counts)
        joined = " · ".join(keywords)
        when = period or self.date
        url = self.unsubscribe_url(email)
        html = self._frame_html.fill({
            "count_text": str(escape(count_text)),
            "keywords_text": str(escape(joined)).replace(" · ", "\u00a0· "),
            "headline": str(escape(f"{count_text}: {joined}")),
            "period": str(escape(when)), "top": top[0], "also": "",
            "email": str(escape(email)), "unsubscribe_url": str(escape(url)),
            "manage_url": str(escape(self.manage_url(email))),
            "online_url": str(escape(self._online(period) or "")),
            "body": "".join(h for h, _ in parts),
        })
        text = self._frame_text.fill({
            "count_text": count_text, "keywords_text": wrap(joined),
            "headline": wrap(f"{count_text}: {joined}"), "period": when, "top": top[1], "also": "",
            "email": email, "unsubscribe_url": url, "manage_url": self.manage_url(email),
            "online_url": self._online(period) or "",
            "body": "".join(t for _, t in parts),
        })
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
        old = dataclasses.replace(sample, id="0000.00001", version=2, published="2000-01-01T00:00:00Z")
        other = dataclasses.replace(sample, id="0000.00002")
        renderer.render("check@example.org", [("Sample", [Entry(sample, ("Other",), True), Entry(old)]),
                                              ("Other", [Entry(other)])], more_in={"Other": 2})
        renderer.paper_line_check(sample)
