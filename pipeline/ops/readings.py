"""What the gauges show, read from ClickHouse: plain rows, no Prometheus here.

Each reading queries the views or tables that define the figure (docs/metrics.md), so a gauge
and its view cannot disagree; ``pipeline.ops.gauges`` turns the rows into gauges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.ops.exporter import TOP_PLATFORMS, TOP_SPACES


@dataclass
class NewestWindow:
    """The newest closed engagement window: start (unix s) and per unit (active, by type)."""

    start: int = 0
    units: dict[str, tuple[int, dict[str, int]]] = field(default_factory=dict)


def newest_window(client: Client, db: str, window_s: int) -> NewestWindow:
    """The newest closed window's k-suppressed rows (``engagement_windows``)."""
    result = client.query(
        f"SELECT window_start, unit, active_users, events_by_type "
        f"FROM {db}.engagement_windows "
        f"WHERE window_s = {{w:UInt32}} AND window_start = ("
        f" SELECT max(window_start) FROM {db}.engagement_window_partials"
        f" WHERE window_s = {{w:UInt32}})",
        parameters={"w": window_s},
    )
    out = NewestWindow()
    for start, unit, active, by_type in result.result_rows:
        out.start = int(start.timestamp())
        out.units[str(unit)] = (int(active), {str(k): int(v) for k, v in by_type.items()})
    return out


def past_window_events(
    client: Client, db: str, window_s: int, starts: list[int]
) -> list[dict[str, int]] | None:
    """Events per unit of the windows starting at ``starts`` (one dict per start, in order);
    None when the history is shorter than the oldest of them."""
    first = client.query(
        f"SELECT toUnixTimestamp(min(window_start)) FROM {db}.engagement_window_partials "
        "WHERE window_s = {w:UInt32}",
        parameters={"w": window_s},
    ).result_rows[0][0]
    if not starts or int(first) > starts[-1]:
        return None
    rows = client.query(
        f"SELECT toUnixTimestamp(window_start), unit, sum(events) "
        f"FROM {db}.engagement_window_partials FINAL WHERE window_s = {{w:UInt32}} "
        f"AND toUnixTimestamp(window_start) IN {{s:Array(Int64)}} GROUP BY 1, 2",
        parameters={"w": window_s, "s": starts},
    ).result_rows
    past: dict[int, dict[str, int]] = {s: {} for s in starts}
    for start, unit, events in rows:
        past[int(start)][str(unit)] = int(events)
    return [past[s] for s in starts]


UNANSWERED_SQL = """
SELECT p.unit, count() AS posts, uniqExact(p.author) AS authors
FROM
(
    SELECT assumeNotNull(content_id) AS cid, actor_id AS author, actor_unit AS unit
    FROM {db}.events FINAL
    WHERE event_type = 'post_created' AND content_id IS NOT NULL
      AND ts_ms BETWEEN {since:Int64} AND {until:Int64}
) AS p
LEFT JOIN
(
    SELECT assumeNotNull(root_content_id) AS cid, groupUniqArray(actor_id) AS repliers
    FROM {db}.events FINAL
    WHERE event_type = 'reply_created' AND root_content_id IS NOT NULL
      AND ts_ms >= {since:Int64}
    GROUP BY cid
) AS r ON p.cid = r.cid
WHERE length(arrayFilter(x -> x != p.author, r.repliers)) = 0
GROUP BY p.unit
"""


def unanswered_by_unit(
    client: Client, db: str, target_h: int, lookback_days: int, now_ms: int
) -> list[tuple[str, int, int]]:
    """(unit, posts, authors): posts of the last ``lookback_days`` older than ``target_h``
    hours that nobody but their author has replied to."""
    rows = client.query(
        UNANSWERED_SQL.replace("{db}", db),
        parameters={
            "since": now_ms - lookback_days * 86_400_000,
            "until": now_ms - target_h * 3_600_000,
        },
    ).result_rows
    return [(str(unit), int(posts), int(authors)) for unit, posts, authors in rows]


@dataclass
class DayFigures:
    """The newest day of the facts and its k-suppressed figures, as the views give them."""

    day: date | None = None
    ei: list[tuple[str, float, float]] = field(default_factory=list)  # unit, E-I, share
    pyramid: list[tuple[str, int, int, int]] = field(default_factory=list)
    ideation: list[tuple[str, int, int, int]] = field(default_factory=list)
    spaces: list[tuple[str, str, int]] = field(default_factory=list)  # space, platform, active
    platforms: list[tuple[str, int]] = field(default_factory=list)


def newest_day_figures(client: Client, db: str, min_group_size: int) -> DayFigures:
    """Cross-silo, participation, ideation, space and platform figures of the newest day
    (the views leave out groups below k; the platform query applies k itself; spaces and
    platforms are capped)."""
    # duplicates cannot change the newest day: no FINAL (a merge of the whole table)
    day = client.query(f"SELECT max(day) FROM {db}.events").result_rows[0][0]
    if day is None or day.year < 1971:  # no facts yet
        return DayFigures()
    out = DayFigures(day=day)
    params: dict[str, Any] = {"d": day}
    for unit, ei, share in client.query(
        f"SELECT unit, ei_index, cross_silo_share FROM {db}.daily_ei_index WHERE day = {{d:Date}}",
        parameters=params,
    ).result_rows:
        if ei is not None:
            out.ei.append((str(unit), float(ei), float(share)))
    out.pyramid = [
        (str(u), int(o), int(c), int(h))
        for u, o, c, h in client.query(
            f"SELECT unit, observers, contributors, heavy_contributors "
            f"FROM {db}.participation_pyramid WHERE day = {{d:Date}}",
            parameters=params,
        ).result_rows
    ]
    out.ideation = [
        (str(u), int(i), int(v), int(c))
        for u, i, v, c in client.query(
            f"SELECT unit, ideas, votes, comments FROM {db}.daily_ideation WHERE day = {{d:Date}}",
            parameters=params,
        ).result_rows
    ]
    out.spaces = [
        (str(s), str(p), int(a))
        for s, p, a in client.query(
            f"SELECT space_id, platform, active_users FROM {db}.daily_active_by_space "
            f"WHERE day = {{d:Date}} ORDER BY active_users DESC, space_id LIMIT {TOP_SPACES}",
            parameters=params,
        ).result_rows
    ]
    out.platforms = [
        (str(p), int(a))
        for p, a in client.query(
            f"SELECT ifNull(platform, '') AS p, uniqExact(actor_id) AS people "
            f"FROM {db}.events FINAL WHERE day = {{d:Date}} GROUP BY p "
            f"HAVING people >= {{k:UInt32}} ORDER BY people DESC, p LIMIT {TOP_PLATFORMS}",
            parameters={**params, "k": min_group_size},
        ).result_rows
    ]
    return out


def unit_headcount(client: Client, db: str) -> list[tuple[str, int]]:
    """(unit, people) of the directory mirror, units below k left out (``unit_headcount``)."""
    rows = client.query(f"SELECT unit, people FROM {db}.unit_headcount").result_rows
    return [(str(unit), int(people)) for unit, people in rows]
