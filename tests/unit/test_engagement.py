"""Engagement stage without Kafka or ClickHouse: what one batch of activity messages does to
the facts handed to the sink and to the counters (added up per batch)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson

from agents.engagement import EngagementStage
from pipeline.metrics.windows import Checkpoint, ClosedWindow
from pipeline.ops.exporter import PipelineMetrics
from pipeline.settings import Settings


@dataclass
class Message:
    partition: int
    offset: int
    value: bytes | None
    topic: str = "teilhabe.activity"


@dataclass
class Event:
    message: Message
    value: bytes | None
    acked: bool = False

    def ack(self) -> None:
        self.acked = True


@dataclass
class RecordingSink:
    """Remembers what each flush wrote (ids of on-time and late facts, closed windows)."""

    flushes: list[tuple[list[str], list[str], list[ClosedWindow]]] = field(default_factory=list)

    def load_checkpoint(self, partition: int) -> Checkpoint | None:
        return None

    def flush(self, facts: Any, closed: list[ClosedWindow], checkpoints: Any) -> None:
        on_time = [ev["event_id"] for ev in facts.on_time]
        late = [ev["event_id"] for ev in facts.late]
        self.flushes.append((on_time, late, list(closed)))

    def refresh_engagement_gauges(self, window_s: int) -> None:
        pass

    def reset(self) -> None:
        pass


def ev(
    eid: str, ts: int, etype: str = "view", actor: str = "x", unit: str = "IT"
) -> dict[str, Any]:
    return {"event_id": eid, "ts": ts, "event_type": etype, "actor_id": actor, "actor_unit": unit}


def test_one_batch_counts_types_late_and_duplicates_and_hands_over_the_facts(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        window_s=60, grace_s=0, events_partitions=2, idle_close_mode="end_of_input"
    )
    sink = RecordingSink()
    rt = SimpleNamespace(settings=settings, metrics=PipelineMetrics.create(), sink=sink)
    stage = EngagementStage(rt)  # type: ignore[arg-type]
    messages = [  # (source, events) on activity partition 0, offsets 0, 1, 2, 3
        (0, [ev("a", 1_000), ev("b", 2_000, "post_created", "y"), ev("c", 3_000), ev("a", 1_000)]),
        (1, [ev("d", 61_000, actor="z", unit="HR"), ev("e", 62_000, "share")]),
        (0, [ev("f", 125_000)]),  # watermark min(125 s, 62 s): the first window closes
        (1, [ev("g", 5_000), ev("h", 130_000, "mention")]),  # g: its window has closed
    ]
    batch = [
        Event(Message(0, offset, value), value)
        for offset, (src, events) in enumerate(messages)
        for value in [orjson.dumps({"src": src, "events": events})]
    ]
    asyncio.run(stage.process(batch))

    # independent expectation: first occurrence of each id, g after its window's close
    on_time = ["a", "b", "c", "d", "e", "f", "h"]
    every = {e["event_id"]: e for _, events in messages for e in events}
    expected_types = Counter(every[eid]["event_type"] for eid in on_time)
    get = rt.metrics.registry.get_sample_value
    for event_type, n in expected_types.items():
        assert get("teilhabe_events_ingested_total", {"event_type": event_type}) == n
    assert get("teilhabe_events_ingested_total", {"event_type": "idea_voted"}) == 0
    assert get("teilhabe_events_late_total") == 1
    assert get("teilhabe_events_duplicate_total") == 1

    [(flushed_on_time, flushed_late, closed)] = sink.flushes  # the close made it flush
    assert flushed_on_time == on_time
    assert flushed_late == ["g"]
    # g's message (offset 3) also moved the watermark to 125 s: the second window closed too
    assert [(c.start_ms, c.close_offset) for c in closed] == [(0, 3), (60_000, 4)]
    assert [list(c.rows()) for c in closed] == [
        [("IT", 2, {"view": 2, "post_created": 1})],
        [("HR", 1, {"view": 1}), ("IT", 1, {"share": 1})],
    ]
    assert len(stage.facts) == 0
    # acknowledged: what lies before the open window of f and h (first offset 2)
    assert [e.acked for e in batch] == [True, True, False, False]


class Topic:
    """Takes the stage's dead letters (Kafka's confirmation at once)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def get_topic_name(self) -> str:
        return "deadletter"

    async def send(self, **kw: Any) -> asyncio.Future[None]:
        self.sent.append(kw)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


def test_a_record_that_does_not_fit_is_set_aside_and_changes_nothing_else(
    make_settings: Callable[..., Settings],
) -> None:
    """The activity topic is internal, but a wrong record on it must not stop the stage (its
    worker would read it again after every restart): it is dead-lettered and passed over."""
    from agents.delivery import Delivery

    def run(values: list[bytes]) -> tuple[RecordingSink, Topic, list[Event]]:
        settings = make_settings(
            window_s=60, grace_s=0, events_partitions=1, idle_close_mode="end_of_input"
        )
        metrics, dlq = PipelineMetrics.create(), Topic()
        sink = RecordingSink()
        delivery = Delivery(metrics, settings.kafka_max_record_bytes, dlq)
        rt = SimpleNamespace(settings=settings, metrics=metrics, sink=sink, delivery=delivery)
        stage = EngagementStage(rt)  # type: ignore[arg-type]
        batch = [Event(Message(0, i, v), v) for i, v in enumerate(values)]
        asyncio.run(stage.process(batch))
        return sink, dlq, batch

    good = [
        orjson.dumps({"src": 0, "events": [ev("a", 1_000), ev("b", 2_000, actor="y")]}),
        orjson.dumps({"src": 0, "events": [ev("c", 61_000)]}),
        orjson.dumps({"src": 0, "events": [ev("d", 125_000)]}),
    ]
    bad = [
        b"not json",
        orjson.dumps({"src": 0, "events": [{"event_id": "x", "ts": "soon"}]}),
        orjson.dumps({"events": []}),
        orjson.dumps({"src": -1, "events": []}),
        b"",
    ]
    clean_sink, _, _ = run(good)
    mixed = [good[0], *bad[:3], good[1], *bad[3:], good[2]]
    sink, dlq, batch = run(mixed)

    def figures(sink: RecordingSink) -> list[Any]:  # offsets differ: the bad ones are between
        return [
            (f, late, [(c.start_ms, list(c.rows())) for c in cl]) for f, late, cl in sink.flushes
        ]

    assert figures(sink) == figures(clean_sink) and sink.flushes  # the same windows and facts
    assert len(dlq.sent) == len(bad)
    assert {dict(d["headers"])["reason"] for d in dlq.sent} == {b"bad_activity_record"}
    assert [d["value"] for d in dlq.sent] == bad
    assert [e.acked for e in batch][:4] == [True] * 4  # passed over like processed records
