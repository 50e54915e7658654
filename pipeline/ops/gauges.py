"""Gauges from the facts: readings (``pipeline.ops.readings``) turned into Prometheus gauges.

Exact and restart-proof because they read ClickHouse, not worker memory. Nothing here can add
a person label; spaces and platforms are capped (``pipeline.ops.exporter``).

Each refresh builds all the families it owns and publishes them at once
(``pipeline.ops.snapshot.FactGauges``): a scrape never sees a cleared or half-set family. Only the
leader worker calls them (``agents.leader``); on the others the families are empty.
"""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from pipeline.metrics.baseline import baseline_ratios, baseline_starts
from pipeline.ops import readings
from pipeline.ops.exporter import PipelineMetrics
from pipeline.ops.snapshot import Sample, SnapshotGauge


def refresh_engagement_gauges(
    client: Client, db: str, metrics: PipelineMetrics, window_s: int
) -> None:
    """Set the engagement and baseline gauges from the newest closed window (k-suppressed)."""
    newest = readings.newest_window(client, db, window_s)
    m = metrics
    active: list[Sample] = []
    events: list[Sample] = []
    current: dict[str, int] = {}
    for unit, (n_active, by_type) in newest.units.items():
        active.append(((unit,), n_active))
        current[unit] = sum(by_type.values())
        events += [((unit, event_type), n) for event_type, n in by_type.items()]
    families: dict[SnapshotGauge, list[Sample]] = {
        m.active_users: active,
        m.window_events: events,
        m.baseline_ratio: [],
        m.baseline_events: [],
    }
    if newest.units:  # else the start of the last window shown stays
        families[m.window_start] = [((), newest.start)]
    if current:
        _baseline(client, db, window_s, newest.start, current, m, families)
    m.fact_gauges.publish(families)


def _baseline(
    client: Client,
    db: str,
    window_s: int,
    start: int,
    current: dict[str, int],
    m: PipelineMetrics,
    families: dict[SnapshotGauge, list[Sample]],
) -> None:
    """Fill the baseline families: the same window of the weeks before (none while the history
    is shorter than the baseline needs)."""
    starts = baseline_starts(start)
    past = readings.past_window_events(client, db, window_s, starts)
    if past is None:
        return  # less history than the baseline needs
    for unit, (base, ratio) in baseline_ratios(current, past).items():
        families[m.baseline_events].append(((unit,), base))
        if ratio is not None:
            families[m.baseline_ratio].append(((unit,), ratio))


def refresh_unanswered_gauge(
    client: Client,
    db: str,
    metrics: PipelineMetrics,
    target_h: int,
    lookback_days: int,
    min_group_size: int,
    now_ms: int,
) -> None:
    """Set ``teilhabe_unanswered_posts{unit}`` (k-suppressed by authors)."""
    rows = readings.unanswered_by_unit(client, db, target_h, lookback_days, now_ms)
    metrics.fact_gauges.publish(
        {
            metrics.unanswered_posts: [
                ((unit,), posts) for unit, posts, authors in rows if authors >= min_group_size
            ]
        }
    )


def refresh_fact_gauges(
    client: Client, db: str, metrics: PipelineMetrics, min_group_size: int
) -> None:
    """Set the cross-silo, participation, ideation, space and platform gauges from the newest
    day of the facts."""
    m = metrics
    figures = readings.newest_day_figures(client, db, min_group_size)
    families: dict[SnapshotGauge, list[Sample]] = {
        g: []
        for g in (
            m.ei_index,
            m.cross_silo_share,
            m.participation,
            m.ideation,
            m.space_active,
            m.platform_active,
        )
    }
    day = figures.day
    if day is not None:  # else the day last shown stays
        families[m.facts_day] = [
            ((), datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        ]
    for unit, ei, share in figures.ei:
        families[m.ei_index].append(((unit,), ei))
        families[m.cross_silo_share].append(((unit,), share))
    for unit, *tiers in figures.pyramid:
        for tier, n in zip(("observers", "contributors", "heavy_contributors"), tiers, strict=True):
            families[m.participation].append(((unit, tier), n))
    for unit, *kinds in figures.ideation:
        for kind, n in zip(("ideas", "votes", "comments"), kinds, strict=True):
            families[m.ideation].append(((unit, kind), n))
    families[m.space_active] = [((space, platform), n) for space, platform, n in figures.spaces]
    families[m.platform_active] = [((platform,), n) for platform, n in figures.platforms]
    m.fact_gauges.publish(families)


def refresh_headcount_gauge(client: Client, db: str, metrics: PipelineMetrics) -> None:
    """Set ``teilhabe_directory_headcount{unit}`` from the k-suppressed ``unit_headcount`` view
    over the directory mirror: the gauge and SQL share one definition (docs/metrics.md)."""
    rows = readings.unit_headcount(client, db)
    metrics.fact_gauges.publish({metrics.headcount: [((unit,), n) for unit, n in rows]})
