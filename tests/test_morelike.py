"""Issue 12, point 3: "more like this" end to end. A reader's digest is queued; the signed link
of one of its papers shows a button (GET changes nothing); the POST from that page adds the
paper to the reader's interests in subscribers.yaml; the next run fetches it by id_list and
orders that reader's digest by it."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from aiosmtpd.controller import Controller
from conftest import Inbox, at, run_once, serve_digestd, smtp_env, write_instance
from fakearxiv import ID_LIST, FakeArxiv
from test_interests import MIXED, SEED_001, VAD, cards, deliveries, mixed_feed, parse_seed
from test_unsubscribe import request

from digestd.config.load import load_config
from digestd.core.morelike import more_like_link

SECRET = "s3cret-for-tests-only-0123456789"
ENV = {"DIGESTD_SECRET": SECRET}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    write_instance(tmp_path, [MIXED], [{"email": "alice@example.org"}], timezone="UTC",
                   public_url="https://papers.example.org/")
    text = (tmp_path / "subscribers.yaml").read_text()
    (tmp_path / "subscribers.yaml").write_text("# the lab's list\n" + text)
    for base in serve_digestd(tmp_path, ENV):
        yield tmp_path, base


def local(link: str, base: str) -> str:
    return base + link.removeprefix("https://papers.example.org")


def form_token(page: str) -> str:
    m = re.search(r'name="form_token" value="([^"]+)"', page)
    assert m, page
    return html.unescape(m[1])


def mailed_links(inbox: Inbox) -> dict[str, str]:
    """Each paper's "More like this" link in the one digest mailed, checked against its text part."""
    (mail,) = inbox.messages
    html_part = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    links = {}
    for pid, card in cards(html_part).items():
        (href,) = re.findall(r'<a class="button" href="([^"]+)"[^>]*>More like this</a>', card)
        links[pid] = html.unescape(href)
        assert f"More like this: {links[pid]}" in text
    assert len(set(links.values())) == len(links)  # one per paper
    return links


def test_more_like_this_adds_the_paper_and_the_next_run_ranks_by_it(
    site: tuple[Path, str], smtp: tuple[Controller, Inbox]
) -> None:
    home, base = site
    env = smtp_env(smtp[0], **ENV)
    feed = mixed_feed()
    with FakeArxiv() as fake:
        fake.feeds[MIXED] = feed[-2:]
        run_once(home, fake, env=env, now=at("2025-12-20"))
        fake.feeds[MIXED] = feed[4:]
        run_once(home, fake, env=env, now=at("2025-12-22"))
        first = deliveries(home)["alice@example.org"]
        vad = {p.id for p in parse_seed(SEED_001)[VAD]}
        pid = next(i for i in first.papers[MIXED] if i in vad)
        mailed = mailed_links(smtp[1])
        assert set(mailed) == set(first.papers[MIXED])
        assert mailed[pid].startswith("https://papers.example.org/more/")
        link = local(mailed[pid], base)
        before = (home / "subscribers.yaml").read_text()

        status, headers, page = request(link)
        assert status == 200 and "Add to my interests" in page and f"arXiv:{pid}" in page
        assert headers["cache-control"] == "no-store"
        assert (home / "subscribers.yaml").read_text() == before  # GET changes nothing

        status, _, _ = request(link, "POST", b"", FORM)  # a scanner, or another site: no form token
        assert status == 403 and (home / "subscribers.yaml").read_text() == before
        forged = link.replace(link.rsplit(".", 1)[1], "A" * 22)
        assert request(forged)[0] == 403

        body = urlencode({"form_token": form_token(page)}).encode()
        status, _, done = request(link, "POST", body, FORM)
        assert status == 200 and "was added to" in done
        after = (home / "subscribers.yaml").read_text()
        assert after.startswith("# the lab's list\n")  # comments kept
        (sub,) = load_config(home, ENV).subscribers
        assert sub.interests == (pid,)
        assert "is already among" in request(link)[2]

        fake.feeds[MIXED] = feed
        run_once(home, fake, env=env, now=at("2025-12-23"))
        asked = [r.params["id_list"] for r in fake.requests if r.keyword == ID_LIST]
    assert asked == [pid]
    third = deliveries(home)["alice@example.org"]
    assert third.run > first.run
    assert set(third.papers[MIXED]) == {p.id for p in feed[:4]}


def test_per_reader_links_equal_the_per_paper_ones_and_verify() -> None:
    """The send stage makes a reader's id once (`more_like_links`); each link must be the one
    `more_like_link` makes, and must read back as that reader and that paper."""
    from digestd.core.morelike import more_like_link, more_like_links, read_more_like
    from digestd.core.tokens import address_id

    secret = SECRET.encode()
    papers = ["2401.00001", "2402.12345v2", "hep-th/9901001"]
    for email in ["ada@example.org", "Bob.Smith@Example.ORG"]:
        link = more_like_links("https://papers.example.org/", secret, email)
        for paper in papers:
            made = link(paper)
            assert made == more_like_link("https://papers.example.org/", secret, email, paper)
            asked = read_more_like(secret, made.rsplit("/", 1)[1])
            assert asked is not None and asked.reader == address_id(secret, email)
            assert paper.startswith(asked.paper)


def test_full_interests_are_said_not_called_an_invalid_link(tmp_path: Path) -> None:
    """add_interest refuses a 2,001st interest with a ConfigError, a kind of UsageError, which was
    taken for "unsubscribed meanwhile": a genuine link was answered 403 "This link is not valid"."""
    ids = ", ".join(f"'2401.{i:05d}'" for i in range(1, 2001))
    (tmp_path / "subscribers.yaml").write_text(
        "keywords:\n  - VAD\nsubscribers:\n  - email: alice@example.org\n"
        f"    interests: [{ids}]\nsettings:\n  public_url: https://papers.example.org/\n")
    before = (tmp_path / "subscribers.yaml").read_text()
    for base in serve_digestd(tmp_path, ENV):
        link = local(more_like_link("https://papers.example.org/", SECRET.encode(), "alice@example.org",
                                    "2506.05175"), base)
        status, _, page = request(link)
        assert status == 200
        body = urlencode({"form_token": form_token(page)}).encode()
        status, _, said = request(link, "POST", body, FORM)
        assert status == 400 and "already hold 2,000 entries" in said and "not valid" not in said
    assert (tmp_path / "subscribers.yaml").read_text() == before


def test_a_file_that_cannot_be_read_for_the_edit_is_not_called_full(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ConfigError of the edit was answered "your interests already hold 2,000 entries",
    though the file may only have become unreadable (or broken) since the page was read."""
    import digestd.config.edit as edit_module
    from digestd.errors import ConfigError

    (tmp_path / "subscribers.yaml").write_text(
        "keywords:\n  - VAD\nsubscribers:\n  - email: alice@example.org\n"
        "settings:\n  public_url: https://papers.example.org/\n")
    before = (tmp_path / "subscribers.yaml").read_text()

    def unreadable(path: Path) -> tuple[str, bool]:
        raise ConfigError(f"cannot read {path}: it is not a regular file")

    for base in serve_digestd(tmp_path, ENV):
        link = local(more_like_link("https://papers.example.org/", SECRET.encode(), "alice@example.org",
                                    "2506.05175"), base)
        status, _, page = request(link)
        assert status == 200
        monkeypatch.setattr(edit_module, "read_yaml_file", unreadable)
        body = urlencode({"form_token": form_token(page)}).encode()
        status, _, said = request(link, "POST", body, FORM)
        assert status == 503 and "2,000" not in said and "nothing was changed" in said
    assert (tmp_path / "subscribers.yaml").read_text() == before
