"""Stage 4: rewrite README.md, the Daily Papers list, from the papers as they now stand."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from digestd.config.settings import Config
from digestd.core.diff import latest
from digestd.core.models import Paper
from digestd.errors import DigestdError
from digestd.render import readme
from digestd.render.templates import template_errors, text_env
from digestd.store.papers import Held


def readme_sections(
    cfg: Config, papers: Mapping[str, list[tuple[int, Paper]]]
) -> list[tuple[str, list[Paper]]]:
    return [(k.name, latest(papers.get(k.name, []), cfg.settings.readme_rows)) for k in cfg.keywords]


def check(cfg: Config) -> None:
    """Before anything is fetched or mailed: README.md can be read and its header template
    compiles, so a run never fails half way through for them (one sentence, exit 1 or 2)."""
    _existing(cfg)
    with template_errors(cfg.paths.templates):
        text_env(cfg.paths.templates).get_template("readme_header.md.j2")


def _existing(cfg: Config) -> str | None:
    path = cfg.paths.readme
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as err:
        raise DigestdError(
            f"{path} is not UTF-8 text ({err.reason} at byte {err.start}): save it as UTF-8, or move it "
            "away and let the run write a new one"
        ) from None
    except OSError as err:
        raise DigestdError(f"cannot read {path}: {err.strerror or err}") from None


def publish(cfg: Config, papers: Held, today: date, failed: set[str]) -> bool:
    existing = _existing(cfg)
    with template_errors(cfg.paths.templates):
        header = text_env(cfg.paths.templates).get_template("readme_header.md.j2")
    text = readme.render_readme(
        header,
        today.isoformat(),
        readme_sections(cfg, papers),
        max_results=cfg.settings.max_results,
        existing=existing,
        failed=failed,
    )
    return readme.write_readme(cfg.paths.readme, text)
