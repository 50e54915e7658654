"""EventBatcher: every added event reaches the handler exactly once, in order, in batches."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from agents.batching import EventBatcher


@dataclass
class Msg:
    partition: int
    offset: int
    value: bytes | None = None


@dataclass
class Ev:
    message: Msg


def test_full_batches_go_at_once_and_the_rest_after_within() -> None:
    batches: list[list[int]] = []

    async def handler(batch: list[Any]) -> None:
        batches.append([e.message.offset for e in batch])

    async def scenario() -> None:
        b = EventBatcher(handler, max_events=3, within_s=0.05)
        for i in range(7):
            await b.add(Ev(Msg(0, i)))
        assert batches == [[0, 1, 2], [3, 4, 5]]
        await b.tick()  # too early: the partial batch waits
        assert len(b) == 1
        await asyncio.sleep(0.06)
        await b.tick()
        assert batches == [[0, 1, 2], [3, 4, 5], [6]] and len(b) == 0

    asyncio.run(scenario())


def test_nothing_slips_between_batches_under_a_concurrent_ticker() -> None:
    """The defect this class replaces: events added while a batch is in the handler."""
    seen: list[int] = []

    async def slow_handler(batch: list[Any]) -> None:
        await asyncio.sleep(random.random() / 500)  # the agent awaits Kafka here
        seen.extend(e.message.offset for e in batch)

    async def scenario() -> None:
        b = EventBatcher(slow_handler, max_events=50, within_s=0.002)
        ticker = asyncio.create_task(b.run_ticker())
        for i in range(2000):
            await b.add(Ev(Msg(i % 4, i)))
            if i % 97 == 0:
                await asyncio.sleep(0.003)  # let the ticker cut partial batches
        while len(b):
            await asyncio.sleep(0.005)
        async with b.lock:  # the last batch may still be in the handler
            pass
        ticker.cancel()

    random.seed(3)
    asyncio.run(scenario())
    assert seen == list(range(2000))


def test_revoked_partitions_are_dropped_from_the_buffer() -> None:
    async def handler(batch: list[Any]) -> None:
        raise AssertionError("nothing is due")

    async def scenario() -> int:
        b = EventBatcher(handler, max_events=100, within_s=60)
        for i in range(10):
            await b.add(Ev(Msg(i % 3, i)))
        async with b.lock:
            dropped = b.discard_partitions({1})
        assert [e.message.partition for e in b._buffer] == [0, 2, 0, 2, 0, 2, 0]
        return dropped

    assert asyncio.run(scenario()) == 3


def test_a_batch_also_ends_at_its_byte_bound() -> None:
    """Envelopes make messages large: a count alone would not bound a batch's memory."""
    batches: list[list[int]] = []

    async def handler(batch: list[Any]) -> None:
        batches.append([e.message.offset for e in batch])

    async def scenario() -> None:
        b = EventBatcher(handler, max_events=100, within_s=10, max_bytes=1000)
        sizes = [400, 400, 300, 10, 990, 5, None, 2000, 1]
        for i, size in enumerate(sizes):
            await b.add(Ev(Msg(0, i, None if size is None else b"x" * size)))
        await b.flush()

    asyncio.run(scenario())
    assert batches == [[0, 1, 2], [3, 4], [5, 6, 7], [8]]
