"""Pure: archive/YYYY-MM-DD.md, a day's additions as the README's Daily Papers tables, for
people who browse the instance as a git repository."""

from __future__ import annotations

from digestd.render.readme import TABLE_HEAD, heading, row
from digestd.site.days import Day


def day_markdown(day: Day, list_name: str) -> str:
    parts = [heading(1, f"{list_name}: {day.day}"), "\n"]
    for kd in day.keywords:
        parts.extend((heading(2, kd.keyword), "\n"))
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
