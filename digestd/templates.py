"""Jinja2 environments: an instance's templates/ first, then the defaults shipped in the package."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jinja2

DEFAULTS = Path(__file__).parent / "default_templates"
TEXT_WIDTH = 78


def wrap(text: str, width: int = TEXT_WIDTH) -> str:
    """Wrap one paragraph for the text/plain part; long URLs are never broken."""
    return textwrap.fill(
        " ".join(str(text).split()), width=width, break_long_words=False, break_on_hyphens=False
    )


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
    return env


def read_asset(instance_templates: Path | None, name: str) -> str:
    """A non-template file (the CSS) with the same override rule."""
    if instance_templates is not None and (instance_templates / name).is_file():
        return (instance_templates / name).read_text(encoding="utf-8")
    return (DEFAULTS / name).read_text(encoding="utf-8")
