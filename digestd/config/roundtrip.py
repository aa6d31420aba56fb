"""Edits by ruamel's round trip, which keeps comments and order in any YAML the loader takes:
the way every edit can be made (10,000 subscribers: about 10 s), used when the file or the
change is outside what config.linedit can write on the lines alone."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from digestd.config.tracked import Change, Doc, Edited, norm, span, tracking
from digestd.config.yamlread import parse_yaml
from digestd.errors import ConfigError, UsageError

_SEQ_ITEM = re.compile(r"^( *)- ")
_MAP_KEY = re.compile(r"^( +)[^\s#-][^:]*:(\s|$)")
_BLOCK_PARENT = re.compile(r"^\S[^#]*:\s*(#.*)?$")


def round_trip_edit(path: Path, text: str, change: Change) -> Edited:
    """`change` made on ruamel's round-trip document of `text`."""
    data = parse_yaml(text, path, round_trip=True)
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise UsageError(f"{path}: the file must be a mapping with `keywords:` and `subscribers:`")
    before = dump(data, text)
    deletions = _Deletions(text.splitlines(keepends=True))
    with tracking(deletions):
        said = change(data)
    new_text = dump(data, text)
    if new_text == before:
        return Edited(said)
    if deletions.spans:
        new_text = _cut_if_same(path, text, deletions.spans, data) or new_text
    return Edited(said, new_text)


def guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) indentation as the file already uses it, so a dump changes
    only what an edit changed (ruamel re-indents a whole file to its configured style).
    Defaults: the style of `digestd init` (2, 4, 2)."""
    mapping = offset = None
    prev = ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if _BLOCK_PARENT.match(prev):
            if offset is None and (m := _SEQ_ITEM.match(line)):
                offset = len(m.group(1))
            elif mapping is None and (m := _MAP_KEY.match(line)):
                mapping = len(m.group(1))
        prev = line
    offset = 2 if offset is None else offset
    return (mapping or 2), offset + 2, offset


def dump(data: Any, text: str) -> str:
    """`data` as ruamel writes it in the indentation `text` uses."""
    y = YAML(typ="rt")
    y.preserve_quotes = True
    mapping, sequence, offset = guess_indent(text)
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    y.width = 4096
    buf = io.StringIO()
    y.dump(data, buf)
    return buf.getvalue()


class _Deletions:
    """Notes the lines of each deleted node (block style only), to cut exactly those."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.spans: list[tuple[int, int]] = []

    def delete_item(self, seq: list[Any], index: int) -> None:
        lines = self.lines
        if not isinstance(seq, CommentedSeq) or seq.fa.flow_style():
            return
        line, _col = seq.lc.item(index)
        dash = lines[line].find("-") if line < len(lines) else -1
        if dash >= 0 and not lines[line][:dash].strip():
            bound = seq.lc.item(index + 1)[0] if index + 1 < len(seq) else len(lines)
            self._note(span(lines, line, dash, bound))

    def delete_key(self, mapping: Doc, key: str) -> None:
        if not isinstance(mapping, CommentedMap) or mapping.fa.flow_style():
            return
        line, col = mapping.lc.key(key)
        if line < len(self.lines) and not self.lines[line][:col].strip():
            self._note(span(self.lines, line, col, len(self.lines)))

    def set_key(self, mapping: Doc, key: str, value: Any) -> None:
        pass  # the dump writes it

    def append_item(self, seq: list[Any], item: Any) -> None:
        pass  # the dump writes it

    def _note(self, found: tuple[int, int] | None) -> None:
        if found:
            self.spans.append(found)


def _cut_if_same(path: Path, text: str, deletions: list[tuple[int, int]], data: Any) -> str | None:
    """Deleting only: the file with the very lines cut, if that provably gives the same data
    (ruamel would drop a comment trailing the deleted node, or mangle an emptied list)."""
    lines = text.splitlines(keepends=True)
    drop = {i for start, end in deletions for i in range(start, end)}
    cut = "".join(line for i, line in enumerate(lines) if i not in drop)
    try:
        return cut if norm(parse_yaml(cut, path)) == norm(data) else None
    except ConfigError:
        return None
