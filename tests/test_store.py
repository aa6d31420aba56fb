"""The store as tinydb tables with typed values (issue "The house", points 2-4).

- State files written by the previous digestd (tests/data/state_v1, made by the store before it
  was split: tinydb tables read with `.all()[0]`, dicts for the fetch status and the last run)
  load, keep their format when written again, and replay the journal that version left.
- The fetch status and the run summary are typed values; a failed fetch keeps the last success.
- BadRecord stays inside the store: what leaves is a StateError naming the file.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import cli, run_once, write_instance
from fakearxiv import FakeArxiv, Fault
from fixtures import make_paper, make_papers
from freezegun import freeze_time

from digestd.core.records import DeliveryStatus, FetchStatus, KeywordRun, RunOutcome, RunSummary
from digestd.errors import StateError
from digestd.pipeline import RunOptions
from digestd.store.outbox import Outbox
from digestd.store.papers import PaperStore

V1 = Path(__file__).parent / "data" / "state_v1"
A, B = "Video Anomaly Detection", "Vision Language Model"


def _v1(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    shutil.copytree(V1, state)
    return state


def test_papers_json_of_the_previous_version_loads_as_typed_values(tmp_path: Path) -> None:
    state = _v1(tmp_path)
    store = PaperStore(state / "papers.json")
    assert store.seq == 2
    assert [(s, p.id) for s, p in store.keyword_papers(A)] == [(2, "2611.00003"), (0, "2611.00001")]
    assert store.last_run() == RunSummary(
        time="2026-11-20T21:00:05Z", date="2026-11-20", outcome=RunOutcome.PARTIAL, sent=1, pending=1, failed=1,
        keywords={A: KeywordRun(2, 1, None), B: KeywordRun(0, 0, "arXiv answered 503")},
    )
    assert store.fetch_status()[B] == FetchStatus(
        B, "2026-11-20T21:00:00Z", "2026-11-19T21:00:00Z", fetched=1, new=0, error="arXiv answered 503"
    )
    assert store.seen_ids()[A]["2611.00002"].day == "2026-11-20"


def test_papers_json_written_again_keeps_the_previous_format(tmp_path: Path) -> None:
    state = _v1(tmp_path)
    before = json.loads((state / "papers.json").read_text())
    store = PaperStore(state / "papers.json")
    run = store.last_run()
    assert run is not None
    store.record_run(run)
    store.apply(store.seq, {}, store.fetch_status().values(), store.seen_ids())
    store.close()
    assert json.loads((state / "papers.json").read_text()) == before


def test_outbox_json_and_journal_of_the_previous_version_load_and_fold_in(tmp_path: Path) -> None:
    state = _v1(tmp_path)
    before = json.loads((state / "outbox.json").read_text())
    reader = Outbox(state / "outbox.json", read_only=True)
    statuses = {d.email: d.status for d in reader.all_deliveries()}
    assert statuses == {
        "alice@example.org": DeliveryStatus.SENT,
        "bob@example.org": DeliveryStatus.FAILED,
        "dave@example.org": DeliveryStatus.SENT,  # from the journal the killed run left
        "erin@example.org": DeliveryStatus.UNKNOWN,
    }
    assert reader.pending() == []  # erin's unknown digest was already resent once
    cursors = reader.load_cursors()
    assert cursors["carol@example.org"].paused == "3 permanent failures in a row"
    assert cursors["alice@example.org"].follows == {A: ((0, None),), B: ((1, None),)}  # starts, read as open spans
    reader.close()
    writer = Outbox(state / "outbox.json")
    writer.save_cursors(writer.load_cursors())
    writer.close()
    assert not (state / "outbox.journal").exists()
    after = json.loads((state / "outbox.json").read_text())
    before["deliveries"]["3"].update(status="sent", sent_at="2026-11-20T21:00:04Z")
    # follows are written back as spans ({kw: [[start, null]]}); the rest is as it was
    old_cursors, new_cursors = before.pop("cursors")["1"], after.pop("cursors")["1"]
    assert after == before

    def spans(doc: dict[str, Any]) -> dict[str, Any]:
        return {email: doc["follows"][c["follows"]] for email, c in doc["map"].items() if "follows" in c}

    assert spans(new_cursors) == {e: {kw: [[v, None]] for kw, v in f.items()} for e, f in spans(old_cursors).items()}
    strip = {e: {k: v for k, v in c.items() if k != "follows"} for e, c in old_cursors["map"].items()}
    assert {e: {k: v for k, v in c.items() if k != "follows"} for e, c in new_cursors["map"].items()} == strip


def test_status_json_shows_the_stored_run_summary_and_fetch_status_unchanged(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [A, B], [{"email": "alice@example.org"}])
    shutil.rmtree(home / "state")
    _v1(home)
    proc = cli(home, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    assert status["last_run"] == json.loads((V1 / "papers.json").read_text())["meta"]["1"]["last_run"]
    old_keys = ("name", "stored", "last_success", "last_fetched", "last_new", "error", "baseline")
    assert {k: status["keywords"][1][k] for k in old_keys} | {"stored": None} == {
        "name": B, "stored": None, "last_success": "2026-11-19T21:00:00Z", "last_fetched": 1, "last_new": 0,
        "error": "arXiv answered 503", "baseline": False,
    }
    text = cli(home, "status")
    assert "last run: 2026-11-20T21:00:05Z (2026-11-20): partial, sent 1, pending 1, failed 1" in text.stdout
    assert f"{B}: 1 stored; last fetch 2026-11-19T21:00:00Z: 1 fetched, 0 new; LAST ATTEMPT FAILED" in text.stdout


def test_a_failed_fetch_keeps_the_last_success_on_record(tmp_path: Path) -> None:
    home = write_instance(tmp_path, [A], [{"email": "alice@example.org"}], timezone="UTC")
    day1, day2 = datetime(2026, 11, 20, 21, tzinfo=UTC), datetime(2026, 11, 21, 21, tzinfo=UTC)
    with FakeArxiv({A: make_papers(A, 4)}) as fake:
        run_once(home, fake, now=day1, options=RunOptions(no_mail=True))
        fake.feeds[A] = [make_paper(900, A, "2026-11-21"), *fake.feeds[A]]
        fake.faults[A] = [Fault.status(503)] * 4
        report = run_once(home, fake, now=day2, options=RunOptions(no_mail=True))
    assert report.keywords[0].error
    store = PaperStore(home / "state" / "papers.json", read_only=True)
    status = store.fetch_status()[A]
    assert (status.last_attempt, status.last_success) == ("2026-11-21T21:00:00Z", "2026-11-20T21:00:00Z")
    assert (status.fetched, status.new, status.error) == (4, 0, report.keywords[0].error)
    run = store.last_run()
    assert run is not None and run.outcome is RunOutcome.PARTIAL and run.keywords[A].error == status.error


def test_a_bad_record_leaves_the_store_as_a_state_error_naming_the_file(tmp_path: Path) -> None:
    state = _v1(tmp_path)
    data = json.loads((state / "papers.json").read_text())
    data["fetches"]["2"]["fetched"] = "one"
    (state / "papers.json").write_text(json.dumps(data))
    with pytest.raises(StateError) as err:
        PaperStore(state / "papers.json")
    assert type(err.value) is StateError  # not the BadRecord raised inside
    assert str(err.value).startswith(f"state file {state / 'papers.json'} is unreadable (fetches record '2': ")
    assert "field 'fetched' is str, not int" in str(err.value)


def test_a_journal_that_cannot_be_written_stops_sending_with_one_sentence(tmp_path: Path) -> None:
    state = _v1(tmp_path)
    outbox = Outbox(state / "outbox.json")
    (state / "outbox.journal").unlink()
    (state / "outbox.journal").mkdir()  # after the replay: now no append can succeed
    outbox.mark(3, DeliveryStatus.SENT, sent_at="2026-11-20T21:00:09Z")
    with pytest.raises(StateError) as err:
        outbox.sync()
    assert str(err.value) == (
        f"cannot record sent digests in {state / 'outbox.journal'}: Is a directory; "
        "sending stopped so that nothing is sent twice (free space and run again)"
    )


def test_a_broken_file_that_cannot_be_moved_aside_is_named_with_the_reason(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "papers.json").write_text("{not json")
    (state / "papers.json.corrupt-20261120T210000Z" / "taken").mkdir(parents=True)  # the name it would get
    with freeze_time("2026-11-20 21:00:00"), pytest.raises(StateError) as err:
        PaperStore(state / "papers.json")
    said = str(err.value)
    assert said.startswith(f"state file {state / 'papers.json'} is unreadable (")
    assert "could not be moved aside (Is a directory); move it away yourself." in said
    assert "Restore it from a backup" in said and "\n" not in said
    assert (state / "papers.json").read_text() == "{not json"


@pytest.mark.parametrize("docs", [0, 1, 1999, 2000, 2001, 4500])
def test_state_files_are_written_in_pieces_with_the_bytes_of_one_dump(docs: int) -> None:
    """json_chunks keeps a 100,000-delivery outbox from being one 81 MB string (issue "Speed"):
    the pieces join to exactly what one json.dumps wrote before, at every piece boundary."""
    from digestd.store.db import json_chunks

    data = {"deliveries": {str(i): {"email": f"r{i}@example.org", "name": "Zoë", "papers": {"A": ["1"]}}
                           for i in range(1, docs + 1)}, "empty": {}, "cursors": {"1": {"map": {}}}}
    pieces = list(json_chunks(data))
    assert b"".join(pieces) == json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    assert len(pieces) >= 2 + docs // 2000


def test_a_write_that_fails_midway_leaves_the_old_file_whole(tmp_path: Path) -> None:
    """A chunked write that fails after its first pieces leaves the old file as it was and no
    temp file behind."""
    from digestd.store.atomic import WriteError, write_atomic

    target = tmp_path / "outbox.json"
    target.write_bytes(b'{"old":{}}')

    def pieces() -> Any:
        yield b'{"new":'
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteError, match="no space left"):
        write_atomic(target, pieces())
    assert target.read_bytes() == b'{"old":{}}'
    assert [p.name for p in tmp_path.iterdir()] == ["outbox.json"]
