"""The "Daily Papers" README: pure rendering byte for byte, plus one atomic write.

Cell rules, read off two real snapshots (tests/data/00*.txt): whitespace runs collapsed,
a `|` inside a cell becomes `\\|` (better than the original, whose rows broke), and `<` is
written `&lt;` so a title can never open an HTML tag on GitHub; comments longer than 20
characters fold behind their first five.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import jinja2

from digestd.atomic import write_atomic
from digestd.models import Paper

START = "<!-- digestd:start -->"
END = "<!-- digestd:end -->"
TABLE_HEAD = "| **Title** | **Date** | **Abstract** | **Comment** |\n| --- | --- | --- | --- |\n"


def cell(text: str) -> str:
    """Make arXiv text safe inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "&lt;")


def comment_cell(comment: str | None) -> str:
    text = cell(comment or "")
    if len(text) <= 20:
        return text
    return f"<details><summary>{text[:5]}...</summary><p>{text}</p></details>"


def row(paper: Paper) -> str:
    return (
        f"| **[{cell(paper.title)}]({paper.link})** | {paper.date} | "
        f"<details><summary>Show</summary><p>{cell(paper.summary)}</p></details> | "
        f"{comment_cell(paper.comment)} |\n"
    )


def render_sections(date: str, sections: Sequence[tuple[str, Sequence[Paper]]]) -> str:
    """`Last update:` and one table per keyword: what sits between the markers."""
    parts = [f"Last update: {date}\n\n"]
    for name, papers in sections:
        parts.append(f"## {name}\n")
        parts.append(TABLE_HEAD)
        parts.extend(row(p) for p in papers)
        parts.append("\n")
    return "".join(parts)


def render_readme(
    header_template: jinja2.Template,
    date: str,
    sections: Sequence[tuple[str, Sequence[Paper]]],
    *,
    max_results: int,
    existing: str | None = None,
) -> str:
    """The whole README, or `existing` with only the text between the markers replaced."""
    body = render_sections(date, sections)
    if existing is not None and START in existing and END in existing.split(START, 1)[1]:
        before, rest = existing.split(START, 1)
        after = rest.split(END, 1)[1]
        return f"{before}{START}\n{body}{END}{after}"
    return header_template.render(max_results=max_results) + body


def write_readme(path: Path, text: str) -> bool:
    """Write atomically; return False when nothing changed (the file is left untouched)."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    write_atomic(path, text)
    return True
