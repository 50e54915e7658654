"""Logging of the webhook endpoint that a client cannot flood: at most one line per key (a
client address bucket) and interval, with the count of the lines left out since."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable


class LimitedLog:
    """``log(key, ...)`` writes at most one line per ``key`` every ``interval_s``; a line
    after a quiet spell ends with ``suppressed=N``. At most ``max_keys`` keys remembered."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 60.0,
        max_keys: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.max_keys = max_keys
        self.clock = clock
        self._last: OrderedDict[str, tuple[float, int]] = OrderedDict()  # written at, left out

    def log(self, key: str, level: int, msg: str, *args: object) -> bool:
        """Write the line unless ``key`` wrote one within the interval; True when written."""
        now = self.clock()
        at, left_out = self._last.pop(key, (-self.interval_s - 1.0, 0))
        if now - at < self.interval_s:
            self._last[key] = (at, left_out + 1)
            return False
        self._last[key] = (now, 0)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        self.logger.log(level, msg + " suppressed=%d", *args, left_out)
        return True
