"""Stage 0 (when a bounce source is configured): read new bounces and complaints, apply the
policy (digestd/core/bounce_policy.py), and only then mark the messages read, so a kill
before the suppression list is written leaves them to be read again."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from digestd.config import subscribers as subscriptions
from digestd.config.settings import Config
from digestd.core.bounce_policy import Action, ActionKind, BounceKind, SoftBounce, Suppression, decide
from digestd.errors import ConfigError, DigestdError
from digestd.mail.bounces import Bounce, Fetched, ImapBox, classify, maildir_mark, maildir_new
from digestd.mail.verp import read_verp_token, verp_id
from digestd.store.suppressions import Suppressions, opened

log = logging.getLogger(__name__)

# Seconds one check may spend reading messages. A subscriber holding their own token could
# mail slow-to-parse messages (flufl.bounce takes seconds on 5 MB of short lines); the run's
# digests wait for the check, so past this the rest waits for the next check.
CHECK_BUDGET = 120.0


@dataclass(slots=True)
class BounceCheck:
    """What one check did, for the run's messages and `status`."""

    source: str
    read: int = 0
    actions: list[str] = field(default_factory=list)  # one line per action
    ignored: list[str] = field(default_factory=list)  # not a bounce, or not about a subscriber
    unreadable: list[str] = field(default_factory=list)  # left alone
    deferred: bool = False  # the check ran out of time: the other messages wait for the next

    def summary(self) -> str:
        later = f"; the rest wait for the next check ({CHECK_BUDGET:g} s spent)" if self.deferred else ""
        return (f"bounces from {self.source}: {self.read} read, {len(self.actions)} action(s), "
                f"{len(self.ignored)} ignored, {len(self.unreadable)} unreadable{later}")


def check_config(cfg: Config) -> None:
    """VERP tokens are signed: a bounce address needs the instance secret."""
    if cfg.settings.bounce_address and not cfg.secret:
        raise ConfigError("settings.bounce_address is set, so each digest's envelope sender carries a "
                          "signed token, but no key signs it: set DIGESTD_SECRET_FILE (or DIGESTD_SECRET)")


def check_bounces(cfg: Config, now: datetime | None = None, budget: float = CHECK_BUDGET) -> BounceCheck:
    """Read the configured source once, for at most about `budget` seconds; BounceSourceError
    if it cannot be reached."""
    src = cfg.bounce_source
    if src is None:
        raise ConfigError("no bounce source: set DIGESTD_BOUNCE_MAILDIR or DIGESTD_BOUNCE_IMAP_URL")
    if not cfg.settings.bounce_address:
        raise ConfigError("a bounce source is set but settings.bounce_address is not, so no digest "
                          "carries the token that says whom a bounce is about")
    check_config(cfg)
    now = now or datetime.now(UTC)
    if src.imap is not None:
        box = ImapBox(src.imap)
        try:
            return _process(cfg, src.describe(), box.new(), box.mark, now, budget)
        finally:
            box.close()
    assert src.maildir is not None
    return _process(cfg, src.describe(), maildir_new(src.maildir), maildir_mark, now, budget)


def _process(cfg: Config, where: str, items: Iterator[Fetched], mark: Callable[[str], None],
             now: datetime, budget: float) -> BounceCheck:
    result = BounceCheck(where)
    done: list[str] = []
    unsubscribe: list[str] = []
    keys = _ids(cfg)
    deadline = time.monotonic() + budget
    with opened(cfg.paths.suppressions_db) as store:
        for n, item in enumerate(items):
            if n and time.monotonic() > deadline:  # unmarked, so the next check reads them
                result.deferred = True
                log.warning("bounce check: stopped after %g s; the other messages wait for the next check",
                            budget)
                break
            if item.raw is None:
                result.unreadable.append(f"{item.ref}: {item.problem}")
                log.warning("bounce message %s left alone: %s", item.ref, item.problem)
                continue
            try:
                bounce = classify(item.raw, str(cfg.settings.bounce_address))
            except Exception as err:  # a stranger's message the parser chokes on (nested 1,000 deep)
                problem = f"it cannot be parsed ({type(err).__name__})"
                result.unreadable.append(f"{item.ref}: {problem}")
                log.warning("bounce message %s left alone: %s", item.ref, problem)
                continue
            result.read += 1
            whom = _read(keys, bounce) if bounce else None
            if bounce is None or whom is None:
                why = ("not a bounce of a digest (an auto-reply, or no token of ours)" if bounce is None
                       else "no valid token of ours names a subscriber")
                result.ignored.append(f"{item.ref}: {why}")
            else:
                email, run = whom
                action = _apply(cfg, store, bounce, email, run, now)
                result.actions.append(action.line)
                log.warning("%s", action.line)  # address, reason and diagnostic
                if action.kind is ActionKind.UNSUBSCRIBE:
                    unsubscribe.append(email)
            done.append(item.ref)
        store.set_last_check({"time": _stamp(now), "source": where, "read": result.read,
                              "actions": len(result.actions), "unreadable": len(result.unreadable)})
    if unsubscribe:
        subscriptions.unsubscribe_many(cfg.paths.home, unsubscribe)
    for ref in done:  # only after the suppression list is on disk
        mark(ref)
    return result


def _secrets(cfg: Config) -> list[bytes]:
    """The current key, then earlier ones (a digest sent before a key rotation bounces later)."""
    return [k for k in (cfg.secret, *cfg.previous_secrets) if k]


Ids = list[tuple[bytes, dict[str, str]]]  # per key: token id -> address as in subscribers.yaml


def _ids(cfg: Config) -> Ids:
    """Computed once per check: one keyed hash per subscriber and key."""
    return [(k, {verp_id(k, s.email): s.email for s in cfg.subscribers}) for k in _secrets(cfg)]


def _read(keys: Ids, bounce: Bounce) -> tuple[str, int] | None:
    """The subscriber (as in subscribers.yaml) and run a genuine token names."""
    for secret, ids in keys:
        for token in bounce.tokens:
            got = read_verp_token(secret, token)
            if got is not None and got.address_id in ids:
                return ids[got.address_id], got.run
    return None


def _apply(cfg: Config, store: Suppressions, bounce: Bounce, email: str, run: int, now: datetime) -> Action:
    detail = f"{bounce.status} {bounce.diagnostic}".strip()
    if bounce.kind is not BounceKind.COMPLAINT and (was := store.get(email)) is not None:
        return Action(ActionKind.COUNT, email, None, detail,  # a digest sent before it was suppressed
                      f"{email} bounced again ({detail}); suppressed since {was.since[:10]}")
    action = decide(bounce.kind, email, detail, store.soft(email), now, cfg.settings.soft_bounce_limit)
    if action.kind is ActionKind.COUNT:
        store.add_soft(SoftBounce(email, _stamp(now), detail), now)
    elif action.reason is not None:
        store.suppress(Suppression(email, action.reason, detail, _stamp(now), run))
    return action


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def before_run(cfg: Config, now: datetime) -> list[str]:
    """The check every run does first when a source is configured: the run's messages. A
    mailbox that cannot be read is said and the run goes on (digests still go out)."""
    if cfg.bounce_source is None:
        return []
    try:
        got = check_bounces(cfg, now)
    except DigestdError as err:
        log.warning("bounce check failed: %s", err)
        return [f"bounces not checked: {err}"]
    return [got.summary(), *got.actions, *(f"left alone: {u}" for u in got.unreadable)]
