"""State is checked by type, not only by shape (issue "Trust", point 3): every record loaded
from state/ is checked field by field. A wrong-typed value is the same as a corrupt file:
exit 1, the file named, moved aside, one sentence on what to do; never "internal error"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, write_instance
from fakearxiv import FakeArxiv
from faultkit import run_cli
from fixtures import make_papers
from test_validation import KW, PAPER

from digestd.errors import StateError
from digestd.store.outbox import Outbox
from digestd.store.papers import PaperStore

DELIVERY = {
    "email": "alice@example.org", "name": None, "run": 2, "date": "2026-11-20",
    "created": "2026-11-20T21:00:00Z", "papers": {KW: ["2611.00001"]},
    "message_id": "<m1@example.org>", "status": "pending", "error": None,
}


def _papers(**paper: Any) -> dict[str, Any]:
    return {"papers": {"1": {"keyword": KW, "seq": 1, "paper": {**PAPER, **paper}}}}


def _delivery(**fields: Any) -> dict[str, Any]:
    return {"deliveries": {"1": {**DELIVERY, **fields}}}


def _run(**fields: Any) -> dict[str, Any]:
    run = {"time": "2026-11-20T21:00:05Z", "date": "2026-11-20", "outcome": "ok", "sent": 1, **fields}
    return {"meta": {"1": {"seq": 1, "last_run": run}}}


def _cursor(**fields: Any) -> dict[str, Any]:
    return {"cursors": {"1": {"map": {"alice@example.org": {"queued_through": 1, **fields}}}}}


WRONG_TYPES = {
    "papers.json": {
        "updated_not_a_time": _papers(updated="yesterday"),
        "published_a_number": _papers(published=20261120),
        "authors_numbers": _papers(authors=[1, 2]),
        "categories_a_string": _papers(categories="cs.CV"),
        "comment_a_list": _papers(comment=["x"]),
        "version_zero": _papers(version=0),
        "version_a_bool": _papers(version=True),
        "pdf_a_number": _papers(pdf=5),
        "seq_negative": {"papers": {"1": {"keyword": KW, "seq": -1, "paper": PAPER}}},
        "keyword_a_number": {"papers": {"1": {"keyword": 5, "seq": 1, "paper": PAPER}}},
        "fetch_error_a_number": {"fetches": {"1": {"keyword": KW, "error": 5}}},
        "seen_value_a_number": {"seen": {"1": {"map": {KW: {"2611.00009": 5}}}}},
        "seen_date_not_a_date": {"seen": {"1": {"map": {KW: {"2611.00009": ["soon", 3]}}}}},
        "fetch_fetched_text": {"fetches": {"1": {"keyword": KW, "fetched": "5"}}},
        "fetch_last_success_not_a_time": {"fetches": {"1": {"keyword": KW, "last_success": "yesterday"}}},
        "last_run_outcome_unknown": _run(outcome="fine"),
        "last_run_time_missing": _run(time=None),
        "last_run_sent_text": _run(sent="1"),
        "last_run_keyword_new_text": _run(keywords={KW: {"fetched": 5, "new": "1"}}),
    },
    "outbox.json": {
        "created_a_number": _delivery(created=5),
        "created_not_a_time": _delivery(created="tomorrow"),
        "paper_ids_numbers": _delivery(papers={KW: [1]}),
        "name_a_list": _delivery(name=["Alice"]),
        "run_text": _delivery(run="2"),
        "error_a_dict": _delivery(error={"code": 550}),
        "email_missing": {"deliveries": {"1": {k: v for k, v in DELIVERY.items() if k != "email"}}},
        "resends_negative": _delivery(resends=-1),
        "cursor_through_text": _cursor(queued_through="3"),
        "cursor_last_queued_not_a_date": _cursor(last_queued="soon"),
        "cursor_fail_streak_a_float": _cursor(fail_streak=1.5),
        "cursor_paused_a_number": _cursor(paused=3),
        "cursor_follows_unknown_reference": _cursor(follows="abc123"),
        "cursor_follows_wrong_map": _cursor(follows={KW: "1"}),
    },
}


@pytest.mark.parametrize(
    ("name", "data"),
    [(name, data) for name, cases in WRONG_TYPES.items() for data in cases.values()],
    ids=[f"{name}:{case}" for name, cases in WRONG_TYPES.items() for case in cases],
)
def test_a_wrong_typed_field_is_named_and_the_file_moved_aside(tmp_path: Path, name: str, data: Any) -> None:
    path = tmp_path / "state" / name
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    store = PaperStore if name == "papers.json" else Outbox
    with pytest.raises(StateError) as err:
        store(path)
    said = str(err.value)
    assert str(path) in said and "record" in said and "moved to" in said
    assert "\n" not in said
    assert not path.exists() and len(list(path.parent.glob(f"{name}.corrupt-*"))) == 1


def test_what_digestd_writes_passes_the_check(tmp_path: Path) -> None:
    (tmp_path / "papers.json").write_text(json.dumps({
        **_papers(), "seen": {"1": {"map": {KW: {"2611.00009": "2026-11-19", "2611.00010": ["2026-11-19", 3]}}}},
    }))
    assert PaperStore(tmp_path / "papers.json").keyword_papers(KW)[0][1].title == "T"
    (tmp_path / "outbox.json").write_text(json.dumps({**_delivery(), "cursors": {"1": {
        "map": {"alice@example.org": {"queued_through": 1, "follows": "r1"}, "bob@example.org": {"queued_through": 1}},
        "follows": {"r1": {KW: 0}}}}}))
    outbox = Outbox(tmp_path / "outbox.json")
    assert outbox.load_cursors()["alice@example.org"].follows == {KW: ((0, None),)}  # a start as an earlier digestd wrote it
    assert [d.email for d in outbox.pending()] == ["alice@example.org"]


@pytest.mark.parametrize("fields", [{"created": 5}, {"papers": {KW: [1]}}, {"date": "2026-13-40"}])
def test_a_run_over_a_wrong_typed_pending_delivery_exits_1_naming_the_file(
    tmp_path: Path, fields: dict[str, Any]
) -> None:
    home = write_instance(tmp_path / "home", [KW], [{"email": "alice@example.org"}], timezone="UTC")
    path = home / "state" / "outbox.json"
    path.write_text(json.dumps(_delivery(**fields)))
    with FakeArxiv({KW: make_papers(KW, 3)}) as fake:
        proc = run_cli(home, fake)
    assert proc.returncode == 1, proc.stderr
    assert str(path) in proc.stderr and "moved to outbox.json.corrupt-" in proc.stderr
    assert "Restore it from a backup" in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if line.strip()]) == 1


def test_status_names_a_wrong_typed_file_and_leaves_it(tmp_path: Path) -> None:
    home = write_instance(tmp_path / "home", [KW], [{"email": "alice@example.org"}])
    path = home / "state" / "papers.json"
    path.write_text(json.dumps(_papers(updated="yesterday")))
    proc = cli(home, "status")
    assert proc.returncode == 1
    assert str(path) in proc.stderr and "'updated' is not a time" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert path.exists()
