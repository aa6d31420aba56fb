"""The fast paths that make 10,000 subscribers take seconds (issue 6), each checked against
the slow path it replaces: fast_yaml against ruamel's safe loader, the cached quoted-printable
(paragraphs and lines) against the stdlib, sendmail's DATA against aiosmtplib's, and the ledger
journal against crash semantics."""

from __future__ import annotations

import asyncio
import binascii
import gzip
import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import Inbox
from ruamel.yaml import YAML

from digestd.config.fastyaml import NOT_SIMPLE, fast_yaml
from digestd.config.yamlread import parse_yaml
from digestd.core.records import Delivery, DeliveryStatus
from digestd.errors import ConfigError
from digestd.mail.message import Envelope, _qp
from digestd.mail.smtp import sendmail
from digestd.store.outbox import Outbox

PENDING, SENT, FAILED = DeliveryStatus.PENDING, DeliveryStatus.SENT, DeliveryStatus.FAILED

# --------------------------------------------------------------------------- fast_yaml


def _typed(x: Any) -> Any:
    """Structure with types, so True never equals 1."""
    if isinstance(x, dict):
        return ("d", [(_typed(k), _typed(v)) for k, v in x.items()])
    if isinstance(x, list):
        return ("l", [_typed(v) for v in x])
    return (type(x).__name__, x)


_SAFE = ["a", "Video Anomaly Detection", "alice@example.org", "1", "-1", "1.5", "true", "null", "",
         "2026-11-20", "a:b", "a #c", "C#", "'q'", "'it''s'", '"dq"', "[a, b]", "[]", "[ 'x, y', z ]", "é·…",
         "x]", "a, b", "yes", "0o17", '["a", 1, true]', "[a] #c", "-x", "a -", "['2506.05175', \"2506.01234\"]",
         "[ 'a' ,'b' ]", "['it''s', 'x']", "[\"a\", 'b'] #c", "['', \"\"]", "['a#b', '[c]', 'd, e']"]  # fmt: skip
_ODD = ["-", "--", "- ", "[-]", "? ", "a ?", "0x1f", "1e3", ".inf", "False", "no", "~", "12:30", "a: b",
        '"e\\n"', "[a,]", "{a: 1}", "&x a", "*x", "!!str 5", "|", ">", "- a", "-5", "@x", "`x", "%x", "? x",
        "=", "<<", "[a, [b]]", "[a #c]", "'unterminated", '"x" tail', "'x' #c", "[a]x", "trail ", "'a'b",
        "x: [1, 2]", "#c", "a  #  c", "['a' 'b']", "['a',]", "[\"e\\n\", 'x']", "['a']b", "['a', 'b'"]  # fmt: skip
_KEYS = ["keywords", "subscribers", "settings", "email", "name", "from", "k", "k-2", "_x", "1", "true", "a b",
         "'q'", "? k"]  # fmt: skip


def _doc(rng: random.Random, depth: int = 0, indent: int = 0) -> list[str]:
    def scalar() -> str:
        return rng.choice(_SAFE) if rng.random() < 0.85 else rng.choice(_ODD)

    pad = " " * indent
    lines: list[str] = []
    kind = rng.choice(["map", "seq"]) if depth < 3 else "scalar"
    if kind == "map":
        for _ in range(rng.randint(1, 4)):
            key = rng.choice(_KEYS[:7]) if rng.random() < 0.9 else rng.choice(_KEYS)
            if rng.random() < 0.4 and depth < 3:
                lines.append(f"{pad}{key}:" + rng.choice(["", " #c", "  "]))
                lines += _doc(rng, depth + 1, indent + rng.choice([0, 2, 2, 2, 4, 1]))
            else:
                lines.append(f"{pad}{key}: {scalar()}")
    elif kind == "seq":
        for _ in range(rng.randint(1, 4)):
            r = rng.random()
            if r < 0.3 and depth < 3:
                sub = _doc(rng, depth + 1, indent + 2)
                lines.append(f"{pad}- {sub[0].lstrip(' ')}")
                lines += sub[1:]
            elif r < 0.4:
                lines.append(f"{pad}-")
            else:
                lines.append(f"{pad}- {scalar()}")
    else:
        lines.append(pad + scalar())
    if rng.random() < 0.03:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(["", "# comment", "   ", "  # x", "---", "\t"]))
    return lines


def test_fast_yaml_builds_what_ruamel_builds_or_leaves_it_to_ruamel() -> None:
    rng = random.Random(6)
    handled = 0
    for _ in range(3000):
        text = "\n".join(_doc(rng)) + rng.choice(["\n", "", "\n\n"])
        try:
            expected: Any = YAML(typ="safe", pure=True).load(text)
        except Exception:
            expected = NOT_SIMPLE  # an error: only ruamel may report it (with file and line)
        got = fast_yaml(text)
        if got is NOT_SIMPLE:
            continue
        handled += 1
        assert expected is not NOT_SIMPLE, text
        assert _typed(got) == _typed(expected), text
    assert handled > 500  # the fast path did most of the plain documents


def test_fast_yaml_reads_the_files_digestd_writes() -> None:
    repo = Path(__file__).resolve().parent.parent
    texts = [(repo / "subscribers.yaml").read_text(encoding="utf-8"), """\
# Daily Papers
keywords:                      # one arXiv search each
  - Video Anomaly Detection
  - name: Vision Language Model
    categories: [cs.CV, cs.CL]
    query: 'ti:"vision language model" OR abs:"VLM"'
subscribers:
  - email: alice@example.org
    name: Alice
    keywords: [Video Anomaly Detection]
  - email: bob@example.org
    frequency: weekly
settings:
  from: Daily Papers <papers@example.org>
  timezone: Asia/Shanghai
  readme_rows: 20
  max_rate: 2.5
  full_abstracts: false
"""]
    for text in texts:
        data = fast_yaml(text)
        assert data is not NOT_SIMPLE
        assert _typed(data) == _typed(YAML(typ="safe", pure=True).load(text))


def test_malformed_yaml_still_gets_ruamels_message_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "subscribers.yaml"
    with pytest.raises(ConfigError, match=r"subscribers.yaml, line 3"):
        parse_yaml("keywords:\n  - a\n  b: [c\n", path)


# --------------------------------------------------------------------------- message encoding


def test_cached_quoted_printable_matches_the_stdlib() -> None:
    rng = random.Random(7)
    alphabet = ["a", " ", "\t", "\n", "\n\n", ".", "=", "é", "·", "x" * 80, "y" * 70, "z" * 73, " \n", "\r\n",
                "\r", "From ", "-", "\n\n\n", "  "]  # fmt: skip
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        raw = text.replace("\r\n", "\n").replace("\r", "\n").encode()
        assert _qp(text) == binascii.b2a_qp(raw, istext=True).replace(b"\n", b"\r\n"), repr(text)
        assert _qp(text, "\n") == binascii.b2a_qp(raw, istext=True).replace(b"\n", b"\r\n"), repr(text)


# --------------------------------------------------------------------------- sendmail fast path


def _send(port: int, env: Envelope) -> None:
    import aiosmtplib

    async def go() -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5)
        await client.connect()
        try:
            await sendmail(client, env, timeout=5, final_timeout=5)
        finally:
            await client.quit()

    asyncio.run(go())


@pytest.mark.parametrize("crlf", [True, False])
def test_sendmail_dot_stuffs_and_delivers_the_bytes_unchanged(smtp: tuple[Any, Inbox], crlf: bool) -> None:
    controller, inbox = smtp
    data = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\r\n.\r\nend\r\n"
    env = Envelope("a@example.org", "b@example.org", data if crlf else data.replace(b"\r\n", b"\n"), "<m@x>", crlf)
    _send(controller.port, env)
    assert inbox.raw == [data]


def test_sendmail_refused_recipient_raises_as_aiosmtplib_does(smtp: tuple[Any, Inbox]) -> None:
    import aiosmtplib

    controller, inbox = smtp
    inbox.refuse_rcpt["b@example.org"] = "550 5.1.1 no such user"
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as err:
        _send(controller.port, Envelope("a@example.org", "b@example.org", b"Subject: x\r\n\r\nx\r\n", "<m@x>", True))
    assert err.value.recipients[0].code == 550


# --------------------------------------------------------------------------- ledger journal


def _outbox_with(tmp_path: Path, n: int) -> tuple[Outbox, list[int]]:
    outbox = Outbox(tmp_path / "state" / "outbox.json")
    items = [Delivery(0, f"s{i}@example.org", None, 1, "2026-11-20", "2026-11-20T00:00:00Z", {"K": ("2611.00001",)},
                      f"<m{i}@example.org>", PENDING) for i in range(n)]
    keys = [d.key for d in outbox.add_deliveries(items)]
    outbox.commit()
    return outbox, keys


def test_outcomes_go_to_a_journal_replayed_on_open_and_folded_in_at_the_end(tmp_path: Path) -> None:
    outbox, ids = _outbox_with(tmp_path, 50)
    path = tmp_path / "state" / "outbox.json"
    before = path.read_bytes()
    for doc_id in ids[:10]:
        outbox.mark(doc_id, SENT, sent_at="2026-11-20T12:00")
    outbox.sync()
    journal = tmp_path / "state" / "outbox.journal"
    assert path.read_bytes() == before and journal.exists()  # an append, not a rewrite
    # a crash now: the next process sees the outcomes (a torn last line is skipped)
    with journal.open("ab") as fh:
        fh.write(b'{"id":' + str(ids[10]).encode() + b',"mid":"<m10@exa')
    reader = Outbox(path, read_only=True)
    assert len(reader.pending()) == 40
    reader.close()
    assert path.read_bytes() == before and journal.exists()  # a reader never writes
    writer = Outbox(path)
    writer.mark(ids[20], SENT, sent_at="2026-11-20T12:01")
    writer.close()  # the end of a run: outbox.json holds everything, the journal is gone
    assert not journal.exists()
    sent = [d for d in json.loads(path.read_bytes())["deliveries"].values() if d["status"] == SENT]
    assert len(sent) == 11


def test_a_journal_record_for_another_delivery_with_the_same_id_is_ignored(tmp_path: Path) -> None:
    outbox, ids = _outbox_with(tmp_path, 5)
    outbox.close()
    (tmp_path / "state" / "outbox.journal").write_text(
        json.dumps({"id": ids[0], "mid": "<another@example.org>", "set": {"status": SENT}}) + "\n")
    assert len(Outbox(tmp_path / "state" / "outbox.json").pending()) == 5


def test_a_journal_record_that_would_make_a_delivery_malformed_is_skipped(tmp_path: Path) -> None:
    outbox, ids = _outbox_with(tmp_path, 2)
    outbox.close()
    (tmp_path / "state" / "outbox.journal").write_text(
        json.dumps({"id": ids[0], "mid": "<m0@example.org>", "set": {"status": "delivered"}}) + "\n"
        + json.dumps({"id": ids[1], "mid": "<m1@example.org>", "set": {"status": SENT}}) + "\n")
    reopened = Outbox(tmp_path / "state" / "outbox.json")
    assert [d.status for d in reopened.all_deliveries()] == [PENDING, SENT]


def test_prune_moves_earlier_days_sent_records_to_a_compressed_archive(tmp_path: Path) -> None:
    outbox, ids = _outbox_with(tmp_path, 4)
    outbox.mark(ids[0], SENT, sent_at="2026-11-20T12:00")
    outbox.mark(ids[1], FAILED, error="550 no such user")
    outbox.commit()
    outbox.prune(14, "2026-11-20")  # same day: everything stays
    assert len(list(outbox.all_deliveries())) == 4
    outbox.prune(14, "2026-11-21")
    outbox.commit()
    left = {d.message_id: d.status for d in outbox.all_deliveries()}
    assert left == {"<m1@example.org>": FAILED, "<m2@example.org>": PENDING, "<m3@example.org>": PENDING}
    archived = gzip.decompress((tmp_path / "state" / "sent" / "2026-11-20.jsonl.gz").read_bytes())
    assert [json.loads(line)["message_id"] for line in archived.splitlines()] == ["<m0@example.org>"]
    outbox.prune(14, "2026-12-20")  # past keep_days: the failure and the archive go
    outbox.close()
    assert [d.status for d in Outbox(tmp_path / "state" / "outbox.json").all_deliveries()] == [PENDING] * 2
    assert not (tmp_path / "state" / "sent" / "2026-11-20.jsonl.gz").exists()
