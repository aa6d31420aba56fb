"""The "Daily Papers" README: pure rendering byte for byte, plus one atomic write.

Cell rules, read off two real snapshots (tests/data/00*.txt): whitespace runs collapsed,
a `|` inside a cell becomes `\\|` (better than the original, whose rows broke), and `<` is
written `&lt;` so a title can never open an HTML tag on GitHub; comments longer than 20
characters fold behind their first five.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import jinja2

from digestd.core.links import safe_arxiv_link
from digestd.core.models import Paper
from digestd.render.templates import template_errors
from digestd.store.atomic import write_atomic

START = "<!-- digestd:start -->"
END = "<!-- digestd:end -->"
TABLE_HEAD = "| **Title** | **Date** | **Abstract** | **Comment** |\n| --- | --- | --- | --- |\n"


def cell(text: str) -> str:
    """Make arXiv text safe inside one Markdown table cell: no cell break, no HTML tag, and
    no inline link or image (`](` is written `]\\(`), so the text never becomes markup."""
    out = " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;").replace("](", "]\\(")
    return _even_trailing_backslashes(out)


def _even_trailing_backslashes(text: str) -> str:
    """A text ending in an odd run of backslashes would escape what follows it (a `]` or
    digestd's own `</p>`): the last one is doubled."""
    trailing = len(text) - len(text.rstrip("\\"))
    return text + "\\" if trailing % 2 else text


def heading(level: int, text: str) -> str:
    """A Markdown heading line whose text (a keyword or list name) stays text, escaped as a
    cell is: `<!--` would hide the rest of the file on GitHub, `[x](url)` would be a link."""
    return f"{'#' * level} {cell(text)}\n"


def comment_cell(comment: str | None) -> str:
    text = cell(comment or "")
    if len(text) <= 20:
        return text
    return f"<details><summary>{text[:5]}...</summary><p>{text}</p></details>"


def link_text(title: str) -> str:
    """A title inside `[...]`: brackets escaped, and a trailing backslash doubled, so the link
    can never end early. (Other backslashes stay: `$\\times$` reads as in the snapshots.)"""
    return _even_trailing_backslashes(cell(title).replace("[", "\\[").replace("]", "\\]"))


def row(paper: Paper) -> str:
    """One README row; its link is the paper's checked arXiv URL (state may predate the checks)."""
    link = safe_arxiv_link(paper.link, paper.id, paper.version)
    return (
        f"| **[{link_text(paper.title)}]({link})** | {paper.date} | "
        f"<details><summary>Show</summary><p>{cell(paper.summary)}</p></details> | "
        f"{comment_cell(paper.comment)} |\n"
    )


def render_sections(
    date: str, sections: Sequence[tuple[str, Sequence[Paper]]], keep: Mapping[str, str] | None = None
) -> str:
    """`Last update:` and one table per keyword: what sits between the markers. A keyword in
    `keep` (its fetch failed) is written exactly as the README showed it before."""
    keep = keep or {}
    parts = [f"Last update: {date}\n\n"]
    for name, papers in sections:
        if name in keep:
            parts.append(keep[name])
            continue
        parts.append(heading(2, name))
        parts.append(TABLE_HEAD)
        parts.extend(row(p) for p in papers)
        parts.append("\n")
    return "".join(parts)


def _split(existing: str | None) -> tuple[str, str, str] | None:
    """(before, between, after) the markers, or None when the README has none."""
    if existing is None or START not in existing or END not in existing.split(START, 1)[1]:
        return None
    before, rest = existing.split(START, 1)
    between, after = rest.split(END, 1)
    return before, between, after


def existing_sections(existing: str | None) -> dict[str, str]:
    """Each keyword's section as the README shows it now: `## KW` to the blank line after it.

    Only the generated part is read (between the markers, if there are any), so a heading
    of the project's own documentation is never taken for a keyword."""
    parts = _split(existing)
    text = parts[1] if parts else existing or ""
    out: dict[str, str] = {}
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if lines[i].startswith("## "):
            j = i + 1
            while j < len(lines) and lines[j].strip():
                j += 1
            out[lines[i][3:].rstrip("\n")] = "".join(lines[i:j]) + "\n"
            i = j
        else:
            i += 1
    return out


def render_readme(
    header_template: jinja2.Template,
    date: str,
    sections: Sequence[tuple[str, Sequence[Paper]]],
    *,
    max_results: int,
    existing: str | None = None,
    failed: Iterable[str] = (),
) -> str:
    """The whole README, or `existing` with only the text between the markers replaced.

    The sections of `failed` keywords stay as `existing` shows them, byte for byte."""
    old = existing_sections(existing)
    body = render_sections(date, sections, {k: old[h] for k in failed if (h := cell(k)) in old})
    parts = _split(existing)
    if parts is not None:
        before, _, after = parts
        return f"{before}{START}\n{body}{END}{after}"
    with template_errors(Path(header_template.filename).parent if header_template.filename else None):
        header = header_template.render(max_results=max_results)
    return header + body


def write_readme(path: Path, text: str) -> bool:
    """Write atomically; return False when nothing changed (the file is left untouched)."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass  # missing or unreadable: written anew (a write that fails says why: WriteError)
    write_atomic(path, text)
    return True
