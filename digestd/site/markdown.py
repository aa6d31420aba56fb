"""Pure: archive/YYYY-MM-DD.md, a day's additions as the README's Daily Papers tables, for
people who browse the instance as a git repository."""

from __future__ import annotations

from digestd.render.readme import TABLE_HEAD, row
from digestd.site.days import Day


def day_markdown(day: Day, list_name: str) -> str:
    parts = [f"# {list_name}: {day.day}\n\n"]
    for kd in day.keywords:
        parts.append(f"## {kd.keyword}\n\n")
        if kd.new:
            parts.append(TABLE_HEAD)
            parts.extend(row(p) for p in kd.new)
            parts.append("\n")
        if kd.updated:
            parts.append("### Updated\n\n")
            parts.append(TABLE_HEAD)
            parts.extend(row(p) for p in kd.updated)
            parts.append("\n")
    return "".join(parts)
