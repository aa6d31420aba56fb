"""Stage 4: rewrite README.md, the Daily Papers list, from the papers as they now stand."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from digestd.config.load import Config
from digestd.core.diff import latest
from digestd.core.models import Paper
from digestd.render import readme
from digestd.render.templates import text_env
from digestd.store.state import Held


def readme_sections(
    cfg: Config, papers: Mapping[str, list[tuple[int, Paper]]]
) -> list[tuple[str, list[Paper]]]:
    return [(k.name, latest(papers.get(k.name, []), cfg.settings.readme_rows)) for k in cfg.keywords]


def publish(cfg: Config, papers: Held, today: date, failed: set[str]) -> bool:
    existing = cfg.paths.readme.read_text(encoding="utf-8") if cfg.paths.readme.exists() else None
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
