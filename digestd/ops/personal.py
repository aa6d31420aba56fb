"""Personal data: everything digestd holds about one address, shown (`subscribers export
EMAIL`) or erased (`subscribers forget EMAIL`). Held in: subscribers.yaml, the outbox's cursor
and ledger rows, the sent/ archive, and the suppression list. A forgotten address that was
suppressed leaves only a salted hash, so a stale copy of the YAML cannot mail it again."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

from tinydb import Query

from digestd.config import subscribers as subscriptions
from digestd.config.settings import Config, Paths
from digestd.core.bounce_policy import Suppression
from digestd.errors import StateError, UsageError
from digestd.store.atomic import write_atomic
from digestd.store.lock import RunLock
from digestd.store.outbox import Outbox
from digestd.store.suppressions import opened


def _same(email: str) -> Any:
    wanted = email.strip().lower()
    return Query().email.test(lambda e: isinstance(e, str) and e.lower() == wanted)


def _archived(folder: Path, email: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl.gz")) if folder.is_dir() else ():
        for n, line in enumerate(_read_gz(path).splitlines(), 1):
            doc = _record(path, n, line)
            if isinstance(doc, dict) and str(doc.get("email", "")).lower() == email.lower():
                rows.append(doc)
    return rows


def _read_gz(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise StateError(f"cannot read the sent archive {path}: {err}") from None


def _record(path: Path, n: int, line: bytes) -> Any:
    """One line of the sent archive as JSON; a line cut or edited into something else is named
    (skipping it could keep, or export only part of, what a person asked about)."""
    try:
        return json.loads(line)
    except ValueError:  # UnicodeDecodeError too
        raise StateError(f"cannot read the sent archive {path}, line {n}: it is not a JSON record; "
                         "fix or delete that line and run the command again") from None


def export_person(cfg: Config, email: str) -> dict[str, Any]:
    """Everything held about `email`, as plain JSON values."""
    key = email.strip().lower()
    sub = next((s for s in cfg.subscribers if s.email.lower() == key), None)
    out: dict[str, Any] = {"email": email, "subscriber": None, "cursor": None, "deliveries": [],
                           "sent_archive": [], "suppression": None, "transient_failures": []}
    if sub is not None:
        out["subscriber"] = {"email": sub.email, "name": sub.name, "status": sub.status.value,
                             "frequency": sub.frequency.value,
                             "keywords": list(sub.keywords) if sub.keywords is not None else None}
    if cfg.paths.outbox_db.exists():
        outbox = Outbox(cfg.paths.outbox_db, read_only=True)
        try:
            cur = outbox.load_cursors().get(key)
            out["cursor"] = cur.to_doc(None) if cur is not None else None
            out["deliveries"] = [d.to_doc() for d in outbox.all_deliveries() if d.email.lower() == key]
        finally:
            outbox.close()
    out["sent_archive"] = _archived(cfg.paths.state_dir / "sent", key)
    if cfg.paths.suppressions_db.exists():
        with opened(cfg.paths.suppressions_db, read_only=True) as s:
            got = s.get(key)
            out["suppression"] = got.to_doc() if got else ({"hashed": True} if s.is_suppressed(key) else None)
            out["transient_failures"] = [x.to_doc() for x in s.soft(key)]
    return out


def forget_person(cfg: Config, email: str) -> list[str]:
    """Erase everything about `email` (under the run lock, so no run writes it back). The lock
    comes first: while a run holds it, nothing is changed (subscribers.yaml included)."""
    key = email.strip().lower()
    lines: list[str] = []
    with RunLock(cfg.paths.lock):
        if subscriptions.unsubscribe_many(cfg.paths.home, [key]):
            lines.append(f"removed {email} from subscribers.yaml")
        if cfg.paths.outbox_db.exists():
            outbox = Outbox(cfg.paths.outbox_db)
            try:
                cursors = outbox.load_cursors()
                had_cursor = cursors.pop(key, None) is not None
                if had_cursor:
                    outbox.save_cursors(cursors)
                gone = outbox.deliveries.remove(_same(key))
                outbox.commit()
            finally:
                outbox.close()
            if had_cursor or gone:
                lines.append(f"erased its cursor and {len(gone)} ledger row(s)")
        n = _forget_archive(cfg.paths.state_dir / "sent", key)
        if n:
            lines.append(f"erased {n} row(s) of the sent archive")
        with opened(cfg.paths.suppressions_db) as s:
            if s.forget(key):
                lines.append("it was suppressed: only a salted hash of the address is kept, "
                             "so it is never mailed")
    return lines or [f"nothing is held about {email}"]


def _forget_archive(folder: Path, email: str) -> int:
    removed = 0
    for path in sorted(folder.glob("*.jsonl.gz")) if folder.is_dir() else ():
        kept: list[bytes] = []
        lines = _read_gz(path).splitlines()
        for n, line in enumerate(lines, 1):
            doc = _record(path, n, line)
            if isinstance(doc, dict) and str(doc.get("email", "")).lower() == email:
                removed += 1
            else:
                kept.append(line)
        if len(kept) != len(lines):
            write_atomic(path, gzip.compress(b"".join(x + b"\n" for x in kept), compresslevel=1, mtime=0))
    return removed


def refuse_suppressed(paths: Paths, email: str, *, force: bool) -> list[str]:
    """Before `subscribers add`: a suppressed address is refused (naming why and since when);
    with `force` its suppression is lifted and said so. Only the state is read: checking
    subscribers.yaml is the edit's job, which names a broken line and changes nothing."""
    if not paths.suppressions_db.exists():
        return []
    with opened(paths.suppressions_db, read_only=True) as s:
        got = s.get(email)
        if got is None and not s.is_suppressed(email):
            return []
    why = (f"suppressed since {got.since[:10]} ({got.reason.value}: {got.diagnostic})" if got
           else "suppressed before its data was forgotten")
    if not force:
        raise UsageError(f"{email} is {why}; add it with --force to mail it again")
    unsuppress(paths, email)
    return [f"lifted the suppression of {email} ({why})"]


def unsuppress(paths: Paths, email: str) -> list[str]:
    """`subscribers unsuppress`: mail the address again (transient failures are forgotten too)."""
    with RunLock(paths.lock), opened(paths.suppressions_db) as s:
        if not s.remove(email):
            return [f"{email} is not suppressed"]
        s.clear_soft(email)
    return [f"{email} is no longer suppressed"]


def suppressed_records(cfg: Config) -> list[Suppression]:
    if not cfg.paths.suppressions_db.exists():
        return []
    with opened(cfg.paths.suppressions_db, read_only=True) as s:
        return s.all()
