"""`digestd init`: a new instance folder with a commented subscribers.yaml and the default
templates to edit; an existing file is never overwritten."""

from __future__ import annotations

from pathlib import Path

from digestd.config.settings import Paths
from digestd.errors import DigestdError
from digestd.render.templates import DEFAULTS
from digestd.store.atomic import write_atomic

INIT_YAML = """\
# digestd instance: the keywords to follow and who gets the digests.
# Secrets (SMTP password, unsubscribe secret) never go here: see digestd.env.example.
keywords:                      # each is one arXiv search and one README section
  - Video Anomaly Detection
subscribers: []
  # - email: alice@example.org
  #   name: Alice                 # optional
  #   keywords: [Video Anomaly Detection]   # optional; omitted means all keywords
  #   frequency: daily            # or weekly
settings:
  from: Daily Papers <papers@example.org>
  readme_rows: 20               # rows per keyword in the README
  max_results: 100              # papers fetched and retained per keyword
"""


def init_instance(home: Path) -> list[str]:
    """Create what is missing; never overwrite a file. The CLI then loads the new instance to
    prove it is valid."""
    paths = Paths(home)
    said = []
    for folder in (home, paths.state_dir, paths.templates):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DigestdError(f"cannot create {folder}: {err.strerror or err}") from None
    targets: list[tuple[Path, str | bytes]] = [(paths.subscribers, INIT_YAML)]
    targets += [(paths.templates / f.name, f.read_bytes()) for f in sorted(DEFAULTS.iterdir()) if f.is_file()]
    for path, content in targets:
        if path.exists():
            said.append(f"kept existing {path}")
            continue
        write_atomic(path, content)
        said.append(f"created {path}")
    return said
