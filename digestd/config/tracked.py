"""The changes an edit makes to the document, made through these functions so the edit engine
sees each one: to write just the lines it changes, or to cut exactly the lines of a deleted
node (ruamel's dump drops a comment that trails one). A change made any other way is still
made, and caught when the result is compared with the file written."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

Doc = dict[str, Any]  # subscribers.yaml as read: plain data, or ruamel's round-trip types
Change = Callable[[Doc], list[str]]  # edits the document; says what it did


@dataclass(frozen=True, slots=True)
class Edited:
    """What a change said, and the file's new text (None: the document did not change) with
    its data when the edit has already read it back."""

    said: list[str]
    text: str | None = None
    data: Any = None


class Tracker(Protocol):
    """Told of each change just before it is made to the document."""

    def delete_item(self, seq: list[Any], index: int) -> None: ...
    def delete_key(self, mapping: Doc, key: str) -> None: ...
    def set_key(self, mapping: Doc, key: str, value: Any) -> None: ...
    def append_item(self, seq: list[Any], item: Any) -> None: ...


_TRACKER: ContextVar[Tracker | None] = ContextVar("digestd_yaml_tracker", default=None)


@contextmanager
def tracking(tracker: Tracker) -> Iterator[None]:
    """Let `tracker` see the changes made inside the block (this thread's, this task's)."""
    token = _TRACKER.set(tracker)
    try:
        yield
    finally:
        _TRACKER.reset(token)


def delete_item(seq: list[Any], index: int) -> None:
    """`del seq[index]`."""
    if (tracker := _TRACKER.get()) is not None:
        tracker.delete_item(seq, index)
    del seq[index]


def delete_key(mapping: Doc, key: str) -> None:
    """`del mapping[key]`."""
    if (tracker := _TRACKER.get()) is not None:
        tracker.delete_key(mapping, key)
    del mapping[key]


def set_key(mapping: Doc, key: str, value: Any) -> None:
    """`mapping[key] = value` (a new key goes last, as ruamel writes it)."""
    if (tracker := _TRACKER.get()) is not None:
        tracker.set_key(mapping, key, value)
    mapping[key] = value


def append_item(seq: list[Any], item: Any) -> None:
    """`seq.append(item)`."""
    if (tracker := _TRACKER.get()) is not None:
        tracker.append_item(seq, item)
    seq.append(item)


def span(lines: list[str], start: int, col: int, bound: int) -> tuple[int, int] | None:
    """Lines [start, end) of a node whose first line is `start` and which is indented past
    `col`: continuation lines and comments deeper than `col`; not trailing blank lines or
    comments at `col` or less (those belong to what follows)."""
    if start >= len(lines):
        return None
    end = start + 1
    for j in range(start + 1, min(bound, len(lines))):
        stripped = lines[j].strip()
        if not stripped:
            continue
        if len(lines[j]) - len(lines[j].lstrip(" ")) <= col:
            break
        end = j + 1
    return start, end


def norm(value: Any) -> Any:
    """Plain data for comparing documents; an empty list or mapping counts as nothing."""
    if isinstance(value, dict):
        out = {str(k): norm(v) for k, v in value.items()}
        return out or None
    if isinstance(value, list):
        return [norm(v) for v in value] or None
    return value
