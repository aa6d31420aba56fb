"""Field-by-field checks of a record read from a state file: each returns the value, typed, or
raises BadRecord naming the field. `records` builds its frozen values with them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from digestd.errors import StateError


class BadRecord(StateError):
    """A record in a state file has a missing field or a value of the wrong type.

    The store catches it when it opens the file and raises its own StateError, which names
    the file and moves it aside; this one only carries the reason, and where it was found."""

    def __init__(self, why: str, where: str = "") -> None:
        super().__init__(f"{where}: {why}" if where else why)
        self.why, self.where = why, where

    def at(self, table: str, key: str) -> BadRecord:
        """The same reason, placed at a record (unless an inner record is named already)."""
        return self if self.where else BadRecord(self.why, f"{table} record {key!r}")


def as_object(doc: Any) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise BadRecord(f"is {type(doc).__name__}, not an object")
    return doc


def get(doc: Mapping[str, Any], name: str, kind: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if name not in doc or doc[name] is None:
        if optional:
            return None
        raise BadRecord(f"no field {name!r}")
    value = doc[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadRecord(f"field {name!r} is {type(value).__name__}, not {_kind_name(kind)}")
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadRecord(f"field {name!r} holds a lone surrogate, not text") from None
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def day(doc: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = get(doc, name, str, optional=optional)
    if value is not None and not is_day(value):
        raise BadRecord(f"field {name!r} is not a date (YYYY-MM-DD): {value[:40]!r}")
    return value  # type: ignore[no-any-return]


def stamp(doc: Mapping[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = get(doc, name, str, optional=optional)
    if value is not None:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadRecord(f"field {name!r} is not a time (ISO 8601): {value[:40]!r}") from None
    return value  # type: ignore[no-any-return]


def str_list(doc: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = get(doc, name, list)
    if not all(isinstance(v, str) for v in value):
        raise BadRecord(f"field {name!r} holds something other than text")
    return tuple(value)


def nonneg(doc: Mapping[str, Any], name: str, *, default: int | None = None) -> int:
    if default is not None and doc.get(name) is None:
        return default
    value: int = get(doc, name, int)
    if value < 0:
        raise BadRecord(f"field {name!r} is negative")
    return value


def count(doc: Mapping[str, Any], name: str) -> int | None:
    """An optional whole number, not negative; None when absent."""
    return None if doc.get(name) is None else nonneg(doc, name)


def is_day(value: str) -> bool:
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True
