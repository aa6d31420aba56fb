"""state/suppressions.json: the addresses digestd never mails, apart from subscribers.yaml, so
a stale copy of the YAML or a re-add cannot mail a dead or complaining address.

Tables: `suppressed` (one Suppression per address), `soft` (transient failures inside the
window), `forgotten` (salted hashes of suppressed addresses whose data was erased) and `meta`
(the salt and the last bounce check)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tinydb import Query

from digestd.core import fields as f
from digestd.core.bounce_policy import SoftBounce, Suppression, recent
from digestd.store.db import check_each, check_single, check_tables, commit, open_db, put_single, single

AFRESH = (
    "Restore it from a backup, or run again and digestd starts a new, empty suppression list "
    "(the addresses it held may be mailed again): check `digestd subscribers list` for dead addresses"
)


def _check_forgotten(_key: str, doc: Any) -> object:
    h = f.get(f.as_object(doc), "hash", str)
    if len(h) != 64:
        raise f.BadRecord("field 'hash' is not a SHA-256 hex digest")
    return h


def _check(data: dict[str, Any]) -> str | None:
    return (
        check_tables(data)
        or check_each("suppressed", data.get("suppressed", {}), lambda _k, d: Suppression.from_doc(d))
        or check_each("soft", data.get("soft", {}), lambda _k, d: SoftBounce.from_doc(d))
        or check_each("forgotten", data.get("forgotten", {}), _check_forgotten)
        or check_single("meta", data.get("meta", {}))
    )


class Suppressions:
    """The suppression list; changes are written by `commit()` in one atomic write."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.db = open_db(path, read_only=read_only, check=_check, afresh=AFRESH)
        self.read_only = read_only

    def close(self) -> None:
        self.db.close()

    def commit(self) -> None:
        if not self.read_only:
            commit(self.db)

    # --- suppressed addresses ------------------------------------------------------------------

    def all(self) -> list[Suppression]:
        return [Suppression.from_doc(d) for d in self.db.table("suppressed").all()]

    def get(self, email: str) -> Suppression | None:
        q = Query()
        doc = self.db.table("suppressed").get(q.email.test(lambda e: e.lower() == email.lower()))
        return Suppression.from_doc(doc) if doc is not None else None

    def is_suppressed(self, email: str) -> bool:
        """Suppressed by record, or by the salted hash left when its data was forgotten."""
        return self.get(email) is not None or self.hash(email) in self.hashes()

    def suppress(self, s: Suppression) -> None:
        self.remove(s.email)
        self.db.table("suppressed").insert(s.to_doc())
        self.clear_soft(s.email)

    def remove(self, email: str) -> bool:
        """Lift a suppression (record and hash); True if there was one."""
        q = Query()
        gone = self.db.table("suppressed").remove(q.email.test(lambda e: e.lower() == email.lower()))
        hashed = self.db.table("forgotten").remove(q.hash == self.hash(email))
        return bool(gone or hashed)

    # --- transient failures --------------------------------------------------------------------

    def soft(self, email: str) -> list[SoftBounce]:
        q = Query()
        docs = self.db.table("soft").search(q.email.test(lambda e: e.lower() == email.lower()))
        return [SoftBounce.from_doc(d) for d in docs]

    def add_soft(self, s: SoftBounce, now: datetime) -> None:
        """Record one transient failure; ones outside the window leave."""
        keep = [*recent(self.soft(s.email), now), s]
        self.clear_soft(s.email)
        self.db.table("soft").insert_multiple(x.to_doc() for x in keep)

    def clear_soft(self, email: str) -> None:
        q = Query()
        self.db.table("soft").remove(q.email.test(lambda e: e.lower() == email.lower()))

    # --- forgetting, and the last check ------------------------------------------------------

    def _salt(self) -> bytes:
        meta: dict[str, Any] = dict(single(self.db.table("meta")) or {})
        salt = meta.get("salt")
        if not isinstance(salt, str):
            salt = secrets.token_hex(16)
            put_single(self.db.table("meta"), {"salt": salt})
        return bytes.fromhex(salt)

    def hash(self, email: str) -> str:
        """A salted hash of the address: matches it again, never gives it back."""
        return hmac.new(self._salt(), email.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()

    def hashes(self) -> set[str]:
        return {str(d["hash"]) for d in self.db.table("forgotten").all()}

    def forget(self, email: str) -> bool:
        """Erase everything about `email`; if it was suppressed, keep only its salted hash.
        True when a hash was kept."""
        was = self.is_suppressed(email)
        self.remove(email)
        self.clear_soft(email)
        if was:
            self.db.table("forgotten").insert({"hash": self.hash(email)})
        return was

    def last_check(self) -> dict[str, Any] | None:
        meta: dict[str, Any] = dict(single(self.db.table("meta")) or {})
        last = meta.get("last_check")
        return last if isinstance(last, dict) else None

    def set_last_check(self, summary: dict[str, Any]) -> None:
        put_single(self.db.table("meta"), {"last_check": summary})


@contextmanager
def opened(path: Path, *, read_only: bool = False) -> Iterator[Suppressions]:
    """The list, committed on a clean exit (unless read-only) and closed."""
    s = Suppressions(path, read_only=read_only)
    try:
        yield s
        s.commit()
    finally:
        s.close()


def blocked(path: Path, emails: Iterable[str]) -> set[str]:
    """Which of `emails` (lower-cased) are suppressed, by record or by a forgotten one's hash."""
    if not path.exists():
        return set()
    with opened(path, read_only=True) as s:
        records = {x.email.lower() for x in s.all()}
        hashes = s.hashes()
        wanted = {e.lower() for e in emails}
        return {e for e in wanted if e in records or (hashes and s.hash(e) in hashes)}


def check_whole(path: Path) -> None:
    """Open the list for writing once, before a run mails anyone: a broken one is moved aside and
    stops that run (StateError), like papers.json, instead of failing every run read-only or
    being set aside by the bounce check while the same run mails the addresses it held."""
    if path.exists():
        with opened(path):
            pass


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """One suppressed address as `digestd status` shows it (reason as words)."""

    email: str
    reason: str
    since: str


def status_view(state_dir: Path) -> tuple[list[StatusEntry], str | None]:
    """The suppressed addresses and the time of the last bounce check, for `status` (read only)."""
    path = state_dir / "suppressions.json"
    if not path.exists():
        return [], None
    with opened(path, read_only=True) as s:
        entries = [StatusEntry(x.email, f"{x.reason.value}: {x.diagnostic}", x.since) for x in s.all()]
        last = s.last_check()
    return entries, (str(last.get("time")) if last else None)
