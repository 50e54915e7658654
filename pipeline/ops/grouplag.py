"""Consumer-group lag read from the broker: log-end offset minus the group's committed offset.

Why not ``teilhabe_consumer_lag_messages``: that gauge is set by the worker's own fetch loop
(``agents.consumer``), so it stands still exactly when the consumer does, and a partition that
moved to another worker keeps its last value. This probe asks the broker instead (ListOffsets
and OffsetFetch for the group), every worker alike, so the figure is the same group-wide one in
every worker's /metrics and it moves while the consumers are stuck. It is the "input waits"
half of the PipelineStalled alert (docs/runbooks.md#pipelinestalled).

On Apache Kafka the figure is exact. The embedded dev broker answers ListOffsets with the base
offset of the last batch + 1 (docs/design.md), so there it can be too low, never too high.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from pipeline.ops.exporter import PipelineMetrics

log = logging.getLogger("teilhabe.grouplag")

CLIENT_ID = "teilhabe-group-lag"


def group_lag(
    bootstrap: str,
    group: str,
    topics: Mapping[str, int],
    timeout_s: float = 10.0,
    security: Mapping[str, Any] | None = None,
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> end offset minus the group's committed offset (the whole
    partition when the group has committed nothing there). ``security``: the clients' TLS /
    SASL arguments (``pipeline.kafka_security``). Raises KafkaError / OSError."""
    tps = [TopicPartition(topic, p) for topic, n in topics.items() for p in range(n)]
    timeout_ms = int(timeout_s * 1000)
    common = {
        "bootstrap_servers": bootstrap,
        "client_id": CLIENT_ID,
        "request_timeout_ms": timeout_ms,
        "bootstrap_timeout_ms": timeout_ms,
        **(security or {}),
    }
    admin = KafkaAdminClient(**common)
    try:
        consumer = KafkaConsumer(enable_auto_commit=False, **common)
        try:
            ends = consumer.end_offsets(tps, timeout_ms=timeout_ms)
            beginnings = consumer.beginning_offsets(tps, timeout_ms=timeout_ms)
        finally:
            consumer.close()
        committed = admin.list_group_offsets({group: tps}).get(group, {})
    finally:
        admin.close()
    lags: dict[tuple[str, int], int] = {}
    for tp in tps:
        done = committed.get(tp)
        start = done.offset if done is not None and done.offset >= 0 else beginnings[tp]
        lags[(tp.topic, tp.partition)] = max(0, ends[tp] - start)
    return lags


class GroupLagProbe:
    """Publishes ``teilhabe_consumer_group_lag_messages`` on each ``check``; when the broker
    cannot be read the gauge is emptied (no stale figure: BrokerDown covers that case)."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        topics: Mapping[str, int],
        metrics: PipelineMetrics,
        timeout_s: float = 10.0,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = dict(security or {})
        self.group = group
        self.topics = dict(topics)
        self.metrics = metrics
        self.timeout_s = timeout_s
        self._failing = False
        self._reading: asyncio.Future[dict[tuple[str, int], int]] | None = None

    async def check(self) -> bool:
        """One reading (in a thread: the Kafka client blocks); True when it succeeded."""
        gauge = self.metrics.group_lag
        if self._reading is not None and not self._reading.done():
            return False  # the last reading still waits for the broker: never two threads
        self._reading = asyncio.ensure_future(
            asyncio.to_thread(
                group_lag, self.bootstrap, self.group, self.topics, self.timeout_s, self.security
            )
        )
        try:
            lags = await asyncio.wait_for(asyncio.shield(self._reading), 3 * self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a probe must never stop the worker
            gauge.clear()
            if not self._failing:
                log.warning("cannot read the consumer group's lag from the broker: %r", exc)
            self._failing = True
            return False
        self._failing = False
        for (topic, partition), lag in lags.items():
            gauge.labels(topic, str(partition)).set(lag)
        return True
