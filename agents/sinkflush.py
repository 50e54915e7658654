"""Parts of the engagement stage's flush protocol (``agents.engagement``): the state of one
partition, a flush's snapshot, a batch's counters, and the retry of ClickHouse calls that
stops at a permanent error (docs/reliability.md)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pipeline.metrics.windows import Checkpoint, ClosedWindow, PartitionWindows
from pipeline.sinks.clickhouse import PermanentSinkError, classify_error
from pipeline.sinks.facts import FactBatch

log = logging.getLogger("teilhabe.engagement")

FAILURE_LOG_INTERVAL_S = 30.0
MAX_BACKOFF_S = 30.0
T = TypeVar("T")


@dataclass
class PartitionState:
    """Windows of one partition plus the messages not yet safe to acknowledge.

    One object per period of ownership: a revocation drops it, a later assignment of the same
    partition makes a new one, so ``states.get(p) is st`` tells a flush whether the partition
    is still owned as it was when the flush took its snapshot."""

    windows: PartitionWindows
    pending: deque[Any] = field(default_factory=deque)
    source_seen_at: dict[int, float] = field(default_factory=dict)
    last_message_at: float = field(default_factory=time.monotonic)
    last_idle_step_at: float = field(default_factory=time.monotonic)
    dirty: bool = False


@dataclass
class FlushSnapshot:
    """What one flush writes, taken under the state lock: the facts and closed windows, and per
    dirty partition its state object (the owner of the snapshot) with its checkpoint."""

    facts: FactBatch
    closed: list[ClosedWindow]
    owners: dict[int, PartitionState]
    checkpoints: dict[int, Checkpoint]


@dataclass
class BatchCounts:
    """Counters of one batch, published with one ``inc`` per label."""

    by_type: Counter[str] = field(default_factory=Counter)
    late: int = 0
    duplicates: int = 0

    def publish(self, m: Any) -> None:
        for event_type, n in self.by_type.items():
            m.events_in.labels(event_type).inc(n)
        if self.late:
            m.events_late.inc(self.late)
        if self.duplicates:
            m.events_duplicate.inc(self.duplicates)


class SinkRetry:
    """Runs sink calls until they succeed, backing off; logs once per interval, not per try."""

    def __init__(self, metrics: Any, sink: Any) -> None:
        self.metrics = metrics
        self.sink = sink
        self._last_failure_log = 0.0

    async def call(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``await attempt()`` until it succeeds. A failure ``classify_error`` calls permanent
        (ClickHouse refused the statement: no retry can succeed) raises ``PermanentSinkError``
        at once instead. Every try is a new ``attempt()``: the caller may shrink what it
        writes between tries."""
        backoff = 0.5
        failures = 0
        while True:
            try:
                return await attempt()
            except Exception as exc:  # noqa: BLE001 - classified below
                failure = classify_error(exc)
                failures += 1
                self.metrics.sink_failures.inc()
                self.sink.reset()
                if failure.permanent:
                    raise PermanentSinkError(what, failure) from exc
                now = time.monotonic()
                if now - self._last_failure_log >= FAILURE_LOG_INTERVAL_S:
                    self._last_failure_log = now
                    log.error(
                        "clickhouse %s failing, retrying with backoff (no offsets committed) "
                        "failures=%s error=%s: %s",
                        what,
                        failures,
                        type(exc).__name__,
                        failure.describe()[:300],
                    )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
