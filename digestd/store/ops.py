"""ops.json: what digestd watches across runs, for `status` and alerts.

Tables: history (one document per keyword: its recent successful days and new-paper counts,
and its failure streak; see core/quiet.py) and incidents (one document per open incident;
see core/incidents.py). A separate file from papers.json and outbox.json: losing it costs
only a few days of silence counting and one repeated alert, never mail.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from digestd.core.incidents import Incident, incident_from_doc
from digestd.core.quiet import KeywordHistory, history_from_doc
from digestd.store import db

OPS_AFRESH = ("Nothing is lost that matters: silent-keyword counting starts again and an open "
              "alert may be mailed once more")


def ops_path(state_dir: Path) -> Path:
    return state_dir / "ops.json"


def check_ops(data: dict[str, Any]) -> str | None:
    """ops.json: history {keyword, days, fail_streak}, incidents {kind, subject, ...}."""
    return (
        db.check_tables(data)
        or db.check_each("history", data.get("history", {}), lambda k, d: history_from_doc(d))
        or db.check_each("incidents", data.get("incidents", {}), lambda k, d: incident_from_doc(d))
    )


class OpsStore:
    """Keyword histories and open incidents; read whole, written whole (they are small)."""

    def __init__(self, state_dir: Path, *, read_only: bool = False) -> None:
        path = ops_path(state_dir)
        self.missing = not path.exists()
        self.db = db.open_db(path, read_only=read_only, check=check_ops, afresh=OPS_AFRESH)
        self.history_table = self.db.table("history", cache_size=0)
        self.incident_table = self.db.table("incidents", cache_size=0)

    def histories(self) -> dict[str, KeywordHistory]:
        return {h.keyword: h for h in (history_from_doc(d) for d in self.history_table)}

    def incidents(self) -> dict[str, Incident]:
        return {i.key: i for i in (incident_from_doc(d) for d in self.incident_table)}

    def save(self, histories: Iterable[KeywordHistory], incidents: Iterable[Incident]) -> None:
        """Replace both tables: one atomic write."""
        self.history_table.truncate()
        self.history_table.insert_multiple(h.to_doc() for h in histories)
        self.incident_table.truncate()
        self.incident_table.insert_multiple(i.to_doc() for i in incidents)
        db.commit(self.db)

    def close(self) -> None:
        self.db.close()
