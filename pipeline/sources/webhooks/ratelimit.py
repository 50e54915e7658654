"""Rate limits of the webhook endpoints: token buckets per key (a credential, or a client
address for requests that are not authenticated), at most ``max_sources`` remembered."""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    """A token bucket per key: ``burst`` requests at once, then ``rate_per_s``; the least
    recently used keys are forgotten beyond ``max_sources`` (a forgotten key starts full)."""

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_sources: int = 4096,
    ) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.clock = clock
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def _tokens(self, key: str, now: float) -> float:
        tokens, at = self._buckets.pop(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)

    def check(self, key: str) -> float:
        """Take one request of ``key``: 0.0 when allowed, else seconds until it would be."""
        now = self.clock()
        tokens = self._tokens(key, now)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._store(key, tokens, now)
        return wait

    def waiting(self, key: str) -> float:
        """Seconds until ``key`` may send again (0.0: now), without taking a request."""
        now = self.clock()
        tokens = self._tokens(key, now)
        self._store(key, tokens, now)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)


def client_key(remote: str | None) -> str:
    """The bucket of a client address: IPv4 as is, IPv6 by its /64 (one host's range)."""
    try:
        addr = ipaddress.ip_address(remote or "")
    except ValueError:
        return "unknown"
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)
