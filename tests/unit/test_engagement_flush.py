"""The engagement stage's flush protocol without Kafka: no lock is held while ClickHouse is
written or retried, a revocation goes through meanwhile and the revoked partition is never
acknowledged afterwards (nor its checkpoint written on a later try), and a statement refused
for good stops the stage without acknowledging anything.

The sink is a stand-in (the fault tests run the real one): its ``flush`` waits on a gate or
raises exceptions clickhouse-connect builds for a server's reply."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from clickhouse_connect.driver._backend.httpcommon import build_http_error
from clickhouse_connect.driver.exceptions import OperationalError

from agents.engagement import EngagementStage
from pipeline.metrics.windows import Checkpoint
from pipeline.ops.exporter import PipelineMetrics
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import PermanentSinkError
from tests.unit.test_engagement import Event, Message, ev

TOPIC = "teilhabe.activity"


@dataclass
class GatedSink:
    """Each ``flush`` first raises the next of ``failures`` (if any), else waits for ``gate``
    and records the partitions whose checkpoints it wrote."""

    failures: list[BaseException] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)
    written: list[list[int]] = field(default_factory=list)
    attempts: list[list[int]] = field(default_factory=list)

    def load_checkpoint(self, partition: int) -> Checkpoint | None:
        return None

    def flush(self, facts: Any, closed: Any, checkpoints: dict[int, Checkpoint]) -> None:
        self.attempts.append(sorted(checkpoints))
        if self.failures:
            raise self.failures.pop(0)
        self.entered.set()
        assert self.gate.wait(30), "the test never opened the gate"
        self.written.append(sorted(checkpoints))

    def reset(self) -> None:
        pass


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


def stage_with(make_settings: Callable[..., Settings], sink: GatedSink) -> EngagementStage:
    settings = make_settings(
        window_s=60, grace_s=0, events_partitions=1, idle_close_mode="end_of_input"
    )
    rt = SimpleNamespace(settings=settings, metrics=PipelineMetrics.create(), sink=sink)
    return EngagementStage(rt)  # type: ignore[arg-type]


def batch() -> list[Event]:
    """Partitions 0 and 1, each: a window's events, then an event that closes that window."""
    out = []
    for p in (0, 1):
        for offset, events in enumerate(
            [[ev(f"a{p}", 1_000, actor=f"x{p}")], [ev(f"b{p}", 125_000, actor=f"y{p}")]]
        ):
            value = orjson.dumps({"src": 0, "events": events})
            out.append(Event(Message(p, offset, value), value))
    return out


async def until(flag: threading.Event) -> None:
    while not flag.is_set():
        await asyncio.sleep(0.01)


def test_a_revocation_goes_through_a_flush_in_flight_and_is_never_acked(
    make_settings: Callable[..., Settings],
) -> None:
    async def scenario() -> None:
        sink = GatedSink()
        stage = stage_with(make_settings, sink)
        events = batch()
        processing = asyncio.create_task(stage.process(events))
        await until(sink.entered)  # ClickHouse "hangs" in the middle of the flush
        # returns although the flush has not ended (the bound only keeps a regression from
        # hanging the suite: the revocation takes no time at all)
        await asyncio.wait_for(stage.on_revoked({TP(TOPIC, 0)}), timeout=20)
        assert not sink.gate.is_set() and not processing.done()
        assert 0 not in stage.states and 1 in stage.states
        sink.gate.set()
        await processing
        assert sink.written == [[0, 1]]  # the attempt in flight had both checkpoints
        acked = {(e.message.partition, e.message.offset) for e in events if e.acked}
        assert acked == {(1, 0)}  # partition 1 up to its open window; partition 0: never

    asyncio.run(scenario())


def test_a_retry_leaves_out_the_checkpoint_of_a_partition_revoked_meanwhile(
    make_settings: Callable[..., Settings],
) -> None:
    async def scenario() -> None:
        sink = GatedSink(failures=[OperationalError("Error executing HTTP request")])
        sink.gate.set()
        stage = stage_with(make_settings, sink)
        events = batch()
        processing = asyncio.create_task(stage.process(events))
        while not sink.attempts:
            await asyncio.sleep(0.01)
        await stage.on_revoked({TP(TOPIC, 1)})  # during the backoff before the second try
        await processing
        assert sink.attempts == [[0, 1], [0]] and sink.written == [[0]]
        acked = {(e.message.partition, e.message.offset) for e in events if e.acked}
        assert acked == {(0, 0)}

    asyncio.run(scenario())


def test_a_refused_statement_stops_the_stage_without_acknowledging(
    make_settings: Callable[..., Settings],
) -> None:
    async def scenario() -> None:
        body = "Code: 60. DB::Exception: Table teilhabe.events does not exist. (UNKNOWN_TABLE)"
        sink = GatedSink(failures=[build_http_error(500, "60", body, True, "http://ch", False)])
        stage = stage_with(make_settings, sink)
        events = batch()
        with pytest.raises(PermanentSinkError, match=r"code=60 \(UNKNOWN_TABLE\)"):
            await stage.process(events)  # a stage without an app raises; a worker crashes
        assert sink.attempts == [[0, 1]], "a refused statement was retried"
        assert stage.failed is not None and not any(e.acked for e in events)
        await stage.process(batch())  # nothing is applied or flushed any more
        await stage.tick()
        assert len(sink.attempts) == 1

    asyncio.run(scenario())
