"""The Cross-silo collaboration dashboard: the unit x unit matrix and the E-I index."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import gauge, heatmap, prometheus, table
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DataTransformerConfig,
    FieldColorModeId,
    FieldColorSeriesByMode,
    Panel,
)
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode, HeatmapColorScale

from pipeline.ops.dashboards.datasources import CLICKHOUSE
from pipeline.ops.dashboards.panels import (
    RUNBOOKS,
    board,
    daily_by_unit,
    gauge_panel,
    series,
    threshold_steps,
)
from pipeline.ops.dashboards.queries import UNIT_IN, prom, prom_by_unit, sql


def cross_silo() -> dict[str, Any]:
    """Do units work together: the unit x unit interaction matrix, the E-I index (live gauge
    and daily trend) and the cross-silo share."""
    pair_filter = "(from_unit IN (${unit:singlequote}) OR to_unit IN (${unit:singlequote}))"
    ei_thresholds = threshold_steps((None, "red"), (-0.5, "orange"), (0, "green"))

    def ei_gauge(
        title: str, description: str, target: prometheus.Dataquery, span: int
    ) -> gauge.Panel:
        """An E-I index gauge: -1 (all inside units) to +1 (all across), two decimals."""
        return gauge_panel(
            title,
            description,
            target,
            span=span,
            min_value=-1,
            max_value=1,
            thresholds=ei_thresholds,
        ).decimals(2)

    panels: list[cogbuilder.Builder[Panel]] = [
        ei_gauge(
            "E-I index, whole org (newest day)",
            "Krackhardt & Stern E-I index of all interactions on the newest day of the facts: "
            '-1 all inside units, +1 all across (teilhabe_ei_index{unit="*"}). A weekly mean '
            f"falling by 0.1 in 3 weeks fires SiloIncreasing ({RUNBOOKS}#siloincreasing).",
            prom('max(teilhabe_ei_index{unit="*"})', "whole org"),
            6,
        ),
        ei_gauge(
            "E-I index per unit (newest day)",
            "E-I index of each selected unit on the newest day (teilhabe_ei_index).",
            prom_by_unit("teilhabe_ei_index"),
            12,
        ),
        gauge_panel(
            "Cross-silo share (newest day)",
            "Share of the unit's interactions that cross units (teilhabe_cross_silo_share).",
            prom_by_unit("teilhabe_cross_silo_share"),
            span=6,
            min_value=0,
            max_value=1,
            thresholds=threshold_steps((None, "orange"), (0.3, "green")),
        ).unit("percentunit"),
        table.Panel()
        .title("Interactions unit × unit (selected period)")
        .description(
            "Replies, reactions, mentions and shares from the row's unit to the column's unit, "
            "summed over the period (daily_silo_matrix: a cell only between units shown in "
            "daily_ei_index, and none a total minus the shown cells could give back, "
            "docs/privacy.md). The diagonal is work inside a unit."
        )
        .datasource(CLICKHOUSE)
        .with_target(
            sql(
                f"""
                SELECT from_unit, to_unit, sum(interactions) AS interactions
                FROM daily_silo_matrix
                WHERE $__dateFilter(day) AND {pair_filter}
                GROUP BY from_unit, to_unit
                ORDER BY from_unit, to_unit
                """
            ).table()
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="groupingToMatrix",
                options={
                    "columnField": "to_unit",
                    "rowField": "from_unit",
                    "valueField": "interactions",
                    "emptyValue": "null",
                },
            )
        )
        .cell_options(
            common.TableColoredBackgroundCellOptions(
                mode=common.TableCellBackgroundDisplayMode.GRADIENT
            )
        )
        .color_scheme(
            dash.FieldColor()
            .mode(FieldColorModeId.CONTINUOUS_GR_YL_RD)
            .series_by(FieldColorSeriesByMode.MAX)
        )
        .span(12)
        .height(12),
        heatmap.Panel()
        .title("Cross-unit interactions per day (from → to)")
        .description(
            "Interactions between two different units per day (daily_silo_matrix): one row "
            "per direction, darker = more."
        )
        .datasource(CLICKHOUSE)
        .with_target(
            sql(
                f"""
                SELECT toDateTime(day, 'UTC') AS time,
                       concat(from_unit, ' → ', to_unit) AS pair,
                       interactions
                FROM daily_silo_matrix
                WHERE $__dateFilter(day) AND from_unit != to_unit AND {pair_filter}
                ORDER BY time, pair
                """
            )
        )
        .calculate(False)
        .color(
            heatmap.HeatmapColorOptions()
            .mode(HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .fill("dark-orange")
            .scale(HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
            .reverse(False)
        )
        .cell_gap(1)
        .show_legend()
        .span(12)
        .height(12),
        series(
            "E-I index per unit (daily)",
            "E-I index per unit and day; 'whole org' = all interactions (daily_ei_index). NULL "
            "when a unit had no interaction that day.",
            CLICKHOUSE,
            [
                sql(
                    f"""
                    SELECT toDateTime(day, 'UTC') AS time,
                           if(unit = '*', 'whole org', unit) AS series,
                           ei_index
                    FROM daily_ei_index
                    WHERE $__dateFilter(day) AND ({UNIT_IN} OR unit = '*')
                    ORDER BY time, series
                    """
                )
            ],
            min_value=-1,
            max_value=1,
        ),
        series(
            "E-I index, whole org (weekly)",
            "(external - internal) / (external + internal) over each week (Monday to Sunday) "
            "of the whole org (daily_ei_index, unit '*').",
            CLICKHOUSE,
            [
                sql(
                    """
                    SELECT toDateTime(toMonday(day), 'UTC') AS time,
                           (sum(external) - sum(internal)) / (sum(external) + sum(internal))
                               AS ei_index
                    FROM daily_ei_index
                    WHERE $__dateFilter(day) AND unit = '*'
                    GROUP BY time
                    ORDER BY time
                    """
                )
            ],
            min_value=-1,
            max_value=1,
        ),
        daily_by_unit(
            "Cross-silo share per unit (daily)",
            "External / (external + internal) interactions per unit and day (daily_ei_index).",
            "daily_ei_index",
            "cross_silo_share",
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        daily_by_unit(
            "Boundary spanners per unit (daily)",
            "People who interacted with at least TEILHABE_BOUNDARY_SPANNER_UNITS other units "
            "that day (daily_boundary_spanners).",
            "daily_boundary_spanners",
            "boundary_spanners",
            bars=True,
            stacked=True,
        ),
    ]
    return board(
        "teilhabe-cross-silo",
        "Teilhabe · Cross-silo collaboration",
        "Do units work together? Interaction matrix and E-I index (Krackhardt & Stern) from "
        "the facts; the live gauges from Prometheus. Groups below k people are left out.",
        panels,
    )
