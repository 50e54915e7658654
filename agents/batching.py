"""Batches of stream events whose acknowledgement stays with the code that processes them.

Why not Faust's ``take_events`` / ``noack_take`` (faust-streaming 0.15.3): their background
buffer let events slip between two batches. Seen in the SIGKILL test's trace: the first
batch held input offsets 0-99 of every partition, the second began at 107; offsets 100-106
were never processed, and without the kill Faust's gap tracking would have committed past
them (whole input messages missing from ClickHouse while the group's offsets said
"processed"). This batcher has no background buffer: the agent appends under a lock, and a
batch is handed on when it is full (``max_events`` messages, or ``max_bytes`` of message
values: envelopes make a message up to ``TEILHABE_KAFKA_MAX_RECORD_BYTES``, so a count alone
would not bound the memory a batch holds) or, from a ticker task, when its first event has
waited ``within_s``. It never acknowledges anything itself.

Two locks: ``lock`` guards the buffer and is only held for moments, so the rebalance hook
that drops revoked partitions' events never waits for the handler; ``_handling`` keeps the
batches in order, one handler call at a time, and the agent waits on it when a batch is full
(a slow handler, e.g. a ClickHouse outage, pauses consumption: memory stays bounded).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Handler = Callable[[list[Any]], Awaitable[None]]


class EventBatcher:
    """Collects Faust events into batches for ``handler``."""

    def __init__(
        self, handler: Handler, max_events: int, within_s: float, max_bytes: int = 0
    ) -> None:
        self.handler = handler
        self.max_events = max_events
        self.max_bytes = max_bytes  # 0: no bound in bytes
        self.within_s = within_s
        self.lock = asyncio.Lock()
        self._handling = asyncio.Lock()
        self._buffer: list[Any] = []
        self._bytes = 0
        self._first_at = 0.0

    def __len__(self) -> int:
        return len(self._buffer)

    async def add(self, event: Any) -> None:
        """Buffer one event; process the batch at once when it is full."""
        async with self.lock:
            if not self._buffer:
                self._first_at = time.monotonic()
            self._buffer.append(event)
            if self.max_bytes:
                value = event.message.value
                self._bytes += len(value) if value else 0
            full = len(self._buffer) >= self.max_events or (
                self.max_bytes and self._bytes >= self.max_bytes
            )
        if full:
            await self._drain()

    async def tick(self) -> None:
        """Process a partial batch whose oldest event has waited ``within_s``."""
        if self._buffer and time.monotonic() - self._first_at >= self.within_s:
            await self._drain()

    async def flush(self) -> None:
        """Process whatever is buffered now (graceful stop: nothing waits for a restart)."""
        await self._drain()

    async def run_ticker(self) -> None:
        """Call ``tick`` forever (run as a worker task next to the agent)."""
        while True:
            await asyncio.sleep(self.within_s / 2)
            await self.tick()

    def discard_partitions(self, partitions: Iterable[int]) -> int:
        """Drop buffered events of revoked partitions (unacknowledged: their new owner reads
        them again); call while holding ``lock`` (never held long: see the module docstring).
        Returns how many were dropped."""
        gone = set(partitions)
        keep = [e for e in self._buffer if e.message.partition not in gone]
        dropped = len(self._buffer) - len(keep)
        self._buffer = keep
        self._bytes = sum(len(e.message.value or b"") for e in keep) if self.max_bytes else 0
        return dropped

    def attach(self, app: Any, topic: Any, name: str) -> None:
        """Register the Faust agent that feeds this batcher from ``topic``, the ticker that
        cuts partial batches, the rebalance hook that drops revoked partitions' events and,
        on a ``TeilhabeApp``, a stop hook that processes the last partial batch."""

        async def consume(stream: Any) -> None:
            async for event in stream.noack().events():
                await self.add(event)

        async def batches_due() -> None:
            await self.run_ticker()

        async def on_revoked(app: Any, revoked: set[Any], **kwargs: Any) -> None:
            mine = {tp.partition for tp in revoked if tp.topic == topic.get_topic_name()}
            if mine:
                async with self.lock:  # unacknowledged: the partition's new owner reads them
                    self.discard_partitions(mine)

        app.agent(topic, name=name)(consume)
        app.task(batches_due)
        app.on_partitions_revoked.connect(on_revoked)
        if hasattr(app, "stop_hooks"):
            app.stop_hooks.append((f"{name} batch", self.flush))

    async def _drain(self) -> None:
        """Hand the buffered events on: in order, one handler call at a time, and without
        ``lock`` held meanwhile (what a revocation drops is then no longer in the buffer)."""
        async with self._handling:
            async with self.lock:
                batch, self._buffer, self._bytes = self._buffer, [], 0
            if batch:
                await self.handler(batch)
