"""Jinja2 environments: an instance's templates/ first, then the defaults shipped in the package."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import css_inline
import jinja2

from digestd.errors import ConfigError, DigestdError

DEFAULTS = Path(__file__).parent.parent / "default_templates"
TEXT_WIDTH = 78
# A URL in running text: a scheme, then anything but space, quotes and angle brackets, not ending
# in the punctuation that usually follows a URL in a sentence.
URL_RE = re.compile(r"https?://[^\s<>\"']*[^\s<>\"'.,;:!?)\]}]")
_URL_START = re.compile(r"^[<(\[]*(?:https?://|mailto:)")


def _split_long(word: str, width: int) -> list[str]:
    """A word wider than the page is cut into pieces; a URL is kept whole (cutting breaks it)."""
    if len(word) <= width or _URL_START.match(word):
        return [word]
    return [word[i : i + width] for i in range(0, len(word), width)]


def wrap(text: str, width: int = TEXT_WIDTH, *, indent: str = "") -> str:
    """Wrap one paragraph for the text/plain part at `width` columns.

    Whitespace runs collapse; a URL is never broken (it would stop working), so only a URL
    longer than the line may exceed it; any other over-long word is cut.
    """
    words = [piece for w in str(text).split() for piece in _split_long(w, width - len(indent))]
    return textwrap.fill(
        " ".join(words), width=width, break_long_words=False, break_on_hyphens=False,
        initial_indent=indent, subsequent_indent=indent,
    )


def underline(text: str, char: str) -> str:
    """A Markdown setext heading: `text` (already wrapped) and a rule as wide as its widest line."""
    rule = char * max(3, min(TEXT_WIDTH, max((len(line) for line in text.splitlines()), default=3)))
    return f"{text}\n{rule}"


def _loader(instance_templates: Path | None) -> jinja2.BaseLoader:
    loaders: list[jinja2.BaseLoader] = []
    if instance_templates is not None and instance_templates.is_dir():
        loaders.append(jinja2.FileSystemLoader(str(instance_templates)))
    loaders.append(jinja2.FileSystemLoader(str(DEFAULTS)))
    return jinja2.ChoiceLoader(loaders)


def html_env(instance_templates: Path | None) -> jinja2.Environment:
    """Autoescaping on: everything from arXiv is escaped before it reaches HTML."""
    return jinja2.Environment(
        loader=_loader(instance_templates),
        autoescape=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def text_env(instance_templates: Path | None) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=_loader(instance_templates),
        autoescape=False,  # noqa: S701 - text/plain and Markdown output, never HTML
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["wrap"] = wrap
    env.filters["underline"] = underline
    return env


def read_asset(instance_templates: Path | None, name: str) -> str:
    """A non-template file (the CSS) with the same override rule."""
    if instance_templates is not None and (instance_templates / name).is_file():
        return (instance_templates / name).read_text(encoding="utf-8")
    return (DEFAULTS / name).read_text(encoding="utf-8")


@contextmanager
def template_errors(templates: Path | None) -> Iterator[None]:
    """A broken or unreadable template or digest.css of the instance becomes one sentence
    naming it, not a traceback: its owner can fix it or delete it (the defaults then apply)."""
    try:
        yield
    except jinja2.TemplateSyntaxError as err:
        where = f"{err.filename or err.name}, line {err.lineno}"
        raise ConfigError(
            f"template {where}: {err.message}; fix it or delete it to use the default"
        ) from None
    except jinja2.TemplateError as err:
        raise ConfigError(f"a template in {templates} fails to render: {err}") from None
    except css_inline.InlineError as err:
        raise ConfigError(f"digest.css in {templates} cannot be inlined: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"a template or digest.css in {templates} is not UTF-8 text "
                          f"({err.reason} at byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        path = err.filename or templates
        raise DigestdError(f"cannot read the template {path}: {err.strerror or err}") from None
