"""`--help` for people: value names in words (EMAIL, KEYWORD), never Python types such as
`<list[str]>`, and each command's first help line whole in command lists, never cut with "...".

Applied once to the finished command tree, through the public attributes click's (and typer's)
commands and parameters have (`commands`, `params`, `metavar`, `short_help`, `help`), so no
command module has to spell a metavar for each option.
"""

from __future__ import annotations

from typing import Any


def tidy(command: Any) -> None:
    """Give every value a plain metavar and every command a whole short help, recursively."""
    for param in getattr(command, "params", ()):
        _plain_metavar(param)
    if getattr(command, "short_help", None) is None and getattr(command, "help", None):
        command.short_help = first_line(command.help)
    for sub in getattr(command, "commands", {}).values():
        tidy(sub)


def first_line(text: str) -> str:
    """The first paragraph of a help text, on one line."""
    return " ".join(text.strip().split("\n\n")[0].split())


def _plain_metavar(param: Any) -> None:
    if getattr(param, "metavar", None) is not None or getattr(param, "is_flag", False):
        return
    if getattr(param, "count", False):
        return
    if getattr(param, "param_type_name", "") == "argument":
        # typer prints an argument's Python type beside its name (`EMAIL <str>`): the name is enough
        param.display_type_rich = _no_type
    desc = getattr(param, "type_descriptor", None)
    choices = getattr(desc, "choices", None) if getattr(desc, "is_choice", False) else None
    choices = choices or getattr(getattr(param, "type", None), "choices", None)
    if choices:
        param.metavar = "|".join(str(getattr(c, "value", c)) for c in choices)
    elif getattr(param, "name", None):
        param.metavar = str(param.name).upper()


def _no_type(ctx: Any) -> None:
    return None
