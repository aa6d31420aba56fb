"""The size rule: a digest's HTML and text parts each stay under 100 KB, whatever the day.

Gmail clips an HTML part above about 102 KB, footer and unsubscribe link included. Steps, as
the issue orders them: shorten every abstract, then drop abstracts from the last papers, then
show the last papers on one line each; at most MAX_PAPERS papers are listed at all, and fewer
when even one line each would not fit (titles of a thousand characters).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from digestd.render.card import Mode

BUDGET = 100_000  # bytes of each decoded part
MARGIN = 2_000  # room for the notes that say what was left out
MAX_PAPERS = 250

Size = Callable[[int, Mode], tuple[int, int]]  # paper index, mode -> (HTML bytes, text bytes)


def choose_modes(n: int, start: Mode, fixed: tuple[int, int], size: Size,
                 budget: int = BUDGET - MARGIN) -> tuple[list[Mode], int]:
    """Each paper's mode: `start` for all if that fits, else the steps down from the end; and
    how many papers fit: `n`, or fewer when even one line each is over the budget (titles of a
    thousand characters), and then the rest are "not listed" like those past MAX_PAPERS."""
    modes = [start] * n
    html = fixed[0] + sum(size(i, start)[0] for i in range(n))
    text = fixed[1] + sum(size(i, start)[1] for i in range(n))

    def fits() -> bool:
        return html <= budget and text <= budget

    def step(i: int, to: Mode) -> None:
        nonlocal html, text
        old, new = size(i, modes[i]), size(i, to)
        html += new[0] - old[0]
        text += new[1] - old[1]
        modes[i] = to

    if fits():
        return modes, n
    if start is Mode.FULL:
        for i in range(n):
            step(i, Mode.SHORT)
        if fits():
            return modes, n
    for to in (Mode.BARE, Mode.LINE):
        for i in reversed(range(n)):
            step(i, to)
            if fits():
                return modes, n
    html, text = fixed  # every paper on one line is still too much: count the first that fit
    for i in range(n):
        h, t = size(i, Mode.LINE)
        html, text = html + h, text + t
        if not fits():
            return modes, i
    return modes, n


def left_out(modes: Sequence[Mode]) -> int:
    """How many abstracts the digest does not show."""
    return sum(1 for m in modes if m in (Mode.BARE, Mode.LINE))

