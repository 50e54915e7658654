"""Gauges from the facts: readings (``pipeline.ops.readings``) turned into Prometheus gauges.

Exact and restart-proof because they read ClickHouse, not worker memory. Nothing here can add
a person label; spaces and platforms are capped (``pipeline.ops.exporter``).

Each refresh builds all the families it owns and publishes them at once
(``pipeline.ops.snapshot.FactGauges``): a scrape never sees a cleared or half-set family. Only the
leader worker calls them (``agents.leader``); on the others the families are empty.
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from pipeline.ops import readings
from pipeline.ops.exporter import PipelineMetrics
from pipeline.ops.snapshot import Sample, SnapshotGauge


def refresh_engagement_gauges(
    client: Client, db: str, metrics: PipelineMetrics, window_s: int
) -> None:
    """Set the engagement and baseline gauges from the newest window every partition has
    closed (k-suppressed; the baseline from ``window_baseline_ratio``, absent without one)."""
    newest = readings.newest_window(client, db, window_s)
    m = metrics
    active: list[Sample] = []
    events: list[Sample] = []
    for unit, (n_active, by_type) in newest.units.items():
        active.append(((unit,), n_active))
        events += [((unit, event_type), n) for event_type, n in by_type.items()]
    families: dict[SnapshotGauge, list[Sample]] = {
        m.active_users: active,
        m.window_events: events,
        m.baseline_events: [((unit,), base) for unit, (base, _) in newest.baseline.items()],
        m.baseline_ratio: [
            ((unit,), ratio) for unit, (_, ratio) in newest.baseline.items() if ratio is not None
        ],
    }
    if newest.units:  # else the start of the last window shown stays
        families[m.window_start] = [((), newest.start)]
    m.fact_gauges.publish(families)


def refresh_unanswered_gauge(
    client: Client,
    db: str,
    metrics: PipelineMetrics,
    target_h: int,
    lookback_days: int,
    now_ms: int,
) -> None:
    """Set ``teilhabe_unanswered_posts{unit}`` (k-suppressed by authors in SQL, with the k of
    ``{db}.config`` the views use)."""
    rows = readings.unanswered_by_unit(client, db, target_h, lookback_days, now_ms)
    metrics.fact_gauges.publish({metrics.unanswered_posts: [((u,), n) for u, n in rows]})


def refresh_unanswered_by_space_gauge(
    client: Client,
    db: str,
    metrics: PipelineMetrics,
    target_h: int,
    lookback_days: int,
    now_ms: int,
) -> None:
    """Set ``teilhabe_unanswered_posts_by_space{space,platform}``: the posts of
    ``teilhabe_unanswered_posts`` per space, suppressed in SQL as ``daily_response_by_space``
    and capped to the spaces with the most (``readings.unanswered_by_space``)."""
    rows = readings.unanswered_by_space(client, db, target_h, lookback_days, now_ms)
    metrics.fact_gauges.publish(
        {metrics.unanswered_by_space: [((space, platform), n) for space, platform, n in rows]}
    )


def refresh_fact_gauges(client: Client, db: str, metrics: PipelineMetrics) -> None:
    """Set the cross-silo, participation, ideation, space and platform gauges from the newest
    day of the facts (k from ``{db}.config`` as in the views)."""
    m = metrics
    figures = readings.newest_day_figures(client, db)
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
    start = figures.day_start()  # local midnight in TEILHABE_TIMEZONE (config 'timezone')
    if start is not None:  # else the day last shown stays
        families[m.facts_day] = [((), start)]
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
