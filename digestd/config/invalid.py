"""A rule of subscribers.yaml that the data breaks, and where: every reading module raises it,
and the loader turns it into one sentence naming the file and the line."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from digestd.config.yamlread import line_of
from digestd.errors import ConfigError

Where = tuple[str | int, ...]  # keys and indexes from the top of the document to a node


class Invalid(ConfigError):
    """A rule the data breaks, at `where`; `config_error` names the file and the line."""

    def __init__(self, where: Where, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message

    def config_error(self, path: Path, text: str, suffix: str = "") -> ConfigError:
        """The one sentence shown: file, line of the offending node in `text`, message."""
        line = line_of(path, self.where, text)
        where = f", line {line}" if line else ""
        return ConfigError(f"{path}{where}: {self.message}{suffix}")


def only_known(where: Where, mapping: dict[Any, Any], known: tuple[str, ...], what: str) -> None:
    """Refuse the first key of `mapping` not in `known`."""
    for key in mapping:
        if key not in known:
            raise unknown_key(where, key, known, what)


def unknown_key(where: Where, key: Any, known: tuple[str, ...], what: str) -> Invalid:
    """A refusal naming the key and, for a near miss, the key it probably meant (a typo like
    `stauts:` must not silently cost mail). `what` is a sentence with a {key} field."""
    close = difflib.get_close_matches(str(key).lower(), known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(known)}"
    return Invalid((*where, key), f"{what.format(key=repr(str(key)[:80]))} ({hint})")
