"""Issue 10, the digest researchers prefer: new vs updated, what every paper shows, phrase
highlighting, subject lines, weekly labels, the size rule, and the golden digests.

Golden files live in tests/data/digests/; DIGESTD_UPDATE_GOLDEN=1 rewrites them after a
deliberate template change (review the diff).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import Inbox
from digest_samples import DATE, KEYWORDS, sample_additions, sample_paper, sample_renderer

from digestd.core.models import Keyword, Paper, Subscriber
from digestd.core.plan import plan
from digestd.core.versions import is_update
from digestd.mail.message import build_message
from digestd.render.digest import count_new_updated, group_for_subscriber
from digestd.render.paper_text import highlighter
from digestd.render.subject import period_label, subject_line

GOLDEN = Path(__file__).resolve().parent / "data" / "digests"
UPDATE = os.environ.get("DIGESTD_UPDATE_GOLDEN") == "1"
KB100 = 100_000


def revised(p: Paper, version: int, first: str) -> Paper:
    """`p` as version `version` of a paper first posted on `first`."""
    return dataclasses.replace(p, version=version, published=f"{first}T12:00:00Z",
                               link=f"https://arxiv.org/abs/{p.id}v{version}",
                               pdf=f"https://arxiv.org/pdf/{p.id}v{version}", comment="Accepted by ECCV 2024")


def day_with_updates(per_keyword: int = 4) -> dict[str, list[Paper]]:
    """Sample additions with the first paper of the first keyword made an update too."""
    adds = sample_additions(per_keyword)
    kw = KEYWORDS[0]
    adds[kw][0] = revised(adds[kw][0], 3, "2024-02-08")  # an update, listed first by arXiv
    return adds


def test_updates_come_after_new_papers_under_their_own_heading() -> None:
    sections = group_for_subscriber(KEYWORDS, day_with_updates(3))  # no sample update: papers 0-2
    text, html = sample_renderer().render("a@example.org", sections)
    first_section = html[html.index('id="kw-1"'):html.index('id="kw-2"')]
    heading = first_section.index("Updated papers (1)")
    old = first_section.index("arXiv:2611.00000v3")
    assert all(first_section.index(f"arXiv:2611.0000{k}") < heading for k in (1, 2))  # new ones first
    assert heading < old and "v3 · first posted 2024-02-08" in first_section[old:]
    assert "Accepted by ECCV 2024" in first_section[old:]
    assert "2 new papers, 1 updated" in first_section  # the keyword's counts
    assert count_new_updated(sections, DATE) == (8, 1)
    assert "<h1" in html and "8 new papers, 1 updated</h1>" in html
    assert "8 new papers, 1 updated: Video Anomaly Detection" in text
    assert "arXiv:2611.00000v3 · v3 · first posted 2024-02-08 · cs.CV cs.LG" in text


def test_what_is_an_update() -> None:
    p = sample_paper(0, KEYWORDS[0], 0)
    assert not is_update(revised(p, 1, "2020-01-01"), "2026-11-23")  # a first version is new
    assert not is_update(revised(p, 2, "2026-11-16"), "2026-11-23")  # 7 days: still new
    assert is_update(revised(p, 2, "2026-11-15"), "2026-11-23")  # 8 days
    assert is_update(revised(p, 4, "2024-02-08"), date(2026, 11, 23))


@pytest.mark.parametrize("updates", [True, False])
def test_updates_false_leaves_updates_out(updates: bool) -> None:
    kw = Keyword("Video Anomaly Detection")
    fresh = sample_paper(1, kw.name, 2)
    old = revised(sample_paper(2, kw.name, 4), 3, "2024-02-08")
    sub = Subscriber("a@example.org", updates=updates)
    out, _ = plan([sub], [kw], {kw.name: [(1, fresh), (1, old)]}, {}, seq=1, start_seq=0,
                  today=date(2026, 11, 23), weekly_day="monday")
    assert sorted(out[0].papers[kw.name]) == sorted([fresh.id, old.id] if updates else [fresh.id])


def test_every_paper_shows_what_a_reader_needs() -> None:
    p = dataclasses.replace(
        sample_paper(7, KEYWORDS[0], 0), authors=tuple(f"Author {i}" for i in range(12)),
        summary="We study video anomaly detection. Weights: https://huggingface.co/lab/model.",
        comment="Accepted at CVPR 2026", categories=("cs.CV", "cs.LG", "eess.IV"))
    plain = dataclasses.replace(p, id="2611.00008", summary="No code. See https://example.org/x", comment=None,
                                link="https://arxiv.org/abs/2611.00008v1", pdf="https://arxiv.org/pdf/2611.00008v1")
    r = sample_renderer()
    card = r.paper_html(KEYWORDS[0], p)  # the one-paper fragment the web archive reuses
    assert card.startswith('<div class="card"') and "arXiv:2611.00007v1" in card
    assert f'<a href="{p.link}"' in card and ">Abstract</a>" in card and ">PDF</a>" in card
    assert ", ".join(f"Author {i}" for i in range(10)) + "&nbsp;et&nbsp;al." in card and "Author 10" not in card
    assert ">cs.CV</span> cs.LG eess.IV" in card and "Accepted at CVPR 2026" in card and p.date in card
    assert 'href="https://arxiv.org/html/2611.00007v1"' in card and ">HTML</a>" in card
    assert 'href="https://huggingface.co/lab/model"' in card and ">Code</a>" in card
    other = r.paper_html(KEYWORDS[0], plain)
    assert ">Code</a>" not in other and 'href="https://example.org' not in other


def test_phrase_highlighting() -> None:
    pat = highlighter("Vision Language Model")
    assert pat is not None
    text = "A vision-language model, a Vision Language Models survey; vision alone, language model alone."
    assert [m.group(0) for m in pat.finditer(text)] == ["vision-language model", "Vision Language Models"]
    _, html = sample_renderer().render("a@example.org", group_for_subscriber(KEYWORDS, sample_additions(2)))
    assert '<span class="hl"' in html and not re.search(r'<span class="hl"[^>]*>(Vision|Model|Video)</span>', html)


def test_subject_lines() -> None:
    s = subject_line("Daily Papers", "2025-12-24", 18, 3, ["Video Anomaly Detection", "A", "B"])
    assert s == "Daily Papers 2025-12-24: 18 new, 3 updated: Video Anomaly Detection +2 more"
    assert subject_line("Daily Papers", "2025-12-24", 1, 0, ["X"]) == "Daily Papers 2025-12-24: 1 new: X"
    long = subject_line("Daily Papers", "week of 2025-12-18", 180, 30, ["Very Long Keyword " * 9, "B"])
    assert len(long) < 100 and long.endswith("… +1 more") and "180 new, 30 updated" in long


def test_weekly_digests_say_so() -> None:
    assert period_label("2025-12-24", weekly=False) == "2025-12-24"
    assert period_label("2025-12-28", weekly=True) == "week of 2025-12-22"
    text, html = sample_renderer().render("a@example.org", group_for_subscriber(KEYWORDS, sample_additions(1)),
                                          period="week of 2026-11-17")
    assert "<title>Daily Papers · week of 2026-11-17</title>" in html and text.startswith(
        "Daily Papers · week of 2026-11-17\n")


def many_papers(n: int) -> dict[str, list[Paper]]:
    per = -(-n // len(KEYWORDS))
    return {kw: [sample_paper(j * 1000 + k, kw, k % 10) for k in range(per)][: n - j * per]
            for j, kw in enumerate(KEYWORDS)}


def test_size_rule_on_a_200_paper_day() -> None:
    adds = many_papers(200)
    text, html = sample_renderer().render("a@example.org", group_for_subscriber(KEYWORDS, adds))
    assert len(html.encode()) < KB100 and len(text.encode()) < KB100
    for papers in adds.values():
        for p in papers:  # title, id and links of every paper stay
            assert f'href="https://arxiv.org/abs/{p.id}v' in html and f"{p.id}v{p.version}" in html
            assert f"[{p.id}]: https://arxiv.org/abs/{p.id}v" in text or f"  https://arxiv.org/abs/{p.id}v" in text
    left = re.search(r"(\d+) abstracts left out to keep this mail small\. <a href=\"([^\"]+)\"", html)
    assert left and left.group(2) == f"https://papers.example.org/days/{DATE}.html"  # the archive's page
    assert int(left.group(1)) == 200 - html.count('class="abstract"')
    assert html.index("left out") < html.index('id="kw-1"')  # said at the top
    assert html.index("Unsubscribe") < html.index('id="kw-1"')  # unsubscribe near the top


def test_size_rule_holds_with_each_readers_marks() -> None:
    """Issue 12's per-reader marks count in the size rule: 250 papers, all "For you", each with
    its signed "More like this" link and every section's "N more" line, for two readers of
    one renderer (the second uses the sizes the first measured)."""
    from digestd.core.morelike import more_like_link

    renderer = sample_renderer()
    sections = group_for_subscriber(KEYWORDS, many_papers(250))
    for email in ("a@example.org", "someone.with.a.much.longer.address@example.org"):
        marked = [(kw, [dataclasses.replace(e, for_you=True, more_like=more_like_link(
            "https://papers.example.org", b"k" * 32, email, e.paper.id)) for e in es]) for kw, es in sections]
        text, html = renderer.render(email, marked, more_in=dict.fromkeys(KEYWORDS, 1234))
        assert len(html.encode()) < KB100 and len(text.encode()) < KB100
        assert html.count(">More like this</a>") == html.count('class="card"') > 0
        assert html.count("1234 more in") == len(KEYWORDS) == text.count("1234 more in")


def test_more_than_250_papers_lists_the_first_250() -> None:
    text, html = sample_renderer().render("a@example.org", group_for_subscriber(KEYWORDS, many_papers(300)))
    assert len(html.encode()) < KB100 and len(text.encode()) < KB100
    assert html.count('href="https://arxiv.org/abs/') >= 250 and "50 more papers not listed" in html
    assert "50 more papers not listed" in text


def test_titles_of_a_thousand_characters_still_fit_by_listing_fewer() -> None:
    """The worst arXiv can send once fields are cut at the fetch edge: 250 papers, each with a
    1,000-character title and 300-character authors. Even one line each is over 100 KB, so
    fewer are listed, and the rest are counted as not listed."""
    adds = {kw: [dataclasses.replace(p, title=("Λ " * 500)[:999] + "…", authors=("x" * 300,) * 10)
                 for p in papers] for kw, papers in many_papers(250).items()}
    text, html = sample_renderer().render("a@example.org", group_for_subscriber(KEYWORDS, adds))
    assert len(html.encode()) < KB100 and len(text.encode()) < KB100
    listed = html.count('class="card"') + html.count('<p class="line"')
    assert 0 < listed < 250
    note = f"{250 - listed} more papers not listed: this mail lists the first {listed}."
    assert note in html and note in " ".join(text.split())
    assert html.index("Unsubscribe") < html.index('id="kw-1"')


def test_table_of_contents_only_with_two_keywords() -> None:
    r = sample_renderer()
    _, one = r.render("a@example.org", group_for_subscriber(KEYWORDS[:1], sample_additions(2)))
    _, three = r.render("a@example.org", group_for_subscriber(KEYWORDS, sample_additions(2)))
    assert "In this digest" not in one
    toc = three[three.index("In this digest"):three.index('id="kw-1"')]
    assert re.findall(r'href="#(kw-\d)"', toc) == ["kw-1", "kw-2", "kw-3"]
    assert "Video Anomaly Detection</a>" in toc and "2 new papers" in toc


def _golden_message(name: str, sections_adds: dict[str, list[Paper]], keywords: list[str],
                    period: str) -> tuple[str, str]:
    r = sample_renderer()
    sections = group_for_subscriber(keywords, sections_adds)
    text, html = r.render("ada@example.org", sections, period=period)
    new, updated = count_new_updated(sections, DATE)
    env = build_message(
        sender="Daily Papers <papers@example.org>", to_email="ada@example.org", to_name="Ada",
        subject=subject_line("Daily Papers", period, new, updated, [kw for kw, _ in sections]),
        when=datetime(2026, 11, 23, 7, 0, tzinfo=UTC),
        msg_id="<golden@example.org>", unsubscribe_url=r.list_unsubscribe("ada@example.org"),
        one_click=True, text=text, html=html, list_name="Daily Papers")
    msg = message_from_bytes(env.data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    parts = {p.get_content_type(): p.get_content() for p in msg.walk() if not p.is_multipart()}
    assert parts["text/plain"].replace("\r\n", "\n") == text and parts["text/html"].replace("\r\n", "\n") == html
    head = "".join(f"{k}: {v}\n" for k, v in msg.items() if k in ("Subject", "From", "To", "List-Id"))
    token = re.compile(r"/unsubscribe/[A-Za-z0-9._~-]+")  # volatile: signed per run
    return token.sub("/unsubscribe/TOKEN", head + "\n" + text), token.sub("/unsubscribe/TOKEN", html)


@pytest.mark.parametrize("name", ["daily", "weekly", "multi-keyword", "oversized"])
def test_golden_digests(name: str) -> None:
    one = {KEYWORDS[0]: day_with_updates()[KEYWORDS[0]]}
    cases = {
        "daily": (one, KEYWORDS[:1], DATE),
        "weekly": (one, KEYWORDS[:1], period_label(DATE, weekly=True)),
        "multi-keyword": (day_with_updates(), KEYWORDS, DATE),
        "oversized": (many_papers(200), KEYWORDS, DATE),
    }
    adds, kws, period = cases[name]
    text, html = _golden_message(name, adds, kws, period)
    assert len(html.encode()) < KB100
    if UPDATE:
        (GOLDEN / f"{name}.txt").write_text(text, encoding="utf-8")
        (GOLDEN / f"{name}.html").write_text(html, encoding="utf-8")
    hint = "the digest changed: review, then DIGESTD_UPDATE_GOLDEN=1 pytest tests/test_digest_features.py"
    assert (GOLDEN / f"{name}.txt").read_text(encoding="utf-8") == text, hint
    assert (GOLDEN / f"{name}.html").read_text(encoding="utf-8") == html, hint


def test_mail_citizenship_markup() -> None:
    """lang, a <title>, headings in order (no level skipped), layout tables marked as such."""
    _, html = sample_renderer().render("a@example.org", group_for_subscriber(KEYWORDS, day_with_updates()))
    assert re.search(r'<html lang="en">', html) and re.search(r"<title>Daily Papers · 2026-11-23</title>", html)
    levels = [int(h) for h in re.findall(r"<h([1-6])\b", html)]
    assert levels[0] == 1 and levels.count(1) == 1 and {2, 3} <= set(levels)
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels
    tables = re.findall(r"<table\b[^>]*>", html)  # also those inside Outlook's conditional comments
    assert len(tables) >= 2 and all('role="presentation"' in t for t in tables), tables


def test_forced_dark_keeps_pairs() -> None:
    """Gmail's and Outlook's forced dark mode invert colours: a block that sets a background
    also sets its text colour, so the pair stays legible after inversion."""
    css = (Path(__file__).resolve().parent.parent / "digestd" / "default_templates" / "digest.css").read_text()
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    rules = re.findall(r"([^{}]+)\{([^}]*)\}", css)
    with_bg = [(sel.strip(), body) for sel, body in rules if "background-color" in body]
    assert len(with_bg) >= 5
    assert [sel for sel, body in with_bg if not re.search(r"(^|;)\s*color:", body)] == []


def test_updates_key_in_subscribers_yaml(tmp_path: Path) -> None:
    from conftest import write_instance

    from digestd.config.load import load_config
    from digestd.errors import ConfigError

    home = write_instance(tmp_path / "ok", ["Video Anomaly Detection"],
                          [{"email": "a@example.org", "updates": False}, {"email": "b@example.org"}])
    subs = load_config(home, {}).subscribers
    assert [s.updates for s in subs] == [False, True]
    bad = write_instance(tmp_path / "bad", ["Video Anomaly Detection"], [{"email": "a@example.org", "updates": "maybe"}])
    with pytest.raises(ConfigError, match=r"updates of a@example\.org must be true or false"):
        load_config(bad, {})


def test_the_phrase_of_an_entry_is_highlighted_not_its_label() -> None:
    """`name: VAD, phrase: video anomaly detection` highlights the phrase; an author entry
    (its name only a label) highlights nothing; a plain keyword highlights its name."""
    from digestd.core.models import Keyword
    from digestd.render.digest import DigestRenderer

    kw = KEYWORDS[0]  # the sample papers of this keyword carry the phrase "Video Anomaly Detection"
    papers = {"VAD": sample_additions(3)[kw]}
    entries = {
        "VAD": Keyword("VAD", phrase=kw),
        "By He": Keyword("By He", authors=("Kaiming He",)),
        "Plain": Keyword(kw),
    }
    assert [e.highlight for e in entries.values()] == [kw, None, kw]

    def spans(highlight: str | None) -> list[str]:
        r = DigestRenderer(None, date=DATE, list_name="Daily Papers", sender="Daily Papers <papers@example.org>",
                           highlights={"VAD": highlight})
        _, html = r.render("a@example.org", group_for_subscriber(["VAD"], papers))
        return re.findall(r'<span class="hl"[^>]*>([^<]*)</span>', html)

    found = spans(entries["VAD"].highlight)
    assert found and all(s.lower().replace("-", " ").rstrip("s") == kw.lower() for s in found), found
    assert spans(entries["By He"].highlight) == []
    r = DigestRenderer(None, date=DATE, list_name="Daily Papers", sender="Daily Papers <papers@example.org>")
    _, html = r.render("a@example.org", group_for_subscriber(["VAD"], papers))
    assert '<span class="hl"' not in html  # without the mapping, the label "VAD" is what would be matched


def test_a_run_highlights_the_phrase_of_an_entry_whose_name_is_a_label(
    tmp_path: Path, smtp: tuple[object, Inbox]
) -> None:
    from conftest import at, run_once, smtp_env, write_instance
    from fakearxiv import FakeArxiv
    from fixtures import make_papers

    controller, inbox = smtp
    phrase = "Video Anomaly Detection"
    home = write_instance(tmp_path, [{"name": "VAD", "phrase": phrase}], [{"email": "a@example.org"}],
                          timezone="UTC")
    with FakeArxiv({phrase: make_papers(phrase, 3, date="2026-11-19")}) as fake:
        run_once(home, fake, now=at("2026-11-19", 21))
        fake.feeds[phrase] = make_papers(phrase, 2, first=50, date="2026-11-20") + fake.feeds[phrase]
        run_once(home, fake, env=smtp_env(controller), now=at("2026-11-20", 21))  # type: ignore[arg-type]
    (msg,) = inbox.messages
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    found = re.findall(r'<span class="hl"[^>]*>([^<]*)</span>', html)
    assert found and {s.lower() for s in found} == {phrase.lower()}, found
