"""The rules of a keyword's follow fields (`authors`, `phrase`, `exclude`, `categories`): each
value becomes part of an arXiv query, so each must be one clean phrase without quotes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from digestd.core.categories import category_problem

FOLLOW_KEYS = ("authors", "phrase", "exclude", "listing", "primary_only", "top")
MAX_TOP = 500


@dataclass(frozen=True, slots=True)
class FollowFields:
    """The checked follow fields of one keyword entry."""

    authors: tuple[str, ...] = ()
    phrase: str | None = None
    exclude: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    listing: tuple[str, ...] = ()
    primary_only: bool = False
    top: int = 15


class FieldProblem(Exception):
    """A follow field breaks a rule, at `where` below the entry; load.py names the line."""

    def __init__(self, where: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


def follow_fields(item: dict[str, Any], name: str) -> FollowFields:
    """The follow fields of the entry `name`, or FieldProblem for the first bad one."""
    cats = item.get("categories") or []
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        raise FieldProblem(("categories",), f"the categories of {name!r} must be a list like [cs.CV]")
    for i, cat in enumerate(cats):
        if why := category_problem(cat):
            raise FieldProblem(("categories", i), f"keyword {name!r}: {why}")
    phrase = item.get("phrase")
    if phrase is not None:
        phrase = _phrase(("phrase",), phrase, f"phrase of {name!r}")
    authors = _phrases(item, "authors", name, "author name")
    if item.get("query") and (authors or phrase):
        why = "write either `query:` or `authors:`/`phrase:`, not both"
        raise FieldProblem(("query",), f"keyword {name!r}: {why}")
    listing = _listing(item, name)
    if listing and (item.get("query") or authors):
        raise FieldProblem(("listing",), f"keyword {name!r}: a listing cannot have `query:` or `authors:`")
    primary_only, top = item.get("primary_only", False), item.get("top", 15)
    for key, ok, what in (("primary_only", isinstance(primary_only, bool), "true or false"),
                          ("top", isinstance(top, int) and not isinstance(top, bool) and 1 <= top <= MAX_TOP,
                           f"a whole number from 1 to {MAX_TOP}")):
        if key in item and not listing:
            raise FieldProblem((key,), f"keyword {name!r}: `{key}:` is for listings (add `listing: cs.CV`)")
        if not ok:
            raise FieldProblem((key,), f"the {key} of {name!r} must be {what}")
    return FollowFields(
        authors=authors,
        phrase=phrase,
        exclude=_phrases(item, "exclude", name, "excluded phrase"),
        categories=tuple(cats),
        listing=listing,
        primary_only=primary_only,
        top=top,
    )


def _listing(item: dict[str, Any], name: str) -> tuple[str, ...]:
    """`listing: cs.CV` or `listing: [cs.CV, cs.LG]`: real arXiv categories."""
    raw = item.get("listing")
    if raw is None:
        return ()
    cats = [raw] if isinstance(raw, str) else raw
    if not isinstance(cats, list) or not cats or not all(isinstance(c, str) for c in cats):
        raise FieldProblem(("listing",), f"the listing of {name!r} must be a category or a list like [cs.CV]")
    for i, cat in enumerate(cats):
        if why := category_problem(cat):
            where: tuple[str | int, ...] = ("listing",) if isinstance(raw, str) else ("listing", i)
            raise FieldProblem(where, f"keyword {name!r}: {why}")
    return tuple(dict.fromkeys(cats))


def _phrases(item: dict[str, Any], key: str, name: str, what: str) -> tuple[str, ...]:
    """A list of phrases (a single text is taken as a list of one)."""
    raw = item.get(key)
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise FieldProblem((key,), f"the {key} of {name!r} must be a list like [\"...\"]")
    out = [_phrase((key, i), value, f"{what} {i + 1} of {name!r}") for i, value in enumerate(raw)]
    return tuple(dict.fromkeys(out))


def _phrase(where: tuple[str | int, ...], value: Any, what: str) -> str:
    """One phrase of an arXiv query: non-empty text, no double quote, spaces collapsed."""
    if not isinstance(value, str):  # a number or a list is not an empty phrase
        raise FieldProblem(where, f"the {what} must be text, not {str(value)[:80]!r}")
    if not value.strip():
        raise FieldProblem(where, f"the {what} is empty; write a name or remove the line")
    if '"' in value or any(c in value for c in "()"):
        raise FieldProblem(where, f"the {what} ({value[:80]!r}) must not contain quotes or parentheses")
    return " ".join(value.split())
