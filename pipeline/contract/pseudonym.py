"""Keyed pseudonymisation of person ids at ingest (HMAC-SHA256, truncated to 128 bits).

Stable for one key, so a person's events can be joined over time; without the key the ids can
be neither reversed nor recomputed from a list of known ids (unlike a plain hash).
"""

from __future__ import annotations

import hashlib
import hmac

PSEUDONYM_HEX_CHARS = 32


class Pseudonymiser:
    """Maps raw person ids to pseudonyms; caches recent ids because actors repeat a lot.

    >>> p = Pseudonymiser(b"0123456789abcdef")
    >>> p("anna@example.org") == p("anna@example.org") != p("jonas@example.org")
    True
    """

    def __init__(self, key: bytes, cache_size: int = 200_000) -> None:
        if len(key) < 16:
            raise ValueError(f"pseudonymisation key must be >= 16 bytes, got {len(key)}")
        self._base = hmac.new(key, digestmod=hashlib.sha256)
        # a plain dict, emptied when full: a hit (almost every event) is one dict lookup,
        # several times cheaper than functools.lru_cache's bookkeeping
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size

    def __call__(self, raw_id: str) -> str:
        """The pseudonym of ``raw_id`` (32 lowercase hex characters)."""
        pseudonym = self._cache.get(raw_id)
        if pseudonym is None:
            mac = self._base.copy()
            mac.update(raw_id.encode("utf-8", "surrogatepass"))
            pseudonym = mac.hexdigest()[:PSEUDONYM_HEX_CHARS]
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[raw_id] = pseudonym
        return pseudonym
