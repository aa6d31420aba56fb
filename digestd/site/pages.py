"""Pure given the templates: the index and the day pages of the site, as HTML text.

Each paper is the digest's own HTML for it (DigestRenderer.paper_html, full abstract), so the
page shows it exactly as a digest does. Links between pages are relative, so any web server
can serve site/ as it is; every text is escaped by the templates' autoescaping. The filter
box is made by the small inline script: with JavaScript off it is simply not there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from markupsafe import Markup

from digestd.core.models import Paper
from digestd.render.digest import DigestRenderer
from digestd.render.templates import html_env, read_asset
from digestd.site.days import Day, KeywordDay
from digestd.site.urls import paper_anchor

FILTER_SCRIPT = """
(function () {
  var slot = document.querySelector('[data-filter-slot]');
  if (!slot) return;
  var items = [].slice.call(document.querySelectorAll('.item'));
  var texts = items.map(function (li) { return (li.getAttribute('data-filter') || '').toLowerCase(); });
  var label = document.createElement('label');
  label.htmlFor = 'filter';
  label.textContent = 'Filter: ';
  var input = document.createElement('input');
  input.type = 'search';
  input.id = 'filter';
  input.autocomplete = 'off';
  input.placeholder = 'title, author or arXiv id';
  var out = document.createElement('output');
  out.setAttribute('aria-live', 'polite');
  slot.appendChild(label);
  slot.appendChild(input);
  slot.appendChild(out);
  input.addEventListener('input', function () {
    var words = input.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    items.forEach(function (li, i) {
      var ok = words.every(function (w) { return texts[i].indexOf(w) >= 0; });
      li.hidden = !ok;
      if (ok) shown++;
    });
    [].forEach.call(document.querySelectorAll('.kw-section'), function (s) {
      s.hidden = !s.querySelector('.item:not([hidden])');
    });
    out.textContent = words.length ? shown + ' of ' + items.length + ' shown' : '';
  });
})();
"""


@dataclass(frozen=True, slots=True)
class PageContext:
    """What every page needs: the instance's templates and names."""

    templates: Path | None
    list_name: str
    sender: str
    slugs: Mapping[str, str]
    highlights: Mapping[str, str | None] = field(default_factory=dict)  # as the digest highlights


def _raw(text: str) -> Markup:
    """Our own CSS or script inside <style>/<script>, which HTML never unescapes: it goes as
    it is, with any `</` made harmless so it cannot end the element early."""
    return Markup(text.replace("</", "<\\/"))  # noqa: S704 - fixed text of ours or the instance's CSS


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def filter_text(paper: Paper) -> str:
    """What the filter box matches: id, title and authors (escaped by the template)."""
    return " ".join((paper.id, paper.title, *paper.authors))


class PageRenderer:
    """Renders pages. One DigestRenderer serves every day (making one compiles the digest's
    templates: 0.14 s, 50 s for a year of days); its `date`, which a card's "updated" label is
    relative to, is set to each day before that day's cards. Its per-paper cache is keyed by
    keyword and id, and a paper is on one day per keyword, so no card is reused across days."""

    def __init__(self, ctx: PageContext) -> None:
        self.ctx = ctx
        env = html_env(ctx.templates)
        self._day_t = env.get_template("site_day.html.j2")
        self._index_t = env.get_template("site_index.html.j2")
        self._css = _raw(read_asset(ctx.templates, "site.css"))
        self._script = _raw(FILTER_SCRIPT)
        self._cards_renderer: DigestRenderer | None = None

    def _renderer(self, day: str) -> DigestRenderer:
        if self._cards_renderer is None:
            self._cards_renderer = DigestRenderer(self.ctx.templates, date=day, list_name=self.ctx.list_name,
                                                  sender=self.ctx.sender, full_abstracts=True,
                                                  highlights=self.ctx.highlights)
        self._cards_renderer.date = day
        return self._cards_renderer

    def _cards(
        self, renderer: DigestRenderer, kd: KeywordDay, papers: Sequence[Paper]
    ) -> list[dict[str, object]]:
        """Each paper as the digest shows it (its HTML comes escaped from the digest's templates)."""
        anchor = self.ctx.slugs[kd.keyword]
        return [{"filter": filter_text(p), "anchor": paper_anchor(anchor, p.id),
                 "card": Markup(renderer.paper_html(kd.keyword, p))}  # noqa: S704
                for p in papers]

    def day_page(self, day: Day, newer: str | None, older: str | None) -> str:
        renderer = self._renderer(day.day)
        sections = [
            {
                "keyword": kd.keyword,
                "slug": self.ctx.slugs[kd.keyword],
                "count": kd.count,
                "new": self._cards(renderer, kd, kd.new),
                "updated": self._cards(renderer, kd, kd.updated),
            }
            for kd in day.keywords
        ]
        total = sum(kd.count for kd in day.keywords)
        return self._day_t.render(
            list_name=self.ctx.list_name, day=day.day, sections=sections, newer=newer, older=older,
            summary=f"{plural(total, 'paper')} · {plural(len(sections), 'keyword')}",
            css=self._css, script=self._script,
        )

    def index_page(self, days: Sequence[Day], keywords: Sequence[str]) -> str:
        rows = [
            {
                "day": d.day,
                "keywords": d.keywords,
                "filter": " ".join(
                    [d.day, *(kd.keyword for kd in d.keywords),
                     *(filter_text(p) for kd in d.keywords for p in (*kd.new, *kd.updated))]
                ),
            }
            for d in days
        ]
        kws = [{"keyword": k, "slug": self.ctx.slugs[k]} for k in keywords]
        return self._index_t.render(
            list_name=self.ctx.list_name, days=rows, keywords=kws,
            summary=f"{plural(len(days), 'day')} of new papers, newest first",
            css=self._css, script=self._script,
        )
