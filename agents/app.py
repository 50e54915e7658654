"""The Faust app: topics, the directory GlobalTable, and the shared runtime of the agents.

Agents stay thin: they move bytes between topics and call the pure functions in ``pipeline``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, cast

import faust
from faust.tables.globaltable import GlobalTable
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from agents import engagement, ingest, leader, webhooks
from agents.consumer import KeepQueuesFlowControl, NoDropConsumer
from agents.delivery import Delivery
from agents.kafka_auth import faust_credentials
from agents.runtime import Runtime
from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.kafka_security import kafka_security
from pipeline.ops.brokerprobe import BrokerWatch
from pipeline.ops.exporter import PipelineMetrics
from pipeline.ops.grouplag import GroupLagProbe
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import get_client
from pipeline.sinks.directory import DirectorySync
from pipeline.sinks.facts import ClickHouseSink

log = logging.getLogger("teilhabe.worker")

BROKER_PROBE_INTERVAL_S = 5.0
GROUP_LAG_INTERVAL_S = 30.0


class DirectoryTable(GlobalTable):
    """A GlobalTable whose changelog is the directory topic itself.

    faust-streaming 0.15.3's partition assignor looks a global table's changelog up by the
    conventional name ``{app_id}-{table}-changelog`` even when ``changelog_topic`` names another
    topic; the assignment then fails silently and the worker hangs before "ready". Naming the
    real topic here keeps the directory a plain compacted topic that any producer can write.

    ``on_changed`` gets the keys of every changelog batch once the table holds it (set or
    deleted: a tombstone is a key whose value is gone), so the directory mirror writes only
    what changed (``pipeline.sinks.directory``). Both overrides: ``agents.faust_patches``.
    """

    on_changed: Callable[[Iterable[object]], None] | None = None

    def _changelog_topic_name(self) -> str:
        return str(self.changelog_topic.get_topic_name())

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        """Apply the batch as Faust does, then report its keys."""
        events = list(batch)
        super().apply_changelog_batch(events)
        if self.on_changed is not None:
            self.on_changed(event.key for event in events)


StopHook = tuple[str, Callable[[], Awaitable[None]]]


class TeilhabeApp(faust.App):
    """A Faust app that finishes its work on a graceful stop (SIGTERM / SIGINT).

    mode stops a service by calling ``on_stop`` before it stops the children (agents,
    consumer, producer), so here, while everything still runs, the stop hooks process the
    last partial batches and flush what the windows have closed, and the consumer commits
    what that acknowledged. A restart then resumes at the committed offsets and replays open
    windows from their checkpoint. Bounded by ``shutdown_timeout_s``: with ClickHouse down
    the worker still stops, and the replay after the restart loses nothing. The overridden
    Faust internals are listed in ``agents.faust_patches``.
    """

    stop_hooks: list[StopHook]
    shutdown_timeout_s: float = 30.0

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        """Flow control that keeps delivered events when resumed unsuspended (see
        ``agents.consumer.KeepQueuesFlowControl``)."""
        return KeepQueuesFlowControl(loop=self.loop)

    async def on_stop(self) -> None:
        """Run the stop hooks in order, commit, then stop as Faust does."""
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._finish_work(), timeout=self.shutdown_timeout_s)
            if self.crash_reason is None:
                log.info(
                    "graceful stop: work flushed and offsets committed in %.1f s",
                    time.monotonic() - started,
                )
            else:  # app.crash: only what reached ClickHouse was acknowledged and committed
                log.info(
                    "stop after a crash: offsets of the work written to ClickHouse committed "
                    "in %.1f s; the restart replays the rest",
                    time.monotonic() - started,
                )
        except TimeoutError:
            log.error(
                "graceful stop: not finished within %.0f s (TEILHABE_SHUTDOWN_TIMEOUT_S); "
                "stopping anyway: the restart replays from the last checkpoint, nothing is lost",
                self.shutdown_timeout_s,
            )
        except Exception:  # noqa: BLE001 - a failed final flush must not block the stop
            log.exception("graceful stop: final flush failed; the restart replays it")
        await super().on_stop()

    async def _finish_work(self) -> None:
        for name, hook in getattr(self, "stop_hooks", []):
            await hook()
            log.debug("graceful stop: %s done", name)
        consumer = self._consumer
        if consumer is not None and consumer.assignment():
            await consumer.commit()


def state_dir(settings: Settings) -> Path:
    """Faust's local directory. Tables live in memory (``memory://``), so it holds nothing
    that is not rebuilt at start: the directory table from its topic, windows from ClickHouse
    checkpoints plus a replay of the activity topic."""
    return settings.data_dir / "faust"


def create_app(settings: Settings, bootstrap: str, metrics: PipelineMetrics) -> Runtime:
    """Build the Faust app with its topics, table and agents for ``settings``."""
    dev_only: dict[str, Any] = {"producer_max_batch_size": 1} if settings.tansu else {}
    security = kafka_security(settings)  # TLS / SASL (README "Kafka security")
    app = TeilhabeApp(
        settings.app_id,
        broker=f"kafka://{bootstrap}",
        broker_credentials=faust_credentials(security),
        store="memory://",
        datadir=str(state_dir(settings)),
        web_enabled=False,
        topic_partitions=settings.activity_partitions,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        broker_rebalance_timeout=max(10.0, settings.session_timeout_s * 2),
        broker_commit_interval=1.0,
        stream_buffer_maxsize=4096,
        # acks wait for windows to close: never block a rebalance on them
        stream_wait_empty=False,
        # Dev path only (the embedded Tansu broker): one record per batch. With several,
        # Tansu now and then let a consumer skip a record (pipeline.sources.producer.make_producer),
        # and its ListOffsets answers the last batch's base offset + 1 (docs/design.md).
        # Envelopes keep the cost small; Apache Kafka gets full batches.
        **dev_only,
        producer_linger=0.005,
        # every record the worker writes is cut to this (pipeline.contract.records): one above it
        # is a bug, refused by the client before it could reach a broker
        producer_max_request_size=settings.kafka_max_record_bytes,
        consumer_max_fetch_size=max(settings.max_message_bytes * 4, 4_194_304),
        logging_config=None,
    )

    app.transport.Consumer = NoDropConsumer  # type: ignore[misc]  # see agents/consumer.py
    app.stop_hooks = []
    app.pipeline_metrics = metrics  # type: ignore[attr-defined]  # consumer lag, see NoDropConsumer
    app.shutdown_timeout_s = settings.shutdown_timeout_s

    def raw_topic(name: str, partitions: int, compacting: bool = False) -> faust.TopicT:
        return app.topic(
            name,
            partitions=partitions,
            internal=False,
            compacting=compacting,
            key_serializer="raw",
            value_serializer="raw",
        )

    events_topic = raw_topic(settings.topic_events, settings.events_partitions)
    activity_topic = raw_topic(settings.topic_activity, settings.activity_partitions)
    deadletter_topic = raw_topic(settings.topic_deadletter, 1)
    directory_topic = raw_topic(settings.topic_directory, 1, compacting=True)
    app.conf.GlobalTable = DirectoryTable  # type: ignore[assignment]
    # recovery_buffer_size=1: after the start, a record on the directory topic is applied at
    # once (with the default of 1000, live changes wait in Faust's buffer until 1000 arrived)
    directory = app.GlobalTable(
        "directory",
        key_type=bytes,
        value_type=bytes,
        partitions=1,
        changelog_topic=directory_topic,
        recovery_buffer_size=1,
    )
    sink = ClickHouseSink(
        lambda: get_client(settings),
        settings.clickhouse_database,
        metrics,
        consumer_group=settings.app_id,
        topic=settings.topic_activity,
    )
    rt = Runtime(
        settings=settings,
        app=app,
        metrics=metrics,
        pseudonymise=Pseudonymiser(settings.read_pseudonym_key()),
        sink=sink,
        events_topic=events_topic,
        activity_topic=activity_topic,
        deadletter_topic=deadletter_topic,
        directory=directory,
        delivery=Delivery(metrics, settings.kafka_max_record_bytes, deadletter_topic),
    )
    ingest.register(rt)
    engagement.register(rt)
    webhooks.register(rt)

    watch = BrokerWatch(bootstrap, metrics, ssl_context=security.ssl_context)

    @app.timer(interval=BROKER_PROBE_INTERVAL_S)
    async def broker_probe() -> None:
        await watch.check()

    # the input's backlog as the broker sees it: PipelineStalled (docs/runbooks.md)
    inputs = {settings.topic_events: settings.events_partitions}
    lag = GroupLagProbe(
        bootstrap, settings.app_id, inputs, metrics, security=security.client_kwargs()
    )

    @app.timer(interval=GROUP_LAG_INTERVAL_S)
    async def group_lag() -> None:
        await lag.check()

    mirror = DirectorySync(sink)
    cast(DirectoryTable, directory).on_changed = mirror.note
    leader.register(rt, mirror)

    return rt
