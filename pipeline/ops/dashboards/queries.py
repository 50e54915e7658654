"""Query targets: ClickHouse raw-SQL targets of the official plugin (v4 query model) and
Prometheus targets, with the ``$unit`` variable's filters."""

from __future__ import annotations

from textwrap import dedent

from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants

from pipeline.ops.dashboards.datasources import (
    CLICKHOUSE_PLUGIN_VERSION,
    CLICKHOUSE_TYPE,
    CLICKHOUSE_UID,
    FORMAT_TABLE,
    FORMAT_TIME_SERIES,
    PROMETHEUS,
)

#: PromQL label matcher and ClickHouse predicate of the ``$unit`` variable (multi-value, All).
UNIT_MATCH = 'unit=~"${unit:regex}"'
UNIT_IN = "unit IN (${unit:singlequote})"


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


def sql(raw_sql: str) -> ClickHouseDataquery:
    """A ClickHouse raw-SQL target (dedented, stripped), format time series."""
    return ClickHouseDataquery(raw_sql)


def prom(expr: str, legend: str = "", ref_id: str = "A") -> prometheus.Dataquery:
    """A Prometheus target of ``expr`` with the ``legend`` format, if any."""
    query = prometheus.Dataquery().expr(expr).ref_id(ref_id).datasource(PROMETHEUS)
    return query.legend_format(legend) if legend else query


def max_by_unit(gauge: str) -> str:
    """PromQL of a fact-derived gauge per selected unit (every worker exports the same)."""
    return f"max by (unit) ({gauge}{{{UNIT_MATCH}}})"


def prom_by_unit(gauge: str) -> prometheus.Dataquery:
    """A target of ``gauge`` per selected unit, one series per unit."""
    return prom(max_by_unit(gauge), "{{unit}}")


def sql_by_unit(view: str, value: str) -> ClickHouseDataquery:
    """``value`` per selected unit and day from the daily ``view``, as time series; a computed
    value (``expression AS name``) stands on a line of its own."""
    select = "SELECT toDateTime(day, 'UTC') AS time, unit,"
    select += f"\n       {value}" if " AS " in value else f" {value}"
    return sql(
        f"{select}\nFROM {view}\nWHERE $__dateFilter(day) AND {UNIT_IN}\nORDER BY time, unit"
    )


def sql_unit_table(view: str, order: str, *columns: str) -> ClickHouseDataquery:
    """A row per selected unit over the period from the daily ``view``: ``columns`` (one
    ``aggregate AS name`` each), rows ordered by ``order``."""
    select = ",\n       ".join(columns)
    return sql(
        f"SELECT unit,\n       {select}\nFROM {view}\nWHERE $__dateFilter(day) AND {UNIT_IN}\n"
        f"GROUP BY unit\nORDER BY {order}"
    )


def sql_totals(view: str, *columns: str) -> ClickHouseDataquery:
    """Per day, the selected units' totals from the daily ``view``; ``columns`` are the lines
    of the SELECT after the time (``sum(x) AS x, ...``)."""
    select = ",\n       ".join(columns)
    return sql(
        f"SELECT toDateTime(day, 'UTC') AS time,\n       {select}\nFROM {view}\n"
        f"WHERE $__dateFilter(day) AND {UNIT_IN}\nGROUP BY time\nORDER BY time"
    )
