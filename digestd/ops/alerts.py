"""After each run: keep each keyword's history, find the incidents, and mail the operator
(`settings.alert_to`) one short report when an incident opens or clears.

Once per incident, not once per run: an incident stays in state/ops.json while its condition
holds and is mailed once; a "resolved" note follows when it clears. An alert that cannot be
delivered (the same SMTP login that failed) stays unmailed and is tried again by the next run.
ops.json says an alert is being mailed before it goes, so a run killed meanwhile never mails it
again (at most once; its resolved note then says it may not have reached the operator).
A problem here never fails the run: it is logged in one line.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from digestd.config.settings import Config
from digestd.core.incidents import Condition, Incident, IncidentKind, Reconciled, reconcile
from digestd.core.models import RunReport
from digestd.core.quiet import KeywordHistory, is_silent, silent_streak
from digestd.core.records import Delivery, DeliveryStatus
from digestd.core.text import cut
from digestd.errors import DigestdError
from digestd.mail.headers import sender_address
from digestd.mail.message import Envelope
from digestd.mail.transport import Job, Outcome, Transport
from digestd.store.ops import OpsStore

log = logging.getLogger(__name__)

PENDING_ALERT = timedelta(hours=24)
FAILING_RUNS = 2  # a keyword failing this many runs in a row is an incident
MAX_DETAIL = 300  # characters of a server's or arXiv's answer quoted in an alert


def after_run(
    cfg: Config, report: RunReport, pending: Sequence[Delivery], transport: Transport | None,
    now: datetime, today: date,
) -> None:
    """Update histories and incidents in state/ops.json; mail what opened or cleared
    (`transport` None: a --no-mail run, which mails nobody, not even the operator)."""
    try:
        store = OpsStore(cfg.paths.state_dir)
    except DigestdError as err:
        log.warning("alerts skipped: %s", err)
        return
    try:
        histories = updated_histories(store.histories(), report, today, [k.name for k in cfg.keywords])
        known = store.incidents()
        stamp = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        result = reconcile(known, conditions(cfg, report, pending, histories, known, now), stamp)
        open_now = list(result.open)
        due = result.to_report or result.resolved
        if transport and cfg.settings.alert_to and due:
            told = {i.key for i in result.to_report}
            # on disk before it goes: a run killed while mailing it does not mail it again
            going = [replace(i, mailing=True) if i.key in told else i for i in open_now]
            store.save(histories.values(), going)
            if mail_report(cfg, transport, result, now):
                open_now = [replace(i, notified=True) if i.key in told else i for i in open_now]
                report.messages.append(f"alert mailed to {cfg.settings.alert_to}")
        store.save(histories.values(), open_now)
    except DigestdError as err:
        log.warning("alerts skipped: %s", err)
    finally:
        store.close()


def updated_histories(
    old: dict[str, KeywordHistory], report: RunReport, today: date, names: Sequence[str]
) -> dict[str, KeywordHistory]:
    """Each configured keyword's history after this run (removed keywords are forgotten)."""
    out = {n: old.get(n, KeywordHistory(n)) for n in names}
    for k in report.keywords:
        h = out.get(k.keyword)
        if h is None:
            continue
        if k.error:
            out[k.keyword] = h.after_failure()
        elif not k.baseline:
            out[k.keyword] = h.after_success(today, len(k.new))
    return out


def conditions(
    cfg: Config,
    report: RunReport,
    pending: Sequence[Delivery],
    histories: dict[str, KeywordHistory],
    known: dict[str, Incident],
    now: datetime,
) -> list[Condition]:
    """The problems this run sees, each a sentence the operator can act on."""
    found: list[Condition] = []
    errors = {k.keyword: k.error for k in report.keywords if k.error}
    for name, h in histories.items():
        if h.fail_streak >= FAILING_RUNS:
            why = _short(errors.get(name) or "see `digestd status`")
            found.append(Condition(IncidentKind.KEYWORD_FAILING, name,
                                   f"keyword {name!r} failed on {h.fail_streak} runs in a row: {why}"))
        if is_silent(h, cfg.settings.silent_days):
            found.append(Condition(IncidentKind.KEYWORD_SILENT, name,
                                   f"keyword {name!r} found nothing new on {silent_streak(h)} announcement "
                                   "days in a row: check its query"))
    if report.fatal:
        found.append(Condition(IncidentKind.SMTP_FATAL, "smtp", f"sending stopped: {_short(report.fatal)}"))
    elif (old := known.get(f"{IncidentKind.SMTP_FATAL.value}:smtp")) and not report.sent and pending:
        found.append(Condition(old.kind, old.subject, old.detail))  # no send proved it fixed yet
    stale = [d for d in pending if _age(d, now) >= PENDING_ALERT]
    if stale:
        oldest = max(_age(d, now) for d in stale)
        found.append(Condition(IncidentKind.PENDING_DAY, "deliveries",
                               f"{len(stale)} deliver{'y has' if len(stale) == 1 else 'ies have'} been "
                               f"pending for over 24 hours (oldest: {oldest.total_seconds() / 3600:.0f} h); "
                               "see `digestd status`"))
    return found


def _age(d: Delivery, now: datetime) -> timedelta:
    created = datetime.fromisoformat(d.created.replace("Z", "+00:00"))
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return now - created


def _short(text: str) -> str:
    return cut(" ".join(text.split()), MAX_DETAIL)


def report_text(result: Reconciled, list_name: str) -> tuple[str, str]:
    """The subject and body of one alert: what opened, what cleared, what is still open."""
    new, gone = result.to_report, result.resolved
    parts = [f"{len(new)} problem{'s' if len(new) != 1 else ''}"] if new else []
    parts += [f"{len(gone)} resolved"] if gone else []
    subject = f"{list_name} alert: {', '.join(parts)}"
    lines = [f"digestd ({list_name}) needs your attention." if new else f"digestd ({list_name}): resolved."]
    lines += ["", "New problems:", *(f"- {i.detail}" for i in new)] if new else []
    if gone:
        lines += ["", "Resolved:", *(f"- {i.detail} (since {i.opened}{_unmailed(i)})" for i in gone)]
    others = [i for i in result.open if i not in new]
    lines += ["", "Still open (already reported):", *(f"- {i.detail}" for i in others)] if others else []
    lines += ["", "Run `digestd status` on the server for details. You get one mail when a problem",
              "starts and one when it clears."]
    return subject, "\n".join(lines) + "\n"


def _unmailed(i: Incident) -> str:
    if i.mailing:
        return "; the run mailing its alert was stopped, so it may not have reached you"
    return "" if i.notified else "; it could not be mailed while it lasted"


def alert_envelope(cfg: Config, result: Reconciled, now: datetime) -> Envelope:
    assert cfg.settings.alert_to is not None
    subject, body = report_text(result, cfg.settings.list_name)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = cfg.sender
    msg["To"] = cfg.settings.alert_to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now.astimezone(UTC))
    domain = sender_address(cfg.sender).rpartition("@")[2] or "localhost"
    msg["Message-ID"] = make_msgid("digestd-alert", domain=domain)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to an alert
    msg.set_content(body)
    return Envelope(sender_address(cfg.sender), cfg.settings.alert_to, msg.as_bytes(),
                    str(msg["Message-ID"]), crlf=True)


def mail_report(cfg: Config, transport: Transport, result: Reconciled, now: datetime) -> bool:
    """Send one alert through the run's transport; True when it was accepted."""
    try:
        env = alert_envelope(cfg, result, now)
    except (DigestdError, ValueError) as err:
        log.warning("cannot build the alert mail: %s", err)
        return False
    outcomes: list[Outcome] = []

    async def jobs() -> AsyncIterator[Job]:
        yield Job(0, env)

    async def on_outcome(job: Job, outcome: Outcome) -> None:
        outcomes.append(outcome)

    try:
        asyncio.run(transport.deliver(jobs(), on_outcome))
    except (DigestdError, OSError) as err:
        log.warning("the alert to %s could not be sent: %s", cfg.settings.alert_to, err)
        return False
    ok = bool(outcomes) and outcomes[-1].status is DeliveryStatus.SENT
    if not ok:
        detail = outcomes[-1].detail if outcomes else "no answer"
        log.warning("the alert to %s could not be sent (%s); the next run tries again",
                    cfg.settings.alert_to, detail)
    return ok
