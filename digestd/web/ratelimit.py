"""Sliding-window rate limits for the sign-up form: per client address and per recipient.

Bounded in memory: at most `max_keys` keys are remembered (the oldest are forgotten first),
so a flood of distinct addresses cannot grow the server without end. Time comes from a
passed-in clock (monotonic seconds), so tests can move it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from email.message import Message
from ipaddress import IPv6Address, ip_address, ip_network


class RateLimit:
    """At most `limit` events per `window` seconds per key."""

    def __init__(self, limit: int, window: float, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str) -> bool:
        """Count one event for `key`; False (and not counted) when it is over the limit."""
        now = self.clock()
        with self._lock:
            times = self._seen.pop(key, None) or deque()
            while times and times[0] <= now - self.window:
                times.popleft()
            ok = len(times) < self.limit
            if ok:
                times.append(now)
            if times:
                self._seen[key] = times  # most recent last
            while len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return ok


def client_key(peer: str, headers: Message) -> str:
    """Who is asking: the peer's address, or, when the peer is this machine (the reverse proxy
    `digestd serve` is meant to sit behind), the last address the proxy put in
    X-Forwarded-For. A client cannot forge that last entry through a proxy that appends it,
    whether to the client's own header or as a header line of its own (HAProxy), so the lines
    are read as one list (RFC 9110 5.3), never the first line alone."""
    try:
        local = ip_address(peer).is_loopback
    except ValueError:
        local = False
    forwarded = ",".join(headers.get_all("X-Forwarded-For") or []) if local else None
    if forwarded:
        forwarded_client = _client(forwarded.rsplit(",", 1)[-1].strip())
        if forwarded_client is not None:
            return forwarded_client
    return _client(peer) or peer


def _client(address: str) -> str | None:
    """One key per client (None for what is not an IP address): an IPv6 address stands for its
    /64, since one host is given a whole /64 and could otherwise be a new client each request."""
    try:
        ip = ip_address(address)
    except ValueError:
        return None
    if not isinstance(ip, IPv6Address):
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip_network(f"{ip}/64", strict=False))
