"""The text of `digestd status`: one section per question an operator asks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from digestd.core.quiet import WEEKEND_NOTE
from digestd.core.records import RunSummary

SHOWN_PENDING = 200  # pending deliveries the text lists one by one (--json lists all)

if TYPE_CHECKING:
    from digestd.ops.status import Failure, KeywordState, Status


def status_lines(s: Status) -> list[str]:
    """Every section, in the order an operator reads them."""
    return [
        f"instance: {s.home}",
        *_run_lines(s.last_run),
        f"next run: {s.next_run or 'no digestd.timer installed (see `digestd systemd`)'}",
        *_incident_lines(s),
        "keywords:" + ("" if s.announcement_day else f" (today: {WEEKEND_NOTE})"),
        *(_keyword_line(k) for k in s.keywords),
        *_delivery_lines(s),
        *_people_lines(s),
    ]


def _run_lines(run: RunSummary | None) -> list[str]:
    if run is None:
        return ["last run: never"]
    mailed = f"wrote {run.sent} to {run.written_to} (not sent)" if run.written_to else f"sent {run.sent}"
    lines = [f"last run: {run.time} ({run.date}): {run.outcome.value}, {mailed}, "
             f"pending {run.pending}, failed {run.failed}"]
    if run.fatal:
        lines.append(f"  stopped: {run.fatal}")
    return lines


def _incident_lines(s: Status) -> list[str]:
    problems = [f"  {i.detail} (since {i.opened})" for i in s.incidents]
    if s.ops_problem:
        problems.append(f"  {s.ops_problem} (open problems and quiet-keyword counts are not shown)")
    return ["open problems:", *problems] if problems else []


def _keyword_line(k: KeywordState) -> str:
    state = "baseline pending" if k.baseline else f"{k.stored} stored"
    f = k.fetch
    last = "never fetched"
    if f.last_success:
        last = f"last fetch {f.last_success}: {f.fetched} fetched, {f.new} new"
    err = f"; LAST ATTEMPT FAILED: {f.error}" if f.error else ""
    quiet = ""
    if k.quiet.silent:
        quiet = f"; QUERY TO CHECK: {k.quiet.note}"
    elif k.quiet.streak >= 2 and k.quiet.note is None:
        quiet = f"; nothing new on {k.quiet.streak} announcement day(s) in a row"
    return f"  {k.name}: {state}; {last}{err}{quiet}"


def _failure_line(f: Failure) -> str:
    tries = f" ({f.attempts} attempt(s))" if f.attempts else ""
    return f"  {f.status.value} {f.date} {f.email}: {f.error or 'no answer recorded'}{tries}"


def _delivery_lines(s: Status) -> list[str]:
    d = s.deliveries
    lines = [f"subscribers: {s.subscribers}; deliveries: {d.pending} pending, "
             f"{d.sent} sent on the last run's day (older ones: state/sent/), "
             f"{d.failed} failed in the last 14 days"]
    if s.pending:
        lines.append("pending (waiting to be sent):")
        lines.extend(
            f"  {w.email}: digest of {w.date}, waiting {_age(w.age_hours)}, {w.attempts} attempt(s), "
            f"last error: {w.error or 'none (not tried yet)'}"
            for w in s.pending[:SHOWN_PENDING]
        )
        if d.pending > SHOWN_PENDING:
            lines.append(f"  ... and {d.pending - SHOWN_PENDING} more (digestd status --json lists them)")
    if s.last_run_failed:
        lines.append("failed on the last run (the server's answer):")
        lines.extend(_failure_line(f) for f in s.last_run_failed)
    if d.unknown > d.unknown_resent:
        lines.append(f"  {d.unknown - d.unknown_resent} unknown: the server never answered after the message "
                     "was sent (resent once by the next run, with the same Message-ID)")
    if d.unknown_resent:  # said "resent by the next run" too, which never came: at most once
        lines.append(f"  {d.unknown_resent} unknown after their one resend: not sent again "
                     "(ask those subscribers whether it arrived)")
    earlier = [f for f in s.failed if f not in s.last_run_failed]
    if earlier:
        lines.append("failed earlier (last 14 days):")
        lines.extend(_failure_line(f) for f in earlier)
    return lines


def _people_lines(s: Status) -> list[str]:
    lines: list[str] = []
    if s.paused:
        lines.append("paused subscribers:")
        lines.extend(f"  {p.email}: {p.reason}" + (f" (since {p.since})" if p.since else "")
                     for p in s.paused)
    if s.bounces.suppressed:
        lines.append("suppressed addresses (never mailed):")
        lines.extend(f"  {x.email}: {x.reason}" + (f" (since {x.since})" if x.since else "")
                     for x in s.bounces.suppressed)
    if s.weekly:
        lines.append("weekly subscribers, next digest:")
        lines.extend(f"  {w.email}: {w.next_digest}" for w in s.weekly)
    lines.append(f"last bounce check: {s.bounces.last_check or 'never'}")
    return lines


def _age(hours: float) -> str:
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"
