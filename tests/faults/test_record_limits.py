"""Every Kafka record Teilhabe writes fits Apache Kafka's limits, whatever the input's size.

The embedded broker accepts records of any size; Apache Kafka refuses one above
``message.max.bytes`` (1,048,588 bytes by default). So this run reads back every record of
every topic and checks it against ``TEILHABE_KAFKA_MAX_RECORD_BYTES`` (default 1,000,000),
with input arranged so that one ingest batch holds more than 4 MB of events for a single
activity partition (one input and one activity partition, envelopes of 500 events): before
the envelope writer, that batch became one activity record of about 5 MB. The worker's
producer refuses a record above the limit itself (``producer_max_request_size``), so an
unbounded record would also fail the run. Beside it: an event too large for any record (sent
with ``teilhabe produce``'s writer) and an envelope above ``TEILHABE_MAX_MESSAGE_BYTES`` (from
a foreign producer) go to the dead letters with reason ``oversized``, cut to the limit with a
``truncated`` header; the valid events around them are counted exactly (oracle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.contract.records import TRUNCATED_HEADER
from pipeline.sources.producer import make_producer, read_jsonl
from tests.faults.harness import (
    FaultRun,
    assert_equal_to_oracle,
    make_dataset,
    metric_value,
    oracle,
    read_records,
)

pytestmark = pytest.mark.integration

LIMIT = 1_000_000  # the default of TEILHABE_KAFKA_MAX_RECORD_BYTES
MAX_MESSAGE_BYTES = 1_048_576  # the default of TEILHABE_MAX_MESSAGE_BYTES


def batch_bytes(value: bytes | None, key: bytes | None = None, headers: Any = ()) -> int:
    """Size of a one-record batch in Kafka's format, at most (computed here, not with the
    writer's own ``record_size``): 61 bytes of batch header, five varints of the record (at
    most 5 bytes each), key and value, per header two varints, its name and value."""
    size = 61 + 25 + (len(key) if key else 0) + (len(value) if value else 0)
    return size + sum(10 + len(k.encode()) + len(v or b"") for k, v in headers)


def huge_event(event_id: str, template: dict[str, Any], size: int) -> bytes:
    """A valid contract event padded with an extra field to ``size`` bytes or more."""
    doc = {**template, "event_id": event_id, "text": "x" * size}
    return orjson.dumps(doc)


def test_every_record_bounded_and_oversized_input_dead_lettered(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "data", seed=13, days=4)
    lines = list(read_jsonl(dataset.events_path))
    assert sum(map(len, lines)) > 4_000_000, "the input must exceed 4 MB for one batch"
    too_big = huge_event("too-big-1", dataset.events[100], LIMIT + 50_000)
    lines.insert(250, too_big)  # inside the first envelope, among valid events
    expected = oracle(dataset.events, dataset.units)

    with FaultRun(
        tmp_path, dataset, events_partitions=1, activity_partitions=1, log_level="INFO"
    ) as run:
        s = run.settings
        assert s.kafka_max_record_bytes == LIMIT
        # a foreign producer's envelope above the worker's input limit (Tansu accepts it)
        foreign = make_producer(run.stack.bootstrap, tansu=True, max_request_bytes=4 * 2**20)
        envelope = (
            b'{"events":[' + b",".join(lines[:3] + [b'"' + b"y" * MAX_MESSAGE_BYTES + b'"']) + b"]}"
        )
        foreign.send(s.topic_events, value=envelope).get(timeout=30)
        foreign.close()
        worker = run.start_worker()
        run.produce(lines, envelope_size=500)
        run.wait_drained(timeout_s=120)
        metrics = run.metrics_text()
        assert worker.poll() is None, "the worker must keep running"
        actual = run.figures()
        topics = {
            name: read_records(run.stack.bootstrap, name)
            for name in (s.topic_events, s.topic_activity, s.topic_deadletter, s.topic_directory)
        }

    # the valid events, around the oversized ones, exactly as the oracle says
    # (the foreign envelope's 3 valid events went with it: it was refused whole)
    assert_equal_to_oracle(expected, actual)

    # every record Teilhabe wrote is within the limit; the foreign one is the only exception
    over = [
        (topic, r.partition, r.offset, batch_bytes(r.value, r.key, r.headers or []))
        for topic, records in topics.items()
        for r in records
        if batch_bytes(r.value, r.key, r.headers or []) > LIMIT
    ]
    assert over == [(s.topic_events, 0, 0, batch_bytes(envelope))], over
    activity = topics[s.topic_activity]
    activity_bytes = sum(len(r.value) for r in activity)
    assert activity_bytes > 4_000_000 and len(activity) >= 5, (len(activity), activity_bytes)

    dead = [
        {"value": r.value, **{k: v.decode() for k, v in r.headers}}
        for r in topics[s.topic_deadletter]
    ]
    by_source = {d["source"].split(":")[0]: d for d in dead}
    assert sorted(d["reason"] for d in dead) == ["oversized", "oversized"], dead
    produced = by_source["producer"]  # cut by produce's writer, never sent whole
    assert int(produced[TRUNCATED_HEADER]) == len(too_big)
    assert too_big.startswith(produced["value"]) and len(produced["value"]) > LIMIT // 2
    refused = next(d for d in dead if d["source"].startswith(s.topic_events))
    assert int(refused[TRUNCATED_HEADER]) == len(envelope)
    assert envelope.startswith(refused["value"])
    assert metric_value(metrics, "teilhabe_events_invalid_total", 'reason="oversized"') == 1
    # the writer bounded every record before the client's own limit had to refuse one
    assert metric_value(metrics, "teilhabe_kafka_records_refused_total") == 0
