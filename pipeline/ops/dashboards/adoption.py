"""The Adoption overview dashboard: who uses the platforms, live and by day."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models.dashboard import Panel

from pipeline.ops.dashboards.datasources import CLICKHOUSE
from pipeline.ops.dashboards.panels import (
    RUNBOOKS,
    board,
    daily_by_unit,
    live_series,
    series,
    stat_panel,
    table_panel,
    top_spaces_panel,
)
from pipeline.ops.dashboards.queries import (
    max_by_unit,
    prom,
    prom_by_unit,
    sql_totals,
    sql_unit_table,
)


def adoption() -> dict[str, Any]:
    """Who uses the platform: live active people against headcount, daily adoption, stickiness
    and the participation pyramid."""
    panels: list[cogbuilder.Builder[Panel]] = [
        stat_panel(
            "Active people (last window)",
            "Distinct active people of the selected units in the last closed stream window "
            "(teilhabe_engagement_active_users; units below k left out).",
            f"sum({max_by_unit('teilhabe_engagement_active_users')})",
        ),
        stat_panel(
            "Headcount (directory)",
            "People of the selected units in the org directory (teilhabe_directory_headcount).",
            f"sum({max_by_unit('teilhabe_directory_headcount')})",
        ),
        stat_panel(
            "Active share of headcount (last window)",
            "Active people in the last window / headcount of the same units.",
            f"sum({max_by_unit('teilhabe_engagement_active_users')}) / "
            f"sum({max_by_unit('teilhabe_directory_headcount')})",
            unit="percentunit",
        ),
        stat_panel(
            "Events ingested",
            "Valid events per second over all workers (teilhabe_events_ingested_total).",
            "sum(rate(teilhabe_events_ingested_total[5m]))",
            unit="reqps",
        ),
        live_series(
            "Active people per unit (live windows)",
            "Distinct active people per unit in each closed stream window.",
            prom_by_unit("teilhabe_engagement_active_users"),
        ),
        live_series(
            "Engagement against the usual level",
            "Events of the last window / mean of the same window in the 4 weeks before "
            "(1 = as usual). Below 0.5 for 2 h fires EngagementDrop "
            f"({RUNBOOKS}#engagementdrop).",
            prom_by_unit("teilhabe_engagement_baseline_ratio"),
            unit="percentunit",
            min_value=0,
            threshold=(0.5, "red"),
        ),
        daily_by_unit(
            "Adoption rate per unit (daily)",
            "Active people / headcount of the unit per day (daily_active_by_unit).",
            "daily_active_by_unit",
            "adoption_rate",
            unit="percentunit",
            min_value=0,
        ),
        daily_by_unit(
            "Active people per unit (daily)",
            "Distinct active people per unit and day (daily_active_by_unit).",
            "daily_active_by_unit",
            "active_users",
            min_value=0,
        ),
        daily_by_unit(
            "Stickiness (DAU / MAU)",
            "People active that day / people active in the 28 days up to it (daily_stickiness).",
            "daily_stickiness",
            "stickiness",
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        series(
            "Participation pyramid (daily)",
            "Active people of the selected units by tier: observers (no contribution), "
            "contributors, heavy contributors (participation_pyramid).",
            CLICKHOUSE,
            [
                sql_totals(
                    "participation_pyramid",
                    "sum(observers) AS observers",
                    "sum(contributors) AS contributors",
                    "sum(heavy_contributors) AS heavy_contributors",
                )
            ],
            bars=True,
            stacked=True,
        ),
        live_series(
            "Active people per platform (newest day)",
            "Distinct active people per platform on the newest day of the facts "
            "(teilhabe_platform_active_users; platforms below k left out).",
            prom("max by (platform) (teilhabe_platform_active_users)", "{{platform}}"),
            min_value=0,
        ),
        top_spaces_panel(
            "Busiest spaces (newest day)",
            "Distinct active people in the busiest spaces on the newest day of the facts "
            "(teilhabe_space_active_users; spaces below k left out, and the smallest shown "
            "space of a platform too where the platform's people minus its shown spaces "
            "would leave 1 to k - 1 people: secondary suppression, docs/privacy.md).",
            "teilhabe_space_active_users",
            8,
        ),
        table_panel(
            "Adoption by unit (selected period)",
            "Mean daily adoption rate and active people, and events, per unit.",
            sql_unit_table(
                "daily_active_by_unit",
                "adoption_rate DESC",
                "round(avg(adoption_rate), 3) AS adoption_rate",
                "round(avg(active_users), 1) AS avg_daily_active",
                "sum(events) AS events",
            ),
            span=24,
        ),
    ]
    return board(
        "teilhabe-adoption",
        "Teilhabe · Adoption overview",
        "Who uses the collaboration platforms: live windows (Prometheus) and daily facts "
        "(ClickHouse). Groups below k people are left out.",
        panels,
    )
