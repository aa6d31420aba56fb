"""After publish: record the run's additions in state/archive.json and rebuild the site.

Only a run that stored papers (a new run seq) records a day; a dry run never gets here. The
site is secondary to the mail: a failure to write it is one message in the report and the
run goes on; the next run (or `digestd site build`) writes it again.
"""

from __future__ import annotations

import logging
from datetime import date

from digestd.config.settings import Config
from digestd.core.models import RunReport
from digestd.errors import DigestdError
from digestd.site.build import build
from digestd.store.archive import ArchiveStore
from digestd.store.papers import Held

log = logging.getLogger(__name__)


def publish(cfg: Config, papers: Held, seq: int, today: date, report: RunReport) -> bool:
    """True when the site was rebuilt."""
    try:
        store = ArchiveStore(cfg.paths.archive_db)
        try:
            recorded = store.record(seq, today.isoformat(), papers, cfg.settings.archive_days)
        finally:
            store.close()
        if not recorded and (cfg.paths.site / "index.html").exists():
            return False
        build(cfg)
    except DigestdError as err:
        report.messages.append(f"the site was not updated: {err} (run `digestd site build` once fixed)")
        return False
    except Exception as err:  # a bug here must not cost the run its summary: one line, reported
        log.warning("site: unexpected %s: %s", type(err).__name__, err)
        report.messages.append(f"the site was not updated: unexpected {type(err).__name__}: {err}")
        return False
    return True
