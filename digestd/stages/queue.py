"""Stage 2: plan who gets which papers, and queue the deliveries with the cursors in one write."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime

from digestd.config.settings import Config
from digestd.core.models import RunReport
from digestd.core.plan import plan
from digestd.core.records import Delivery, DeliveryStatus
from digestd.mail.message import message_id
from digestd.render.digest import plural
from digestd.store.outbox import Outbox
from digestd.store.papers import Held


def queue(
    cfg: Config,
    papers: Held,
    seq: int,
    outbox: Outbox,
    history: Mapping[str, Mapping[str, int]],
    today: date,
    now: datetime,
    report: RunReport,
    *,
    dry_run: bool,
) -> list[Delivery]:
    """Queue one pending delivery per due subscriber, with their cursors, in one atomic write."""
    start = max(seq - 1, 0) if any(k.new for k in report.keywords) else seq
    planned, cursors = plan(
        cfg.subscribers,
        cfg.keywords,
        papers,
        outbox.load_cursors(),
        seq=seq,
        start_seq=start,
        today=today,
        weekly_day=cfg.settings.weekly_day,
        history=history,
    )
    created = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    iso = today.isoformat()
    deliveries = [
        Delivery(
            key=0,
            email=p.email,
            name=p.name,
            run=seq,
            date=iso,
            created=created,
            papers={kw: tuple(ids) for kw, ids in p.papers.items()},
            message_id=message_id(cfg.sender, p.email, seq, iso),
            status=DeliveryStatus.PENDING,
        )
        for p in planned
    ]
    if dry_run:
        for d in deliveries:
            n = len({pid for ids in d.papers.values() for pid in ids})
            report.messages.append(f"would mail {d.email}: {plural(n, 'new paper')}")
        report.would_mail = len(deliveries)
        return []
    queued = outbox.add_deliveries(deliveries)
    outbox.save_cursors(cursors)
    outbox.commit()  # the outbox write: pending deliveries and cursors together
    return queued
