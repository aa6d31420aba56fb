"""The pure core: diff, README cells and markers, keyword queries, config validation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import pytest

from digestd.config.load import load_config
from digestd.core.diff import SuspiciousResponse, diff_keyword, latest
from digestd.core.models import Keyword, Paper
from digestd.errors import ConfigError
from digestd.render.readme import END, START, cell, comment_cell, render_readme, row


def paper(i: int, updated: str = "2026-11-20T10:00:00Z", version: int = 1, **kw: object) -> Paper:
    base = Paper(
        id=f"2611.{i:05d}",
        version=version,
        title=f"Paper {i}",
        link=f"https://arxiv.org/abs/2611.{i:05d}v{version}",
        pdf=None,
        updated=updated,
        published=updated,
        authors=("A",),
        summary="S",
        comment=None,
        categories=("cs.CV",),
        primary_category="cs.CV",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_baseline_stores_without_additions() -> None:
    d = diff_keyword([], [paper(1), paper(2)], seq=1, max_results=100, stale_margin_days=10)
    assert d.baseline and d.additions == () and {p.id for _, p in d.stored} == {"2611.00001", "2611.00002"}
    assert all(s == 0 for s, _ in d.stored)  # seq 0: never mailed


def test_new_version_updates_but_is_not_an_addition() -> None:
    held = [(0, paper(1)), (0, paper(2))]
    v2 = paper(1, updated="2026-11-21T10:00:00Z", version=2)
    d = diff_keyword(
        held,
        [v2, paper(3, updated="2026-11-21T09:00:00Z"), paper(2)],
        seq=5,
        max_results=100,
        stale_margin_days=10,
    )
    assert d.additions == ("2611.00003",) and d.updated == ("2611.00001",)
    stored = {p.id: (s, p) for s, p in d.stored}
    assert stored["2611.00001"][1].version == 2 and stored["2611.00001"][0] == 0
    assert stored["2611.00003"][0] == 5
    older = paper(1, version=1)  # an older version served later never overwrites a newer one
    d2 = diff_keyword(d.stored, [older], seq=6, max_results=100, stale_margin_days=10)
    assert {p.id: p.version for _, p in d2.stored}["2611.00001"] == 2


def test_retention_keeps_newest_and_needed() -> None:
    held = [(0, paper(i, updated=f"2026-11-{10 + i:02d}T00:00:00Z")) for i in range(1, 6)]
    d = diff_keyword(held, [], seq=2, max_results=2, stale_margin_days=10, keep_ids=frozenset({"2611.00001"}))
    assert [p.id for _, p in d.stored] == ["2611.00005", "2611.00004", "2611.00001"]


def test_a_held_paper_from_the_future_does_not_make_new_papers_look_stale() -> None:
    """Stored before such entries were skipped, a 2099 paper made every real one "stale"."""
    held = [(1, paper(1, "2099-01-01T00:00:00Z")), (1, paper(2, "2026-11-19T10:00:00Z"))]
    with pytest.raises(SuspiciousResponse):
        diff_keyword(held, [paper(3)], seq=2, max_results=100, stale_margin_days=10)
    clock = datetime(2026, 11, 21, tzinfo=UTC)
    d = diff_keyword(held, [paper(3)], seq=2, max_results=100, stale_margin_days=10, not_after=clock)
    assert d.additions == ("2611.00003",)
    with pytest.raises(SuspiciousResponse):  # the check itself still holds against real papers
        diff_keyword(held, [paper(4, "2025-01-01T00:00:00Z")], seq=2, max_results=100, stale_margin_days=10,
                     not_after=clock)


def test_known_ids_are_not_mailed_again() -> None:
    held = [(0, paper(2))]
    d = diff_keyword(
        held,
        [paper(1), paper(2)],
        seq=3,
        max_results=10,
        stale_margin_days=10,
        known_ids=frozenset({"2611.00001"}),
    )
    assert d.additions == ()


def test_old_papers_served_as_new_are_refused() -> None:
    held = [(0, paper(1, updated="2026-11-20T10:00:00Z"))]
    with pytest.raises(SuspiciousResponse, match="looks wrong"):
        diff_keyword(
            held, [paper(9, updated="2019-03-01T00:00:00Z")], seq=2, max_results=10, stale_margin_days=10
        )
    ok = diff_keyword(
        held, [paper(9, updated="2026-11-14T00:00:00Z")], seq=2, max_results=10, stale_margin_days=10
    )
    assert ok.additions == ("2611.00009",)  # a few days older is normal (announced later)


def test_latest_is_stable_for_equal_dates() -> None:
    same = [(0, paper(i)) for i in range(5)]
    assert [p.id for p in latest(same, 3)] == ["2611.00000", "2611.00001", "2611.00002"]


def test_cells_escape_pipes_and_tags_and_collapse_whitespace() -> None:
    assert cell("a |  b\n\tc <script>") == "a \\| b c &lt;script>"
    assert comment_cell(None) == "" and comment_cell("12 pages, 3 figures") == "12 pages, 3 figures"
    assert comment_cell("Accepted at ICML 2025 main track") == (
        "<details><summary>Accep...</summary><p>Accepted at ICML 2025 main track</p></details>"
    )
    r = row(paper(1, title="A | B", comment=None))
    assert r.startswith("| **[A \\| B](https://arxiv.org/abs/2611.00001v1)** | 2026-11-20 | ") and r.endswith(
        "|  |\n"
    )


def test_link_text_can_never_end_the_link_early() -> None:
    from digestd.render.readme import link_text

    assert link_text("A [B] C") == "A \\[B\\] C"
    assert link_text("Spatial$\\times$T") == "Spatial$\\times$T"  # as in the snapshots
    for n in range(1, 5):
        text = link_text("x" + "\\" * n)
        assert (len(text) - len(text.rstrip("\\"))) % 2 == 0


def test_markers_replace_only_between() -> None:
    header = jinja2.Environment(keep_trailing_newline=True).from_string("# Daily Papers\n\n")
    existing = f"# Docs\n\nkeep me\n\n{START}\nold\n{END}\n\nfooter\n"
    out = render_readme(header, "2026-11-22", [("KW", [paper(1)])], max_results=100, existing=existing)
    assert out.startswith("# Docs\n\nkeep me\n\n" + START + "\nLast update: 2026-11-22\n\n## KW\n")
    assert out.endswith(f"{END}\n\nfooter\n") and "old" not in out
    whole = render_readme(header, "2026-11-22", [], max_results=100, existing="no markers\n")
    assert whole == "# Daily Papers\n\nLast update: 2026-11-22\n\n"


def test_a_keyword_name_in_a_heading_stays_text() -> None:
    """Was written raw: `<!--` hid every later section on GitHub, `[x](url)` made a link, and
    the archive's day pages did the same with keyword and list names."""
    from digestd.site.days import Day, KeywordDay
    from digestd.site.markdown import day_markdown

    header = jinja2.Environment(keep_trailing_newline=True).from_string("# Daily Papers\n\n")
    names = ["Sparse <!-- attention", "[x](https://evil.example)", "<img src=x>", "Video Anomaly Detection"]
    out = render_readme(header, "2026-11-22", [(n, [paper(1)]) for n in names], max_results=100)
    heads = [line for line in out.splitlines() if line.startswith("## ")]
    assert heads == ["## Sparse &lt;!-- attention", "## [x]\\(https://evil.example)", "## &lt;img src=x>",
                     "## Video Anomaly Detection"]  # a plain name as before: the snapshots stay
    kept = render_readme(header, "2026-11-23", [(n, []) for n in names], max_results=100, existing=out,
                         failed=names)  # a failed keyword's section is still found and kept
    assert kept.replace("2026-11-23", "2026-11-22") == out
    day = day_markdown(Day("2026-11-22", (KeywordDay("<!-- K", (paper(1),), ()),)), "L <!--")
    assert day.startswith("# L &lt;!--: 2026-11-22\n\n## &lt;!-- K\n\n")


def test_keyword_default_queries() -> None:
    assert (
        Keyword("Video Anomaly Detection").search_query
        == 'ti:"Video Anomaly Detection" OR abs:"Video Anomaly Detection"'
    )
    assert Keyword("VLM").search_query == 'ti:"VLM" AND abs:"VLM"'
    assert Keyword("X", query="cat:cs.CV").search_query == "cat:cs.CV"


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("keywords: [A, A]\n", "listed twice"),
        ("keywords:\n  - name: A\n    categories: cs.CV\n", "categories of 'A' must be a list"),
        ("keywords: [A]\nsettings:\n  readme_rows: 0\n", "settings.readme_rows must be a whole number"),
        ("keywords: [A]\nsettings:\n  timezone: Mars/Olympus\n", "unknown timezone"),
        ("keywords: [A]\nsettings:\n  colour: red\n", "unknown setting 'colour'"),
        ("keywords: [A]\nsubscribers:\n  - email: a@example.org\n  - email: A@example.org\n", "listed twice"),
        (
            "keywords: [A]\nsubscribers:\n  - email: a@example.org\n    frequency: hourly\n",
            "'hourly' is not a frequency: use daily or weekly",
        ),
        ("kewords: [A]\n", "unknown top-level key 'kewords'"),
    ],
)
def test_config_errors_name_the_problem(tmp_path: Path, yaml: str, message: str) -> None:
    (tmp_path / "subscribers.yaml").write_text(yaml)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(tmp_path, {})
    assert str(tmp_path / "subscribers.yaml") in str(err.value)


def test_environment_secrets_and_security(tmp_path: Path) -> None:
    (tmp_path / "subscribers.yaml").write_text("keywords: [A]\n")
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = load_config(
        tmp_path,
        {
            "DIGESTD_SMTP_HOST": "mail.example.org",
            "DIGESTD_SMTP_USERNAME": "u",
            "DIGESTD_SMTP_PASSWORD_FILE": str(tmp_path / "pw"),
        },
    )
    assert cfg.smtp is not None and cfg.smtp.port == 587 and cfg.smtp.security == "starttls"
    assert cfg.smtp.password == "s3cret" and "s3cret" not in repr(cfg)
    with pytest.raises(ConfigError, match="in clear"):
        load_config(
            tmp_path,
            {
                "DIGESTD_SMTP_HOST": "h",
                "DIGESTD_SMTP_SECURITY": "none",
                "DIGESTD_SMTP_USERNAME": "u",
                "DIGESTD_SMTP_PASSWORD": "p",
            },
        )
    assert load_config(tmp_path, {"DIGESTD_SMTP_HOST": "h", "DIGESTD_SMTP_SECURITY": "tls"}).smtp.port == 465  # type: ignore[union-attr]
