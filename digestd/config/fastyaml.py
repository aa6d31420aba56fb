"""A fast reader for the plain block-style YAML that subscribers.yaml is written in.

ruamel's pure-Python safe loader needs about 5 s for 10,000 subscribers (50 s for 100,000);
this reads the same files about 30 times faster and builds exactly what ruamel's safe loader
builds (tests/test_scale.py fuzzes the two against each other). Anything outside the subset
(anchors, tags, block scalars, escapes, tabs, duplicate keys, deep nesting, any error) answers
NOT_SIMPLE, and the caller hands the text to ruamel, whose error messages name the line. So
anchors, aliases and merge keys only ever reach yamlread.parse_yaml's composer check, which
refuses them; every rule on the data itself (digestd.config.load) is the same for both readers.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.resolver import implicit_resolvers

NOT_SIMPLE: Any = object()  # fast_yaml's answer for a text outside its subset
MAX_DEPTH = 32  # deeper nesting is left to ruamel's path, which refuses it naming the line
# Where fast_yaml_located found each mapping and sequence: id(container) -> (the container,
# its keys or its items as (0-based line, column of the key or of the item's dash)).
Positions = dict[int, tuple[Any, "dict[str, tuple[int, int]] | list[tuple[int, int]]"]]


class _NotSimple(Exception):
    pass


_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*):(?: +(.*))?$")
_INDICATORS = frozenset("?:,[]{}#&*!|>'\"%@`")
_FLOW_ITEM_END = re.compile(r"[,\]]")
# The YAML 1.2 implicit types ruamel's safe loader resolves plain scalars to (int, float,
# bool, null, timestamp, merge...): a plain scalar matching one is built by ruamel itself.
_IMPLICIT = [
    (re.compile(rx.pattern, rx.flags), set(first))
    for versions, _tag, rx, first in implicit_resolvers
    if (1, 2) in versions
]
_IMPLICIT_FIRST = frozenset().union(*(first for _, first in _IMPLICIT))


@functools.lru_cache(maxsize=1024)
def _typed_scalar(text: str) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(text)
    except Exception:  # merge keys, `=` and the like: the full loader decides
        raise _NotSimple from None


def _implicit(text: str) -> bool:
    """True when a plain scalar resolves to something other than a string."""
    c = text[:1]
    return c in _IMPLICIT_FIRST and any(c in first and rx.match(text) for rx, first in _IMPLICIT)


def _plain(text: str) -> Any:
    """A plain scalar (comment and trailing blanks already cut) as the safe loader builds it."""
    if (
        not text
        or text[0] in _INDICATORS
        or text == "-"
        or text.startswith(("- ", "-\t"))
        or ": " in text
        or text.endswith(":")
        or " #" in text
    ):
        raise _NotSimple
    return _typed_scalar(text) if _implicit(text) else text


def _end_of_value(rest: str) -> None:
    """After a quoted scalar or a flow sequence: nothing, or a comment."""
    if (rest.strip() and not rest.lstrip(" ").startswith("#")) or (rest and not rest.startswith(" ")):
        raise _NotSimple


def _quoted(text: str) -> tuple[str, str]:
    """A single- or double-quoted scalar at the start of `text`: (value, what follows)."""
    value, end = _quoted_at(text, 0)
    return value, text[end:]


def _quoted_at(text: str, start: int) -> tuple[str, int]:
    """A single- or double-quoted scalar at `start` of `text`: (value, where it ends). By
    position, so a long flow list is read in one pass, not copied once per item."""
    q = text[start]
    if q == '"':
        end = text.find('"', start + 1)
        if end < 0 or text.find("\\", start, end) >= 0:
            raise _NotSimple
        return text[start + 1 : end], end + 1
    i = start + 1
    while True:
        end = text.find("'", i)
        if end < 0:
            raise _NotSimple
        if text.startswith("''", end):
            i = end + 2
            continue
        return text[start + 1 : end].replace("''", "'"), end + 1


_SINGLE = "'([^'\\n]*)'"  # a single-quoted scalar without '' in it: its text as is
_DOUBLE = '"([^"\\\\\\n]*)"'  # a double-quoted scalar without escapes: its text as is
_QUOTED_ITEM = re.compile(f"{_SINGLE}|{_DOUBLE}")
_QUOTED_FLOW = re.compile(f"\\[ *(?:{_SINGLE}|{_DOUBLE})(?: *, *(?:{_SINGLE}|{_DOUBLE}))* *\\]")


def _flow_sequence(text: str) -> list[Any]:
    """`[a, 'b c', d]` on one line: plain or quoted scalars only."""
    whole = _QUOTED_FLOW.match(text)
    if whole:  # quoted scalars only (a list of arXiv ids), taken in one pass
        items = [m[1] if m[1] is not None else m[2] for m in _QUOTED_ITEM.finditer(text, 0, whole.end())]
        _end_of_value(text[whole.end() :])
        return items
    items = []
    i = 1
    n = len(text)
    while True:
        while i < n and text[i] == " ":
            i += 1
        if i >= n:
            raise _NotSimple
        if text[i] == "]" and not items:
            i += 1
            break
        if text[i] in "'\"":
            value, i = _quoted_at(text, i)
            items.append(value)
            while i < n and text[i] == " ":
                i += 1
        else:
            m = _FLOW_ITEM_END.search(text, i)
            if m is None:
                raise _NotSimple
            raw = text[i : m.start()].rstrip(" ")
            if any(c in raw for c in "[]{}#") or raw.startswith(("- ", "-\t")):
                raise _NotSimple
            items.append(_plain(raw))
            i = m.start()
        if i >= n:
            raise _NotSimple
        if text[i] == "]":
            i += 1
            break
        if text[i] != ",":
            raise _NotSimple
        i += 1
        j = i
        while j < n and text[j] == " ":
            j += 1
        if j < n and text[j] == "]":  # a trailing comma: leave it to ruamel
            raise _NotSimple
    _end_of_value(text[i:])
    return items


def _inline(text: str) -> Any:
    """A value on the same line as its key or dash."""
    c = text[0]
    if c == "[":
        return _flow_sequence(text)
    if c in "'\"":
        value, rest = _quoted(text)
        _end_of_value(rest)
        return value
    cut = text.find(" #")
    return _plain((text if cut < 0 else text[:cut]).rstrip(" "))


def fast_yaml(text: str) -> Any:
    """The data of a YAML document in the plain block style (mappings with simple keys,
    sequences, plain or quoted one-line scalars, one-line flow sequences, comments), exactly
    as ruamel's safe loader builds it; `NOT_SIMPLE` for anything else (anchors, tags, block
    scalars, flow mappings, escapes, multi-line scalars, tabs, duplicate keys, errors...)."""
    return _read(text, None)


def fast_yaml_located(text: str) -> tuple[Any, Positions] | Any:
    """fast_yaml's data and where each block mapping's keys and each block sequence's items
    start (lines counted by "\\n" from 0), so an edit can change just those lines; NOT_SIMPLE
    as fast_yaml. The positions hold the containers, so their ids stay theirs."""
    where: Positions = {}
    data = _read(text, where)
    return NOT_SIMPLE if data is NOT_SIMPLE else (data, where)


def _read(text: str, where: Positions | None) -> Any:
    """fast_yaml, noting positions in `where` unless it is None."""
    if not text or "\t" in text or "\r" in text or text[0] == "\ufeff":
        return NOT_SIMPLE
    lines: list[tuple[int, str, int]] = []  # (indent, body, line number)
    for number, raw in enumerate(text.split("\n")):
        body = raw.lstrip(" ")
        if not body or body[0] == "#":
            continue
        if raw.startswith(("---", "...", "%")):
            return NOT_SIMPLE
        lines.append((len(raw) - len(body), body.rstrip(" "), number))
    if not lines:
        return NOT_SIMPLE
    pos = 0
    count = len(lines)

    def node(indent: int, depth: int) -> Any:
        body = lines[pos][1]
        return sequence(indent, depth) if body == "-" or body.startswith("- ") else mapping(indent, depth)

    def mapping(indent: int, depth: int) -> dict[str, Any]:
        nonlocal pos
        if depth > MAX_DEPTH:  # the loaders recurse per level: ruamel's path refuses it by line
            raise _NotSimple
        out: dict[str, Any] = {}
        keys: dict[str, tuple[int, int]] = {}
        while pos < count and lines[pos][0] == indent:
            body = lines[pos][1]
            m = _KEY.match(body)
            if m is None or m[1] in out or body.startswith("- ") or _implicit(m[1]):
                if body.startswith("- ") and out:
                    break  # a sequence at this indent belongs to the key before
                raise _NotSimple
            keys[m[1]] = (lines[pos][2], indent)
            pos += 1
            out[m[1]] = value(m[2], indent, depth + 1)
        if where is not None:
            where[id(out)] = (out, keys)
        return out

    def value(rest: str | None, indent: int, depth: int) -> Any:
        if rest is None or rest.startswith("#"):
            if pos < count:
                nxt, body, _ = lines[pos]
                if nxt > indent:
                    return node(nxt, depth)
                if nxt == indent and body.startswith("- "):
                    return sequence(indent, depth)
            return None
        if depth > MAX_DEPTH and rest.startswith("["):
            raise _NotSimple
        return _inline(rest)

    def sequence(indent: int, depth: int) -> list[Any]:
        nonlocal pos
        if depth > MAX_DEPTH:
            raise _NotSimple
        out: list[Any] = []
        items: list[tuple[int, int]] = []
        while pos < count and lines[pos][0] == indent and lines[pos][1].startswith("- "):
            item = lines[pos][1][2:]
            stripped = item.lstrip(" ")
            inner = indent + 2 + len(item) - len(stripped)
            if not stripped or stripped[0] == "#" or stripped.startswith(("- ", "? ")):
                raise _NotSimple
            items.append((lines[pos][2], indent))
            if _KEY.match(stripped) or stripped.startswith(("-", "?")):
                if not _KEY.match(stripped):
                    raise _NotSimple
                lines[pos] = (inner, stripped, lines[pos][2])  # "- key: value" opens a mapping there
                out.append(mapping(inner, depth + 1))
            else:
                if depth >= MAX_DEPTH and stripped.startswith("["):
                    raise _NotSimple
                pos += 1
                out.append(_inline(stripped))
        if where is not None:
            where[id(out)] = (out, items)
        return out

    try:
        data = node(lines[0][0], 1)
    except _NotSimple:
        return NOT_SIMPLE
    if pos != count or lines[0][0] != 0:
        return NOT_SIMPLE
    return data
