"""How `digestd run` asks the C allocator to hand large buffers back to the system.

Why: a run sends each digest's bytes (70 KB) through a pipe from the builder processes and
out through a socket, and glibc's malloc raises its mmap threshold to the largest block it
has freed, so these buffers then come from a heap that only grows. Fixing the threshold at
128 KB (M_MMAP_THRESHOLD, which also turns the adjusting off) keeps them as mappings that
are returned when freed: at 100,000 subscribers the run's peak RSS went from 331 to 302 MB
(docs/benchmarks.md). Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
THRESHOLD = 128 * 1024  # glibc's own starting value, kept fixed


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold; True when it took effect."""
    try:  # the process's own symbols: libc is loaded already (find_library would run ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) was refused; large buffers stay in the heap")
    return ok
