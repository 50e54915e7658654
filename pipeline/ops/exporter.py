"""Prometheus metrics of a worker: pipeline health and engagement of the last closed window.

Metrics take a ``registry`` (fresh per test). No label ever carries a person id: labels are
bounded sets (unit, event type, reason, partition), stated next to each metric.

The gauges read from ClickHouse (``SnapshotGauge``: engagement, baseline, headcount, unanswered
posts and the newest day's figures) are served by one collector, ``fact_gauges``, from a snapshot
that each refresh replaces at once (``pipeline.ops.snapshot``); only the leader worker refreshes
and serves them (``agents.leader``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pipeline.contract.events import EVENT_TYPES
from pipeline.ops.snapshot import FactGauges, SnapshotGauge

#: Reasons are a closed set so that a hostile input cannot blow up label cardinality.
INVALID_REASONS = (
    "empty",
    "oversized",
    "not_json",
    "invalid_utf8",
    "bad_envelope",
    "not_an_object",
    "bad_schema_version",
    "missing_field",
    "wrong_type",
    "too_long",
    "unknown_event_type",
    "bad_timestamp",
    "future_timestamp",
    "bad_pseudonym",
)


#: Label bounds of the per-space and per-platform gauges (the busiest ones; the rest is in
#: ClickHouse): space and platform names come from the input, so they must be capped.
TOP_SPACES = 20
TOP_PLATFORMS = 10

#: Logger (top-level name) -> component label of ``teilhabe_client_problems_total``.
CLIENT_COMPONENTS = {"aiokafka": "kafka", "kafka": "kafka", "faust": "faust", "mode": "faust"}


class _ProblemCounter(logging.Handler):
    def __init__(self, counter: Counter) -> None:
        super().__init__(level=logging.WARNING)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        component = CLIENT_COMPONENTS.get(record.name.split(".", 1)[0])
        if component is not None:
            self.counter.labels(component).inc()


@dataclass
class PipelineMetrics:
    """All metrics of one worker process, registered in one registry."""

    registry: CollectorRegistry
    messages_consumed: Counter
    events_in: Counter
    events_invalid: Counter
    events_late: Counter
    events_duplicate: Counter
    events_opted_out: Counter
    dead_letters: Counter
    window_flushes: Counter
    sink_flush_seconds: Histogram
    sink_failures: Counter
    sink_rows: Counter
    sink_last_success: Gauge
    watermark: Gauge
    event_time_lag: Gauge
    open_window_events: Gauge
    active_users: SnapshotGauge
    window_events: SnapshotGauge
    window_start: SnapshotGauge
    headcount: SnapshotGauge
    client_problems: Counter
    last_consumed: Gauge
    broker_up: Gauge
    broker_probe_seconds: Gauge
    baseline_ratio: SnapshotGauge
    baseline_events: SnapshotGauge
    unanswered_posts: SnapshotGauge
    unanswered_by_space: SnapshotGauge
    ei_index: SnapshotGauge
    cross_silo_share: SnapshotGauge
    participation: SnapshotGauge
    ideation: SnapshotGauge
    facts_day: SnapshotGauge
    consumer_lag: Gauge
    group_lag: Gauge
    space_active: SnapshotGauge
    platform_active: SnapshotGauge
    kafka_send_retries: Counter
    kafka_unconfirmed: Gauge
    kafka_refused: Counter
    fact_gauges: FactGauges

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> PipelineMetrics:
        """Register every metric in ``registry`` (a new one when None)."""
        r = registry if registry is not None else CollectorRegistry()
        m = cls(
            registry=r,
            fact_gauges=FactGauges(()),
            messages_consumed=Counter(
                "teilhabe_messages_consumed", "Kafka messages consumed", ["topic"], registry=r
            ),
            events_in=Counter(
                "teilhabe_events_ingested", "Valid events ingested", ["event_type"], registry=r
            ),
            events_invalid=Counter(
                "teilhabe_events_invalid",
                "Invalid messages or events, by reason (closed set)",
                ["reason"],
                registry=r,
            ),
            events_late=Counter(
                "teilhabe_events_late",
                "Events that arrived after their window closed (kept in the facts)",
                registry=r,
            ),
            events_opted_out=Counter(
                "teilhabe_events_opted_out",
                "Events dropped at ingest because their actor opted out (TEILHABE_OPT_OUT_FILE)",
                registry=r,
            ),
            events_duplicate=Counter(
                "teilhabe_events_duplicate",
                "Re-delivered event_ids within the de-duplication horizon, counted once",
                registry=r,
            ),
            dead_letters=Counter(
                "teilhabe_dead_letters", "Records written to the dead-letter topic", registry=r
            ),
            kafka_send_retries=Counter(
                "teilhabe_kafka_send_retries",
                "Records sent again because Kafka did not confirm them (broker unavailable or "
                "timing out); the batch stays unacknowledged meanwhile",
                registry=r,
            ),
            kafka_unconfirmed=Gauge(
                "teilhabe_kafka_unconfirmed_records",
                "Records this worker has sent and Kafka has not confirmed yet",
                registry=r,
            ),
            kafka_refused=Counter(
                "teilhabe_kafka_records_refused",
                "Records Kafka or its client refused for their content (too large, "
                "unserialisable); their events go to the dead-letter topic, never retried",
                ["topic"],
                registry=r,
            ),
            window_flushes=Counter(
                "teilhabe_window_flushes", "Closed windows written to ClickHouse", registry=r
            ),
            sink_flush_seconds=Histogram(
                "teilhabe_sink_flush_seconds",
                "Duration of one ClickHouse flush (all tables)",
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                registry=r,
            ),
            sink_failures=Counter(
                "teilhabe_sink_failures", "Failed ClickHouse flushes (retried)", registry=r
            ),
            sink_rows=Counter(
                "teilhabe_sink_rows", "Rows written to ClickHouse", ["table"], registry=r
            ),
            sink_last_success=Gauge(
                "teilhabe_sink_last_success_timestamp_seconds",
                "Unix time of the last successful ClickHouse flush",
                registry=r,
            ),
            watermark=Gauge(
                "teilhabe_watermark_timestamp_seconds",
                "Event-time watermark per activity partition",
                ["partition"],
                registry=r,
            ),
            event_time_lag=Gauge(
                "teilhabe_event_time_lag_seconds",
                "Wall clock minus watermark per activity partition",
                ["partition"],
                registry=r,
            ),
            open_window_events=Gauge(
                "teilhabe_open_window_events", "Events held in open windows", registry=r
            ),
            active_users=SnapshotGauge(
                "teilhabe_engagement_active_users",
                "Distinct active people per unit in the last closed window (k-suppressed)",
                ["unit"],
            ),
            window_events=SnapshotGauge(
                "teilhabe_engagement_events",
                "Events per unit and type in the last closed window (k-suppressed)",
                ["unit", "event_type"],
            ),
            window_start=SnapshotGauge(
                "teilhabe_engagement_window_start_timestamp_seconds",
                "Start of the window the engagement gauges describe",
            ),
            headcount=SnapshotGauge(
                "teilhabe_directory_headcount",
                "People per unit in the org directory (units below k left out)",
                ["unit"],
            ),
            client_problems=Counter(
                "teilhabe_client_problems",
                "Warnings and errors logged by the Kafka client and Faust (broker unreachable "
                "or stalled, failed commits, rebalances); component in {kafka, faust}",
                ["component"],
                registry=r,
            ),
            last_consumed=Gauge(
                "teilhabe_last_consumed_timestamp_seconds",
                "Unix time at which this worker last got a message from the topic "
                "(flat while the broker is stalled or the worker is stuck)",
                ["topic"],
                registry=r,
            ),
            broker_up=Gauge(
                "teilhabe_broker_up",
                "1 when the Kafka bootstrap servers answered the last probe (every 5 s), else 0",
                registry=r,
            ),
            broker_probe_seconds=Gauge(
                "teilhabe_broker_probe_seconds",
                "Round-trip time of the last successful broker probe",
                registry=r,
            ),
            baseline_ratio=SnapshotGauge(
                "teilhabe_engagement_baseline_ratio",
                "Events of the unit in the last closed window / the mean of the same window in "
                "the 4 weeks before (1 = as usual; the drop alert's input; k-suppressed)",
                ["unit"],
            ),
            baseline_events=SnapshotGauge(
                "teilhabe_engagement_baseline_events",
                "Mean events of the unit in the same window of the 4 weeks before",
                ["unit"],
            ),
            unanswered_posts=SnapshotGauge(
                "teilhabe_unanswered_posts",
                "Posts of the last TEILHABE_UNANSWERED_LOOKBACK_DAYS days older than "
                "TEILHABE_RESPONSE_TARGET_H hours without a reply by someone else, by the "
                "author's unit (k-suppressed by authors)",
                ["unit"],
            ),
            unanswered_by_space=SnapshotGauge(
                "teilhabe_unanswered_posts_by_space",
                "The posts of teilhabe_unanswered_posts by the space and platform they were "
                f"posted in, the {TOP_SPACES} spaces with the most (daily_response_by_space's "
                "rules: k-suppressed by authors, posts without a space left out)",
                ["space", "platform"],
            ),
            ei_index=SnapshotGauge(
                "teilhabe_ei_index",
                "Krackhardt & Stern E-I index of the unit ('*' = whole org) on the newest day "
                "of the facts (daily_ei_index; -1 all ties inside .. +1 all outside)",
                ["unit"],
            ),
            cross_silo_share=SnapshotGauge(
                "teilhabe_cross_silo_share",
                "Share of the unit's interactions that cross units, newest day",
                ["unit"],
            ),
            participation=SnapshotGauge(
                "teilhabe_participation_people",
                "Active people by participation tier (observers, contributors, "
                "heavy_contributors), newest day (participation_pyramid)",
                ["unit", "tier"],
            ),
            ideation=SnapshotGauge(
                "teilhabe_ideation",
                "Ideas, votes and comments of the unit's ideas, newest day (daily_ideation)",
                ["unit", "kind"],
            ),
            facts_day=SnapshotGauge(
                "teilhabe_facts_day_timestamp_seconds",
                "Start of the day the cross-silo, participation and ideation gauges describe",
            ),
            consumer_lag=Gauge(
                "teilhabe_consumer_lag_messages",
                "Messages between the partition's high watermark and the next one this worker "
                "hands out (set at each fetch; partitions bounded by the topic's count)",
                ["topic", "partition"],
                registry=r,
            ),
            group_lag=Gauge(
                "teilhabe_consumer_group_lag_messages",
                "Log-end offset minus the consumer group's committed offset, read from the "
                "broker every 30 s by every worker alike (moves while the consumers are stuck; "
                "input partitions)",
                ["topic", "partition"],
                registry=r,
            ),
            space_active=SnapshotGauge(
                "teilhabe_space_active_users",
                f"Distinct active people in the {TOP_SPACES} busiest spaces, newest day "
                "(daily_active_by_space; spaces below k left out)",
                ["space", "platform"],
            ),
            platform_active=SnapshotGauge(
                "teilhabe_platform_active_users",
                f"Distinct active people per platform (at most {TOP_PLATFORMS}), newest day "
                "(platforms below k left out)",
                ["platform"],
            ),
        )
        m.fact_gauges = FactGauges(v for v in vars(m).values() if isinstance(v, SnapshotGauge))
        r.register(m.fact_gauges)
        for component in CLIENT_COMPONENTS.values():
            m.client_problems.labels(component)
        for reason in INVALID_REASONS:
            m.events_invalid.labels(reason)
        for event_type in EVENT_TYPES:
            m.events_in.labels(event_type)
        return m

    def set_headcounts(self, counts: Mapping[str, int], min_group_size: int) -> None:
        """Publish the directory's headcount per unit, suppressing units below k people (the
        worker publishes the k-suppressed ``unit_headcount`` view instead, see
        ``pipeline.ops.gauges.refresh_headcount_gauge``)."""
        self.fact_gauges.publish(
            {self.headcount: [((unit,), n) for unit, n in counts.items() if n >= min_group_size]}
        )

    def consumed(self, topic: str, messages: int) -> None:
        """Count consumed messages and note when (the stall signal)."""
        self.messages_consumed.labels(topic).inc(messages)
        self.last_consumed.labels(topic).set(time.time())

    def count_client_problems(self) -> logging.Handler:
        """A logging handler that counts WARNING+ records of the Kafka client and Faust
        (install it on the root logger): a stalled broker shows in /metrics, not only in
        the log."""
        return _ProblemCounter(self.client_problems)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on ``host:port`` in a thread; return the bound port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_address[1])
