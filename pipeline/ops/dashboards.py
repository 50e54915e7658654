"""Grafana dashboards as code (grafana-foundation-sdk): adoption, cross-silo collaboration,
community response and ideation, pipeline health.

Pure functions: ``dashboards()`` returns the dashboard JSON models, ``generate`` writes them to
``<uid>.json`` (committed under deploy/grafana/dashboards, provisioned by Grafana and uploaded by
``teilhabe grafana push``). Live figures come from Prometheus (every worker exports the same
fact-derived gauges, so they are aggregated with ``max by (unit)``; counters with
``sum(rate(...[5m]))``), history from the ClickHouse analyst views (docs/metrics.md), which
already leave out groups smaller than k people.

ClickHouse targets are for the official plugin ``grafana-clickhouse-datasource`` (v4 query
model): ``editorType: "sql"``, ``rawSql`` with the plugin's macros (``$__dateFilter(day)``),
``format`` as in grafana-plugin-sdk-go's sqlutil (0 = time series, 1 = table) and the matching
``queryType`` (``timeSeries`` / ``table``). Time series queries name their time column ``time``.
"""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent
from typing import Any, cast

from grafana_foundation_sdk.builders import (
    bargauge,
    gauge,
    heatmap,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    FieldColorModeId,
    FieldColorSeriesByMode,
    Panel,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode, HeatmapColorScale

PROMETHEUS_UID = "teilhabe-prometheus"
PROMETHEUS_TYPE = "prometheus"
CLICKHOUSE_UID = "teilhabe-clickhouse"
CLICKHOUSE_TYPE = "grafana-clickhouse-datasource"
#: v4 of the ClickHouse plugin reads this query model as is (older ones are migrated).
CLICKHOUSE_PLUGIN_VERSION = "4.0.0"
#: sqlutil.FormatQueryOption of grafana-plugin-sdk-go, which the ClickHouse plugin uses.
FORMAT_TIME_SERIES = 0
FORMAT_TABLE = 1

PROMETHEUS = DataSourceRef(type_val=PROMETHEUS_TYPE, uid=PROMETHEUS_UID)
CLICKHOUSE = DataSourceRef(type_val=CLICKHOUSE_TYPE, uid=CLICKHOUSE_UID)

TAG = "teilhabe"
#: PromQL label matcher and ClickHouse predicate of the ``$unit`` variable (multi-value, All).
UNIT_MATCH = 'unit=~"${unit:regex}"'
UNIT_IN = "unit IN (${unit:singlequote})"
#: The runbooks of the alerts whose thresholds panels show.
RUNBOOKS = "docs/runbooks.md"


# --- ClickHouse targets -----------------------------------------------------------------------


class ClickHouseQuery(cogvariants.Dataquery):
    """A raw-SQL target of the ClickHouse plugin (the SDK has no ClickHouse model)."""

    def __init__(self, raw_sql: str, ref_id: str = "A", fmt: int = FORMAT_TIME_SERIES) -> None:
        self.raw_sql = raw_sql
        self.ref_id = ref_id
        self.format = fmt

    def to_json(self) -> dict[str, object]:
        """The target as Grafana stores it in the dashboard JSON."""
        return {
            "datasource": {"type": CLICKHOUSE_TYPE, "uid": CLICKHOUSE_UID},
            "editorType": "sql",
            "format": self.format,
            "pluginVersion": CLICKHOUSE_PLUGIN_VERSION,
            "queryType": "timeSeries" if self.format == FORMAT_TIME_SERIES else "table",
            "rawSql": self.raw_sql,
            "refId": self.ref_id,
        }


class ClickHouseDataquery(cogbuilder.Builder[ClickHouseQuery]):
    """Builder of a ClickHouse raw-SQL target, usable wherever the SDK takes a target."""

    def __init__(self, raw_sql: str) -> None:
        self._internal = ClickHouseQuery(dedent(raw_sql).strip())

    def build(self) -> ClickHouseQuery:
        """Builds the object."""
        return self._internal

    def ref_id(self, ref_id: str) -> ClickHouseDataquery:
        """Identifier of the target within its panel."""
        self._internal.ref_id = ref_id
        return self

    def table(self) -> ClickHouseDataquery:
        """Return the rows as they are (format table)."""
        self._internal.format = FORMAT_TABLE
        return self

    def time_series(self) -> ClickHouseDataquery:
        """Turn long rows (time, labels..., values) into series (format time series)."""
        self._internal.format = FORMAT_TIME_SERIES
        return self


def _sql(raw_sql: str) -> ClickHouseDataquery:
    return ClickHouseDataquery(raw_sql)


def _prom(expr: str, legend: str = "", ref_id: str = "A") -> prometheus.Dataquery:
    query = prometheus.Dataquery().expr(expr).ref_id(ref_id).datasource(PROMETHEUS)
    return query.legend_format(legend) if legend else query


def _max_by_unit(gauge: str) -> str:
    """PromQL of a fact-derived gauge per selected unit (every worker exports the same)."""
    return f"max by (unit) ({gauge}{{{UNIT_MATCH}}})"


def _prom_by_unit(gauge: str) -> prometheus.Dataquery:
    """A target of ``gauge`` per selected unit, one series per unit."""
    return _prom(_max_by_unit(gauge), "{{unit}}")


def _sql_by_unit(view: str, value: str) -> ClickHouseDataquery:
    """``value`` per selected unit and day from the daily ``view``, as time series; a computed
    value (``expression AS name``) stands on a line of its own."""
    select = "SELECT toDateTime(day, 'UTC') AS time, unit,"
    select += f"\n       {value}" if " AS " in value else f" {value}"
    return _sql(
        f"{select}\nFROM {view}\nWHERE $__dateFilter(day) AND {UNIT_IN}\nORDER BY time, unit"
    )


def _sql_unit_table(view: str, order: str, *columns: str) -> ClickHouseDataquery:
    """A row per selected unit over the period from the daily ``view``: ``columns`` (one
    ``aggregate AS name`` each), rows ordered by ``order``."""
    select = ",\n       ".join(columns)
    return _sql(
        f"SELECT unit,\n       {select}\nFROM {view}\nWHERE $__dateFilter(day) AND {UNIT_IN}\n"
        f"GROUP BY unit\nORDER BY {order}"
    )


def _sql_totals(view: str, *columns: str) -> ClickHouseDataquery:
    """Per day, the selected units' totals from the daily ``view``; ``columns`` are the lines
    of the SELECT after the time (``sum(x) AS x, ...``)."""
    select = ",\n       ".join(columns)
    return _sql(
        f"SELECT toDateTime(day, 'UTC') AS time,\n       {select}\nFROM {view}\n"
        f"WHERE $__dateFilter(day) AND {UNIT_IN}\nGROUP BY time\nORDER BY time"
    )


# --- panel helpers ----------------------------------------------------------------------------


def _thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


def _legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def _reduce_last() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def _series(
    title: str,
    description: str,
    datasource: DataSourceRef,
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]],
    *,
    unit: str = "short",
    span: int = 12,
    height: int = 8,
    bars: bool = False,
    stacked: bool = False,
    min_value: float | None = None,
    max_value: float | None = None,
    threshold: tuple[float, str] | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource)
        .targets(targets)
        .unit(unit)
        .span(span)
        .height(height)
        .legend(_legend())
        .fill_opacity(60 if bars else 10)
        .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
        .span_nulls(False)
    )
    if stacked:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    if threshold is not None:
        panel = panel.thresholds(_thresholds((None, "green"), threshold)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
            )
        )
    return panel


def _daily_by_unit(
    title: str, description: str, view: str, value: str, **options: Any
) -> timeseries.Panel:
    """A time series panel of ``value`` per selected unit and day from the daily ``view``
    (``options``: those of ``_series``)."""
    return _series(title, description, CLICKHOUSE, [_sql_by_unit(view, value)], **options)


def _live_series(
    title: str, description: str, *targets: prometheus.Dataquery, **options: Any
) -> timeseries.Panel:
    """A time series panel of Prometheus ``targets`` (``options``: those of ``_series``)."""
    return _series(title, description, PROMETHEUS, list(targets), **options)


def _gauge(
    title: str,
    description: str,
    target: prometheus.Dataquery,
    *,
    span: int,
    min_value: float,
    max_value: float,
    thresholds: dash.ThresholdsConfig,
) -> gauge.Panel:
    """A gauge of the last value of a Prometheus ``target``, on a scale from ``min_value`` to
    ``max_value``."""
    return (
        gauge.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(target)
        .min(min_value)
        .max(max_value)
        .thresholds(thresholds)
        .reduce_options(_reduce_last())
        .span(span)
        .height(8)
    )


def _stat(
    title: str,
    description: str,
    expr: str,
    *,
    unit: str = "short",
    span: int = 6,
    legend: str = "",
    thresholds: dash.ThresholdsConfig | None = None,
    decimals: float | None = None,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(_prom(expr, legend))
        .unit(unit)
        .span(span)
        .height(4)
        .reduce_options(_reduce_last())
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .thresholds(thresholds or _thresholds((None, "blue")))
    )
    return panel.decimals(decimals) if decimals is not None else panel


def _table(
    title: str, description: str, query: ClickHouseDataquery, *, span: int = 12, height: int = 9
) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(CLICKHOUSE)
        .with_target(query.table())
        .span(span)
        .height(height)
    )


def _unit_variable() -> dash.QueryVariable:
    """``$unit``: the units with figures (k-suppressed) in the selected period, from ClickHouse."""
    return (
        dash.QueryVariable("unit")
        .label("Unit")
        .description("Organisational units with at least k active people in the period")
        .datasource(CLICKHOUSE)
        .query(
            "SELECT DISTINCT unit FROM daily_active_by_unit WHERE $__dateFilter(day) ORDER BY unit"
        )
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(True)
        .include_all(True)
        .current(VariableOption(selected=True, text="All", value="$__all"))
    )


class _Numbered(cogbuilder.Builder[Panel]):
    """A panel builder whose panel gets ``panel_id`` (ids in dashboard order, unique)."""

    def __init__(self, panel: cogbuilder.Builder[Panel], panel_id: int) -> None:
        self.panel = panel
        self.panel_id = panel_id

    def build(self) -> Panel:
        """Builds the panel with its id."""
        model = self.panel.build()
        model.id_val = self.panel_id
        return model


def _board(
    uid: str,
    title: str,
    description: str,
    panels: list[cogbuilder.Builder[Panel]],
    *,
    time_from: str = "now-30d",
    refresh: str = "5m",
    unit_variable: bool = True,
    timezone: str = "utc",
) -> dict[str, Any]:
    board = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .time(time_from, "now")
        .timezone(timezone)
        .refresh(refresh)
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .readonly()
        .link(
            dash.DashboardLink("Teilhabe")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .keep_time(True)
            .include_vars(True)
        )
    )
    if unit_variable:
        board = board.with_variable(_unit_variable())
    for panel_id, panel in enumerate(panels, start=1):
        board = board.with_panel(_Numbered(panel, panel_id))
    return cast(dict[str, Any], json.loads(json.dumps(board.build(), cls=JSONEncoder)))


# --- the dashboards ---------------------------------------------------------------------------


def adoption() -> dict[str, Any]:
    """Who uses the platform: live active people against headcount, daily adoption, stickiness
    and the participation pyramid."""
    panels: list[cogbuilder.Builder[Panel]] = [
        _stat(
            "Active people (last window)",
            "Distinct active people of the selected units in the last closed stream window "
            "(teilhabe_engagement_active_users; units below k left out).",
            f"sum({_max_by_unit('teilhabe_engagement_active_users')})",
        ),
        _stat(
            "Headcount (directory)",
            "People of the selected units in the org directory (teilhabe_directory_headcount).",
            f"sum({_max_by_unit('teilhabe_directory_headcount')})",
        ),
        _stat(
            "Active share of headcount (last window)",
            "Active people in the last window / headcount of the same units.",
            f"sum({_max_by_unit('teilhabe_engagement_active_users')}) / "
            f"sum({_max_by_unit('teilhabe_directory_headcount')})",
            unit="percentunit",
        ),
        _stat(
            "Events ingested",
            "Valid events per second over all workers (teilhabe_events_ingested_total).",
            "sum(rate(teilhabe_events_ingested_total[5m]))",
            unit="reqps",
        ),
        _live_series(
            "Active people per unit (live windows)",
            "Distinct active people per unit in each closed stream window.",
            _prom_by_unit("teilhabe_engagement_active_users"),
        ),
        _live_series(
            "Engagement against the usual level",
            "Events of the last window / mean of the same window in the 4 weeks before "
            "(1 = as usual). Below 0.5 for 2 h fires EngagementDrop "
            f"({RUNBOOKS}#engagementdrop).",
            _prom_by_unit("teilhabe_engagement_baseline_ratio"),
            unit="percentunit",
            min_value=0,
            threshold=(0.5, "red"),
        ),
        _daily_by_unit(
            "Adoption rate per unit (daily)",
            "Active people / headcount of the unit per day (daily_active_by_unit).",
            "daily_active_by_unit",
            "adoption_rate",
            unit="percentunit",
            min_value=0,
        ),
        _daily_by_unit(
            "Active people per unit (daily)",
            "Distinct active people per unit and day (daily_active_by_unit).",
            "daily_active_by_unit",
            "active_users",
            min_value=0,
        ),
        _daily_by_unit(
            "Stickiness (DAU / MAU)",
            "People active that day / people active in the 28 days up to it (daily_stickiness).",
            "daily_stickiness",
            "stickiness",
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        _series(
            "Participation pyramid (daily)",
            "Active people of the selected units by tier: observers (no contribution), "
            "contributors, heavy contributors (participation_pyramid).",
            CLICKHOUSE,
            [
                _sql_totals(
                    "participation_pyramid",
                    "sum(observers) AS observers",
                    "sum(contributors) AS contributors",
                    "sum(heavy_contributors) AS heavy_contributors",
                )
            ],
            bars=True,
            stacked=True,
        ),
        _live_series(
            "Active people per platform (newest day)",
            "Distinct active people per platform on the newest day of the facts "
            "(teilhabe_platform_active_users; platforms below k left out).",
            _prom("max by (platform) (teilhabe_platform_active_users)", "{{platform}}"),
            min_value=0,
        ),
        bargauge.Panel()
        .title("Busiest spaces (newest day)")
        .description(
            "Distinct active people in the busiest spaces on the newest day of the facts "
            "(teilhabe_space_active_users; spaces below k left out)."
        )
        .datasource(PROMETHEUS)
        .with_target(
            _prom(
                "topk(10, max by (space, platform) (teilhabe_space_active_users))",
                "{{space}} ({{platform}})",
            )
        )
        .reduce_options(_reduce_last())
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .min(0)
        .span(12)
        .height(8),
        _table(
            "Adoption by unit (selected period)",
            "Mean daily adoption rate and active people, and events, per unit.",
            _sql_unit_table(
                "daily_active_by_unit",
                "adoption_rate DESC",
                "round(avg(adoption_rate), 3) AS adoption_rate",
                "round(avg(active_users), 1) AS avg_daily_active",
                "sum(events) AS events",
            ),
            span=24,
        ),
    ]
    return _board(
        "teilhabe-adoption",
        "Teilhabe · Adoption overview",
        "Who uses the collaboration platforms: live windows (Prometheus) and daily facts "
        "(ClickHouse). Groups below k people are left out.",
        panels,
    )


def cross_silo() -> dict[str, Any]:
    """Do units work together: the unit x unit interaction matrix, the E-I index (live gauge
    and daily trend) and the cross-silo share."""
    pair_filter = "(from_unit IN (${unit:singlequote}) OR to_unit IN (${unit:singlequote}))"
    ei_thresholds = _thresholds((None, "red"), (-0.5, "orange"), (0, "green"))

    def ei_gauge(
        title: str, description: str, target: prometheus.Dataquery, span: int
    ) -> gauge.Panel:
        """An E-I index gauge: -1 (all inside units) to +1 (all across), two decimals."""
        return _gauge(
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
            _prom('max(teilhabe_ei_index{unit="*"})', "whole org"),
            6,
        ),
        ei_gauge(
            "E-I index per unit (newest day)",
            "E-I index of each selected unit on the newest day (teilhabe_ei_index).",
            _prom_by_unit("teilhabe_ei_index"),
            12,
        ),
        _gauge(
            "Cross-silo share (newest day)",
            "Share of the unit's interactions that cross units (teilhabe_cross_silo_share).",
            _prom_by_unit("teilhabe_cross_silo_share"),
            span=6,
            min_value=0,
            max_value=1,
            thresholds=_thresholds((None, "orange"), (0.3, "green")),
        ).unit("percentunit"),
        table.Panel()
        .title("Interactions unit × unit (selected period)")
        .description(
            "Replies, reactions, mentions and shares from the row's unit to the column's unit, "
            "summed over the period (daily_silo_matrix; cells with fewer than k people left "
            "out). The diagonal is work inside a unit."
        )
        .datasource(CLICKHOUSE)
        .with_target(
            _sql(
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
            _sql(
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
        _series(
            "E-I index per unit (daily)",
            "E-I index per unit and day; 'whole org' = all interactions (daily_ei_index). NULL "
            "when a unit had no interaction that day.",
            CLICKHOUSE,
            [
                _sql(
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
        _series(
            "E-I index, whole org (weekly)",
            "(external - internal) / (external + internal) over each week (Monday to Sunday) "
            "of the whole org (daily_ei_index, unit '*').",
            CLICKHOUSE,
            [
                _sql(
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
        _daily_by_unit(
            "Cross-silo share per unit (daily)",
            "External / (external + internal) interactions per unit and day (daily_ei_index).",
            "daily_ei_index",
            "cross_silo_share",
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        _daily_by_unit(
            "Boundary spanners per unit (daily)",
            "People who interacted with at least TEILHABE_BOUNDARY_SPANNER_UNITS other units "
            "that day (daily_boundary_spanners).",
            "daily_boundary_spanners",
            "boundary_spanners",
            bars=True,
            stacked=True,
        ),
    ]
    return _board(
        "teilhabe-cross-silo",
        "Teilhabe · Cross-silo collaboration",
        "Do units work together? Interaction matrix and E-I index (Krackhardt & Stern) from "
        "the facts; the live gauges from Prometheus. Groups below k people are left out.",
        panels,
    )


def response_ideation() -> dict[str, Any]:
    """Are posts answered, do ideas travel: unanswered posts, time to first response, ideation
    volume and the idea funnel."""
    panels: list[cogbuilder.Builder[Panel]] = [
        _stat(
            "Unanswered posts (now)",
            "Posts older than the response target without a reply by someone else, per unit "
            f"(teilhabe_unanswered_posts). Above 20 for 1 h fires UnansweredPostsHigh "
            f"({RUNBOOKS}#unansweredpostshigh).",
            _max_by_unit("teilhabe_unanswered_posts"),
            legend="{{unit}}",
            span=12,
            thresholds=_thresholds((None, "green"), (10, "orange"), (20, "red")),
        ),
        _stat(
            "Ideas, votes, comments (newest day)",
            "Ideation of the selected units on the newest day of the facts (teilhabe_ideation).",
            f"sum by (kind) (max by (unit, kind) (teilhabe_ideation{{{UNIT_MATCH}}}))",
            legend="{{kind}}",
            span=12,
        ),
        _live_series(
            "Unanswered posts per unit",
            "Posts of the last TEILHABE_UNANSWERED_LOOKBACK_DAYS days without a timely reply.",
            _prom_by_unit("teilhabe_unanswered_posts"),
            threshold=(20, "red"),
        ),
        _daily_by_unit(
            "Answered within target (daily)",
            "Share of the day's posts whose first reply by someone else came within "
            "TEILHABE_RESPONSE_TARGET_H hours (daily_response).",
            "daily_response",
            "answered_within_target / posts AS answered_share",
            unit="percentunit",
            min_value=0,
            max_value=1,
        ),
        _daily_by_unit(
            "Median time to first response (daily)",
            "Median seconds from a post to its first reply by someone else, over the day's "
            "answered posts (daily_response; CHAOSS Time to First Response).",
            "daily_response",
            "median_first_response_s",
            unit="s",
            min_value=0,
        ),
        _table(
            "Response by unit (selected period)",
            "Posts, share answered within the target, mean of the daily median and p90 time "
            "to first response (hours).",
            _sql_unit_table(
                "daily_response",
                "answered_share",
                "sum(posts) AS posts",
                "round(sum(answered_within_target) / posts, 3) AS answered_share",
                "round(avg(median_first_response_s) / 3600, 1) AS median_h",
                "round(avg(p90_first_response_s) / 3600, 1) AS p90_h",
            ),
        ),
        _series(
            "Ideation (daily)",
            "Ideas submitted by the selected units and votes and comments on their ideas "
            "(daily_ideation).",
            CLICKHOUSE,
            [
                _sql_totals(
                    "daily_ideation",
                    "sum(ideas) AS ideas, sum(votes) AS votes, sum(comments) AS comments",
                )
            ],
            bars=True,
        ),
        _daily_by_unit(
            "Units reached by ideas (daily)",
            "Other units that voted or commented on the unit's ideas that day (daily_ideation).",
            "daily_ideation",
            "voting_units + commenting_units AS units_reached",
            min_value=0,
        ),
        _table(
            "Idea funnel by unit (ideas submitted in the period)",
            "Ideas and how many of them reached each status, with the mean of the daily median "
            "days to a decision (idea_funnel).",
            _sql_unit_table(
                "idea_funnel",
                "submitted DESC",
                "sum(submitted) AS submitted",
                "sum(in_review) AS in_review",
                "sum(accepted) AS accepted",
                "sum(rejected) AS rejected",
                "sum(implemented) AS implemented",
                "round(avg(median_days_to_decision), 1) AS median_days_to_decision",
            ),
            span=24,
        ),
    ]
    return _board(
        "teilhabe-response-ideation",
        "Teilhabe · Community response & ideation",
        "Are posts answered in time, and do ideas reach other units? Groups below k people "
        "are left out.",
        panels,
    )


def pipeline_health() -> dict[str, Any]:
    """Is the pipeline working: broker, throughput, invalid input, lag, ClickHouse writes."""
    rate = "sum(rate({}[5m]))"
    panels: list[cogbuilder.Builder[Panel]] = [
        _stat(
            "Broker",
            f"1 when a worker's probe of the Kafka bootstrap servers answered (teilhabe_broker_up)."
            f" 0 for 2 min fires BrokerDown ({RUNBOOKS}#brokerdown).",
            "max(teilhabe_broker_up)",
            thresholds=_thresholds((None, "red"), (1, "green")),
            decimals=0,
        ),
        _stat(
            "Events ingested",
            "Valid events per second over all workers.",
            rate.format("teilhabe_events_ingested_total"),
            unit="reqps",
        ),
        _stat(
            "Since last consumed",
            "Seconds since any worker last got a message from the input topic; over 10 min "
            f"while the broker is up fires PipelineStalled ({RUNBOOKS}#pipelinestalled).",
            'time() - max(teilhabe_last_consumed_timestamp_seconds{topic=~".*events"})',
            unit="s",
            thresholds=_thresholds((None, "green"), (120, "orange"), (600, "red")),
        ),
        _stat(
            "Max consumer lag",
            "Largest lag of any partition in messages; above 10000 for 10 min fires "
            f"ConsumerLagHigh ({RUNBOOKS}#consumerlaghigh).",
            "max(teilhabe_consumer_lag_messages)",
            thresholds=_thresholds((None, "green"), (1000, "orange"), (10000, "red")),
        ),
        _live_series(
            "Events ingested by type",
            "Valid events per second by event type.",
            _prom(
                "sum by (event_type) (rate(teilhabe_events_ingested_total[5m]))",
                "{{event_type}}",
            ),
            unit="reqps",
            stacked=True,
        ),
        _live_series(
            "Messages consumed by topic",
            "Kafka messages consumed per second (teilhabe_messages_consumed_total).",
            _prom("sum by (topic) (rate(teilhabe_messages_consumed_total[5m]))", "{{topic}}"),
            unit="reqps",
        ),
        _live_series(
            "Invalid input, dead letters, late and duplicate events",
            "Per second: invalid messages by reason (closed set), records written to the "
            f"dead-letter topic (DeadLetterSpike: {RUNBOOKS}#deadletterspike), events after "
            "their window closed (kept in the facts), re-delivered duplicates.",
            _prom("sum by (reason) (rate(teilhabe_events_invalid_total[5m]))", "{{reason}}"),
            _prom(rate.format("teilhabe_dead_letters_total"), "dead letters", "B"),
            _prom(rate.format("teilhabe_events_late_total"), "late", "C"),
            _prom(rate.format("teilhabe_events_duplicate_total"), "duplicate", "D"),
            unit="reqps",
        ),
        _live_series(
            "Consumer lag per partition",
            "Messages between each partition's high watermark and the next one handed out.",
            _prom(
                "max by (topic, partition) (teilhabe_consumer_lag_messages)",
                "{{topic}}[{{partition}}]",
            ),
            threshold=(10000, "red"),
        ),
        _live_series(
            "Event-time lag per partition",
            "Wall clock minus the watermark of each activity partition "
            "(teilhabe_event_time_lag_seconds); windows close this much after real time.",
            _prom(
                "max by (partition) (teilhabe_event_time_lag_seconds)",
                "partition {{partition}}",
            ),
            unit="s",
        ),
        _live_series(
            "Events held in open windows",
            "Events in windows that have not closed yet, over all workers.",
            _prom("sum(teilhabe_open_window_events)", "open window events"),
        ),
        _live_series(
            "ClickHouse flush duration",
            "p50 and p95 of one flush of all tables (teilhabe_sink_flush_seconds).",
            _prom(
                "histogram_quantile(0.5, sum by (le) "
                "(rate(teilhabe_sink_flush_seconds_bucket[5m])))",
                "p50",
            ),
            _prom(
                "histogram_quantile(0.95, sum by (le) "
                "(rate(teilhabe_sink_flush_seconds_bucket[5m])))",
                "p95",
                "B",
            ),
            unit="s",
        ),
        _live_series(
            "ClickHouse rows written and failed flushes",
            "Rows per second by table; failed flushes per second (retried, "
            f"SinkFailing: {RUNBOOKS}#sinkfailing).",
            _prom("sum by (table) (rate(teilhabe_sink_rows_total[5m]))", "{{table}}"),
            _prom(rate.format("teilhabe_sink_failures_total"), "failed flushes", "B"),
            unit="reqps",
        ),
        _live_series(
            "Since last successful ClickHouse flush",
            "Seconds since each worker's last successful flush.",
            _prom("time() - teilhabe_sink_last_success_timestamp_seconds", "{{instance}}"),
            unit="s",
            threshold=(300, "red"),
        ),
        _live_series(
            "Age of the live figures",
            "Seconds since the start of the window the engagement gauges describe, and since "
            "the start of the day the fact-derived gauges describe.",
            _prom(
                "time() - max(teilhabe_engagement_window_start_timestamp_seconds)",
                "engagement window",
            ),
            _prom("time() - max(teilhabe_facts_day_timestamp_seconds)", "facts day", "B"),
            unit="s",
        ),
        _live_series(
            "Kafka client and Faust problems",
            "Warnings and errors per second logged by the Kafka client and Faust (broker "
            "unreachable or stalled, failed commits, rebalances).",
            _prom(
                "sum by (component) (rate(teilhabe_client_problems_total[5m]))",
                "{{component}}",
            ),
            unit="reqps",
        ),
        _live_series(
            "Broker probe round trip",
            "Round-trip time of the last successful broker probe, slowest worker.",
            _prom("max(teilhabe_broker_probe_seconds)", "probe"),
            unit="s",
        ),
    ]
    return _board(
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


# --- output -----------------------------------------------------------------------------------


def dashboards() -> list[dict[str, Any]]:
    """The four Teilhabe dashboards as Grafana JSON models (deterministic)."""
    return [adoption(), cross_silo(), response_ideation(), pipeline_health()]


def render(model: dict[str, Any]) -> str:
    """The committed file form of a dashboard: sorted keys, indent 2, trailing newline."""
    return json.dumps(model, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def generate(out_dir: Path) -> list[Path]:
    """Write ``<uid>.json`` for every dashboard to ``out_dir`` (created); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for model in dashboards():
        path = out_dir / f"{model['uid']}.json"
        path.write_text(render(model), encoding="utf-8")
        paths.append(path)
    return paths
