"""Edits written on the lines of subscribers.yaml alone, when the file is in the plain block
style fast_yaml reads: a deleted entry's lines are cut, a new entry's lines inserted, a
changed key's line replaced; every other byte stays. 10,000 subscribers: well under a second,
where the round trip takes about 10 s (it parses and writes the whole file in pure Python).

Whatever it cannot place for sure (a node it did not read, a comment on a changed line, a
value that is not one line) makes it give up, and the round trip makes the edit instead; so
does a result that, read again, is not the data the change made."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedSeq

from digestd.config.fastyaml import NOT_SIMPLE, Positions, fast_yaml
from digestd.config.roundtrip import dump
from digestd.config.tracked import Change, Doc, Edited, norm, span, tracking
from digestd.config.yamlread import read_located

Place = tuple[int, int]  # (0-based line, column of the key or of the item's dash); line -1: new


def line_edit(path: Path, text: str, change: Change) -> Edited | None:
    """The edit made on the lines, or None when the round trip must make it."""
    located = read_located(text, path)
    if located is None or not isinstance(located[0], dict):
        return None
    data, where = located
    before = norm(data)
    edits = _LineEdits(text, where)
    try:
        with tracking(edits):
            said = change(data)
    except _GiveUp:
        return None
    if not edits.changed:
        return Edited(said) if norm(data) == before else None
    new_text = edits.result()
    if new_text == text:
        return Edited(said)
    after = fast_yaml(new_text)
    if after is NOT_SIMPLE or norm(after) != norm(data):
        return None
    return Edited(said, new_text, after)


class _GiveUp(Exception):
    """Raised through the change by a line it cannot place; the round trip takes over."""


class _LineEdits:
    """Each change to the document as a change to the file's lines, all counted from the file
    as it was read (nothing moves until result())."""

    def __init__(self, text: str, where: Positions) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.where = where
        self.cut: set[int] = set()
        self.replaced: dict[int, str] = {}
        self.inserted: dict[int, list[str]] = {}  # new lines after line i
        self.changed = False

    def delete_item(self, seq: list[Any], index: int) -> None:
        items = self._items(seq)
        if items is None or not 0 <= index < len(items) or items[index][0] < 0:
            raise _GiveUp
        line, dash = items[index]
        after = items[index + 1][0] if index + 1 < len(items) else -1
        self._cut(span(self.lines, line, dash, after if after >= 0 else len(self.lines)))
        del items[index]

    def delete_key(self, mapping: Doc, key: str) -> None:
        keys = self._keys(mapping)
        if keys is None or key not in keys or keys[key][0] < 0:
            raise _GiveUp
        line, col = keys[key]
        if self.lines[line][:col].strip():  # the first key of an entry, on its dash line
            raise _GiveUp
        self._cut(span(self.lines, line, col, len(self.lines)))
        del keys[key]

    def set_key(self, mapping: Doc, key: str, value: Any) -> None:
        keys = self._keys(mapping)
        new = self._one_line({key: value})
        if keys is None or new is None:
            raise _GiveUp
        if key in keys:
            line, col = keys[key]
            prefix = self.lines[line][:col] if line >= 0 else ""
            old = self._one_line({key: mapping[key]})
            # Only a line exactly as it would be written: no comment on it, no other quoting.
            if line < 0 or line in self.replaced or old is None:
                raise _GiveUp
            if self.lines[line].rstrip(" ") != prefix + old:
                raise _GiveUp
            self.replaced[line] = prefix + new
        else:
            last = [place for place in keys.values() if place[0] >= 0]
            if not last:
                raise _GiveUp
            line, col = last[-1]
            self._insert(span(self.lines, line, col, len(self.lines)), [" " * col + new])
            keys[key] = (-1, col)
        self.changed = True

    def append_item(self, seq: list[Any], item: Any) -> None:
        items = self._items(seq)
        last = [place for place in items or () if place[0] >= 0]
        if items is None or not last:
            raise _GiveUp
        line, dash = last[-1]
        rendered = self._dump({"_": [_flowed(item)]}).split("\n")[1:-1]
        if not rendered or not rendered[0].startswith(" " * dash + "- "):
            raise _GiveUp  # the file indents this list otherwise
        self._insert(span(self.lines, line, dash, len(self.lines)), rendered)
        items.append((-1, dash))

    def result(self) -> str:
        """The new text: the lines kept or replaced, with the new ones after their anchors."""
        out: list[str] = []
        for i, line in enumerate(self.lines):
            if i not in self.cut:
                out.append(self.replaced.get(i, line))
            out.extend(self.inserted.get(i, ()))
        return "\n".join(out)

    def _items(self, seq: list[Any]) -> list[Place] | None:
        found = self.where.get(id(seq))
        places = found[1] if found is not None and found[0] is seq else None
        return places if isinstance(places, list) and len(places) == len(seq) else None

    def _keys(self, mapping: Doc) -> dict[str, Place] | None:
        found = self.where.get(id(mapping))
        places = found[1] if found is not None and found[0] is mapping else None
        return places if isinstance(places, dict) and places.keys() == mapping.keys() else None

    def _cut(self, found: tuple[int, int] | None) -> None:
        if found is None:
            raise _GiveUp
        self.cut.update(range(*found))
        self.changed = True

    def _insert(self, found: tuple[int, int] | None, new: list[str]) -> None:
        if found is None:
            raise _GiveUp
        self.inserted.setdefault(found[1] - 1, []).extend(new)
        self.changed = True

    def _one_line(self, mapping: Doc) -> str | None:
        """`key: value` as the round trip writes it, if that is one line."""
        text = self._dump({k: _flowed(v) for k, v in mapping.items()})
        return text[:-1] if text.count("\n") == 1 and text.endswith("\n") else None

    def _dump(self, data: Any) -> str:
        return dump(data, self.text)



def _flowed(value: Any) -> Any:
    """A list as the documentation writes one, `[a, b]`; anything else as it is."""
    if isinstance(value, list) and not isinstance(value, CommentedSeq):
        seq = CommentedSeq(value)
        seq.fa.set_flow_style()
        return seq
    return value
