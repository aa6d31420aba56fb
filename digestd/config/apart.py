"""`digestd run` reads a large subscribers.yaml in a forked child and takes back the Config.

Why: reading 100,000 subscribers builds about 150 MB of short-lived objects (lines, the parsed
tree) for 30 MB of Config. Freed, they stay in the run's heap as fragments: the process holds
134 MB after loading where the child's pickled Config unpickles into 62 MB, which is the
difference between a run over and under issue "Speed"'s 300 MB (docs/benchmarks.md). The child
costs a fork and a 6 MB pickle, about 0.5 s at 100,000 subscribers; below MIN_BYTES of YAML
(about 10,000 subscribers) the file is read in process.

The child's answer is the Config or the ConfigError it raised, the same as load_config's. If
the child cannot answer (killed, a value that does not pickle), the file is read again in
process (ops/apart.py), so the fork only ever changes the memory, never the result. Only
`digestd run` uses this, before it takes the run lock and while it has no other thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from digestd.config.load import load_config
from digestd.config.settings import Config, Paths
from digestd.errors import DigestdError
from digestd.ops.apart import Apart

MIN_BYTES = 1 << 20  # smaller files are read in process: the fork would cost more than it saves


def load_config_apart(
    home: Path, env: Mapping[str, str] | None = None, *, min_bytes: int = MIN_BYTES
) -> Config:
    """load_config(home, env), read in a forked child when subscribers.yaml is large."""
    try:
        size = Paths(home).subscribers.stat().st_size
    except OSError:  # load_config names the problem
        size = 0
    if size < min_bytes:
        return load_config(home, env)
    return Apart(lambda: load_config(home, env), raises=(DigestdError,)).result()
