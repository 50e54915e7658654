"""Panel and dashboard builders shared by the dashboards: time series, stats, gauges, tables,
the ``$unit`` variable and the dashboard frame (tags, links, panel ids)."""

from __future__ import annotations

import json
from typing import Any, cast

from grafana_foundation_sdk.builders import bargauge, gauge, prometheus, stat, table, timeseries
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
    Panel,
    Threshold,
    ThresholdsMode,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

from pipeline.ops.dashboards.datasources import CLICKHOUSE, PROMETHEUS
from pipeline.ops.dashboards.queries import ClickHouseDataquery, prom, sql_by_unit

TAG = "teilhabe"
#: The runbooks of the alerts whose thresholds panels show.
RUNBOOKS = "docs/runbooks.md"


def threshold_steps(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds: (value, colour) steps, the first with value None."""
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


def reduce_last() -> common_builders.ReduceDataOptions:
    """Show the last non-null value of each series."""
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)


def series(
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
    """A time series panel of ``targets`` on ``datasource`` (bars, stacking, limits, a
    dashed threshold line as asked)."""
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
        panel = panel.thresholds(threshold_steps((None, "green"), threshold)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
            )
        )
    return panel


def daily_by_unit(
    title: str, description: str, view: str, value: str, **options: Any
) -> timeseries.Panel:
    """A time series panel of ``value`` per selected unit and day from the daily ``view``
    (``options``: those of ``series``)."""
    return series(title, description, CLICKHOUSE, [sql_by_unit(view, value)], **options)


def live_series(
    title: str, description: str, *targets: prometheus.Dataquery, **options: Any
) -> timeseries.Panel:
    """A time series panel of Prometheus ``targets`` (``options``: those of ``series``)."""
    return series(title, description, PROMETHEUS, list(targets), **options)


def gauge_panel(
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
        .reduce_options(reduce_last())
        .span(span)
        .height(8)
    )


def stat_panel(
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
    """A stat (big number with sparkline) of the last value of the PromQL ``expr``."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(prom(expr, legend))
        .unit(unit)
        .span(span)
        .height(4)
        .reduce_options(reduce_last())
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .thresholds(thresholds or threshold_steps((None, "blue")))
    )
    return panel.decimals(decimals) if decimals is not None else panel


def top_spaces_panel(title: str, description: str, metric: str, height: int) -> bargauge.Panel:
    """The 10 spaces with the highest value of a per-space gauge (labels space, platform),
    as horizontal bars: the gauge itself is capped and k-suppressed by the worker."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(
            prom(f"topk(10, max by (space, platform) ({metric}))", "{{space}} ({{platform}})")
        )
        .reduce_options(reduce_last())
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .min(0)
        .span(12)
        .height(height)
    )


def table_panel(
    title: str, description: str, query: ClickHouseDataquery, *, span: int = 12, height: int = 9
) -> table.Panel:
    """A table of the rows of the ClickHouse ``query``."""
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


def board(
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
    """The dashboard JSON model: tags, Teilhabe links, the ``$unit`` variable (unless
    ``unit_variable`` is False) and ``panels`` numbered in order."""
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
