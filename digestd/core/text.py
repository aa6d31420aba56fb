"""Text shortened for a message, a log line or a stored field: one rule everywhere."""

from __future__ import annotations


def cut(text: str, limit: int) -> str:
    """`text` of at most `limit` characters: a longer one ends in "…" (within the limit)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
