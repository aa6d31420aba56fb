"""Reading subscribers.yaml: its text, its data (the fast reader when it can, ruamel with a
strict composer otherwise), and the line of a node for an error message."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import ConstructorError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionStartEvent, Event, NodeEvent, ScalarEvent
from ruamel.yaml.nodes import MappingNode

from digestd.config.fastyaml import MAX_DEPTH, NOT_SIMPLE, Positions, fast_yaml, fast_yaml_located
from digestd.config.values import control_character
from digestd.errors import ConfigError
from digestd.store.readfile import read_regular

# Refused raw anywhere in the file, before either reader: what YAML allows nowhere (ruamel's
# reader refuses it, fast_yaml would keep it) and NEL, U+2028, U+2029 (ruamel folds them into
# a space, fast_yaml keeps them). Tab, \n and \r stay: YAML whitespace and line ends.
_RAW_CONTROL = re.compile("[^\t\n\r -~\xa0-\u2027\u202a-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MERGE_TAG = "tag:yaml.org,2002:merge"
MAX_YAML_BYTES = 64 * 2**20  # 100,000 subscribers are about 10 MB


def read_yaml_text(path: Path) -> str:
    """The text of subscribers.yaml, or a sentence saying how to create it."""
    return read_yaml_file(path)[0]


def read_yaml_file(path: Path) -> tuple[str, bool]:
    """The text of subscribers.yaml with LF line ends, and whether the file ends its lines with
    CR LF (an edit writes them back so). Only a regular file of at most MAX_YAML_BYTES is read:
    a FIFO would block for ever, /dev/zero or a runaway file would end in a MemoryError."""
    try:
        raw = read_regular(path, MAX_YAML_BYTES)
        if len(raw) > MAX_YAML_BYTES:
            raise ConfigError(
                f"{path} is larger than {MAX_YAML_BYTES // 2**20} MiB (about 600,000 subscribers); "
                "is it the right file?"
            )
        crlf = b"\r\n" in raw[:65536]
        return raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n"), crlf  # as read_text() reads
    except FileNotFoundError:
        raise ConfigError(
            f"{path} does not exist: run `digestd init` to create an instance there, or pass --home DIR"
        ) from None
    except NotADirectoryError:  # --home (or DIGESTD_HOME) names a file
        raise ConfigError(f"{path.parent} is not a folder: pass --home DIR, an instance's folder") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"cannot read {path}: {err}") from None


def parse_yaml(text: str, path: Path, *, round_trip: bool = False) -> Any:
    """Parse YAML, naming the file and line of a syntax error.

    A safe load first tries `fast_yaml`, which reads the plain block style subscribers.yaml
    is written in about 30 times faster than ruamel's pure-Python loader (10,000 subscribers:
    0.2 s instead of 5 s); anything else in the file takes ruamel's loader. A raw control
    character is refused first: the readers disagree on some (ruamel folds NEL, U+2028 and
    U+2029 into a space, fast_yaml keeps them) and no text field may hold one anyway.
    """
    _refuse_raw_control(text, path)
    if not round_trip:
        data = fast_yaml(text)
        if data is not NOT_SIMPLE:
            return data
    yaml = YAML(typ="rt" if round_trip else "safe", pure=True)
    yaml.preserve_quotes = round_trip  # an edit writes `['? q']` back quoted, not `[? q]` (a mapping)
    yaml.Composer = _StrictComposer
    yaml.Constructor = _marked(yaml.Constructor)
    try:
        return yaml.load(text)
    except _Refused as err:
        raise ConfigError(f"{path}, line {err.line}: {err.message}") from None
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{where}: malformed YAML: {err.problem or err}") from None
    except YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None


def read_located(text: str, path: Path) -> tuple[Any, Positions] | None:
    """The data and the positions of its nodes (fastyaml.fast_yaml_located), after the same
    check of raw characters parse_yaml makes; None for a text outside the fast reader's subset."""
    _refuse_raw_control(text, path)
    located = fast_yaml_located(text)
    return None if located is NOT_SIMPLE else located


def _refuse_raw_control(text: str, path: Path) -> None:
    raw = _RAW_CONTROL.search(text)
    if raw:
        line = text.count("\n", 0, raw.start()) + 1
        kind = "control character" if control_character(raw.group()) else "character"
        raise ConfigError(
            f"{path}, line {line}: {kind} U+{ord(raw.group()):04X} is not allowed; "
            "text fields must be one line of printable text"
        )


def line_of(path: Path, where: tuple[str | int, ...], text: str) -> int | None:
    """The 1-based line of the node at `where` (keys and indexes from the top), found by a
    round-trip load only when an error is shown; None if the text does not say."""
    try:
        node: Any = parse_yaml(text, path, round_trip=True)
    except Exception:  # only the line number is lost; the message is shown all the same
        return None
    line: int | None = None
    for key in where:
        try:
            line = (node.lc.item(key) if isinstance(key, int) else node.lc.key(key))[0] + 1
            node = node[key]
        except (AttributeError, KeyError, IndexError, TypeError):
            break
    return line


def _marked(constructor: type[Any]) -> type[Any]:
    """`constructor`, raising a marked ConstructorError where ruamel lets a bare ValueError,
    KeyError or IndexError out of a scalar it cannot build (`2026-02-30`, `0x_`,
    `!!bool maybe`), so the line is named instead of an "internal error"."""

    class Marked(constructor):  # type: ignore[misc]
        def construct_object(self, node: Any, deep: bool = False) -> Any:
            try:
                return super().construct_object(node, deep)
            except (ValueError, KeyError, IndexError, OverflowError) as err:
                problem = f"cannot read the value {str(node.value)[:80]!r} ({err})"
                raise ConstructorError(problem=problem, problem_mark=node.start_mark) from None

    return Marked


class _Refused(Exception):
    """An anchor, alias, merge key or deep nesting, raised by the composer, caught by parse_yaml."""

    def __init__(self, event: Event, message: str) -> None:
        super().__init__(message)
        self.line = event.start_mark.line + 1 if event.start_mark is not None else 0
        self.message = message


class _StrictComposer(Composer):
    """ruamel's composer, refusing anchors, aliases and merge keys on the parser event that
    opens them: composing comes before constructing and reads events lazily, so a 400-byte
    alias bomb (gigabytes once a loader or a walk follows its aliases) costs the bytes up to
    its first anchor. Also bounds the nesting depth: both loaders recurse once per level."""

    nesting = 0  # collections enclosing the node being composed

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        what = _reference(event, is_key=isinstance(parent, MappingNode) and index is None)
        if what:
            raise _Refused(event, f"YAML {what} is not allowed in this file; write the value out in full")
        if isinstance(event, CollectionStartEvent) and self.nesting >= MAX_DEPTH:
            raise _Refused(event, f"nested more than {MAX_DEPTH} levels deep")
        self.nesting += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.nesting -= 1


def _reference(event: Event, *, is_key: bool) -> str | None:
    """What makes `event` an anchor, an alias or a merge key, or None."""
    if isinstance(event, AliasEvent):
        return f"alias '*{event.anchor}'"
    if isinstance(event, NodeEvent) and event.anchor is not None:
        return f"anchor '&{event.anchor}'"
    if getattr(event, "tag", None) == _MERGE_TAG:
        return "merge tag '!!merge'"
    if is_key and isinstance(event, ScalarEvent) and event.value == "<<" and event.style is None:
        return "merge key '<<'"
    return None
