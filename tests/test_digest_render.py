"""The digest itself: HTML that parses cleanly and says what it must, escaping, the text/plain
part's Markdown, the render-once design, `preview --open`, and the docs' rendered example.

docs/digest-example.html and .txt are the README's example; DIGESTD_UPDATE_SCREENSHOTS=1
rewrites them (and the screenshots, see test_browser.py) after a template change.
"""

from __future__ import annotations

import os
import re
import stat
from html.parser import HTMLParser
from pathlib import Path

import css_inline
import html5lib
import pytest
from conftest import at, run_once, write_instance
from digest_samples import (
    DATE,
    KEYWORDS,
    SECRET,
    sample_additions,
    sample_digest,
    sample_paper,
    sample_renderer,
)
from fakearxiv import FakeArxiv
from fixtures import make_papers

from digestd.core.models import Paper
from digestd.render import digest as render_mod
from digestd.render.digest import DigestRenderer, group_for_subscriber
from digestd.render.paper_text import highlighter, md_text, shorten_authors
from digestd.render.templates import TEXT_WIDTH, wrap

DOCS = Path(__file__).resolve().parent.parent / "docs"
UPDATE = os.environ.get("DIGESTD_UPDATE_SCREENSHOTS") == "1"


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text, as the stdlib parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def attrs(self, name: str) -> list[str]:
        return [str(a[name]) for _, a in self.tags if name in a]

    def of(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and (cls is None or cls in str(a.get("class", "")).split())]


def strict_parse(html: str) -> None:
    """html5lib in strict mode raises on any parse error (bad nesting, stray tags, bad doctype)."""
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(html)


def card_of(html: str, paper_id: str) -> str:
    """The HTML of one paper's card."""
    start = html.index(f'href="https://arxiv.org/abs/{paper_id}')
    start = html.rindex('<div class="card"', 0, start)
    return html[start : html.index("</div>", start)]


@pytest.mark.parametrize("variant", ["excerpts", "full", "mailto"])
def test_html_is_well_formed_and_self_contained(variant: str) -> None:
    kwargs: dict[str, object] = {"full": {"full_abstracts": True}, "mailto": {"public_url": None},
                                 "excerpts": {}}[variant]
    _, html = sample_digest(**kwargs)
    strict_parse(html)
    doc = Elements(html)
    tags = {t for t, _ in doc.tags}
    assert not tags & {"script", "img", "link", "iframe", "object", "embed", "form", "video", "audio"}
    assert doc.attrs("src") == [] and doc.attrs("srcset") == [] and doc.attrs("background") == []
    assert not [a for _, attrs in doc.tags for a in attrs if a.startswith("on")]  # no event handlers
    hrefs = doc.attrs("href")
    assert hrefs and all(re.match(r"^(https?://|mailto:|#kw-\d+$)", h) for h in hrefs), hrefs
    assert html.count("<style") == 1 and 'style="' in html  # CSS inlined; only the dark block stays
    assert re.search(r"<head>.*<style[^>]*>\s*/\*.*@media \(prefers-color-scheme: dark\).*</style>\s*</head>", html, re.S)
    assert '<meta name="color-scheme" content="light dark">' in html and "color-scheme: light dark" in html
    assert "max-width: 640px" in html and 'name="viewport"' in html
    assert len(html.encode()) < 102_000  # Gmail clips longer messages ("[Message clipped]")


def test_what_a_digest_shows() -> None:
    _, html = sample_digest()
    doc = Elements(html)
    text = " ".join(doc.text)
    assert DATE in text and "27 new papers, 3 updated" in text
    assert "Video Anomaly Detection\u00a0· Vision Language Model\u00a0· Diffusion Policy" in html
    assert [h.strip() for h in re.findall(r'<h2 class="kw"[^>]*>([^<]*)', html)] == KEYWORDS

    first = card_of(html, "2611.00000")
    p = sample_paper(0, KEYWORDS[0], 0)
    assert f'<a href="{p.link}"' in first  # the title links to the abstract page
    assert 'Prompt-Guided <span class="hl"' in first and ">Video Anomaly Detection</span> with Frozen" in first
    assert f">{', '.join(p.authors)}</p>" in first and len(p.authors) == 3  # three authors: all of them
    assert f">{p.date}<" not in first and f"{p.date} · " in first and ">cs.CV</span>" in first
    assert "Accepted to CVPR 2026; 14 pages, 9 figures; code:" in first
    assert 'href="https://github.com/some-research-lab/a-rather-long-repository-name' in first
    assert ">github.com/some-research-lab/a-rather-long-repo…</a>" in first  # a short label
    assert f'href="{p.pdf}"' in first and ">PDF</a>" in first
    assert "also in: Vision Language Model" in first  # shared with the second keyword
    assert 'class="more"' in first and "more&nbsp;›" in first  # the abstract is cut...
    assert p.summary not in first and ">video anomaly detection</span> rely" in first  # ...highlighted
    assert html.count('href="https://arxiv.org/abs/2611.00000v1"') == 2  # title, Abstract
    day = f"https://papers.example.org/days/{DATE}.html"  # with public_url: "more" opens the day page
    assert re.search(rf'<a class="more" href="{re.escape(day)}#video-anomaly-detection--2611-00000"', first)
    assert html.count(f'href="{day}"') == 1 and ">Read online</a>" in html

    crowd = sample_paper(4, KEYWORDS[0], 4)
    assert len(crowd.authors) == 41
    assert f">{', '.join(crowd.authors[:10])}&nbsp;et&nbsp;al.</p>" in card_of(html, crowd.id)

    _, full = sample_digest(per_keyword=3, full_abstracts=True)  # 30 full abstracts do not fit
    assert 'class="more"' not in full
    assert "Code and models will be released to facilitate future research on" in card_of(full, "2611.00000")


def test_untrusted_text_is_escaped() -> None:
    key = SECRET
    evil = Paper(
        id="2611.09999", version=1,
        title='Video <script>alert("t")</script> Anomaly & Detection @@slot:body@@ <img src=x onerror=alert(1)>',
        link='https://arxiv.org/abs/2611.09999v1" onmouseover="alert(1)',
        pdf="https://arxiv.org/pdf/2611.09999v1?a=1&b=<2>",
        updated="2026-11-23T10:00:00Z", published="2026-11-23T10:00:00Z",
        authors=("O'Brien <b>Bold</b>", 'Eve "Quotes" & Co'),
        summary="Abstract with </p><script>x()</script> and https://e.example/?q=<b>&x=\"y\" inside.",
        comment='See <a href="javascript:alert(1)">here</a> & https://e.example/a"b',
        categories=("cs.CV",), primary_category="cs.CV<x>",
    )
    renderer = DigestRenderer(None, date=DATE, list_name="Papers <b>&", sender="P <papers@example.org>",
                              public_url="https://papers.example.org", secret=key)
    text, html = renderer.render('x"<y>@example.org', group_for_subscriber(
        ["<b>Video</b> Anomaly"], {"<b>Video</b> Anomaly": [evil]}))
    strict_parse(html)
    doc = Elements(html)
    assert {t for t, _ in doc.tags} & {"script", "img", "b"} == set()
    assert not [a for _, attrs in doc.tags for a in attrs if a.startswith("on")]
    hrefs = doc.attrs("href")  # the paper's unsafe links are rebuilt from its id (digestd/core/links.py)
    assert "https://arxiv.org/abs/2611.09999v1" in hrefs and "https://arxiv.org/pdf/2611.09999v1" in hrefs
    assert not [h for h in hrefs if '"' in h or "<" in h or "onmouseover" in h]
    assert not [h for h in doc.attrs("href") if h.startswith("javascript")]
    all_text = "".join(doc.text)
    assert '<script>alert("t")</script>' in all_text and "@@slot:body@@" in all_text  # shown, as text
    assert "Papers <b>&" in all_text and 'x"<y>@example.org' in all_text and "<b>Video</b> Anomaly" in all_text
    assert "&amp;" in html and "&lt;script&gt;" in html
    # The text part shows the same text, with tag-like parts made harmless for Markdown viewers.
    assert '\\<script>alert("t")\\</script>' in text and "@@slot:body@@" in text
    from_arxiv = text.replace("Papers <b>&", "").replace("<b>Video</b> Anomaly", "")  # the config's own
    assert not re.search(r"(?<!\\)<(script|img|b|a|/p)\b", from_arxiv)


def test_text_part_is_wrapped_markdown() -> None:
    text, _ = sample_digest(email="a-rather-long-address.for-testing@example.org")
    lines = text.splitlines()
    too_long = [line for line in lines if len(line) > TEXT_WIDTH]
    assert too_long, "the sample has long URLs"
    # long lines: link definitions, or a URL off the allow-list kept as text (never cut, never a link)
    assert all(
        re.match(r"^\[[^\]]+\]: (https?://|mailto:)\S+$", line) or re.fullmatch(r"\S*https://a\.example/b+\S*", line)
        for line in too_long
    ), too_long
    assert not re.search(r"(?<!\\)</?[a-zA-Z][^>]*>", text)  # no HTML tags
    # Every reference used is defined, and every definition is used.
    defined = dict(re.findall(r"^\[([^\]]+)\]: (\S+)$", text, re.M))
    body = re.sub(r"^\[[^\]]+\]: \S+$", "", text, flags=re.M)
    used = set(re.findall(r"\]\[([^\]]+)\]", body)) | set(re.findall(r"(?<!\])\[([^\]]+)\](?![\[(:])", body))
    assert used <= set(defined) and {"unsubscribe", "2611.00000", "2611.00000-pdf", "2611.00000-1"} <= used
    assert set(defined) - used == set()
    assert defined["2611.00000"] == "https://arxiv.org/abs/2611.00000v1"
    assert defined["unsubscribe"].startswith("https://papers.example.org/unsubscribe/")
    # Keyword headings and paper titles are setext headings (they may span lines).
    assert "Video Anomaly Detection (9 new papers, 1 updated)\n=================================================\n" in text
    assert "\nUpdated papers (1): new versions of earlier papers\n" in text
    title = "Weakly Supervised Video Anomaly Detection via Temporal Context Aggregation and"
    assert f"{title}\nUncertainty-Aware Pseudo-Label Refinement\n{'-' * len(title)}\n" in text
    assert "Also in: Vision Language Model" in text and "[more][2611.00000-more]" in text
    assert f"\n[2611.00000-more]: https://papers.example.org/days/{DATE}.html#video-anomaly-detection--2611-00000\n" in text
    assert "\nRead online: [online]\n" in text and defined["online"] == f"https://papers.example.org/days/{DATE}.html"
    assert text.startswith(f"Daily Papers · {DATE}\n\n27 new papers, 3 updated: ")
    assert not [line for line in lines if line != line.rstrip()]  # no trailing spaces


def test_small_pieces() -> None:
    assert shorten_authors(["A", "B", "C", "D", "E"]) == "A, B, C, D, E"
    assert shorten_authors([str(i) for i in range(10)]) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
    assert shorten_authors([str(i) for i in range(11)]) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9 et al."
    assert highlighter("?!") is None
    assert md_text("x <b>y</b> a<b and 3 < 4") == "x \\<b>y\\</b> a<b and 3 < 4"
    assert wrap("word " * 30).count("\n") == 1 and max(map(len, wrap("word " * 30).splitlines())) <= 78
    long_word = "x" * 200
    assert all(len(line) <= 78 for line in wrap(f"a {long_word} b").splitlines())
    url = "https://example.org/" + "y" * 100
    assert url in wrap(f"see {url} there").splitlines()  # a URL is never cut


def test_each_fragment_is_rendered_and_inlined_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Per run, not per subscriber: 200 digests inline exactly as often as one."""
    calls = []
    real = css_inline.inline_fragment

    def counting(html: str, css: str) -> str:
        calls.append(1)
        return real(html, css)

    monkeypatch.setattr(render_mod.css_inline, "inline_fragment", counting)
    renderer = sample_renderer()
    adds = sample_additions()
    one = group_for_subscriber(KEYWORDS, adds)
    some = group_for_subscriber(KEYWORDS[1:], adds)
    renderer.render("first@example.org", one)
    first = len(calls)
    for i in range(200):
        renderer.render(f"user{i}@example.org", one if i % 2 else some)
    # New fragments: only the second keyword's section with another count, and the shared paper's
    # card under it (in `some` it is not "also" anything).
    assert len(calls) - first <= 3 + 1  # and the table of contents of two keywords
    # "also in", "For you" and "More like this" (made up front), 3 sections, one "Updated
    # papers (1)" heading shared by all three, 30 papers (the shared one once), the table of contents
    assert first == 3 + 3 + 1 + 30 + 1


def test_instance_templates_override_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "digest.css").write_text(".card { border: 3px dashed #ff0000; }\n", encoding="utf-8")
    (tmp_path / "section.txt.j2").write_text("### {{ keyword }}\n\n", encoding="utf-8")
    r = DigestRenderer(tmp_path, date=DATE, list_name="L", sender="papers@example.org")
    text, html = r.render("a@example.org", group_for_subscriber(KEYWORDS, sample_additions(1)))
    assert "border: 3px dashed #ff0000" in html and "### Video Anomaly Detection\n" in text


def test_preview_open_uses_the_default_browser(tmp_path: Path) -> None:
    from conftest import cli

    home = write_instance(tmp_path / "inst", ["Video Anomaly Detection"], [{"email": "alice@example.org"}],
                          timezone="UTC")
    with FakeArxiv({"Video Anomaly Detection": make_papers("Video Anomaly Detection", 3, date="2026-11-19")}) as f:
        run_once(home, f, now=at("2026-11-19"))
    record = tmp_path / "opened.txt"
    browser = tmp_path / "fake-browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s" "$1" > "{record}"\n', encoding="utf-8")
    browser.chmod(browser.stat().st_mode | stat.S_IXUSR)
    done = cli(home, "preview", "alice@example.org", "--open", env={"BROWSER": str(browser)})
    assert done.returncode == 0, done.stderr
    uri = record.read_text()
    assert uri.startswith("file:///") and uri.endswith(".html")
    page = Path(uri.removeprefix("file://")).read_text(encoding="utf-8")
    assert "3 new papers" in page and "Video Anomaly Detection" in page
    strict_parse(page)
    Path(uri.removeprefix("file://")).unlink()
    assert done.stdout == "" and "wrote " in done.stderr


def test_docs_example_is_current() -> None:
    """The README's rendered example is what the templates produce now."""
    text, html = sample_digest(per_keyword=4, marks=True)  # the fourth paper of each keyword is an update
    if UPDATE:
        (DOCS / "digest-example.html").write_text(html, encoding="utf-8")
        (DOCS / "digest-example.txt").write_text(text, encoding="utf-8")
    hint = "the templates changed: DIGESTD_UPDATE_SCREENSHOTS=1 pytest tests/test_digest_render.py tests/test_browser.py"
    assert (DOCS / "digest-example.html").read_text(encoding="utf-8") == html, hint
    assert (DOCS / "digest-example.txt").read_text(encoding="utf-8") == text, hint


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("paper.html.j2", b"<div>\n{% if %}\n</div>\n", "paper.html.j2, line 2"),
        ("section.txt.j2", b"### \xff{{ keyword }}\n", "is not UTF-8 text"),
        ("digest.css", b".card { color: \xfe; }\n", "is not UTF-8 text"),
    ],
)
def test_preview_names_a_broken_template_in_one_sentence(
    tmp_path: Path, name: str, content: bytes, said: str
) -> None:
    from conftest import cli

    home = write_instance(tmp_path / "inst", ["Video Anomaly Detection"], [{"email": "alice@example.org"}])
    (home / "templates").mkdir(exist_ok=True)
    (home / "templates" / name).write_bytes(content)
    proc = cli(home, "preview", "alice@example.org")
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_per_reader_marks_and_the_more_line() -> None:
    """Issue 12: "For you", "More like this" and "N more in <listing> today" are per reader
    (slots, not the cached card): two readers of one renderer get their own."""
    from dataclasses import replace

    renderer = sample_renderer()
    adds = sample_additions(3)
    plain = group_for_subscriber(KEYWORDS[:1], adds)
    mine = [(kw, [replace(e, for_you=i == 1, more_like=f"https://papers.example.org/more/t&{i}")
                  for i, e in enumerate(es)]) for kw, es in plain]
    text, html = renderer.render("a@example.org", mine, more_in={KEYWORDS[0]: 12})
    other_text, other = renderer.render("b@example.org", plain)
    second = card_of(html, mine[0][1][1].paper.id)
    assert html.count(">For you</span>") == 1 and ">For you</span>" in second
    assert html.count(">More like this</a>") == 3 and 'href="https://papers.example.org/more/t&amp;1"' in second
    assert text.count("For you: close to your interests") == 1
    assert "More like this: https://papers.example.org/more/t&1\n" in text
    day = f"https://papers.example.org/days/{DATE}.html"
    assert re.search(rf'<p class="morein"[^>]*><a href="{re.escape(day)}"[^>]*>12 more in {KEYWORDS[0]} today</a>', html)
    assert f"\n12 more in {KEYWORDS[0]} today\n{day}\n" in text
    assert "For you" not in other + other_text and "More like this" not in other + other_text
    assert "more in" not in other + other_text
    _, bare = sample_renderer(public_url=None).render("a@example.org", mine, more_in={KEYWORDS[0]: 12})
    assert "More like this" not in bare and ">Read online<" not in bare  # no public_url: nothing to link
    assert re.search(rf'<p class="morein"[^>]*>12 more in {KEYWORDS[0]} today</p>', bare)


def test_an_instance_paper_template_without_the_new_slots_still_renders(tmp_path: Path) -> None:
    """An instance's paper.html.j2 from before issue 12 (only `slots.also`): marks are dropped,
    nothing breaks."""
    (tmp_path / "paper.html.j2").write_text('<div class="card"><a href="{{ paper.link }}">{{ title }}</a>'
                                             "{{ slots.also }}</div>\n", encoding="utf-8")
    from dataclasses import replace

    r = DigestRenderer(tmp_path, date=DATE, list_name="L", sender="papers@example.org",
                       public_url="https://papers.example.org", secret=SECRET)
    marked = [(kw, [replace(e, for_you=True, more_like="https://papers.example.org/more/x") for e in es])
              for kw, es in group_for_subscriber(KEYWORDS, sample_additions(1))]
    _, html = r.render("a@example.org", marked)
    assert html.count('class="card"') == 3 and "More like this" not in html and "also in:" in html
