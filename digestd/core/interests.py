"""A reader's interests as configured: arXiv ids, and BibTeX files (what Zotero and other
reference managers export). Pure: the id syntax, and a small strict BibTeX reader that keeps
each entry's line, key, arXiv id (from eprint, url, doi, note or journal) and title/abstract."""

from __future__ import annotations

import re
from dataclasses import dataclass

# New-style ids (0704.0001 on, 5 digits from 1501) and old-style archive/YYMMNNN; no version.
# ASCII only: \d would take other scripts' digits (２５０６.１２３４５), which are no arXiv id.
_NEW_ID = re.compile(r"(?P<yy>\d{2})(?P<mm>\d{2})\.(?P<n>\d{4,5})", re.ASCII)
_OLD_ID = re.compile(r"[a-z]+(?:-[a-z]+)?(?:\.[A-Z]{2})?/(?P<yy>\d{2})(?P<mm>\d{2})\d{3}", re.ASCII)
_VERSION = re.compile(r"v\d{1,3}$", re.ASCII)
_FOUND_ID = re.compile(
    r"(?:arxiv\.org/(?:abs|pdf)/|arxiv[:.]\s*|10\.48550/arxiv\.)"
    r"(\d{4}\.\d{4,5}|[a-z]+(?:-[a-z]+)?(?:\.[A-Z]{2})?/\d{7})",
    re.IGNORECASE | re.ASCII,
)
MAX_BIB_BYTES = 5_000_000
MAX_INTERESTS = 2000  # per reader: more says nothing the profile does not already know


_CURRENT_ID = re.compile(r"(?:1[5-9]|[2-9]\d)(?:0[1-9]|1[0-2])\.\d{5}", re.ASCII)  # 2015 on, no version


def arxiv_id(text: str) -> str | None:
    """The id without a version if `text` is a well-formed arXiv id (month 01-12), else None."""
    if _CURRENT_ID.fullmatch(text):  # the common case, as the rules below would take it
        return text
    text = _VERSION.sub("", text.strip())
    for pattern in (_NEW_ID, _OLD_ID):
        m = pattern.fullmatch(text)
        if not m:
            continue
        if not 1 <= int(m["mm"]) <= 12:
            return None
        if pattern is _NEW_ID and len(m["n"]) != (5 if int(m["yy"]) >= 15 else 4):
            return None
        return text
    return None


@dataclass(frozen=True, slots=True)
class BibEntry:
    """One entry of a BibTeX file: where it is, its arXiv id if it has one, its text."""

    line: int
    key: str
    arxiv_id: str | None
    title: str
    abstract: str


class BibProblem(Exception):
    """The file is malformed at `line` (in entry `key` when known): one sentence."""

    def __init__(self, line: int, key: str | None, why: str) -> None:
        super().__init__(why)
        self.line, self.key, self.why = line, key, why


_ENTRY = re.compile(r"@\s*([A-Za-z]+)\s*([{(])")
_FIELD = re.compile(r"\s*([A-Za-z][\w:.+-]*)\s*=\s*")
_SKIP = {"comment", "preamble", "string"}


def parse_bibtex(text: str) -> list[BibEntry]:
    """Every entry of `text` (a BibTeX file), or BibProblem for the first malformed one."""
    entries: list[BibEntry] = []
    pos = 0
    while (m := _ENTRY.search(text, pos)) is not None:
        kind, line = m[1].lower(), text.count("\n", 0, m.start()) + 1
        guess = text[m.end() : m.end() + 200].split(",", 1)[0].strip()
        named = guess if guess and not any(c.isspace() or c in "{}=@" for c in guess) else None
        close = _closing(text, m.end(), "}" if m[2] == "{" else ")", line, named)
        body = text[m.end() : close]
        pos = close + 1
        if kind in _SKIP:
            continue
        key, _, rest = body.partition(",")
        key = key.strip()
        if not key or any(c.isspace() or c in "{}=\"" for c in key):
            raise BibProblem(line, None, f"the @{kind} entry has no key")
        fields = _fields(rest, line, key)
        title, abstract = _plain(fields.get("title", "")), _plain(fields.get("abstract", ""))
        where = " ".join(fields.get(f, "") for f in ("eprint", "url", "doi", "note", "journal"))
        found = _FOUND_ID.search(where)
        pid = arxiv_id(fields["eprint"]) if "eprint" in fields else None
        pid = pid or (arxiv_id(found[1]) if found else None)
        if pid is None and not title:
            raise BibProblem(line, key, "the entry has neither an arXiv id nor a title")
        entries.append(BibEntry(line, key, pid, title, abstract))
    if not entries and text.strip() and "@" not in text:
        raise BibProblem(1, None, "no BibTeX entry found (is this a .bib file?)")
    return entries


def _closing(text: str, start: int, closer: str, line: int, key: str | None, *, entry: bool = True) -> int:
    """The index of the delimiter closing what opens just before `start` (braces nest). Only
    an `entry` stops at an @ that starts a line (the next entry): a field value lies inside
    an entry already closed, where such an @ is text (an abstract's line)."""
    depth, i, quoted = 0, start, False
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}" and depth:
            depth -= 1
        elif c == '"' and depth == 0 and closer != '"':
            quoted = not quoted
        elif c == closer and depth == 0 and not quoted:
            return i
        elif c == "@" and entry and depth == 0 and not quoted and text[i - 1] == "\n":
            break  # the next entry began: this one was never closed
        i += 1
    raise BibProblem(line, key, "an entry is not closed (unbalanced braces)")


def _fields(rest: str, line: int, key: str) -> dict[str, str]:
    """name = {value} | "value" | number | macro, separated by commas."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        if not rest[pos:].strip(" \t\r\n,"):
            break
        m = _FIELD.match(rest, pos)
        if not m:
            raise BibProblem(line, key, f"cannot read a field near {rest[pos:pos + 30].strip()!r}")
        name, pos = m[1].lower(), m.end()
        value, pos = _value(rest, pos, line, key)
        fields[name] = value
        pos = _after_value(rest, pos, line, key)
    return fields


def _value(rest: str, pos: int, line: int, key: str) -> tuple[str, int]:
    """One field value, concatenations (#) included, and the position after it."""
    parts: list[str] = []
    while True:
        while pos < len(rest) and rest[pos].isspace():
            pos += 1
        if pos < len(rest) and rest[pos] in "{\"":
            end = _closing(rest, pos + 1, "}" if rest[pos] == "{" else '"', line, key, entry=False)
            parts.append(rest[pos + 1 : end])
            pos = end + 1
        else:
            m = re.match(r"[\w:.+-]+", rest[pos:])
            if not m:
                raise BibProblem(line, key, "a field has no value")
            parts.append(m[0])
            pos += m.end()
        while pos < len(rest) and rest[pos].isspace():
            pos += 1
        if pos < len(rest) and rest[pos] == "#":
            pos += 1
            continue
        return "".join(parts), pos


def _after_value(rest: str, pos: int, line: int, key: str) -> int:
    while pos < len(rest) and rest[pos].isspace():
        pos += 1
    if pos < len(rest) and rest[pos] != ",":
        raise BibProblem(line, key, f"a comma is missing before {rest[pos:pos + 20].strip()!r}")
    return pos + 1


def _plain(value: str) -> str:
    """A field value as words: braces and LaTeX commands dropped, spaces collapsed."""
    value = re.sub(r"\\[A-Za-z]+\s*|[{}\\$~]", " ", value)
    return " ".join(value.split())
