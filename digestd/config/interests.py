"""Subscribers' `interests:`: each entry an arXiv id or a BibTeX file (relative to the
instance). Ids are checked with the rest of the file; BibTeX files are read when the
configuration loads, so a malformed one stops everything before anything is changed."""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from digestd.config.follow import FieldProblem
from digestd.config.settings import Paths
from digestd.config.yamlread import line_of
from digestd.core.interests import MAX_BIB_BYTES, MAX_INTERESTS, BibEntry, BibProblem, arxiv_id, parse_bibtex
from digestd.core.models import Subscriber
from digestd.errors import ConfigError
from digestd.store.readfile import read_regular


def interest_entries(raw: Any, email: str) -> tuple[str, ...]:
    """The configured entries: well-formed arXiv ids (no version) and `.bib` paths."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise FieldProblem((), f"the interests of {email} must be a list of arXiv ids or .bib files")
    for i, x in enumerate(raw):
        if isinstance(x, int | float) and not isinstance(x, bool):  # 2506.05175 unquoted is a float
            why = "is a number to YAML: quote it, as in '2506.05175'"
            raise FieldProblem((i,), f"interest {x} of {email} {why}")
        if not isinstance(x, str):
            raise FieldProblem((), f"the interests of {email} must be a list of arXiv ids or .bib files")
    if len(raw) > MAX_INTERESTS:
        raise FieldProblem((), f"{email} has {len(raw)} interests; at most {MAX_INTERESTS}")
    out: list[str] = []
    for i, entry in enumerate(raw):
        text = entry.strip()
        if text.lower().endswith(".bib"):
            if Path(text).is_absolute() or ".." in Path(text).parts:
                why = "give a .bib path inside the instance"
                raise FieldProblem((i,), f"interest {text!r} of {email}: {why}")
            out.append(text)
            continue
        pid = arxiv_id(text.removeprefix("arXiv:").removeprefix("arxiv:"))
        if pid is None:
            why = "is not an arXiv id (like 2506.05175) nor a .bib file"
            raise FieldProblem((i,), f"interest {text[:80]!r} of {email} {why}")
        out.append(pid)
    return tuple(dict.fromkeys(out))


def resolve(paths: Paths, subscribers: Sequence[Subscriber], text: str) -> tuple[Subscriber, ...]:
    """Each subscriber with .bib files among their interests gets those files' arXiv ids (and,
    for entries without one, their titles and abstracts); ConfigError names file, line, entry."""
    files: dict[str, list[BibEntry]] = {}
    out: list[Subscriber] = []
    for i, sub in enumerate(subscribers):
        if not any(e.lower().endswith(".bib") for e in sub.interests):
            out.append(sub)
            continue
        ids: list[str] = []
        texts: list[str] = list(sub.interest_texts)
        for j, entry in enumerate(sub.interests):
            if not entry.lower().endswith(".bib"):
                ids.append(entry)
                continue
            if entry not in files:
                files[entry] = _read_bib(paths, entry, ("subscribers", i, "interests", j), text, sub.email)
            for bib in files[entry]:
                if bib.arxiv_id:
                    ids.append(bib.arxiv_id)
                else:
                    texts.append(f"{bib.title} {bib.title} {bib.abstract}")
        bibs = tuple(e for e in sub.interests if e.lower().endswith(".bib"))
        out.append(replace(sub, interests=tuple(dict.fromkeys(ids)), interest_texts=tuple(texts),
                           interest_files=bibs))
    return tuple(out)


def _read_bib(
    paths: Paths, entry: str, where: tuple[str | int, ...], text: str, email: str
) -> list[BibEntry]:
    """The entries of one BibTeX file, or ConfigError naming the file (and line, entry)."""
    path = paths.home / entry
    try:
        if not path.resolve().is_relative_to(paths.home.resolve()):  # a symlink out of it
            raise OSError(errno.EPERM, "a link to a file outside the instance")
        raw = read_regular(path, MAX_BIB_BYTES)
    except OSError as err:
        line = line_of(paths.subscribers, where, text)
        at = f", line {line}" if line else ""
        raise ConfigError(f"{paths.subscribers}{at}: the interests of {email} name {entry!r}, which cannot "
                          f"be read ({err.strerror or err}); nothing was changed") from None
    if len(raw) > MAX_BIB_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_BIB_BYTES // 1_000_000} MB; export fewer references")
    try:
        return parse_bibtex(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}, line {line}: not UTF-8 text; export the file as UTF-8") from None
    except BibProblem as err:
        what = f"entry {err.key!r}: " if err.key else ""
        raise ConfigError(f"{path}, line {err.line}: {what}{err.why}; nothing was changed") from None

