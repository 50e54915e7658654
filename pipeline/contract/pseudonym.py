"""Keyed pseudonymisation of person ids at ingest (HMAC-SHA256, truncated to 128 bits).

Stable for one key, so a person's events can be joined over time; without the key the ids can
be neither reversed nor recomputed from a list of known ids (unlike a plain hash).

Ids are normalised first (``normalise_person_id``), so that the spellings one person's id takes
across platforms and exports (NFC or NFD umlauts, stray spaces, ``Anna@Example.org``) give one
pseudonym. Every path that pseudonymises (ingest, imports, webhooks, the directory) goes through
``Pseudonymiser`` and therefore through this one function.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata

PSEUDONYM_HEX_CHARS = 32

#: An e-mail address: one ``@`` with something on both sides, no whitespace.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def normalise_person_id(raw_id: str) -> str:
    """The canonical form of a person id: Unicode NFC, surrounding whitespace removed, and an
    e-mail address lower-cased (mail systems treat addresses without regard to case; platform
    user ids such as Slack's ``U024BE7LH`` keep their case).

    >>> normalise_person_id(" J\u0075\u0308rgen@Example.ORG ") == "j\u00fcrgen@example.org"
    True
    >>> normalise_person_id("U024BE7LH")
    'U024BE7LH'
    """
    text = raw_id.strip()
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    if _EMAIL.fullmatch(text):
        text = text.lower()
    return text


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
        """The pseudonym of ``raw_id`` after ``normalise_person_id`` (32 lowercase hex
        characters): spellings of one id that normalise alike share it."""
        pseudonym = self._cache.get(raw_id)
        if pseudonym is None:
            mac = self._base.copy()
            mac.update(normalise_person_id(raw_id).encode("utf-8", "surrogatepass"))
            pseudonym = mac.hexdigest()[:PSEUDONYM_HEX_CHARS]
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[raw_id] = pseudonym
        return pseudonym
