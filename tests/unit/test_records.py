"""Records bounded in bytes (pipeline/contract/records.py, the producer's envelopes) and
delivery that never crashes on one record (agents/delivery.py).

The embedded broker takes records of any size and never refuses one, so the broker side of
``Delivery`` is played here by a small topic double with a configurable ``message.max.bytes``
(as an Apache Kafka broker set lower than ``TEILHABE_KAFKA_MAX_RECORD_BYTES``) and outages;
the real broker path is in tests/faults/test_record_limits.py.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest
from aiokafka import errors as kerrors
from faust.exceptions import ProducerSendError

from agents.delivery import Delivery, Outgoing, refusal
from pipeline.contract.records import (
    TRUNCATED_HEADER,
    Envelope,
    TooLarge,
    bound_dead_letter,
    pack,
    record_size,
    value_budget,
)
from pipeline.ops.exporter import PipelineMetrics
from pipeline.sources.producer import envelopes


def items_of(envelope: bytes, head: bytes, tail: bytes) -> list[bytes]:
    assert envelope.startswith(head) and envelope.endswith(tail)
    return [orjson.dumps(x) for x in orjson.loads(b"[" + envelope[len(head) : -len(tail)] + b"]")]


@pytest.mark.parametrize("seed", range(5))
def test_pack_keeps_every_item_in_order_within_the_budget(seed: int) -> None:
    rng = random.Random(seed)
    budget = rng.choice([200, 1000, 5000])
    max_items = rng.choice([0, 1, 3, 50])
    items = [orjson.dumps({"i": i, "pad": "p" * rng.randint(0, budget)}) for i in range(300)]
    head, tail = b'{"src":3,"events":[', b"]}"
    out = list(pack(items, head, tail, budget, max_items))
    seen: list[bytes] = []
    for piece in out:
        if isinstance(piece, TooLarge):
            assert len(head) + len(piece.item) + len(tail) > budget
            seen.append(piece.item)
            continue
        assert len(piece.value) <= budget
        inside = items_of(piece.value, head, tail)
        assert len(inside) == piece.count and (not max_items or piece.count <= max_items)
        seen += inside
    # TooLarge items come where they stood, or before the envelope they interrupted
    assert sorted(seen) == sorted(items)
    fitting = [x for x in items if len(head) + len(x) + len(tail) <= budget]
    assert [x for x in seen if x in set(fitting)] == fitting
    assert any(isinstance(p, TooLarge) for p in out) == (len(fitting) < len(items))


def test_pack_refuses_a_budget_smaller_than_the_envelope_frame() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        list(pack([b"1"], b"[" * 10, b"]", 11))


def test_dead_letter_kept_whole_when_it_fits_else_its_first_bytes_and_a_header() -> None:
    headers = [("reason", b"oversized"), ("detail", b"x" * 300), ("source", b"t[0]@5")]
    small = b"s" * 1000
    assert bound_dead_letter(small, headers, 1_000_000) == (small, headers)
    big = bytes(range(256)) * 8000  # 2,048,000 bytes
    value, out = bound_dead_letter(big, headers, 1_000_000, b"oversized")
    assert big.startswith(value) and len(value) > 990_000
    assert dict(out)[TRUNCATED_HEADER] == b"2048000" and out[:3] == headers
    assert record_size(value, b"oversized", out) <= 1_000_000


def test_producer_envelopes_bounded_bad_lines_alone_oversized_apart() -> None:
    good = [orjson.dumps({"event_id": str(i), "pad": "p" * (i % 700)}) for i in range(2000)]
    lines = (
        good[:700] + [b"not json"] + good[700:1500] + [b'"' + b"h" * 20_000 + b'"'] + good[1500:]
    )
    out = list(envelopes(lines, 500, max_record_bytes=16_384))
    budget = value_budget(16_384)
    assert all(len(p.value) <= budget for p in out if isinstance(p, Envelope))
    assert [p.item[:3] for p in out if isinstance(p, TooLarge)] == [b'"hh']
    assert any(isinstance(p, Envelope) and p.value == b"not json" for p in out)
    events = [
        e["event_id"]
        for p in out
        if isinstance(p, Envelope) and p.value != b"not json"
        for e in orjson.loads(p.value)["events"]
    ]
    assert events == [str(i) for i in range(2000)]
    assert max(p.count for p in out if isinstance(p, Envelope)) <= 500
    # one line per record without envelopes; an oversized one still comes apart
    single = list(envelopes([b"{}", b"x" * 20_000], 1, max_record_bytes=16_384))
    assert isinstance(single[0], Envelope) and isinstance(single[1], TooLarge)


# --- delivery ------------------------------------------------------------------------------
class Broker:
    """Plays a Kafka broker for ``Delivery``: refuses records over ``max_bytes`` (error code
    10 as Apache Kafka), is unavailable for the first ``down`` sends, keeps what it took."""

    def __init__(self, max_bytes: int, down: int = 0) -> None:
        self.max_bytes = max_bytes
        self.down = down
        self.log: dict[str, list[Outgoing]] = {}

    def topic(self, name: str) -> Any:
        broker = self

        class Topic:
            def get_topic_name(self) -> str:
                return name

            async def send(self, **kw: Any) -> asyncio.Future[None]:
                if not isinstance(kw["value"], bytes):
                    raise ProducerSendError("bad value") from TypeError("not bytes")
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                if broker.down > 0:
                    broker.down -= 1
                    fut.set_exception(kerrors.KafkaConnectionError("broker unavailable"))
                elif record_size(kw["value"], kw["key"], kw["headers"] or []) > broker.max_bytes:
                    fut.set_exception(kerrors.MessageSizeTooLargeError("too large"))
                else:
                    record = Outgoing(
                        self, kw["value"], kw["key"], kw["partition"], kw["headers"] or []
                    )
                    broker.log.setdefault(name, []).append(record)
                    fut.set_result(None)
                return fut

        return Topic()


def activity(topic: Any, events: list[bytes]) -> Outgoing:
    head, tail = b'{"src":0,"events":[', b"]}"
    return Outgoing(topic, head + b",".join(events) + tail, b"0", 0, head=head, tail=tail)


def test_delivery_splits_refused_envelopes_and_dead_letters_what_never_fits() -> None:
    broker = Broker(max_bytes=20_000)
    metrics = PipelineMetrics.create()
    dlq = broker.topic("dlq")
    delivery = Delivery(metrics, 1_000_000, dlq)
    events = [orjson.dumps({"event_id": str(i), "pad": "p" * 900}) for i in range(100)]
    events[37] = orjson.dumps({"event_id": "37", "pad": "q" * 30_000})  # never fits
    asyncio.run(delivery.deliver([activity(broker.topic("activity"), events)]))
    got = [e for r in broker.log["activity"] for e in orjson.loads(r.value)["events"]]
    # a refused envelope's halves take its place: the partition sees the events in order
    assert [int(e["event_id"]) for e in got] == [i for i in range(100) if i != 37]
    assert all(len(r.value) <= 20_000 for r in broker.log["activity"])
    (dead,) = broker.log["dlq"]
    headers = dict(dead.headers)
    assert headers["reason"] == b"oversized" and b"too large" in headers["detail"]
    # the broker refused the dead letter too (30 KB > 20 KB): cut until it fit
    assert events[37].startswith(dead.value) and len(dead.value) <= 20_000
    assert headers[TRUNCATED_HEADER] == str(len(events[37])).encode()
    assert metrics.kafka_refused.labels("activity")._value.get() >= 1
    assert metrics.events_invalid.labels("oversized")._value.get() == 1
    assert metrics.dead_letters._value.get() == 1


def test_delivery_retries_an_unavailable_broker_in_order_and_counts_it() -> None:
    broker = Broker(max_bytes=1_000_000, down=3)
    metrics = PipelineMetrics.create()
    delivery = Delivery(metrics, 1_000_000, broker.topic("dlq"))
    topic = broker.topic("activity")
    records = [activity(topic, [orjson.dumps({"event_id": str(i)})]) for i in range(3)]
    asyncio.run(delivery.deliver(records))
    assert [r.value for r in broker.log["activity"]] == [r.value for r in records]
    assert metrics.kafka_send_retries._value.get() == 3
    assert metrics.kafka_unconfirmed._value.get() == 0
    assert "dlq" not in broker.log


def test_delivery_cuts_a_refused_dead_letter_and_refuses_unserialisable_records() -> None:
    broker = Broker(max_bytes=50_000)
    metrics = PipelineMetrics.create()
    dlq = broker.topic("dlq")
    delivery = Delivery(metrics, 1_000_000, dlq)
    letter = delivery.dead_letter("not_json", "bad", b"z" * 400_000, "events[0]@1")
    assert TRUNCATED_HEADER not in dict(letter.headers)  # fits our own limit
    wrong = Outgoing(broker.topic("activity"), "not bytes")  # type: ignore[arg-type]
    asyncio.run(delivery.deliver([letter, wrong]))
    by_reason = {dict(r.headers)["reason"]: r for r in broker.log["dlq"]}
    cut, refused = by_reason[b"not_json"], by_reason[b"refused"]
    assert len(cut.value) <= 50_000 and dict(cut.headers)[TRUNCATED_HEADER] == b"400000"
    assert refused.value == b"'not bytes'" and len(broker.log["dlq"]) == 2
    assert refusal(ProducerSendError("x")) is None  # no cause: Kafka's state, retried


@pytest.mark.parametrize("seed", range(4))
def test_activity_records_within_budget_in_order_oversized_apart(seed: int) -> None:
    from agents.ingest import EncodedSize, activity_records

    rng = random.Random(seed)
    budget = rng.choice([3_000, 20_000, 1_000_000])
    events = [{"event_id": str(i), "pad": "p" * rng.randint(0, 400)} for i in range(5000)]
    big = rng.sample(range(5000), 3)
    for i in big:
        events[i] = {"event_id": str(i), "pad": "x" * budget}
    sizes = EncodedSize()
    activity_records("topic", 3, 1, events[::-1], budget, sizes)  # learns the sizes
    assert sizes.bytes_per_event > 0
    records, too_large = activity_records("topic", 3, 1, events, budget, sizes)
    assert all(len(r.value) <= budget and r.partition == 3 and r.key == b"3" for r in records)
    docs = [orjson.loads(r.value) for r in records]
    assert {d["src"] for d in docs} == {1}
    ids = [e["event_id"] for d in docs for e in d["events"]]
    assert ids == [e["event_id"] for e in events if int(e["event_id"]) not in big]
    assert sorted(orjson.loads(t.item)["event_id"] for t in too_large) == sorted(map(str, big))
    if budget == 1_000_000:  # about 1 MB of events: the split makes few records, not many
        assert len(records) <= 3
