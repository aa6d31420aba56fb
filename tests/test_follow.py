"""Issue 12, point 1 and the config part of point 6: friendlier keyword entries (authors,
phrase, exclude, categories) become the arXiv query `keywords list` shows; exclusions are
checked again locally; bad entries exit 2 naming file, line and entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import cli, run_once, write_instance
from fakearxiv import FakeArxiv
from fixtures import make_papers

from digestd.config.load import load_config
from digestd.core.query import excluded
from digestd.errors import ConfigError

FORMS: list[tuple[Any, str]] = [
    ("Video Anomaly Detection", 'ti:"Video Anomaly Detection" OR abs:"Video Anomaly Detection"'),
    ({"name": "He", "authors": ["Kaiming He", "Ross Girshick"]}, 'au:"Kaiming He" OR au:"Ross Girshick"'),
    (
        {"name": "He on VAD", "authors": ["Kaiming He"], "phrase": "video anomaly detection"},
        '(au:"Kaiming He") AND (ti:"video anomaly detection" OR abs:"video anomaly detection")',
    ),
    (
        {"name": "VLM", "phrase": "vision language model", "exclude": ["survey", "medical imaging"]},
        '(ti:"vision language model" OR abs:"vision language model") ANDNOT '
        '(ti:"survey" OR abs:"survey" OR ti:"medical imaging" OR abs:"medical imaging")',
    ),
    (
        {"name": "Authors minus surveys", "authors": ["A B", "C D"], "exclude": "survey"},
        '(au:"A B" OR au:"C D") ANDNOT (ti:"survey" OR abs:"survey")',
    ),
    ({"name": "Raw", "query": "cat:cs.CV AND ti:tracking", "exclude": ["survey"]},
     '(cat:cs.CV AND ti:tracking) ANDNOT (ti:"survey" OR abs:"survey")'),
    ({"name": "Cats", "categories": ["cs.CV", "eess.IV"]}, 'ti:"Cats" AND abs:"Cats"'),
]


@pytest.mark.parametrize(("entry", "query"), FORMS, ids=[str(i) for i in range(len(FORMS))])
def test_each_entry_form_builds_its_query(tmp_path: Path, entry: Any, query: str) -> None:
    write_instance(tmp_path, [entry], [])
    (kw,) = load_config(tmp_path, {}).keywords
    assert kw.search_query == query


def test_keywords_list_shows_the_built_queries(tmp_path: Path) -> None:
    write_instance(tmp_path, [e for e, _ in FORMS], [])
    proc = cli(tmp_path, "keywords", "list")
    assert proc.returncode == 0, proc.stderr
    for _, query in FORMS:
        assert f"query: {query}" in proc.stdout


def test_exclusions_match_at_word_starts_in_title_or_abstract() -> None:
    assert excluded("A Survey of X", "", ["survey"])
    assert excluded("X", "We give surveys of\n  medical   imaging.", ["medical imaging"])
    assert excluded("X", "Surveys.", ["survey"])
    assert not excluded("Resurveying X", "nothing here", ["survey"])
    assert not excluded("A survey", "abc", [])


def test_an_author_entry_keeps_the_daily_papers_section_and_drops_excluded_papers(tmp_path: Path) -> None:
    entry = {"name": "Papers by Kaiming He", "authors": ["Kaiming He"], "exclude": ["survey"]}
    write_instance(tmp_path, [entry], [], timezone="UTC")
    papers = make_papers("Kaiming He", 4, date="2026-11-19")
    papers[1].title = "A Survey of Everything"  # arXiv's stemmer may let it through: dropped here
    with FakeArxiv({"Kaiming He": papers}) as fake:
        report = run_once(tmp_path, fake)
        sent = fake.requests[0].params["search_query"]
    assert not report.partial
    assert sent == '(au:"Kaiming He") ANDNOT (ti:"survey" OR abs:"survey")'
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Papers by Kaiming He\n", 1)[1]
    assert section.startswith("| **Title** | **Date** | **Abstract** | **Comment** |\n| --- | --- | --- | --- |\n")
    assert "A Survey of Everything" not in readme
    for p in (papers[0], papers[2], papers[3]):
        assert p.title in section


BAD: list[tuple[Any, str]] = [
    ({"name": "He", "authors": ["Kaiming He", "  "]}, "author name 2 of 'He' is empty"),
    ({"name": "He", "authors": []}, "the authors of 'He' must be a list"),
    ({"name": "V", "categories": ["cs.VC"]}, "keyword 'V': 'cs.VC' is not an arXiv category (did you mean cs.CV?)"),
    ({"name": "V", "categories": ["CS.cv"]}, "did you mean cs.CV?"),
    ({"name": "V", "exclude": ['a "b"']}, "must not contain quotes"),
    ({"name": "V", "phrase": ""}, ": the phrase of 'V' is empty"),  # was "the the phrase"
    ({"name": "V", "exclude": [5]}, "the excluded phrase 1 of 'V' must be text, not '5'"),  # was "is empty"
    ({"name": "V", "authors": [["Y Z"]]}, "the author name 1 of 'V' must be text, not \"['Y Z']\""),
    ({"name": "V", "query": "au:x", "authors": ["Y Z"]}, "either `query:` or `authors:`"),
    ({"name": "V", "autors": ["Y Z"]}, "did you mean 'authors'?"),
]


@pytest.mark.parametrize(("entry", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_entry_is_refused_naming_file_and_line(tmp_path: Path, entry: Any, message: str) -> None:
    write_instance(tmp_path, ["Fine", entry], [])
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, {})
    text = str(err.value)
    assert message in text
    assert text.startswith(f"{tmp_path / 'subscribers.yaml'}, line ")


def test_an_empty_author_exits_2_with_one_sentence_and_changes_nothing(tmp_path: Path) -> None:
    write_instance(tmp_path, [{"name": "He", "authors": ["Kaiming He", ""]}], [])
    before = sorted(p.name for p in (tmp_path / "state").iterdir())
    proc = cli(tmp_path, "run")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    line = next(n for n, t in enumerate((tmp_path / "subscribers.yaml").read_text().splitlines(), 1) if '""' in t)
    assert f"subscribers.yaml, line {line}: the author name 2 of 'He' is empty" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == before
