"""The Pipeline health dashboard: broker, throughput, invalid input, lag, ClickHouse writes."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models.dashboard import Panel

from pipeline.ops.dashboards.panels import RUNBOOKS, board, live_series, stat_panel, threshold_steps
from pipeline.ops.dashboards.queries import prom


def pipeline_health() -> dict[str, Any]:
    """Is the pipeline working: broker, throughput, invalid input, lag, ClickHouse writes."""
    rate = "sum(rate({}[5m]))"
    panels: list[cogbuilder.Builder[Panel]] = [
        stat_panel(
            "Broker",
            f"1 when a worker's probe of the Kafka bootstrap servers answered (teilhabe_broker_up)."
            f" 0 for 2 min fires BrokerDown ({RUNBOOKS}#brokerdown).",
            "max(teilhabe_broker_up)",
            thresholds=threshold_steps((None, "red"), (1, "green")),
            decimals=0,
            span=4,
        ),
        stat_panel(
            "Events ingested",
            "Valid events per second over all workers.",
            rate.format("teilhabe_events_ingested_total"),
            unit="reqps",
            span=5,
        ),
        stat_panel(
            "Since last consumed",
            "Seconds since any worker last got a message from the input topic. A quiet night "
            "without input is fine: PipelineStalled needs input waiting as well.",
            'time() - max(teilhabe_last_consumed_timestamp_seconds{topic=~".*events"})',
            unit="s",
            thresholds=threshold_steps((None, "green"), (120, "orange"), (600, "red")),
            span=5,
        ),
        stat_panel(
            "Input waiting",
            "The consumer group's backlog on the input topic, read from the broker "
            "(log-end minus committed offset, teilhabe_consumer_group_lag_messages). Above 0 "
            "with nothing consumed for 10 min while the broker is up fires PipelineStalled "
            f"({RUNBOOKS}#pipelinestalled).",
            'sum(max by (partition) (teilhabe_consumer_group_lag_messages{topic=~".*events"}))',
            thresholds=threshold_steps((None, "green"), (1000, "orange"), (10000, "red")),
            decimals=0,
            span=5,
        ),
        stat_panel(
            "Max consumer lag",
            "Largest lag of any partition in messages; above 10000 for 10 min fires "
            f"ConsumerLagHigh ({RUNBOOKS}#consumerlaghigh).",
            "max(teilhabe_consumer_lag_messages)",
            thresholds=threshold_steps((None, "green"), (1000, "orange"), (10000, "red")),
            span=5,
        ),
        live_series(
            "Events ingested by type",
            "Valid events per second by event type.",
            prom(
                "sum by (event_type) (rate(teilhabe_events_ingested_total[5m]))",
                "{{event_type}}",
            ),
            unit="reqps",
            stacked=True,
        ),
        live_series(
            "Messages consumed by topic",
            "Kafka messages consumed per second (teilhabe_messages_consumed_total).",
            prom("sum by (topic) (rate(teilhabe_messages_consumed_total[5m]))", "{{topic}}"),
            unit="reqps",
        ),
        live_series(
            "Invalid input, dead letters, late and duplicate events",
            "Per second: invalid messages by reason (closed set), records written to the "
            f"dead-letter topic (DeadLetterSpike: {RUNBOOKS}#deadletterspike), events after "
            "their window closed (kept in the facts), re-delivered duplicates.",
            prom("sum by (reason) (rate(teilhabe_events_invalid_total[5m]))", "{{reason}}"),
            prom(rate.format("teilhabe_dead_letters_total"), "dead letters", "B"),
            prom(rate.format("teilhabe_events_late_total"), "late", "C"),
            prom(rate.format("teilhabe_events_duplicate_total"), "duplicate", "D"),
            unit="reqps",
        ),
        live_series(
            "Consumer lag per partition",
            "Messages between each partition's high watermark and the next one handed out.",
            prom(
                "max by (topic, partition) (teilhabe_consumer_lag_messages)",
                "{{topic}}[{{partition}}]",
            ),
            threshold=(10000, "red"),
        ),
        live_series(
            "Event-time lag per partition",
            "Wall clock minus the watermark of each activity partition "
            "(teilhabe_event_time_lag_seconds); windows close this much after real time.",
            prom(
                "max by (partition) (teilhabe_event_time_lag_seconds)",
                "partition {{partition}}",
            ),
            unit="s",
        ),
        live_series(
            "Events held in open windows",
            "Events in windows that have not closed yet, over all workers.",
            prom("sum(teilhabe_open_window_events)", "open window events"),
        ),
        live_series(
            "ClickHouse flush duration",
            "p50 and p95 of one flush of all tables (teilhabe_sink_flush_seconds).",
            prom(
                "histogram_quantile(0.5, sum by (le) "
                "(rate(teilhabe_sink_flush_seconds_bucket[5m])))",
                "p50",
            ),
            prom(
                "histogram_quantile(0.95, sum by (le) "
                "(rate(teilhabe_sink_flush_seconds_bucket[5m])))",
                "p95",
                "B",
            ),
            unit="s",
        ),
        live_series(
            "ClickHouse rows written and failed flushes",
            "Rows per second by table; failed flushes per second (retried, "
            f"SinkFailing: {RUNBOOKS}#sinkfailing).",
            prom("sum by (table) (rate(teilhabe_sink_rows_total[5m]))", "{{table}}"),
            prom(rate.format("teilhabe_sink_failures_total"), "failed flushes", "B"),
            unit="reqps",
        ),
        live_series(
            "Since last successful ClickHouse flush",
            "Seconds since each worker's last successful flush.",
            prom("time() - teilhabe_sink_last_success_timestamp_seconds", "{{instance}}"),
            unit="s",
            threshold=(300, "red"),
        ),
        live_series(
            "Age of the live figures",
            "Seconds since the start of the window the engagement gauges describe, and since "
            "the start of the day the fact-derived gauges describe.",
            prom(
                "time() - max(teilhabe_engagement_window_start_timestamp_seconds)",
                "engagement window",
            ),
            prom("time() - max(teilhabe_facts_day_timestamp_seconds)", "facts day", "B"),
            unit="s",
        ),
        live_series(
            "Kafka client and Faust problems",
            "Warnings and errors per second logged by the Kafka client and Faust (broker "
            "unreachable or stalled, failed commits, rebalances).",
            prom(
                "sum by (component) (rate(teilhabe_client_problems_total[5m]))",
                "{{component}}",
            ),
            unit="reqps",
        ),
        live_series(
            "Broker probe round trip",
            "Round-trip time of the last successful broker probe, slowest worker.",
            prom("max(teilhabe_broker_probe_seconds)", "probe"),
            unit="s",
        ),
    ]
    return board(
        "teilhabe-pipeline",
        "Teilhabe · Pipeline health",
        "Broker, throughput, invalid input, lag and ClickHouse writes of the workers "
        f"(Prometheus). Alerts and runbooks: {RUNBOOKS}.",
        panels,
        time_from="now-6h",
        refresh="30s",
        unit_variable=False,
        timezone="browser",
    )
