"""The one change "more like this" makes to subscribers.yaml: an arXiv id added to a
subscriber's `interests:`, through digestd.config.edit (one edit at a time, comments kept)."""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml.comments import CommentedSeq

from digestd.config.edit import edit
from digestd.config.tracked import Doc, set_key
from digestd.core.interests import MAX_INTERESTS
from digestd.errors import UsageError


class InterestsFull(UsageError):
    """The reader's `interests:` already hold MAX_INTERESTS entries: told apart from the file's
    other refusals (unreadable, broken meanwhile), which say nothing about the reader."""


def add_interest(home: Path, email: str, paper: str) -> list[str]:
    """Add an arXiv id to a subscriber's `interests:` (one edit, comments kept); what changed."""

    def change(data: Doc) -> list[str]:
        subs = data.get("subscribers") if isinstance(data, dict) else None
        item = next((s for s in subs or [] if isinstance(s, dict)
                     and str(s.get("email", "")).lower() == email.lower()), None)
        if item is None:
            raise UsageError(f"{email} is not a subscriber")
        current = item.get("interests")
        listed = [str(x) for x in current] if isinstance(current, list) else []
        if paper in listed:
            return [f"{paper} is already among the interests of {item['email']}; nothing changed"]
        if len(listed) >= MAX_INTERESTS:
            raise InterestsFull(f"{item['email']} has {len(listed)} interests; at most {MAX_INTERESTS}")
        seq = CommentedSeq([*listed, paper])
        seq.fa.set_flow_style()
        set_key(item, "interests", seq)
        return [f"{item['email']} is interested in {paper}"]

    return edit(home, change)
