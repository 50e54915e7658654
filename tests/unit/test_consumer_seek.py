"""NoDropConsumer: a seek back that fails stops the worker instead of being only logged.

The consumer and the app are the real ones (not started: no broker); only the seek fails, by a
small fake, since a real seek failure is hard to cause, and the fetch returns records given
here instead of a broker's."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.structs import ConsumerRecord
from faust.types import TP

from agents.app import TeilhabeApp
from agents.consumer import NoDropConsumer, SeekBackError

TOPIC = "teilhabe.activity"


def consumer_whose_seek_fails() -> tuple[TeilhabeApp, NoDropConsumer, list[tuple[TP, int]]]:
    app = TeilhabeApp("seek-test", broker="kafka://127.0.0.1:1", store="memory://")
    app.transport.Consumer = NoDropConsumer  # type: ignore[misc]
    consumer = app.consumer
    assert isinstance(consumer, NoDropConsumer)
    tried: list[tuple[TP, int]] = []
    assigned = {TP(TOPIC, 0), TP(TOPIC, 1)}

    async def seek(tp: TP, offset: int) -> None:
        tried.append((tp, offset))
        raise RuntimeError("broker said no")

    consumer.assignment = lambda: assigned  # type: ignore[method-assign]
    consumer.seek = seek  # type: ignore[method-assign,assignment]
    return app, consumer, tried


def record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(TOPIC, partition, offset, 0, 0, b"k", b"v", None, 1, 1, ())


def test_a_failed_seek_back_asks_the_worker_to_stop() -> None:
    async def scenario() -> None:
        app, consumer, tried = consumer_whose_seek_fails()
        tp = TP(TOPIC, 1)
        await consumer._seek_to(tp, 17, "fetched records not handed out")
        assert tried == [(tp, 17)]
        assert app.crashed, "the worker was not asked to stop"
        assert isinstance(app.crash_reason, SeekBackError)
        message = str(app.crash_reason)
        assert f"{TOPIC}[1] back to offset 17" in message and "broker said no" in message
        # a second failure of the same partition is not tried again
        await consumer._seek_to(tp, 18, "delivery abandoned")
        assert tried == [(tp, 17)]

    asyncio.run(scenario())


def test_after_a_failed_seek_no_record_of_the_partition_is_handed_out() -> None:
    """Fetched records of a suspended flow are sought back; that seek fails: the worker is
    asked to stop, and the next fetch of the partition (its position is past the records
    never processed) hands nothing out, so nothing past them can be acknowledged."""

    async def scenario() -> None:
        app, consumer, tried = consumer_whose_seek_fails()
        tp = TP(TOPIC, 0)
        fetches = [{tp: [record(0, 5), record(0, 6)]}, {tp: [record(0, 9), record(0, 10)]}]

        async def wait_next_records(timeout: float) -> tuple[Any, Any]:
            return fetches.pop(0), {tp}

        consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]
        consumer.flow_active = False  # a rebalance suspended the flow: nothing handed out
        assert [m async for m in consumer.getmany(1.0)] == []
        assert tried == [(tp, 5)] and app.crashed
        consumer.flow_active = True
        assert [m async for m in consumer.getmany(1.0)] == []  # offsets 9, 10: not handed out
        assert tried == [(tp, 5)]

    asyncio.run(scenario())
