"""The embedded broker's quirks, measured on the real Tansu binary, and how the dev path
copes with them (docs/design.md: ListOffsets answers the last *batch*'s base offset + 1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from pipeline.dev.broker import EmbeddedBroker
from pipeline.dev.devstack import log_end_offsets
from pipeline.sources.producer import make_producer, produce_events

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path_factory.mktemp("broker")) as b:
        admin = KafkaAdminClient(bootstrap_servers=b.bootstrap)
        admin.create_topics([NewTopic(name, 3, 1) for name in ("batched", "single")])
        admin.close()
        yield b


def records_per_partition(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """Count records by reading every partition from the start (the plain truth)."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=2000
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    counts = dict.fromkeys(range(partitions), 0)
    for record in consumer:
        counts[record.partition] += 1
    consumer.close()
    return counts


def test_log_end_offsets_are_exact_where_list_offsets_is_not(broker: EmbeddedBroker) -> None:
    # a producer that packs several records into one batch, as any Kafka client may
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50, batch_size=1 << 20)
    for i in range(7):
        producer.send("batched", value=b"x%d" % i, partition=0)
    producer.send("batched", value=b"y", partition=1)
    producer.flush()
    producer.close()
    tps = [TopicPartition("batched", p) for p in range(3)]
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    listed = consumer.end_offsets(tps)
    ends = log_end_offsets(consumer, tps)
    consumer.close()
    truth = records_per_partition(broker.bootstrap, "batched", 3)
    assert {tp.partition: n for tp, n in ends.items()} == truth == {0: 7, 1: 1, 2: 0}
    # the quirk itself, so that this test notices when a Tansu release fixes it
    assert listed[tps[0]] < truth[0]


def test_dev_producer_writes_one_record_per_batch(broker: EmbeddedBroker) -> None:
    producer = make_producer(broker.bootstrap, tansu=True)
    lines = [b'{"n":%d}' % i for i in range(40)]
    sent = produce_events(producer, "single", lines, envelope_size=1)
    producer.close()
    tps = [TopicPartition("single", p) for p in range(3)]
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    listed = consumer.end_offsets(tps)
    consumer.close()
    truth = records_per_partition(broker.bootstrap, "single", 3)
    assert sent == sum(truth.values()) == 40
    # one record per batch: even ListOffsets is exact then
    assert {tp.partition: n for tp, n in listed.items()} == truth


def test_probe_tells_a_live_broker_from_a_frozen_and_a_missing_one(
    broker: EmbeddedBroker,
) -> None:
    """The liveness probe (teilhabe_broker_up) against the real broker: answers when it runs,
    times out while its process is frozen (SIGSTOP), fails fast on a closed port."""
    import asyncio
    import os
    import signal
    import time

    from pipeline.dev.broker import free_port
    from pipeline.ops.brokerprobe import BrokerWatch, probe
    from pipeline.ops.exporter import PipelineMetrics

    assert asyncio.run(probe(broker.bootstrap, 3.0)) < 3.0
    metrics = PipelineMetrics.create()
    watch = BrokerWatch(broker.bootstrap, metrics, timeout_s=1.0)
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    try:
        # the stop takes effect when the kernel next schedules the broker: on a loaded machine
        # not at once, and a probe sent before then is still answered
        stat = f"/proc/{broker.proc.pid}/stat"
        deadline = time.monotonic() + 10
        while open(stat).read().rsplit(")", 1)[1].split()[0] != "T":
            assert time.monotonic() < deadline, "the broker did not stop"
            time.sleep(0.01)
        started = time.monotonic()
        assert asyncio.run(watch.check()) is False
        assert 0.9 < time.monotonic() - started < 10, "a frozen broker must time out, not hang"
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)
    assert metrics.broker_up._value.get() == 0
    assert metrics.client_problems.labels("kafka")._value.get() == 1
    assert asyncio.run(watch.check()) is True and metrics.broker_up._value.get() == 1
    with pytest.raises(OSError):
        asyncio.run(probe(f"127.0.0.1:{free_port()}", 1.0))
