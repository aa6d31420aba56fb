"""Slots: a template rendered (and CSS-inlined) once per run, filled per message by joins."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping


class Slots:
    """Slot markers for one renderer. The random part means no text from arXiv or the config
    can pose as a slot and be replaced (or break a message)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(6)
        self.format = f"@@slot-{tag}:{{}}@@"
        self.pattern = re.compile(f"@@slot-{tag}:([a-z_]+)@@")

    def marker(self, name: str) -> str:
        return self.format.format(name)


class Framed:
    """A template rendered once with slot markers, split so each message only joins strings."""

    def __init__(self, text: str, slots: Slots) -> None:
        self.parts = slots.pattern.split(text)  # even: fixed text; odd: slot names
        self._empty: str | None = None

    def fill(self, values: Mapping[str, str]) -> str:
        parts = self.parts
        if len(parts) == 3:  # one slot (a paper's "also in"): the common case, kept cheap
            value = values[parts[1]]
            if not value:
                if self._empty is None:
                    self._empty = parts[0] + parts[2]
                return self._empty
            return parts[0] + value + parts[2]
        out = parts.copy()  # a paper's three per-reader slots: a list and one join, no generator
        for i in range(1, len(parts), 2):
            out[i] = values[parts[i]]
        return "".join(out)
