"""Issue 12, points 3 and 6: interests (arXiv ids and BibTeX files) fetched once by id_list,
kept in state, each digest's papers ordered by relevance to them and marked "for you"; bad
interests exit 2 naming file, line and entry; an id arXiv no longer serves is skipped."""

from __future__ import annotations

import itertools
import logging
import os
import re
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import Inbox, at, cli, run_once, smtp_env, write_instance
from fakearxiv import ID_LIST, FakeArxiv
from fixtures import SEED_000, SEED_001, FixturePaper, parse_seed

from digestd.config.load import load_config
from digestd.core.interests import parse_bibtex
from digestd.core.records import Delivery
from digestd.errors import ConfigError
from digestd.stages import follow
from digestd.stages import queue as queue_stage
from digestd.store.interests import InterestStore
from digestd.store.outbox import Outbox

VAD, VLM = "Video Anomaly Detection", "Vision Language Model"
MIXED = "Mixed"


def mixed_feed() -> list[FixturePaper]:
    """One keyword carrying two topics' papers of the newer snapshot, newest first."""
    new = parse_seed(SEED_001)
    papers = {p.id: p for p in new[VAD] + new[VLM]}
    return sorted(papers.values(), key=lambda p: p.updated, reverse=True)


def interests_of_older(topic: str, n: int = 6) -> list[FixturePaper]:
    return parse_seed(SEED_000)[topic][:n]


def two_days(home: Path, fake: FakeArxiv, env: dict[str, str] | None = None) -> None:
    """Day 1 stores the two oldest (baseline, nothing mailed); day 2 brings the rest as new."""
    feed = mixed_feed()
    fake.feeds[MIXED] = feed[-2:]
    run_once(home, fake, env=env, now=at("2025-12-20"))
    fake.feeds[MIXED] = feed
    run_once(home, fake, env=env, now=at("2025-12-23"))


def cards(html: str) -> dict[str, str]:
    """A mailed digest's paper cards by arXiv id."""
    out = {}
    for card in html.split('<div class="card"')[1:]:
        m = re.search(r">arXiv:(\d{4}\.\d{4,5})v\d+<", card)
        assert m, card
        out[m[1]] = card.split("</div>", 1)[0]
    return out


def deliveries(home: Path) -> dict[str, Delivery]:
    outbox = Outbox(home / "state" / "outbox.json", read_only=True)
    try:
        return {d.email: d for d in outbox.all_deliveries()}
    finally:
        outbox.close()


def test_a_reader_with_interests_gets_their_topic_first_and_marked(
    tmp_path: Path, smtp: tuple[Controller, Inbox]
) -> None:
    liked = interests_of_older(VAD)
    subs = [{"email": "alice@example.org", "interests": [p.id for p in liked]}, {"email": "bob@example.org"}]
    write_instance(tmp_path, [MIXED], subs, timezone="UTC")
    with FakeArxiv() as fake:
        fake.extra = liked
        two_days(tmp_path, fake, smtp_env(smtp[0]))
        by_id = [r for r in fake.requests if r.keyword == ID_LIST]
    assert len(by_id) == 1  # fetched once (both runs need them: the second reads the cache)
    assert sorted(by_id[0].params["id_list"].split(",")) == sorted(p.id for p in liked)
    got = deliveries(tmp_path)
    alice, bob = got["alice@example.org"], got["bob@example.org"]
    a_ids, b_ids = list(alice.papers[MIXED]), list(bob.papers[MIXED])
    assert sorted(a_ids) == sorted(b_ids) and len(a_ids) >= 10
    new_vad = {p.id for p in parse_seed(SEED_001)[VAD]}
    dates = {p.id: p.updated for p in mixed_feed()}
    assert b_ids == sorted(b_ids, key=lambda i: dates[i], reverse=True)  # no interests: by date
    assert bob.for_you == ()
    vad_in_digest = [i for i in a_ids if i in new_vad]
    assert vad_in_digest and set(a_ids[: len(vad_in_digest)]) == set(vad_in_digest)  # their topic first
    marked = set(alice.for_you)
    assert marked and marked <= set(vad_in_digest)
    for who, d in got.items():  # the mailed digests mark exactly those papers, each reader their own
        (mail,) = smtp[1].to(who)
        html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        by_id = cards(html)
        assert set(by_id) == set(d.papers[MIXED])
        assert {i for i, card in by_id.items() if ">For you</span>" in card} == set(d.for_you)
        assert text.count("For you: close to your interests") == len(d.for_you)
        assert "More like this" not in html  # no public_url: nothing to link to
    store = InterestStore(tmp_path / "state" / "interests.json", read_only=True)
    assert {p.id for p in liked} == set(store.known())
    store.close()


def test_a_bibtex_file_of_interests_is_read_and_its_ids_fetched(tmp_path: Path) -> None:
    liked = interests_of_older(VAD, 3)
    (tmp_path / "refs").mkdir()
    bib = "\n".join(
        f"@misc{{ref{i},\n  title = {{{p.title}}},\n  url = {{http://arxiv.org/abs/{p.id}v1}},\n}}"
        for i, p in enumerate(liked)
    )
    bib += "\n@article{noid,\n  title = {Anomaly detection in surveillance video},\n  abstract = {Frames.},\n}\n"
    (tmp_path / "refs" / "mine.bib").write_text(bib, encoding="utf-8")
    write_instance(tmp_path, [MIXED], [{"email": "alice@example.org", "interests": ["refs/mine.bib"]}])
    (sub,) = load_config(tmp_path, {}).subscribers
    assert sub.interests == tuple(p.id for p in liked)
    assert sub.interest_texts and "surveillance" in sub.interest_texts[0]
    with FakeArxiv() as fake:
        fake.extra = liked
        two_days(tmp_path, fake)
    alice = deliveries(tmp_path)["alice@example.org"]
    assert alice.for_you


def test_an_id_arxiv_no_longer_serves_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    liked = interests_of_older(VAD, 4)
    write_instance(tmp_path, [MIXED], [{"email": "alice@example.org", "interests": [p.id for p in liked]}])
    with FakeArxiv() as fake, caplog.at_level(logging.WARNING):
        fake.extra = liked
        fake.gone = {liked[0].id}
        two_days(tmp_path, fake)
        asked = [r for r in fake.requests if r.keyword == ID_LIST]
    assert len(asked) == 1
    assert f"arXiv does not serve {liked[0].id} (an interest of alice@example.org); skipped" in caplog.text
    store = InterestStore(tmp_path / "state" / "interests.json", read_only=True)
    known = store.known()
    store.close()
    assert known[liked[0].id].gone and not known[liked[1].id].gone
    assert deliveries(tmp_path)["alice@example.org"].for_you


BAD_IDS = ["2513.00001", "not-an-id", "1501.1234", "/etc/passwd.bib", "../up.bib"]


@pytest.mark.parametrize("entry", BAD_IDS)
def test_a_bad_interest_is_refused_naming_line_and_entry(tmp_path: Path, entry: str) -> None:
    write_instance(tmp_path, [MIXED], [{"email": "alice@example.org", "interests": ["2506.05175", entry]}])
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, {})
    text = str(err.value)
    line = next(n for n, t in enumerate((tmp_path / "subscribers.yaml").read_text().splitlines(), 1)
                if entry in t)
    assert text.startswith(f"{tmp_path / 'subscribers.yaml'}, line {line}: interest {entry!r} of alice@example.org")


def test_an_unquoted_id_that_yaml_reads_as_a_number_is_refused_with_a_hint(tmp_path: Path) -> None:
    write_instance(tmp_path, [MIXED], [{"email": "alice@example.org", "interests": [2506.05175, "refs.bib"]}])
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, {})
    line = next(n for n, t in enumerate((tmp_path / "subscribers.yaml").read_text().splitlines(), 1)
                if "2506.05175" in t)
    assert str(err.value) == (f"{tmp_path / 'subscribers.yaml'}, line {line}: interest 2506.05175 of "
                              "alice@example.org is a number to YAML: quote it, as in '2506.05175'")


MALFORMED = [
    ("@misc{a,\n  title = {One},\n  url = {https://arxiv.org/abs/2506.05175}\n\n@misc{b, title={Two}}\n",
     1, "entry 'a': an entry is not closed"),
    ("@misc{a, title={One}}\n\n@article{b,\n  year = 2020,\n}\n", 3, "entry 'b': the entry has neither"),
    ("@misc{a, title={One}}\n@misc{c,\n  title = {Two}\n  year = {2001}\n}\n", 2, "entry 'c': a comma is missing"),
    ("@misc{, title={One}}\n", 1, "the @misc entry has no key"),
]


@pytest.mark.parametrize(("text", "line", "message"), MALFORMED, ids=["unclosed", "no-id", "comma", "no-key"])
def test_a_malformed_bibtex_file_is_named_with_line_and_entry(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    (tmp_path / "refs.bib").write_text(text, encoding="utf-8")
    write_instance(tmp_path, [MIXED], [{"email": "alice@example.org", "interests": ["refs.bib"]}])
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, {})
    assert str(err.value).startswith(f"{tmp_path / 'refs.bib'}, line {line}: {message}")


def test_an_at_sign_starting_a_line_inside_a_field_is_text_not_a_new_entry() -> None:
    # An @ at the start of a line ends an unclosed entry; inside a field value (an abstract
    # wrapped before "@"), it is text: the file used to be refused as "not closed".
    (a, b) = parse_bibtex("@misc{a,\n  title = {One},\n  abstract = {Mail us at\n@ the lab.},\n}\n"
                          "@misc{b, title={Two}, eprint={2506.05175}}\n")
    assert (a.key, a.title, a.abstract) == ("a", "One", "Mail us at @ the lab.")
    assert (b.key, b.arxiv_id) == ("b", "2506.05175")


def test_a_bibtex_path_that_is_a_fifo_or_a_folder_is_refused_at_once(tmp_path: Path) -> None:
    """Was: a FIFO named as interests blocked every command that loads the configuration."""
    os.mkfifo(tmp_path / "pipe.bib")
    (tmp_path / "dir.bib").mkdir()
    for name in ("pipe.bib", "dir.bib"):
        write_instance(tmp_path, [MIXED], [{"email": "alice@example.org", "interests": [name]}])
        with pytest.raises(ConfigError, match=rf"name '{name}', which cannot be read \(not a regular file\)"):
            load_config(tmp_path, {})


def test_an_unreadable_bibtex_file_exits_2_and_changes_nothing(tmp_path: Path) -> None:
    write_instance(tmp_path, [MIXED], [{"email": "alice@example.org", "interests": ["2506.05175", "gone.bib"]}])
    line = next(n for n, t in enumerate((tmp_path / "subscribers.yaml").read_text().splitlines(), 1)
                if "gone.bib" in t)
    (tmp_path / "bad.bib").write_bytes(b"@misc{a, title={\xff\xfe}}")
    proc = cli(tmp_path, "run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (f"subscribers.yaml, line {line}: the interests of alice@example.org name 'gone.bib', "
            "which cannot be read (No such file or directory)") in proc.stderr
    assert list((tmp_path / "state").iterdir()) == []
    doc = (tmp_path / "subscribers.yaml").read_text().replace("gone.bib", "bad.bib")
    (tmp_path / "subscribers.yaml").write_text(doc)
    proc = cli(tmp_path, "run")
    assert proc.returncode == 2 and f"{tmp_path / 'bad.bib'}, line 1: not UTF-8 text" in proc.stderr


def test_a_bibtex_link_out_of_the_instance_is_not_read(tmp_path: Path) -> None:
    """"Inside the instance" holds for where a link leads too, not only for the path written."""
    home = tmp_path / "inst"
    write_instance(home, [MIXED], [{"email": "alice@example.org", "interests": ["refs/p.bib"]}])
    (tmp_path / "secret.bib").write_text("@misc{a, title={Secret}, eprint={2506.05175}}\n")
    (home / "refs").mkdir()
    (home / "refs" / "p.bib").symlink_to(tmp_path / "secret.bib")
    proc = cli(home, "status")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "name 'refs/p.bib', which cannot be read (a link to a file outside the instance)" in proc.stderr
    (home / "refs" / "q.bib").write_text("@misc{a, title={Mine}, eprint={2506.05175}}\n")
    (home / "refs" / "p.bib").unlink()
    (home / "refs" / "p.bib").symlink_to(home / "refs" / "q.bib")  # a link inside is fine
    assert cli(home, "status").returncode == 0


def test_interest_records_are_checked_when_the_cache_opens(tmp_path: Path) -> None:
    path = tmp_path / "interests.json"
    path.write_text('{"papers": {"1": {"id": "2506.05175", "title": 3, "summary": "", "gone": false}}}')
    from digestd.errors import StateError

    with pytest.raises(StateError) as err:
        InterestStore(path)
    assert "field 'title' is int, not str" in str(err.value)
    assert not path.exists()  # moved aside, named


def test_a_paused_reader_is_not_fetched_for(tmp_path: Path) -> None:
    liked = interests_of_older(VAD, 2)
    write_instance(tmp_path, [MIXED], [{"email": "a@example.org", "status": "paused",
                                        "interests": [p.id for p in liked]}])
    with FakeArxiv() as fake:
        fake.extra = liked
        two_days(tmp_path, fake)
        assert not [r for r in fake.requests if r.keyword == ID_LIST]




def test_a_broken_interest_cache_is_moved_aside_and_refetched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    liked = interests_of_older(VAD, 3)
    write_instance(tmp_path, [MIXED], [{"email": "alice@example.org", "interests": [p.id for p in liked]}])
    (tmp_path / "state" / "interests.json").write_text("{not json")
    with FakeArxiv() as fake, caplog.at_level(logging.WARNING):
        fake.extra = liked
        two_days(tmp_path, fake)
        asked = [r for r in fake.requests if r.keyword == ID_LIST]
    assert len(asked) == 1 and "interests.json is unreadable" in caplog.text
    assert list((tmp_path / "state").glob("interests.json.corrupt-*"))
    assert deliveries(tmp_path)["alice@example.org"].for_you


def test_interests_in_any_date_order_are_fetched(tmp_path: Path) -> None:
    """An id_list answer comes in the order of the ids (a BibTeX file's, a reader's), not
    newest first: it is not held to the date order a search's answer is (found by
    bench/rank_run.py, whose readers' interests are in random order)."""
    liked = interests_of_older(VAD, 4)
    oldest_first = list(reversed(liked))
    assert any(b.updated > a.updated for a, b in itertools.pairwise(oldest_first))
    write_instance(tmp_path, [MIXED], [{"email": "alice@example.org", "interests": [p.id for p in oldest_first]}])
    with FakeArxiv() as fake:
        fake.extra = liked
        two_days(tmp_path, fake)
        asked = [r for r in fake.requests if r.keyword == ID_LIST]
    store = InterestStore(tmp_path / "state" / "interests.json", read_only=True)
    try:
        known = store.known()
    finally:
        store.close()
    assert len(asked) == 1 and {p.id for p in liked} <= set(known)
    assert not any(known[p.id].gone for p in liked)
    assert deliveries(tmp_path)["alice@example.org"].for_you


def _ranked_twice(tmp_path: Path, smtp: tuple[Controller, Inbox], monkeypatch: pytest.MonkeyPatch,
                  change: Any, children_then: int) -> tuple[dict[str, Delivery], dict[str, Delivery]]:
    """The same two days in two instances: as digestd runs (ranking made in a forked child while
    the plan is made), and with `change` applied (making `children_then` children); both
    instances' deliveries."""
    liked = interests_of_older(VAD) + interests_of_older(VLM, 2)
    subs = [{"email": "alice@example.org", "interests": [p.id for p in liked[:6]]},
            {"email": "carol@example.org", "interests": [p.id for p in liked[4:]]},
            {"email": "bob@example.org"}]
    out, children = [], []

    class Counted(follow.ApartParts):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            children.append(self._pid)

    for name, patch in (("forked", None), ("changed", change)):
        home = tmp_path / name
        write_instance(home, [MIXED], subs, timezone="UTC")
        with monkeypatch.context() as m:
            m.setattr(follow, "ApartParts", Counted)
            if patch is not None:
                patch(m)
            with FakeArxiv() as fake:
                fake.extra = liked
                two_days(home, fake, smtp_env(smtp[0]))
        out.append(deliveries(home))
        if name == "forked":
            # day 2's ranking was made in a child; day 1, a baseline, mails nothing: nothing to fit
            assert len(children) == 1 and all(children)
            children.clear()
    assert len(children) == children_then
    return out[0], out[1]


def _same_ranking(a: dict[str, Delivery], b: dict[str, Delivery]) -> None:
    assert set(a) == set(b) == {"alice@example.org", "bob@example.org", "carol@example.org"}
    for who in a:
        assert a[who].papers == b[who].papers and a[who].for_you == b[who].for_you, who
    assert a["alice@example.org"].for_you and a["alice@example.org"].papers != a["carol@example.org"].papers


def test_ranking_in_a_child_gives_what_ranking_in_process_gives(
    tmp_path: Path, smtp: tuple[Controller, Inbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    forked, here = _ranked_twice(tmp_path, smtp, monkeypatch,
                                 lambda m: m.setattr(queue_stage, "start_ranking", lambda inputs: None), 0)
    _same_ranking(forked, here)


def test_a_ranking_child_that_dies_leaves_the_same_ranking_to_the_run(
    tmp_path: Path, smtp: tuple[Controller, Inbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real death (os._exit in the child before it answers): the run makes the ranking itself."""
    parent, real = os.getpid(), follow.scorer_parts

    def dies_in_the_child(*args: Any) -> Any:
        if os.getpid() != parent:
            os._exit(9)
        return real(*args)

    forked, dead = _ranked_twice(tmp_path, smtp, monkeypatch,
                                 lambda m: m.setattr(follow, "scorer_parts", dies_in_the_child), 1)
    _same_ranking(forked, dead)


def test_arxiv_ids_are_taken_by_their_rules_on_every_path() -> None:
    """The fast path for current ids (2015 on, no version) answers as the general rules do."""
    from digestd.core.interests import arxiv_id

    for yy in range(100):
        for mm in range(14):
            for digits in (4, 5):
                text = f"{yy:02d}{mm:02d}.{'7' * digits}"
                good = 1 <= mm <= 12 and digits == (5 if yy >= 15 else 4)
                assert arxiv_id(text) == (text if good else None), text
                assert arxiv_id(f" {text}v3 ") == (text if good else None), text


def test_a_weekly_reader_is_ranked_on_their_day_and_fitted_for_only_then(
    tmp_path: Path, smtp: tuple[Controller, Inbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fit covers the readers the plan can mail today: on a day a weekly reader is not due,
    nothing is fitted (no child); on their day the week's papers come ranked for them."""
    liked = interests_of_older(VAD)
    subs = [{"email": "alice@example.org", "frequency": "weekly", "interests": [p.id for p in liked]},
            {"email": "bob@example.org"}]
    write_instance(tmp_path, [MIXED], subs, timezone="UTC", weekly_day="tuesday")
    children: list[int] = []

    class Counted(follow.ApartParts):  # type: ignore[type-arg]
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            children.append(self._pid)

    monkeypatch.setattr(follow, "ApartParts", Counted)
    feed = mixed_feed()
    env = smtp_env(smtp[0])
    with FakeArxiv() as fake:
        fake.extra = liked
        fake.feeds[MIXED] = feed[-2:]
        run_once(tmp_path, fake, env=env, now=at("2025-12-16"))  # a Tuesday: the baseline
        fake.feeds[MIXED] = feed[len(feed) // 2 :]
        run_once(tmp_path, fake, env=env, now=at("2025-12-22"))  # Monday: bob only, nothing to rank
        assert children == []
        fake.feeds[MIXED] = feed
        run_once(tmp_path, fake, env=env, now=at("2025-12-23"))  # Tuesday: alice's week, ranked
    assert len(children) == 1 and all(children)
    got = deliveries(tmp_path)
    alice = got["alice@example.org"]
    new_vad = {p.id for p in parse_seed(SEED_001)[VAD]}
    ids = list(alice.papers[MIXED])
    vad_first = [i for i in ids if i in new_vad]
    assert vad_first and set(ids[: len(vad_first)]) == set(vad_first)  # their topic first
    assert alice.for_you and set(alice.for_you) <= set(vad_first)


def test_digits_of_other_scripts_are_no_arxiv_id() -> None:
    from digestd.core.interests import arxiv_id

    assert arxiv_id("２５０６.１２３４５") is None  # fullwidth digits
    assert arxiv_id("٢٥٠٦.١٢٣٤٥") is None  # Arabic-Indic digits
    assert arxiv_id("2506.12345v２") is None
    assert arxiv_id("2506.12345") == "2506.12345"
