"""Stage 2: plan who gets which papers, and queue the deliveries with the cursors in one write."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import UTC, date, datetime

from digestd.config.settings import Config
from digestd.core.models import RunReport, email_key
from digestd.core.plan import plan
from digestd.core.records import Cursor, Delivery, DeliveryStatus
from digestd.mail.message import message_id
from digestd.render.digest import plural
from digestd.stages.follow import rank_planned, ranking_inputs, start_ranking
from digestd.store.outbox import Outbox
from digestd.store.papers import Held
from digestd.store.suppressions import blocked


def queue(
    cfg: Config,
    papers: Held,
    seq: int,
    outbox: Outbox,
    cursors: Mapping[str, Cursor],
    history: Mapping[str, Mapping[str, int]],
    today: date,
    now: datetime,
    report: RunReport,
    *,
    dry_run: bool,
) -> tuple[list[Delivery], dict[str, Cursor]]:
    """Queue one pending delivery per due subscriber, with their cursors, in one atomic write;
    the queued deliveries and every subscriber's next cursor."""
    start = max(seq - 1, 0) if any(k.new for k in report.keywords) else seq
    with contextlib.ExitStack() as stack:
        inputs = ranking_inputs(cfg, papers, cursors, seq=seq, start_seq=start, today=today)
        started = start_ranking(inputs)  # in a child on the other core while the plan is made
        if started is not None:
            stack.enter_context(started)
        planned, after = plan(
            cfg.subscribers,
            cfg.keywords,
            papers,
            cursors,
            seq=seq,
            start_seq=start,
            today=today,
            weekly_day=cfg.settings.weekly_day,
            history=history,
        )
        suppressed = blocked(cfg.paths.suppressions_db, [p.email for p in planned])
        planned = [p for p in planned if email_key(p.email) not in suppressed]  # their papers are skipped
        ranked = rank_planned(cfg, planned, inputs, started)  # by relevance to each reader's interests
    created = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    iso = today.isoformat()
    deliveries = [
        Delivery(
            key=0,
            email=r.digest.email,
            name=r.digest.name,
            run=seq,
            date=iso,
            created=created,
            papers=r.digest.papers,  # the plan's tuples, shared by the readers of a keyword
            message_id=message_id(cfg.sender, r.digest.email, seq, iso),
            status=DeliveryStatus.PENDING,
            for_you=r.for_you,
            more=r.more,
        )
        for r in ranked
    ]
    del planned, ranked  # 100,000 plans, no longer needed by the commit below (its memory peak)
    if dry_run:
        for d in deliveries:
            n = len({pid for ids in d.papers.values() for pid in ids})
            report.messages.append(f"would mail {d.email}: {plural(n, 'new paper')}")
        report.would_mail = len(deliveries)
        return [], dict(cursors)
    queued = outbox.add_deliveries(deliveries)
    outbox.save_cursors(after)
    outbox.commit()  # the outbox write: pending deliveries and cursors together
    return queued, after
