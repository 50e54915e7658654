"""Gauges from the facts: readings (``pipeline.ops.readings``) turned into Prometheus gauges.

Exact and restart-proof because they read ClickHouse, not worker memory. Nothing here can add
a person label; spaces and platforms are capped (``pipeline.ops.exporter``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from pipeline.metrics.baseline import baseline_ratios, baseline_starts
from pipeline.ops import readings
from pipeline.ops.exporter import PipelineMetrics


def refresh_engagement_gauges(
    client: Client, db: str, metrics: PipelineMetrics, window_s: int
) -> None:
    """Set the engagement and baseline gauges from the newest closed window (k-suppressed)."""
    newest = readings.newest_window(client, db, window_s)
    m = metrics
    m.active_users.clear()
    m.window_events.clear()
    current: dict[str, int] = {}
    if newest.units:
        m.window_start.set(newest.start)
    for unit, (active, by_type) in newest.units.items():
        m.active_users.labels(unit).set(active)
        current[unit] = sum(by_type.values())
        for event_type, n in by_type.items():
            m.window_events.labels(unit, event_type).set(n)
    m.baseline_ratio.clear()
    m.baseline_events.clear()
    if not current:
        return
    starts = baseline_starts(newest.start)
    past = readings.past_window_events(client, db, window_s, starts)
    if past is None:
        return  # less history than the baseline needs
    for unit, (base, ratio) in baseline_ratios(current, past).items():
        m.baseline_events.labels(unit).set(base)
        if ratio is not None:
            m.baseline_ratio.labels(unit).set(ratio)


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
    gauge = metrics.unanswered_posts
    gauge.clear()
    for unit, posts, authors in rows:
        if authors >= min_group_size:
            gauge.labels(unit).set(posts)


def refresh_fact_gauges(
    client: Client, db: str, metrics: PipelineMetrics, min_group_size: int
) -> None:
    """Set the cross-silo, participation, ideation, space and platform gauges from the newest
    day of the facts."""
    m = metrics
    figures = readings.newest_day_figures(client, db, min_group_size)
    gauges = (m.ei_index, m.cross_silo_share, m.participation, m.ideation)
    for gauge in (*gauges, m.space_active, m.platform_active):
        gauge.clear()
    day = figures.day
    if day is None:
        return
    m.facts_day.set(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    for unit, ei, share in figures.ei:
        m.ei_index.labels(unit).set(ei)
        m.cross_silo_share.labels(unit).set(share)
    for unit, *tiers in figures.pyramid:
        for tier, n in zip(("observers", "contributors", "heavy_contributors"), tiers, strict=True):
            m.participation.labels(unit, tier).set(n)
    for unit, *kinds in figures.ideation:
        for kind, n in zip(("ideas", "votes", "comments"), kinds, strict=True):
            m.ideation.labels(unit, kind).set(n)
    for space, platform, active in figures.spaces:
        m.space_active.labels(space, platform).set(active)
    for platform, active in figures.platforms:
        m.platform_active.labels(platform).set(active)
