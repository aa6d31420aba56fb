"""What `digestd status` shows an operator, gathered from the state without changing it."""

from __future__ import annotations

from collections import Counter
from typing import Any

from digestd.config.load import Config
from digestd.core.records import DeliveryStatus
from digestd.store.state import Outbox, PaperStore


def gather(cfg: Config, next_timer: str | None) -> dict[str, Any]:
    store = PaperStore(cfg.paths.papers_db, read_only=True)
    outbox = Outbox(cfg.paths.outbox_db, read_only=True)
    try:
        held = store.by_keyword()
        fetches = store.fetch_status()
        counts: Counter[str] = Counter()
        failed: list[dict[str, Any]] = []
        for d in outbox.all_deliveries():
            counts[d.status] += 1
            if d.status in (DeliveryStatus.FAILED, DeliveryStatus.UNKNOWN):
                failed.append({"email": d.email, "date": d.date, "status": d.status.value, "error": d.error})
        cursors = outbox.load_cursors()
        paused = [
            {"email": s.email, "reason": "paused in subscribers.yaml"}
            for s in cfg.subscribers
            if s.status.value == "paused"
        ] + [
            {"email": email, "reason": cur.paused}
            for email, cur in sorted(cursors.items())
            if cur.paused
        ]
        return {
            "home": str(cfg.paths.home),
            "last_run": store.last_run(),
            "next_run": next_timer,
            "keywords": [
                {
                    "name": k.name,
                    "stored": len(held.get(k.name, [])),
                    "last_success": fetches.get(k.name, {}).get("last_success"),
                    "last_fetched": fetches.get(k.name, {}).get("fetched"),
                    "last_new": fetches.get(k.name, {}).get("new"),
                    "error": fetches.get(k.name, {}).get("error"),
                    "baseline": not held.get(k.name),
                }
                for k in cfg.keywords
            ],
            "subscribers": len(cfg.subscribers),
            "deliveries": {
                "pending": counts[DeliveryStatus.PENDING],
                "sent": counts[DeliveryStatus.SENT],
                "failed": counts[DeliveryStatus.FAILED],
                "unknown": counts[DeliveryStatus.UNKNOWN],
            },
            "failed": failed[-20:],
            "paused": paused,
        }
    finally:
        outbox.close()
        store.close()
