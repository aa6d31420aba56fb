"""The archive site: files per day, valid Atom feeds, rebuilds byte for byte, retention."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import faultkit
import feedparser
import pytest
from aiosmtpd.controller import Controller
from conftest import Inbox, at, cli, run_once, smtp_env, wait_for, write_instance
from fakearxiv import FakeArxiv
from faultkit import additions, day_feeds, run_cli, spawn_run, two_keyword_home
from fixtures import make_paper, make_papers
from lxml import etree
from site_seed import (
    DAY1,
    DAY2,
    EVIL_TITLE,
    KW_A,
    KW_B,
    PUBLIC,
    SECRET_ENV,
    SLUG_A,
    SLUG_B,
    seed,
    site_files,
    write_archive,
)
from smtpfaults import Faults, FaultServer

from digestd.config.load import load_config
from digestd.pipeline import RunOptions
from digestd.site.build import render_site
from digestd.site.days import slugs
from digestd.site.urls import day_url, paper_anchor, slug
from digestd.store.archive import ArchiveStore

SCHEMA = Path(__file__).parent / "data" / "atom" / "atom.rng"
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return seed(tmp_path_factory.mktemp("site") / "inst")


def test_slug() -> None:
    assert slug("Video Anomaly Detection") == "video-anomaly-detection"
    assert slug("Vision-Language Models (VLM)") == "vision-language-models-vlm"
    assert slug("  C++ / ÜML  ") == "c-ml"
    assert slugs(["a b", "A-B", "all"]) == {"a b": "a-b", "A-B": "a-b-2", "all": "all-2"}


def test_a_slug_without_ascii_letters_or_cut_short_does_not_depend_on_the_other_keywords() -> None:
    """Before, every keyword without a-z0-9 was `keyword`, `keyword-2`... in config order:
    adding one in front moved the others' feeds to each other's URLs."""
    cjk = ["視覺語言模型", "異常檢測"]
    assert slugs(cjk)["異常檢測"] == slugs(cjk[1:])["異常檢測"] == slug("異常檢測")
    assert slug("視覺語言模型") != slug("異常檢測") and slug("視覺語言模型").startswith("keyword-")
    long_a, long_b = "x" * 100 + "a", "x" * 100 + "b"  # the same first 80 characters
    assert slugs([long_a, long_b])[long_b] == slugs([long_b])[long_b]
    assert slug(long_a) != slug(long_b) and len(slug(long_a)) <= 80


def test_the_site_has_a_page_per_day_feeds_and_notes(seeded: Path) -> None:
    files = site_files(seeded)
    assert sorted(files) == sorted([
        f"archive/{DAY1}.md", f"archive/{DAY2}.md", "site/feeds/all.atom", f"site/feeds/{SLUG_A}.atom",
        f"site/feeds/{SLUG_B}.atom", f"site/days/{DAY1}.html", f"site/days/{DAY2}.html", "site/index.html",
    ])  # the baseline day added nothing: it has no page
    index = files["site/index.html"].decode()
    assert index.index(f'href="days/{DAY2}.html"') < index.index(f'href="days/{DAY1}.html"')  # newest first
    assert f"{KW_A}: 3" in index and f"{KW_B}: 1" in index and f"{KW_A}: 1" in index
    assert f'href="feeds/{SLUG_A}.atom"' in index and 'type="application/atom+xml"' in index
    day2 = files[f"site/days/{DAY2}.html"].decode()
    assert "<script>alert" not in day2 and "&lt;script&gt;alert" in day2  # arXiv text escaped
    assert "2611.00020" in day2 and "2611.00010" not in day2  # the v2 of a day-1 paper is not a day-2 addition
    day1 = files[f"site/days/{DAY1}.html"].decode()
    assert "arXiv:2611.00010v2" in day1  # its day-1 card shows the newest version
    assert f'<link rel="alternate" type="application/atom+xml" title="Daily Papers: {KW_A}"' in day1
    assert re.search(r'<(img|link)[^>]+(src|href)="(https?:)?//', day1) is None  # nothing loaded from elsewhere
    assert len(re.findall(r"<script>", day1)) == 1
    note = files[f"archive/{DAY1}.md"].decode()
    assert note.startswith(f"# Daily Papers: {DAY1}\n") and f"## {KW_A}\n" in note
    assert note.count("| **[") == 4 and "https://arxiv.org/abs/2611.00012v1" in note


def _feeds(home: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((home / "site" / "feeds").glob("*.atom"))}


def test_feeds_are_valid_atom(seeded: Path) -> None:
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    for name, data in _feeds(seeded).items():
        doc = etree.fromstring(data)
        assert schema.validate(doc), f"{name}: {schema.error_log}"
        parsed = feedparser.parse(data)
        assert parsed.bozo == 0, f"{name}: {parsed.get('bozo_exception')}"
        assert parsed.version == "atom10"
        assert parsed.feed.id == f"{PUBLIC}/feeds/{name}"
        assert any(link.rel == "self" and link.href == f"{PUBLIC}/feeds/{name}" for link in parsed.feed.links)
        ids = [e.id for e in parsed.entries]
        assert ids and len(ids) == len(set(ids))
        for e in parsed.entries:  # RFC 4287 4.1.2: every entry has an id, a title and updated
            assert e.id.startswith("https://arxiv.org/abs/2611.") and "v" not in e.id.rsplit("/", 1)[1]
            assert e.title and e.updated and e.summary and e.authors and e.tags
            rels = {link.rel: link.href for link in e.links}
            assert rels["alternate"].startswith("https://arxiv.org/abs/") and rels["related"].startswith("https://arxiv.org/pdf/")
    parsed = feedparser.parse(_feeds(seeded)[f"{SLUG_A}.atom"])
    by_id = {e.id: e for e in parsed.entries}
    assert by_id["https://arxiv.org/abs/2611.00020"].title == EVIL_TITLE  # text, never markup
    updated = by_id["https://arxiv.org/abs/2611.00010"]  # version 2 came: same id, later `updated`
    assert updated.updated == f"{DAY2}T12:00:00Z" and updated.link.endswith("2611.00010v2")
    assert len(feedparser.parse(_feeds(seeded)["all.atom"]).entries) == 5


def test_schema_and_parser_catch_a_broken_feed(seeded: Path) -> None:
    """The checks above can fail: a feed without its id, or cut short, is refused."""
    data = _feeds(seeded)[f"{SLUG_A}.atom"]
    schema = etree.RelaxNG(etree.parse(str(SCHEMA)))
    no_id = re.sub(rb"<id>[^<]*</id>", b"", data, count=1)
    assert not schema.validate(etree.fromstring(no_id))
    assert feedparser.parse(data[: len(data) // 2]).bozo == 1


def test_feed_keeps_the_latest_feed_entries(seeded: Path) -> None:
    cfg = load_config(seeded, SECRET_ENV)
    cfg = dataclasses.replace(cfg, settings=dataclasses.replace(cfg.settings, feed_entries=2))
    with_store = ArchiveStore(cfg.paths.archive_db, read_only=True)
    files = render_site(cfg, with_store.entries(), with_store.runs())
    with_store.close()
    entries = feedparser.parse(files[f"site/feeds/{SLUG_A}.atom"]).entries
    assert [e.id.rsplit("/", 1)[1] for e in entries] == ["2611.00020", "2611.00010"]  # day 2 first, then v2 of day 1


def test_site_build_rebuilds_byte_for_byte(seeded: Path, tmp_path: Path) -> None:
    home = tmp_path / "copy"
    shutil.copytree(seeded, home)
    before = site_files(home)
    shutil.rmtree(home / "site")
    (home / "archive" / f"{DAY1}.md").write_text("changed by hand\n")
    (home / "archive" / "2020-01-01.md").write_text("a day long gone\n")
    (home / "archive" / "notes.txt").write_text("not ours\n")
    done = cli(home, "site", "build", env=SECRET_ENV)
    assert done.returncode == 0, done.stderr
    assert "2 day(s)" in done.stdout
    after = site_files(home)
    assert after.pop("archive/notes.txt") == b"not ours\n"  # only files digestd names are removed
    assert after == before
    again = cli(home, "site", "build", env=SECRET_ENV)
    assert "0 file(s) written, 0 removed" in again.stdout  # nothing changed: nothing rewritten


def test_a_dry_run_writes_no_site(tmp_path: Path) -> None:
    home = write_instance(tmp_path / "inst", [KW_A], [], timezone="UTC")
    with FakeArxiv({KW_A: make_papers(KW_A, 3, date="2026-11-18")}) as fake:
        run_once(home, fake, now=at("2026-11-18"), options=RunOptions(dry_run=True))
    assert not (home / "site").exists() and not (home / "archive").exists()
    assert not (home / "state" / "archive.json").exists()


def test_days_leave_after_archive_days_and_papers_stay_after_the_store_drops_them(tmp_path: Path) -> None:
    home = write_instance(tmp_path / "inst", [KW_A], [], timezone="UTC", max_results=3, archive_days=2)
    with FakeArxiv({KW_A: make_papers(KW_A, 3, date="2026-11-10")}) as fake:
        run_once(home, fake, now=at("2026-11-10"))
        for n, day in enumerate(("2026-11-11", "2026-11-12", "2026-11-13")):
            fake.feeds[KW_A] = [*make_papers(KW_A, 3, first=10 * (n + 1), date=day), *fake.feeds[KW_A]]
            run_once(home, fake, now=at(day))
            if day == "2026-11-12":
                page = (home / "site" / "days" / "2026-11-11.html").read_text()
                assert all(f"2611.000{i}" in page for i in (10, 11, 12))  # papers.json kept 3, none of them
    days = sorted(p.name for p in (home / "site" / "days").iterdir())
    assert days == ["2026-11-12.html", "2026-11-13.html"]  # 11-11 is over 2 days before the last run
    assert sorted(p.name for p in (home / "archive").iterdir()) == ["2026-11-12.md", "2026-11-13.md"]
    store = ArchiveStore(home / "state" / "archive.json", read_only=True)
    assert {e.day for e in store.entries()} == {"2026-11-12", "2026-11-13"}
    assert sorted(store.runs().values()) == ["2026-11-12", "2026-11-13"]
    store.close()


def test_a_very_long_keyword_name_still_gets_its_feed_and_the_index(tmp_path: Path) -> None:
    long_kw = "L" + "o" * 300 + "ng"  # its whole slug as a file name is over 255 bytes
    home = write_instance(tmp_path / "inst", [long_kw, KW_A], [], timezone="UTC")
    feeds = {long_kw: make_papers(long_kw, 3, date="2026-11-18"),
             KW_A: make_papers(KW_A, 3, first=100, date="2026-11-18")}
    with FakeArxiv(feeds) as fake:
        run_once(home, fake, now=at("2026-11-18"))
        fake.feeds[long_kw] = [make_paper(9, long_kw, "2026-11-19"), *fake.feeds[long_kw]]
        report = run_once(home, fake, now=at("2026-11-19"))
    assert report.messages == []  # before: "the site was not updated: ... File name too long"
    names = sorted(p.name for p in (home / "site" / "feeds").iterdir())
    assert f"{slug(KW_A)}.atom" in names and "all.atom" in names
    assert (home / "site" / "index.html").exists()
    assert max(len(n.encode()) for n in names) <= 100


def test_a_broken_archive_is_named_and_the_run_goes_on(tmp_path: Path) -> None:
    home = write_instance(tmp_path / "inst", [KW_A], [], timezone="UTC")
    (home / "state" / "archive.json").write_text('{"entries": {"1": {"day": "yesterday"}}}')
    with FakeArxiv({KW_A: make_papers(KW_A, 3, date="2026-11-18")}) as fake:
        first = run_once(home, fake, now=at("2026-11-18"))
        fake.feeds[KW_A] = [make_paper(9, KW_A, "2026-11-19"), *fake.feeds[KW_A]]
        report = run_once(home, fake, now=at("2026-11-19"))
    assert any("archive.json" in m and "moved to archive.json.corrupt-" in m for m in first.messages), first.messages
    assert report.keywords[0].new == ("2611.00009",) and report.messages == []
    assert (home / "site" / "days" / "2026-11-19.html").exists()  # the next run starts it afresh


def test_the_digest_gets_its_day_page_url(seeded: Path) -> None:
    """Issue 11 point 4: the digest's templates get `day_url` (None without public_url), and
    the card there has the anchor `paper_anchor` names."""
    from digestd.render.digest import DigestRenderer

    assert day_url(None, DAY1) is None
    url = day_url(PUBLIC + "/", DAY1)
    assert url == f"{PUBLIC}/days/{DAY1}.html"
    renderer = DigestRenderer(None, date=DAY1, list_name="Daily Papers", sender="p@example.org",
                              public_url=PUBLIC, secret=b"s" * 40)
    assert renderer.common["day_url"] == url
    assert DigestRenderer(None, date=DAY1, list_name="L", sender="p@example.org").common["day_url"] is None
    page = (seeded / "site" / "days" / f"{DAY1}.html").read_text()
    assert f'id="{paper_anchor(SLUG_A, "2611.00011")}"' in page and f'id="{paper_anchor(SLUG_B, "2611.00111")}"' in page


def test_a_killed_build_leaves_a_working_site(tmp_path: Path) -> None:
    """SIGKILL in the middle of `digestd site build`: every file is whole, every link of the
    index resolves, and the next build sweeps the temp files and finishes the job."""
    home = seed(tmp_path / "inst")
    days = write_archive(home, 200, 4)
    env = {**os.environ, **SECRET_ENV}
    env.pop("DIGESTD_HOME", None)
    proc = subprocess.Popen([sys.executable, "-m", "digestd", "--home", str(home), "site", "build"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (home / "site" / "days" / f"{days[-3]}.html").exists() or proc.poll() is not None)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build ended before it was killed: make it slower"
    index = (home / "site" / "index.html").read_text()
    for page in (home / "site").rglob("*.html"):
        assert page.read_text().endswith("</html>\n"), page
    for link in re.findall(r'href="((?:days|feeds)/[^"#]+)"', index):
        assert (home / "site" / link).is_file(), link
    for feed in (home / "site" / "feeds").glob("*.atom"):
        etree.parse(str(feed))
    done = cli(home, "site", "build", env=SECRET_ENV)
    assert done.returncode == 0, done.stderr
    assert not list(home.rglob(".*.tmp"))
    store = ArchiveStore(home / "state" / "archive.json", read_only=True)
    want = render_site(load_config(home, SECRET_ENV), store.entries(), store.runs())
    store.close()
    got = site_files(home)
    assert {k: v.decode() for k, v in got.items()} == want


def test_papers_of_a_run_killed_before_it_recorded_its_day_reach_the_site(tmp_path: Path) -> None:
    """SIGKILL while the run sends (its papers stored, the archive not yet written): the next
    run, which stores nothing new, puts the killed run's papers on its day page and in the
    archive notes. Before, they were never archived: the site and archive/ lost them."""
    home = two_keyword_home(tmp_path)
    with FakeArxiv(day_feeds(1)) as fake, FaultServer(Faults()) as srv:
        assert run_cli(home, fake, srv.env()).returncode == 0  # the baseline
        fake.feeds.update(day_feeds(2))
        srv.faults.slow_data.append(60.0)  # the first digest hangs at its final "."
        proc = spawn_run(home, fake, srv.env())
        try:
            wait_for(lambda: srv.kinds("rcpt") or proc.poll() is not None)
        finally:
            proc.kill()
            proc.communicate()
        assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
        srv.faults.slow_data.clear()  # the kill may come before that digest's DATA
        done = run_cli(home, fake, srv.env())
        assert done.returncode == 0, done.stderr
    new = additions(2, faultkit.KW_A) | additions(2, faultkit.KW_B)
    notes = "".join(p.read_text() for p in (home / "archive").glob("*.md"))
    pages = "".join(p.read_text() for p in (home / "site" / "days").glob("*.html"))
    assert all(i in notes for i in new), sorted(i for i in new if i not in notes)
    assert all(i in pages for i in new), sorted(i for i in new if i not in pages)


def test_new_and_updated_apart_as_the_digest_says() -> None:
    """A version 2 of a paper first posted over a week before the day is "updated" (issue 10)."""
    from digestd.core.models import Paper
    from digestd.site.days import group_days
    from digestd.store.archive import ArchiveEntry

    def paper(i: str, version: int, published: str) -> Paper:
        return Paper(i, version, f"T{i}", f"https://arxiv.org/abs/{i}v{version}", None, f"{DAY2}T10:00:00Z",
                     f"{published}T10:00:00Z", ("A",), "S", None, ("cs.CV",), "cs.CV")

    entries = [ArchiveEntry(DAY2, KW_A, paper("2611.00001", 1, DAY2)),
               ArchiveEntry(DAY2, KW_A, paper("2611.00002", 2, "2026-10-01")),
               ArchiveEntry(DAY2, KW_A, paper("2611.00003", 2, "2026-11-17"))]
    (day,) = group_days(entries, [KW_A])
    (kd,) = day.keywords
    assert [p.id for p in kd.new] == ["2611.00003", "2611.00001"] and [p.id for p in kd.updated] == ["2611.00002"]


@pytest.mark.parametrize(("key", "value"), [("archive_days", 0), ("feed_entries", 0), ("feed_entries", "many")])
def test_bad_settings_are_refused_in_one_sentence(tmp_path: Path, key: str, value: object) -> None:
    home = write_instance(tmp_path / "inst", [KW_A], [], **{key: value})
    done = cli(home, "site", "build")
    assert done.returncode == 2 and f"settings.{key}" in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_digest_that_leaves_abstracts_out_links_to_its_day_page(tmp_path: Path) -> None:
    """Issue 11 point 4 end to end: a real run whose digest is over the size rule (issue 10)
    says "Read it all online" with the day page's URL, and that page holds every abstract."""
    import email
    import email.policy

    home = write_instance(tmp_path / "inst", [KW_A], [{"email": "alice@example.org"}], timezone="UTC",
                          public_url=PUBLIC)
    long = "We study video anomaly detection at length. " * 40  # ~1,800 characters each
    with FakeArxiv({KW_A: make_papers(KW_A, 3, date="2026-11-18")}) as fake:
        run_once(home, fake, env=SECRET_ENV, now=at("2026-11-18"))
        fake.feeds[KW_A] = [*(make_paper(100 + i, KW_A, DAY1, summary=f"{i} {long}") for i in range(90)),
                            *fake.feeds[KW_A]]
        report = run_once(home, fake, env=SECRET_ENV, now=at(DAY1))
    assert report.sent == 1
    (mail,) = (home / "state" / "maildir" / "new").iterdir()
    msg = email.message_from_bytes(mail.read_bytes(), policy=email.policy.default)
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    url = f"{PUBLIC}/days/{DAY1}.html"
    assert "left out" in html and f'href="{url}"' in html
    page = (home / "site" / "days" / f"{DAY1}.html").read_text()
    assert all(f"{i} We study" in page for i in range(90))  # the day page has every abstract in full


def test_every_digest_links_its_day_page_and_each_more_opens_the_card_there(
    tmp_path: Path, smtp: tuple[Controller, Inbox]
) -> None:
    """Issue 11 point 4 end to end, through a real SMTP server: with public_url, the mailed
    HTML and text say "Read online" with the day page, and each shortened abstract's "more"
    goes to that paper's card (its anchor) on the page the same run wrote."""
    home = write_instance(tmp_path / "inst", [KW_A, KW_B], [{"email": "alice@example.org"}], timezone="UTC",
                          public_url=PUBLIC)
    env = smtp_env(smtp[0], **SECRET_ENV)
    long = "We study video anomaly detection and vision-language models at some length. " * 8
    with FakeArxiv({KW_A: make_papers(KW_A, 2, date="2026-11-18"), KW_B: make_papers(KW_B, 2, first=50,
                                                                                      date="2026-11-18")}) as fake:
        run_once(home, fake, env=env, now=at("2026-11-18"))
        fake.feeds[KW_A] = [*(make_paper(100 + i, KW_A, DAY1, summary=f"{i} {long}") for i in range(3)),
                            *fake.feeds[KW_A]]
        fake.feeds[KW_B] = [make_paper(200, KW_B, DAY1, summary=long), *fake.feeds[KW_B]]
        assert run_once(home, fake, env=env, now=at(DAY1)).sent == 1
    (mail,) = smtp[1].messages
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]
    url = f"{PUBLIC}/days/{DAY1}.html"
    assert re.search(rf'<a href="{re.escape(url)}"[^>]*>Read online</a>', html)
    assert "\nRead online: [online]\n" in text and f"\n[online]: {url}\n" in text
    page = (home / "site" / "days" / f"{DAY1}.html").read_text()
    mores = re.findall(r'<a class="more" href="([^"]+)"', html)
    assert len(mores) == 4 and "arxiv.org" not in " ".join(mores)  # every shortened abstract
    for link in mores:
        assert link.startswith(url + "#")
        anchor = link.split("#", 1)[1]
        assert f'id="{anchor}"' in page
        assert f"]: {link}\n" in text  # the text part's [more] goes to the same place
    assert {m.split("#")[1] for m in mores} == {
        *(paper_anchor(slug(KW_A), f"2611.{100 + i:05d}") for i in range(3)), paper_anchor(slug(KW_B), "2611.00200")}


def test_a_weekly_digest_links_each_paper_on_the_day_that_has_it(
    tmp_path: Path, smtp: tuple[Controller, Inbox]
) -> None:
    """A weekly digest's papers came on several days: each "more" opens the page of the day the
    archive holds the paper on, and "Read online" the archive's index."""
    home = write_instance(tmp_path / "inst", [KW_A], [{"email": "alice@example.org", "frequency": "weekly"}],
                          timezone="UTC", public_url=PUBLIC, weekly_day="friday")
    env = smtp_env(smtp[0], **SECRET_ENV)
    long = "We study video anomaly detection at some length, again and again. " * 8
    with FakeArxiv({KW_A: make_papers(KW_A, 2, date="2026-11-16")}) as fake:
        run_once(home, fake, env=env, now=at("2026-11-16"))
        fake.feeds[KW_A] = [make_paper(100, KW_A, "2026-11-18", summary=long), *fake.feeds[KW_A]]
        run_once(home, fake, env=env, now=at("2026-11-18"))
        fake.feeds[KW_A] = [make_paper(101, KW_A, "2026-11-20", summary=long), *fake.feeds[KW_A]]
        assert run_once(home, fake, env=env, now=at("2026-11-20")).sent == 1
    (mail,) = smtp[1].messages
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    mores = dict(reversed(m.split("#")) for m in re.findall(r'<a class="more" href="([^"]+)"', html))
    a, b = paper_anchor(SLUG_A, "2611.00100"), paper_anchor(SLUG_A, "2611.00101")
    assert mores == {a: f"{PUBLIC}/days/2026-11-18.html", b: f"{PUBLIC}/days/2026-11-20.html"}
    for anchor, page in mores.items():
        assert f'id="{anchor}"' in (home / "site" / "days" / page.rsplit("/", 1)[1]).read_text()
    assert re.search(rf'<a href="{re.escape(PUBLIC)}/index.html"[^>]*>Read online</a>', html)


def test_a_broken_archive_still_lets_the_digest_link_its_own_day(
    tmp_path: Path, smtp: tuple[Controller, Inbox], caplog: pytest.LogCaptureFixture
) -> None:
    """state/archive.json unreadable when digests are built: the digest still goes out, its
    "more" links go to its own day page, and a warning says why."""
    home = write_instance(tmp_path / "inst", [KW_A], [{"email": "alice@example.org"}], timezone="UTC",
                          public_url=PUBLIC)
    env = smtp_env(smtp[0], **SECRET_ENV)
    long = "We study video anomaly detection at some length, again and again. " * 8
    with FakeArxiv({KW_A: make_papers(KW_A, 2, date="2026-11-18")}) as fake:
        run_once(home, fake, env=env, now=at("2026-11-18"))
        (home / "state" / "archive.json").write_text("{not json", encoding="utf-8")
        fake.feeds[KW_A] = [make_paper(100, KW_A, DAY1, summary=long), *fake.feeds[KW_A]]
        assert run_once(home, fake, env=env, now=at(DAY1)).sent == 1
    (mail,) = smtp[1].messages
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert re.findall(r'<a class="more" href="([^"]+)"', html) == [
        f"{PUBLIC}/days/{DAY1}.html#{paper_anchor(SLUG_A, '2611.00100')}"]
    assert "archive cannot be read for the digest's links" in caplog.text
