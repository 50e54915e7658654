"""De-duplication of webhook deliveries: the delivery ids seen recently (senders retry)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

Seen = Literal["new", "pending", "done"]


class RecentIds:
    """Delivery ids of the last ``ttl_s`` (at most ``max_ids``, oldest forgotten first).

    ``begin`` claims an id; ``finish`` marks it delivered, ``abandon`` forgets it (the
    sender's retry is then processed again). Slack retries after 1 and 5 minutes.
    """

    def __init__(
        self,
        ttl_s: float = 3600.0,
        max_ids: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_ids = max_ids
        self.clock = clock
        self._ids: OrderedDict[str, tuple[float, bool]] = OrderedDict()  # expires, done

    def begin(self, delivery_id: str) -> Seen:
        """``new`` (now claimed), ``pending`` (being delivered) or ``done`` (delivered)."""
        now = self.clock()
        while self._ids:
            oldest, (expires, _) = next(iter(self._ids.items()))
            if expires > now and len(self._ids) < self.max_ids:
                break
            del self._ids[oldest]
        known = self._ids.get(delivery_id)
        if known is not None:
            return "done" if known[1] else "pending"
        self._ids[delivery_id] = (now + self.ttl_s, False)
        return "new"

    def finish(self, delivery_id: str) -> None:
        """Mark a claimed id as delivered."""
        if delivery_id in self._ids:
            self._ids[delivery_id] = (self._ids[delivery_id][0], True)

    def abandon(self, delivery_id: str) -> None:
        """Forget a claimed id whose delivery failed."""
        self._ids.pop(delivery_id, None)
