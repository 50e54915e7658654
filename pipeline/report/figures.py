"""The report's figures: plain rows read from the k-suppressed aggregate views (docs/report.md).

Every figure about people comes from a view of ``pipeline.sinks.access.AGGREGATE_VIEWS``, which
has already left out groups under k and applied secondary suppression (docs/privacy.md). Sums
here only ever add up rows a view shows (over days, or over the units shown), never a total a
view hides. Two reads are not of those views: the newest day of ``events`` (a date, for the
default period) and the coverage section (``pipeline.report.coverage``: counts of events, k
applied there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.report.coverage import Coverage, read_coverage
from pipeline.report.response import read_response_by_space
from pipeline.report.rights import access_denied, denied_note

#: Days of the default period, ending on the newest day of the facts.
DEFAULT_DAYS = 28

#: ``{units:Array(String)}`` empty = every unit.
UNIT_FILTER = "(empty({units:Array(String)}) OR has({units:Array(String)}, toString(unit)))"
PERIOD = "day BETWEEN {first:Date} AND {last:Date}"


@dataclass
class ReportData:
    """Everything the report shows: the period, the settings in force and the rows per table."""

    first: date
    last: date
    units: list[str]
    k: int
    timezone: str
    generated_at: datetime
    config: dict[str, str]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    coverage: Coverage | None = None
    response_note: str = ""

    def params(self) -> dict[str, Any]:
        return {"first": self.first, "last": self.last, "units": self.units}


def plain(value: Any) -> Any:
    """A JSON-able value: dates as ISO strings, NaN as None."""
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def rows(client: Client, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The query's rows as dicts of plain values."""
    result = client.query(sql, parameters=params)
    names = result.column_names
    return [{n: plain(v) for n, v in zip(names, row, strict=True)} for row in result.result_rows]


def daily_by_unit(
    client: Client, db: str, view: str, columns: str, params: dict[str, Any]
) -> list[dict[str, Any]]:
    """The view's rows (day, unit, ``columns``) of the period and the units asked for."""
    return rows(
        client,
        f"SELECT day, toString(unit) AS unit, {columns} FROM {db}.{view} "
        f"WHERE {PERIOD} AND {UNIT_FILTER} ORDER BY day, unit",
        params,
    )


def sums(*columns: str) -> dict[str, str]:
    """``{column: sum(column)}``: a count summed over the period's shown days."""
    return {c: f"sum({c})" for c in columns}


def sums_by_unit(
    client: Client, db: str, view: str, aggregates: dict[str, str], params: dict[str, Any]
) -> list[dict[str, Any]]:
    """Per unit asked for: ``aggregates`` (name -> expression) over the view's shown rows of
    the period (sums of shown rows only, docs/report.md "Privacy")."""
    select = ", ".join(f"{expr} AS {name}" for name, expr in aggregates.items())
    return rows(
        client,
        f"SELECT toString(unit) AS unit, {select} FROM {db}.{view} "
        f"WHERE {PERIOD} AND {UNIT_FILTER} GROUP BY unit ORDER BY unit",
        params,
    )


def read_config(client: Client, db: str, fallback: dict[str, str] | None = None) -> dict[str, str]:
    """The ``config`` table the views read (k and the metric parameters); ``fallback`` (this
    machine's settings, as migrate writes them) for a user who may read only the views."""
    try:
        got = client.query(f"SELECT key, value FROM {db}.config FINAL").result_rows
    except DatabaseError as exc:
        if fallback is None or not access_denied(exc):
            raise
        return dict(fallback)
    return {str(key): str(value) for key, value in got}


def newest_day(client: Client, db: str) -> date | None:
    """The newest day of the facts (a date only, nothing about people); for a user who may
    read only the aggregate views, the newest day ``daily_active_by_unit`` shows."""
    try:
        got = client.query(f"SELECT max(day), count() FROM {db}.events").result_rows[0]
    except DatabaseError as exc:
        if not access_denied(exc):
            raise
        got = client.query(f"SELECT max(day), count() FROM {db}.daily_active_by_unit").result_rows[
            0
        ]
    return got[0] if got[1] else None


def period(
    client: Client, db: str, date_from: date | None, date_to: date | None, zone: str = "UTC"
) -> tuple[date, date]:
    """``--from`` / ``--to``, defaulting to the 28 days up to the newest day in the facts
    (without facts: up to today in ``zone``, TEILHABE_TIMEZONE, not the machine's zone)."""
    last = date_to or newest_day(client, db) or datetime.now(ZoneInfo(zone)).date()
    first = date_from or last - timedelta(days=DEFAULT_DAYS - 1)
    return first, last


def collect(
    client: Client,
    db: str,
    first: date,
    last: date,
    units: list[str],
    timezone: str,
    generated_at: datetime,
    fallback_config: dict[str, str] | None = None,
) -> ReportData:
    """Read every section's rows for the period and units (``fallback_config``: k and the
    parameters when the user may not read ``config``, see ``read_config``)."""
    config = read_config(client, db, fallback_config)
    k = int(config.get("min_group_size", "5") or 5)
    data = ReportData(
        first=first,
        last=last,
        units=sorted(set(units)),
        k=k,
        timezone=config.get("timezone") or timezone,
        generated_at=generated_at,
        config=config,
    )
    p = data.params()
    t = data.tables
    t["daily_active_by_unit"] = daily_by_unit(
        client, db, "daily_active_by_unit", "active_users, events, adoption_rate", p
    )
    t["unit_headcount"] = rows(
        client,
        f"SELECT toString(unit) AS unit, people FROM {db}.unit_headcount "
        f"WHERE {UNIT_FILTER} ORDER BY unit",
        p,
    )
    t["daily_stickiness"] = daily_by_unit(
        client, db, "daily_stickiness", "dau, wau, mau, stickiness", p
    )
    t["reach_by_unit"] = reach_by_unit(t["daily_stickiness"], t["unit_headcount"])
    t["participation_pyramid"] = sums_by_unit(
        client,
        db,
        "participation_pyramid",
        sums("observers", "contributors", "heavy_contributors"),
        p,
    )
    t["persona_28d"] = rows(  # each unit's newest shown row of the period: its last 28 days
        client,
        f"SELECT toString(unit) AS unit, max(day) AS as_of, argMax(observers, day) AS observers, "
        f"argMax(engagers, day) AS engagers, argMax(catalysts, day) AS catalysts, "
        f"argMax(responders, day) AS responders, argMax(broadcasters, day) AS broadcasters "
        f"FROM {db}.persona_28d WHERE {PERIOD} AND {UNIT_FILTER} GROUP BY unit ORDER BY unit",
        p,
    )
    t["silo_matrix"] = rows(
        client,
        f"SELECT toString(from_unit) AS from_unit, toString(to_unit) AS to_unit, "
        f"sum(interactions) AS interactions FROM {db}.daily_silo_matrix WHERE {PERIOD} "
        f"AND (empty({{units:Array(String)}}) OR has({{units:Array(String)}}, toString(from_unit))"
        f" OR has({{units:Array(String)}}, toString(to_unit))) "
        f"GROUP BY from_unit, to_unit ORDER BY from_unit, to_unit",
        p,
    )
    t["ei_index"] = rows(
        client,
        f"SELECT day, unit, internal, external, ei_index FROM {db}.daily_ei_index "
        f"WHERE {PERIOD} AND (unit = '*' OR {UNIT_FILTER}) ORDER BY day, unit",
        p,
    )
    t["boundary_spanners"] = sums_by_unit(
        client,
        db,
        "daily_boundary_spanners",
        {
            "active_person_days": "sum(active_users)",
            "spanner_person_days": "sum(boundary_spanners)",
        },
        p,
    )
    t["response_by_space"], data.response_note = read_response_by_space(client, db, p, k)
    t["daily_growth"] = daily_by_unit(
        client,
        db,
        "daily_growth",
        "active_users, new_members, first_time_contributors, returning_users, dormant_users",
        p,
    )
    t["daily_cohort_activity"] = rows(
        client,
        f"SELECT day, cohort, members, active_users, active_rate, units_reached "
        f"FROM {db}.daily_cohort_activity WHERE {PERIOD} ORDER BY day, cohort",
        p,
    )
    t["idea_funnel"] = sums_by_unit(
        client,
        db,
        "idea_funnel",
        sums("submitted", "in_review", "accepted", "rejected", "implemented"),
        p,
    )
    t["daily_ideation"] = sums_by_unit(
        client,
        db,
        "daily_ideation",
        {
            **sums("ideas", "votes", "comments"),
            "max_voting_units": "max(voting_units)",
            "max_commenting_units": "max(commenting_units)",
        },
        p,
    )
    try:
        data.coverage = read_coverage(client, db, p, k)
    except DatabaseError as exc:
        if not access_denied(exc):
            raise
        data.coverage = Coverage(denied=denied_note("Coverage", f"{db}.events"))
    t["coverage"] = data.coverage.cells
    return data


def reach_by_unit(
    stickiness: list[dict[str, Any]], headcount: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per unit, from the shown ``daily_stickiness`` rows: mean DAU over its shown days, WAU and
    MAU of its newest shown day, stickiness (DAU / MAU) averaged, and the unit's headcount."""
    heads = {r["unit"]: r["people"] for r in headcount}
    by_unit: dict[str, list[dict[str, Any]]] = {}
    for r in stickiness:
        by_unit.setdefault(r["unit"], []).append(r)
    out = []
    for unit, rs in sorted(by_unit.items()):
        newest = max(rs, key=lambda r: r["day"])
        out.append(
            {
                "unit": unit,
                "days_shown": len(rs),
                "mean_dau": sum(r["dau"] for r in rs) / len(rs),
                "wau": newest["wau"],
                "mau": newest["mau"],
                "as_of": newest["day"],
                "stickiness": sum(r["stickiness"] for r in rs) / len(rs),
                "headcount": heads.get(unit),
            }
        )
    return out
