"""Issue 12, point 2: category listings. Paging in slices of at most 2,000 with arXiv's pace,
cross-lists unless primary_only, each reader's `top` papers (most relevant, or newest) and how
many more, and the README section's latest readme_rows."""

from __future__ import annotations

import copy
import json
import re
import tempfile
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from conftest import Inbox, at, cli, run_once, smtp_env, write_instance
from fakearxiv import FakeArxiv
from fixtures import make_papers
from test_interests import SEED_000, SEED_001, VAD, deliveries, mixed_feed, parse_seed

from digestd.config.load import load_config
from digestd.core.models import Keyword
from digestd.errors import ConfigError
from digestd.source.arxiv import ArxivSource

CV = "Computer Vision today"


def test_a_listing_of_2500_is_fetched_in_two_slices_at_arxivs_pace() -> None:
    papers = make_papers("cat:cs.CV", 2500, date="2026-11-20")
    with FakeArxiv({"cat:cs.CV": papers}) as fake:
        (kw,) = _keywords({"name": CV, "listing": "cs.CV"})
        assert kw.search_query == "cat:cs.CV"
        source = ArxivSource(fake.url, delay=0.4, timeout=30)
        got = source.fetch_listing(kw, 10_000, since=papers[-1].updated)
        reqs = list(fake.requests)
    assert [p.id for p in got] == [p.id for p in papers]
    assert [(r.params["start"], r.params["max_results"]) for r in reqs] == [("0", "2000"), ("2000", "2000")]
    assert all(r.params["sortBy"] == "lastUpdatedDate" for r in reqs)
    assert reqs[1].at - reqs[0].at >= 0.4  # one request per `delay` (3 s against arXiv itself)


def test_paging_stops_once_a_slice_reaches_what_is_held() -> None:
    papers = make_papers("cat:cs.CV", 2500, date="2026-11-20")
    with FakeArxiv({"cat:cs.CV": papers}) as fake:
        (kw,) = _keywords({"name": CV, "listing": ["cs.CV"]})
        got = ArxivSource(fake.url, delay=0).fetch_listing(kw, 10_000, since=papers[150].updated)
        assert len(fake.requests) == 1 and len(got) == 2000


def _keywords(*entries: object) -> tuple[Keyword, ...]:
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / "subscribers.yaml").write_text(json.dumps({"keywords": list(entries)}))
        return load_config(Path(home), {}).keywords


def test_a_listing_digest_has_each_readers_top_and_how_many_more(
    tmp_path: Path, smtp: tuple[Controller, Inbox]
) -> None:
    feed = copy.deepcopy(mixed_feed())
    for p in feed[1:4]:  # three cross-lists from cs.LG: left out with primary_only
        p.categories, p.primary_category = ["cs.LG", "cs.CV"], "cs.LG"
    liked = parse_seed(SEED_000)[VAD][:6]
    entry = {"name": CV, "listing": "cs.CV", "primary_only": True, "top": 5}
    subs = [{"email": "alice@example.org"}, {"email": "bob@example.org", "interests": [p.id for p in liked]}]
    write_instance(tmp_path, [entry], subs, timezone="UTC", readme_rows=8,
                   public_url="https://papers.example.org/")
    env = smtp_env(smtp[0], DIGESTD_SECRET="s3cret-for-tests-only-0123456789")
    with FakeArxiv() as fake:
        fake.extra = liked
        fake.feeds["cat:cs.CV"] = feed[-2:]
        run_once(tmp_path, fake, env=env, now=at("2025-12-20"))
        fake.feeds["cat:cs.CV"] = feed
        run_once(tmp_path, fake, env=env, now=at("2025-12-23"))
    new = [p for p in feed[:-2] if p.primary_category == "cs.CV"]
    got = deliveries(tmp_path)
    alice, bob = got["alice@example.org"], got["bob@example.org"]
    assert list(alice.papers[CV]) == [p.id for p in new[:5]]  # no interests: the newest
    assert alice.more == {CV: len(new) - 5}
    vad = {p.id for p in parse_seed(SEED_001)[VAD]}
    assert len(bob.papers[CV]) == 5 and set(bob.papers[CV]) <= vad  # the most relevant to him
    assert bob.more == {CV: len(new) - 5}
    day = "https://papers.example.org/days/2025-12-23.html"
    for who in ("alice@example.org", "bob@example.org"):  # the mailed digests say so, and link the day
        (mail,) = smtp[1].to(who)
        html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
        line = f"{len(new) - 5} more in {CV}"  # the keyword ends in "today": not said twice
        assert re.search(rf'<p class="morein"[^>]*><a href="{re.escape(day)}"[^>]*>{line}</a></p>', html), html
        assert f"\n{line}\n{day}\n" in text
        assert html.index(line) > max(html.index(f"arXiv:{i}v") for i in got[who].papers[CV])  # under its papers
    assert (tmp_path / "site" / "days" / "2025-12-23.html").is_file()
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    section = readme.split(f"## {CV}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| **[")]
    shown = [p for p in feed if p.primary_category == "cs.CV"][:8]
    assert len(rows) == 8 and all(p.title in row for p, row in zip(shown, rows, strict=True))
    assert not any(p.title in readme for p in feed[1:4])


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": CV, "listing": "cs.VC"}, "'cs.VC' is not an arXiv category (did you mean cs.CV?)"),
    ({"name": CV, "listing": []}, "must be a category or a list"),
    ({"name": CV, "listing": "cs.CV", "top": 0}, "the top of 'Computer Vision today' must be a whole number"),
    ({"name": CV, "listing": "cs.CV", "primary_only": "yes"}, "must be true or false"),
    ({"name": CV, "top": 5}, "`top:` is for listings"),
    ({"name": CV, "listing": "cs.CV", "authors": ["A B"]}, "a listing cannot have"),
])
def test_bad_listings_are_refused(tmp_path: Path, entry: object, message: str) -> None:
    write_instance(tmp_path, [entry], [])
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, {})
    assert message in str(err.value) and ", line " in str(err.value)


def test_keywords_list_json_keeps_a_listings_keys(tmp_path: Path) -> None:
    write_instance(tmp_path, [{"name": CV, "listing": "cs.CV", "primary_only": True, "top": 5}], [])
    proc = cli(tmp_path, "keywords", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [{"name": CV, "listing": ["cs.CV"], "primary_only": True, "top": 5}]
