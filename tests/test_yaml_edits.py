"""Edits of subscribers.yaml written on its lines (digestd.config.linedit) against ruamel's
round trip (digestd.config.roundtrip), the way every edit could be made before.

A line edit must say and refuse what the round trip says and refuses, give the same data, and
write the same text but where the round trip moves a comment or blank line that trails the
last entry (it hangs them on that entry; the line edit leaves them where they stand). What the
line edit cannot place for sure, the round trip makes; other bytes are never touched.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from digestd.config import edit as engine
from digestd.config import subscribers as ops
from digestd.config.load import load_config
from digestd.config.tracked import Change, Edited
from digestd.core.models import Frequency, SubscriberStatus
from digestd.errors import DigestdError

KWS = ["Alpha", "Beta Gamma", "Delta"]
Op = Callable[[Path], object]


def _doc(rng: random.Random) -> str:
    """A subscribers.yaml as people and `digestd` write them: block style, comments on their
    own lines and after values, blank lines, any sequence indent."""
    pad = " " * rng.choice([0, 2, 2, 4])
    lines = ["# instance", "keywords:" + rng.choice(["", "   # searches"])]
    lines += [f"{pad}- {k}" for k in KWS]
    lines.append("subscribers:")
    for i in range(rng.randint(1, 6)):
        lines.append(f"{pad}- email: u{i}@example.org" + rng.choice(["", "", "  # eol"]))
        if rng.random() < 0.5:
            lines.append(f"{pad}  name: User {i}" + rng.choice(["", "", "  # nm"]))
        if rng.random() < 0.5:
            lines.append(f"{pad}  keywords: [{', '.join(rng.sample(KWS, rng.randint(1, 3)))}]")
        if rng.random() < 0.3:
            lines.append(f"{pad}  frequency: " + rng.choice(["weekly", "weekly  # x", "Weekly"]))
        if rng.random() < 0.3:
            lines.append(f"{pad}  status: paused")
        if rng.random() < 0.2:
            lines.append(rng.choice(["", f"{pad}  # inner", f"{pad}# between", "# col0"]))
    if rng.random() < 0.5:
        lines.append(rng.choice(["", "# tail comment", f"{pad}# - email: old@example.org"]))
    lines += ["settings:", "  from: P <p@example.org>", ""]
    return "\n".join(lines)


def _op(rng: random.Random) -> Op:
    """One edit the CLI or `digestd serve` makes, its arguments drawn now."""
    who, other = (f"u{rng.randint(0, 7)}@example.org" for _ in range(2))
    kws = rng.sample(KWS, rng.randint(0, 2))
    freq = rng.choice([None, Frequency.WEEKLY, Frequency.DAILY])
    name = rng.choice([None, "New One", "O'Neil: x", "Renamed"])
    status = rng.choice(list(SubscriberStatus))
    keyword = rng.choice([*KWS, "Epsilon"])
    return rng.choice([
        lambda h: ops.unsubscribe_many(h, [who, other]),
        lambda h: ops.remove_subscriber(h, who),
        lambda h: ops.add_subscriber(h, "new@example.org", name, kws, freq),
        lambda h: ops.set_status(h, who, status),
        lambda h: ops.set_subscriber(h, who, kws or None, freq, name),
        lambda h: ops.add_keyword(h, keyword),
        lambda h: ops.remove_keyword(h, keyword),
    ])


def _outcome(op: Op, home: Path) -> object:
    try:
        return op(home)
    except DigestdError as err:
        return ("refused", str(err).replace(str(home), "HOME"))


def _home(root: Path, name: str, text: str) -> Path:
    home = root / name
    (home / "state").mkdir(parents=True)
    (home / "subscribers.yaml").write_text(text, encoding="utf-8")
    return home


def _data(home: Path) -> object:
    return YAML(typ="safe", pure=True).load((home / "subscribers.yaml").read_text(encoding="utf-8"))


def _without_own_line_comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files each edit made by the round trip was made to (the real round trip runs)."""
    made: list[Path] = []
    real = engine.round_trip_edit

    def counted(path: Path, text: str, change: Change) -> Edited:
        made.append(path)
        return real(path, text, change)

    monkeypatch.setattr(engine, "round_trip_edit", counted)
    return made


def test_line_edits_say_refuse_and_write_what_the_round_trip_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, round_trips: list[Path]
) -> None:
    rng = random.Random(16)
    written = 0
    for case in range(150):
        text, op = _doc(rng), _op(rng)
        lines_home, rt_home = _home(tmp_path, f"l{case}", text), _home(tmp_path, f"r{case}", text)
        by_lines = _outcome(op, lines_home)
        with monkeypatch.context() as patched:
            patched.setattr(engine, "line_edit", lambda *_: None)  # the reference: the round trip
            by_round_trip = _outcome(op, rt_home)
        assert by_lines == by_round_trip, text
        new, ref = ((h / "subscribers.yaml").read_text(encoding="utf-8") for h in (lines_home, rt_home))
        assert _data(lines_home) == _data(rt_home), text
        assert _without_own_line_comments(new) == _without_own_line_comments(ref), (text, new, ref)
        assert sorted(new.splitlines()) == sorted(ref.splitlines()), (text, new, ref)  # only moved
        written += new != text
    line_edits = 150 - sum(1 for p in round_trips if p.parent.name.startswith("l"))
    assert written > 60 and line_edits > 100, (written, line_edits)  # most changed, on the lines


def _large(n: int, without: frozenset[int] = frozenset(), extra: dict[int, list[str]] | None = None) -> str:
    """A file in a hand-written style the round trip would rewrite (`[a,b]`, wide spacing, a
    comment after a value and between entries), less the entries numbered in `without`, with
    the `extra` lines after the entries numbered there."""
    rng = random.Random(n)
    lines = ["keywords:", *(f"  - {k}" for k in KWS), "subscribers:"]
    for i in range(n):
        entry = [f"  - email:   user{i:05d}@example.org"]
        if i % 3 == 0:
            entry.append(f"    name: User {i}   # since 2024")
        entry.append(f"    keywords: [{','.join(rng.sample(KWS, rng.randint(1, 3)))}]")
        lines += (entry if i not in without else []) + (extra or {}).get(i, [])
        if i % 1000 == 999:
            lines.append("  # ---- next thousand ----")
    return "\n".join([*lines, "settings:", "  from: P <p@example.org>", ""])


def test_edits_of_a_large_file_change_their_lines_and_keep_every_other_byte(
    tmp_path: Path, round_trips: list[Path]
) -> None:
    home = _home(tmp_path, "big", _large(10_000))
    gone = ["user00000@example.org", "user04999@example.org", "USER09999@example.org"]
    assert ops.unsubscribe_many(home, [*gone, "nobody@example.org"]) == {g.lower() for g in gone}
    ops.set_status(home, "user00003@example.org", SubscriberStatus.PAUSED)
    ops.add_subscriber(home, "new@example.org", "New", [])
    ops.set_status(home, "user00003@example.org", SubscriberStatus.ACTIVE)
    ops.set_subscriber(home, "user00007@example.org", None, Frequency.WEEKLY, "Seven")
    assert (home / "subscribers.yaml").read_text(encoding="utf-8") == _large(
        10_000,
        without=frozenset({0, 4999, 9999}),
        extra={7: ["    frequency: weekly", "    name: Seven"], 9998: ["  - email: new@example.org", "    name: New"]},
    )
    assert round_trips == []
    assert len(load_config(home, {}).subscribers) == 10_000 - 3 + 1


def test_a_change_on_a_line_with_a_comment_is_made_by_the_round_trip(
    tmp_path: Path, round_trips: list[Path]
) -> None:
    text = (
        "keywords: [A]\n"  # a flow list of keywords, still fast_yaml's subset
        "subscribers:\n"
        "  - email: a@example.org\n"
        "    frequency: daily   # for now\n"
        "  - email: b@example.org\n"
        "settings:\n"
        "  from: P <p@example.org>\n"
    )
    home = _home(tmp_path, "c", text)
    assert ops.set_subscriber(home, "a@example.org", None, Frequency.WEEKLY) == [
        "a@example.org gets a weekly digest (was: daily)"
    ]
    assert (home / "subscribers.yaml").read_text(encoding="utf-8") == text.replace(
        "frequency: daily   # for now", "frequency: weekly  # for now"
    )
    assert len(round_trips) == 1


@pytest.mark.parametrize(
    ("shape", "text"),
    [
        ("a block scalar", "subscribers:\n  - email: a@example.org\n    name: >-\n      Ann\nsettings:\n  list_name: L\n"),
        ("a flow mapping", "subscribers:\n  - {email: a@example.org, name: Ann}\nsettings:\n  list_name: L\n"),
        ("a list that is empty", "subscribers: []\n  # - email: a@example.org\nsettings:\n  list_name: L\n"),
    ],
)
def test_a_file_outside_the_line_edits_reach_is_edited_by_the_round_trip(
    tmp_path: Path, round_trips: list[Path], shape: str, text: str
) -> None:
    home = _home(tmp_path, "o", text)
    assert ops.add_subscriber(home, "b@example.org", "Bob", []) == ["added b@example.org (all keywords; daily)"]
    assert ops.set_status(home, "b@example.org", SubscriberStatus.PAUSED)[0].startswith("b@example.org is now paused")
    subs = load_config(home, {}).subscribers
    assert [(s.email, s.name, s.status) for s in subs][-1] == ("b@example.org", "Bob", SubscriberStatus.PAUSED), shape
    assert "list_name: L" in (home / "subscribers.yaml").read_text(encoding="utf-8")
    assert len(round_trips) >= 1  # the first edit at least; the second may find the file plain


def test_a_keyword_that_starts_with_a_question_mark_or_colon_can_be_followed(tmp_path: Path) -> None:
    # ruamel writes `? q` bare in a flow list, where it reads back as a mapping: following such
    # a keyword was refused ("must be a list of keyword names"), and so was any later edit of
    # the file once one subscriber followed it (the round trip dropped the quotes).
    home = tmp_path
    (home / "subscribers.yaml").write_text(
        "keywords:\n  - '? q'\n  - ':x'\n  - Alpha\nsubscribers:\n  - email: a@example.org\n"
        "  - email: b@example.org\n    keywords: ['? q']  # quoted by hand\nsettings:\n  from: P <p@example.org>\n",
        encoding="utf-8",
    )
    ops.add_subscriber(home, "c@example.org", None, ["? q", ":x"])
    ops.set_subscriber(home, "a@example.org", [":x"], None)
    ops.set_subscriber(home, "a@example.org", None, None, name="A")  # a round trip of every line
    subs = {s.email: s.keywords for s in load_config(home, {}).subscribers}
    assert subs == {"a@example.org": (":x",), "b@example.org": ("? q",), "c@example.org": ("? q", ":x")}
