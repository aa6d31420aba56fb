"""What a subscriber's digest looks like, before anyone is mailed: no state is changed."""

from __future__ import annotations

from digestd.config.settings import Config
from digestd.core.diff import latest
from digestd.core.models import Paper
from digestd.core.plan import followed
from digestd.errors import UsageError
from digestd.render.digest import DigestRenderer, group_for_subscriber
from digestd.render.templates import template_errors
from digestd.store.outbox import Outbox
from digestd.store.papers import PaperStore

LATEST_PER_KEYWORD = 5


def preview(cfg: Config, email: str, today: str) -> tuple[str, str, str]:
    """(text, html, source): from a pending delivery, else papers above their cursor, else the
    latest papers of their keywords."""
    sub = next((s for s in cfg.subscribers if s.email.lower() == email.lower()), None)
    if sub is None:
        raise UsageError(f"{email} is not a subscriber (see `digestd subscribers list`)")
    store, outbox = (
        PaperStore(cfg.paths.papers_db, read_only=True),
        Outbox(cfg.paths.outbox_db, read_only=True),
    )
    try:
        held = store.by_keyword()
        pending = [d for d in outbox.pending() if d.email.lower() == sub.email.lower()]
        cursor = outbox.load_cursors().get(sub.email.lower())
    finally:
        outbox.close()
        store.close()
    kws = followed(sub, cfg.keywords)
    by_id = {kw: {p.id: p for _, p in items} for kw, items in held.items()}
    additions: dict[str, list[Paper]] = {}
    source = "the pending digest"
    for d in pending:
        for kw, ids in d.papers.items():
            additions.setdefault(kw, []).extend(by_id.get(kw, {})[i] for i in ids if i in by_id.get(kw, {}))
    if not additions and cursor:
        through = cursor.queued_through
        for kw in kws:
            news = [p for s, p in held.get(kw, []) if s > through]
            if news:
                additions[kw] = latest([(0, p) for p in news], 10**6)
        source = "papers not yet mailed"
    if not additions:
        additions = {kw: latest(held.get(kw, []), LATEST_PER_KEYWORD) for kw in kws}
        source = f"the latest {LATEST_PER_KEYWORD} papers per keyword; nothing new is waiting"
    sections = group_for_subscriber(kws + [k for k in additions if k not in kws], additions)
    with template_errors(cfg.paths.templates):
        renderer = DigestRenderer(
            cfg.paths.templates,
            date=today,
            list_name=cfg.settings.list_name,
            sender=cfg.sender,
            full_abstracts=cfg.settings.full_abstracts,
            public_url=cfg.settings.public_url,
            secret=cfg.secret,
            highlights={k.name: k.highlight for k in cfg.keywords},
        )
        text, html = renderer.render(sub.email, sections)
    return text, html, source
