"""The memory measures of issue "Speed" (100,000 subscribers under 300 MB), each checked for
what it must not change: the same Config, the same ledger, the same cursors on disk.

- subscribers.yaml read in a forked child (config/apart.py): the same Config or the same
  ConfigError as in process; a child that dies is not a failure (the file is read here).
- The plan's id tuples are one object for all readers of a keyword; the ledger document
  shares the delivery's map; the empty `more` is one object, pickled by name.
- The cursors document is let go once read and the old one before a new one is built: a
  commit with nothing saved since writes them back, so no path loses them.
- A sent document keeps 10 keys: no null `error`, no `last_attempt` (sent_at says when).
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import write_instance
from digest_samples import sample_paper

from digestd.config import apart
from digestd.config.load import load_config
from digestd.core.models import Keyword, Subscriber, email_key
from digestd.core.plan import plan
from digestd.core.records import NO_COUNTS, Cursor, Delivery, DeliveryStatus
from digestd.errors import ConfigError
from digestd.ops import heap
from digestd.store.outbox import Outbox

KW = "Video Anomaly Detection"


def _instance(tmp_path: Path, n: int = 40) -> Path:
    subs = [{"email": f"Reader{i}@Example.org" if i % 2 else f"reader{i}@example.org", "name": f"R {i}",
             "keywords": [KW]} for i in range(n)]
    return write_instance(tmp_path / "home", [KW, "Diffusion Model"], subs, timezone="UTC")


def test_the_forked_read_gives_the_same_config(tmp_path: Path) -> None:
    home = _instance(tmp_path)
    env = {"DIGESTD_SMTP_HOST": "127.0.0.1"}
    assert apart.load_config_apart(home, env, min_bytes=0) == load_config(home, env)


def test_the_forked_read_raises_the_same_config_error(tmp_path: Path) -> None:
    home = _instance(tmp_path)
    text = (home / "subscribers.yaml").read_text().replace('"reader2@example.org"', '"not an address"')
    (home / "subscribers.yaml").write_text(text)
    with pytest.raises(ConfigError) as here:
        load_config(home, {})
    with pytest.raises(ConfigError) as there:
        apart.load_config_apart(home, {}, min_bytes=0)
    assert str(there.value) == str(here.value) and "not an address" in str(there.value)


def test_a_child_that_dies_leaves_the_file_to_be_read_in_process(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A real process death (os._exit in the child, before it answers): the run still gets its
    Config, read in process."""
    home = _instance(tmp_path)
    parent = os.getpid()
    real = apart.load_config

    def dies_in_the_child(h: Path, env: Any = None) -> Any:
        if os.getpid() != parent:
            os._exit(9)
        return real(h, env)

    monkeypatch.setattr(apart, "load_config", dies_in_the_child)
    assert apart.load_config_apart(home, {}, min_bytes=0) == load_config(home, {})


def test_a_small_file_is_read_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _instance(tmp_path, 3)

    def no_fork() -> int:
        raise AssertionError("forked for a small file")

    monkeypatch.setattr(os, "fork", no_fork)
    assert apart.load_config_apart(home, {}).subscribers[0].email == "reader0@example.org"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_allocator_hands_large_buffers_back() -> None:
    assert heap.return_large_buffers() is True


def test_readers_of_a_keyword_share_one_tuple_of_ids() -> None:
    kw = Keyword(KW)
    papers = {KW: [(1, sample_paper(i, KW, i)) for i in range(5)]}
    subs = [Subscriber(f"r{i}@example.org") for i in range(3)]
    out, _ = plan(subs, [kw], papers, {}, seq=1, start_seq=0, today=date(2026, 11, 23), weekly_day="monday")
    lists = [d.papers[KW] for d in out]
    assert len(lists) == 3 and all(ids is lists[0] for ids in lists) and len(lists[0]) == 5


def test_the_ledger_document_shares_the_delivery_map_and_writes_lists(tmp_path: Path) -> None:
    path = tmp_path / "outbox.json"
    outbox = Outbox(path)
    ids = ("2611.00001", "2611.00002")
    made = [Delivery(0, f"r{i}@example.org", None, 1, "2026-11-23", "2026-11-23T07:00:00Z", {KW: ids},
                     f"<m{i}@example.org>", DeliveryStatus.PENDING) for i in range(3)]
    queued = outbox.add_deliveries(made)
    assert queued is made and [d.key for d in queued] == [1, 2, 3]  # keyed in place
    outbox.close()
    stored = json.loads(path.read_text())["deliveries"]
    assert [doc["papers"] for doc in stored.values()] == [{KW: list(ids)}] * 3
    assert all("error" not in doc and "more" not in doc for doc in stored.values())
    back = list(Outbox(path, read_only=True).all_deliveries())
    assert [d.papers for d in back] == [{KW: ids}] * 3 and all(d.more is NO_COUNTS for d in back)


def test_the_empty_counts_are_one_object_equal_to_an_empty_dict() -> None:
    d = Delivery(1, "a@example.org", None, 1, "2026-11-23", "x", {}, "<m>", DeliveryStatus.PENDING)
    assert d.more is NO_COUNTS and not NO_COUNTS and dict(NO_COUNTS) == {}
    assert replace(d, more={}) == d and d == replace(d, more={})  # equal to an empty dict, both ways
    again = pickle.loads(pickle.dumps(d))  # noqa: S301 - our own bytes
    assert again == d and again.more is NO_COUNTS


def test_a_sent_document_keeps_ten_keys_and_the_journal_still_clears_an_error(tmp_path: Path) -> None:
    path = tmp_path / "outbox.json"
    outbox = Outbox(path)
    [d] = outbox.add_deliveries([Delivery(0, "a@example.org", "A", 1, "2026-11-23", "2026-11-23T07:00:00Z",
                                          {KW: ("2611.00001",)}, "<m@example.org>", DeliveryStatus.PENDING,
                                          error="421 try later", attempts=1)])
    outbox.mark(d.key, DeliveryStatus.SENT, error=None, sent_at="2026-11-23T07:01", attempts=2)
    lines = outbox.take()
    assert json.loads(lines[0])["set"]["error"] is None  # a replayed line clears the error too
    doc = outbox.deliveries.get(doc_id=d.key)
    assert doc is not None and "error" not in doc and "last_attempt" not in doc and len(doc) <= 10
    outbox.close()
    [back] = Outbox(path, read_only=True).all_deliveries()
    assert back.status is DeliveryStatus.SENT and back.error is None and back.sent_at == "2026-11-23T07:01"


def _cursors(n: int) -> dict[str, Cursor]:
    follows = {KW: ((1, None),)}
    return {f"r{i}@example.org": Cursor(queued_through=2, since="2026-11-20", follows=follows) for i in range(n)}


def test_cursors_let_go_once_read_are_written_back_by_any_commit(tmp_path: Path) -> None:
    path = tmp_path / "outbox.json"
    outbox = Outbox(path)
    outbox.save_cursors(_cursors(5))
    outbox.close()
    reopened = Outbox(path)
    assert reopened.load_cursors() == _cursors(5)
    assert reopened.load_cursors() == _cursors(5)  # asked again: the same
    reopened.add_deliveries([Delivery(0, "r0@example.org", None, 3, "2026-11-23", "2026-11-23T07:00:00Z", {},
                                      "<m@example.org>", DeliveryStatus.PENDING)])
    reopened.close()  # a commit with nothing saved since the read
    assert Outbox(path, read_only=True).load_cursors() == _cursors(5)


def test_a_save_that_fails_midway_loses_no_cursor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old document is let go before the new one is built. If building fails, the file is
    never written without cursors: alone, the failed save changes nothing on disk; with
    deliveries queued beside it, the commit builds the cursors again and writes both."""
    path = tmp_path / "outbox.json"
    newer = {k: Cursor(queued_through=3, since=c.since, follows=c.follows) for k, c in _cursors(4).items()}
    real = Cursor.to_doc
    for queued in (False, True):
        path.unlink(missing_ok=True)
        outbox = Outbox(path)
        outbox.save_cursors(_cursors(4))
        outbox.commit()
        calls = {"n": 0}

        def breaks_once(self: Cursor, ref: str | None = None, calls: dict[str, int] = calls) -> dict[str, Any]:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("the disk of a laptop, closed mid-run")
            return real(self, ref)

        monkeypatch.setattr(Cursor, "to_doc", breaks_once)
        if queued:
            outbox.add_deliveries([Delivery(0, "r0@example.org", None, 3, "2026-11-23", "2026-11-23T07:00:00Z",
                                            {}, "<m@example.org>", DeliveryStatus.PENDING)])
        with pytest.raises(RuntimeError):
            outbox.save_cursors(newer)
        outbox.close()  # commit
        monkeypatch.setattr(Cursor, "to_doc", real)
        reader = Outbox(path, read_only=True)
        assert reader.load_cursors() == (newer if queued else _cursors(4))
        assert len(list(reader.all_deliveries())) == (1 if queued else 0)


def test_email_key_is_the_lower_case_and_the_same_object_when_it_already_is() -> None:
    low = "reader1@example.org"
    assert email_key(low) is low
    assert email_key("Reader1@Example.ORG") == "reader1@example.org"
    assert email_key("123@456") == "123@456"


def test_reading_cursors_alone_writes_nothing(tmp_path: Path) -> None:
    """A writer that only reads the cursors (a `resume` of someone not paused, a run with
    --no-mail before anything changed) leaves outbox.json untouched: not even rewritten."""
    path = tmp_path / "outbox.json"
    outbox = Outbox(path)
    outbox.save_cursors(_cursors(3))
    outbox.close()
    before = path.stat().st_mtime_ns, path.read_bytes()
    again = Outbox(path)
    assert again.load_cursors() == _cursors(3)
    again.close()
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before


def test_a_delivery_sent_after_a_failed_try_keeps_no_stale_last_attempt(tmp_path: Path) -> None:
    path = tmp_path / "outbox.json"
    outbox = Outbox(path)
    [d] = outbox.add_deliveries([Delivery(0, "a@example.org", None, 1, "2026-11-23", "2026-11-23T07:00:00Z",
                                          {KW: ("2611.00001",)}, "<m@example.org>", DeliveryStatus.PENDING)])
    outbox.commit()
    outbox.mark(d.key, DeliveryStatus.PENDING, error="421 try later", attempts=1, last_attempt="2026-11-23T07:01:00Z")
    outbox.sync()
    outbox.mark(d.key, DeliveryStatus.SENT, sent_at="2026-11-24T07:00", attempts=2)
    outbox.sync()  # then a crash: the journal alone says what happened
    replayed = Outbox(path, read_only=True)
    [back] = replayed.all_deliveries()
    assert back.last_attempt is None and back.error is None and back.sent_at == "2026-11-24T07:00"
    replayed.close()
    outbox.close()
    stored = json.loads(path.read_text())["deliveries"][str(d.key)]
    assert "last_attempt" not in stored and "error" not in stored


def test_large_objects_under_keys_json_would_convert_write_the_same_bytes() -> None:
    from digestd.store.db import json_chunks

    big = {str(i): i for i in range(2500)}
    for data in ({"t": {"1": {"map": big}}}, {"t": {"n": {"m": big, "x": 1}}}):
        assert b"".join(json_chunks(data)) == json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
    odd: Any = {"t": {5: big, True: big, None: {"a": big}}}  # keys json writes as "5", "true", "null"
    assert b"".join(json_chunks(odd)) == json.dumps(odd, ensure_ascii=False, separators=(",", ":")).encode()


def test_a_fork_that_fails_reads_the_file_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = _instance(tmp_path)

    def no_process() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_process)
    assert apart.load_config_apart(home, {}, min_bytes=0) == load_config(home, {})
