"""The consumer-group lag probe (``teilhabe_consumer_group_lag_messages``, the input half of
PipelineStalled) against the real embedded broker: the figure equals the records counted by
reading each partition minus what the group committed, whatever the group's own consumers do."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.structs import OffsetAndMetadata

from pipeline.dev.broker import EmbeddedBroker
from pipeline.ops.exporter import PipelineMetrics
from pipeline.ops.grouplag import GroupLagProbe, group_lag
from pipeline.sources.producer import make_producer, produce_events

pytestmark = pytest.mark.integration

TOPIC = "lagged"
GROUP = "teilhabe-lag-test"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path_factory.mktemp("broker")) as b:
        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        admin.create_topics([NewTopic(TOPIC, 3, 1)])
        admin.close()
        producer = make_producer(b.bootstrap, tansu=True)
        produce_events(producer, TOPIC, [b'{"n":%d}' % i for i in range(30)], envelope_size=1)
        producer.close()
        yield b


def counted(bootstrap: str) -> dict[int, int]:
    """Records per partition, by reading every partition from the start (the oracle)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000
    )
    tps = [TopicPartition(TOPIC, p) for p in range(3)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    counts = dict.fromkeys(range(3), 0)
    for record in consumer:
        counts[record.partition] += 1
    consumer.close()
    return counts


def commit(bootstrap: str, offsets: dict[int, int]) -> None:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False)
    tps = {p: TopicPartition(TOPIC, p) for p in offsets}
    consumer.assign(list(tps.values()))
    consumer.commit({tps[p]: OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
    consumer.close()


def test_group_lag_is_end_minus_committed_and_the_probe_publishes_it(
    broker: EmbeddedBroker,
) -> None:
    truth = counted(broker.bootstrap)
    assert sum(truth.values()) == 30 and all(truth.values())
    # nothing committed yet: the whole partition waits
    before = group_lag(broker.bootstrap, GROUP, {TOPIC: 3})
    assert before == {(TOPIC, p): n for p, n in truth.items()}

    # partition 0 fully done, partition 1 half done, partition 2 untouched
    commit(broker.bootstrap, {0: truth[0], 1: truth[1] // 2})
    expected = {(TOPIC, 0): 0, (TOPIC, 1): truth[1] - truth[1] // 2, (TOPIC, 2): truth[2]}
    metrics = PipelineMetrics.create()
    probe = GroupLagProbe(broker.bootstrap, GROUP, {TOPIC: 3}, metrics)
    assert asyncio.run(probe.check())
    published = {
        (s.labels["topic"], int(s.labels["partition"])): int(s.value)
        for m in metrics.registry.collect()
        if m.name == "teilhabe_consumer_group_lag_messages"
        for s in m.samples
    }
    assert published == expected


def test_the_probe_empties_the_gauge_when_the_broker_cannot_be_read(
    tmp_path: Path,
) -> None:
    metrics = PipelineMetrics.create()
    metrics.group_lag.labels(TOPIC, "0").set(7)  # a figure from before the outage
    probe = GroupLagProbe("127.0.0.1:1", GROUP, {TOPIC: 1}, metrics, timeout_s=1.0)
    assert not asyncio.run(probe.check())
    samples = [
        s
        for m in metrics.registry.collect()
        if m.name == "teilhabe_consumer_group_lag_messages"
        for s in m.samples
    ]
    assert samples == [], "a stale figure would keep PipelineStalled's input half alive"


def test_the_probe_clients_get_the_security_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.ops import grouplag

    seen: list[dict[str, object]] = []

    class RefusedError(Exception):
        pass

    def client(**kwargs: object) -> object:
        seen.append(kwargs)
        raise RefusedError

    monkeypatch.setattr(grouplag, "KafkaAdminClient", client)
    monkeypatch.setattr(grouplag, "KafkaConsumer", client)
    security = {"security_protocol": "SSL", "ssl_context": object()}
    metrics = PipelineMetrics.create()
    probe = GroupLagProbe("kafka:9093", GROUP, {TOPIC: 1}, metrics, security=security)
    assert not asyncio.run(probe.check())
    assert seen and all(
        kw["security_protocol"] == "SSL" and kw["ssl_context"] is security["ssl_context"]
        for kw in seen
    )
