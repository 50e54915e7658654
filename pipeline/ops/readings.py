"""What the gauges show, read from ClickHouse: plain rows, no Prometheus here.

Each reading queries the views or tables that define the figure (docs/metrics.md), so a gauge
and its view cannot disagree; ``pipeline.ops.gauges`` turns the rows into gauges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from clickhouse_connect.driver.client import Client

from pipeline.metrics.windows import NO_WATERMARK, Checkpoint
from pipeline.ops.exporter import TOP_PLATFORMS, TOP_SPACES
from pipeline.sinks.migrate import MIN_GROUP_SIZE_SQL

#: k, the same subquery of ``{db}.config`` every view applies (written by ``teilhabe migrate``).
K_SQL = MIN_GROUP_SIZE_SQL


@dataclass
class NewestWindow:
    """The newest window every partition has closed: start (unix s), per unit (active, by type)
    and per unit its baseline (mean events of the same window of the 4 weeks before, ratio;
    ``window_baseline_ratio``; units without a baseline are left out)."""

    start: int = 0
    units: dict[str, tuple[int, dict[str, int]]] = field(default_factory=dict)
    baseline: dict[str, tuple[float, float | None]] = field(default_factory=dict)


def closed_through(
    window_s: int,
    grace_s: int,
    newest_rows: dict[int, int],
    checkpoints: dict[int, list[Checkpoint]],
) -> int | None:
    """The newest window start (unix s) that every partition of the activity topic has closed,
    or None while none has closed one.

    A partition closes its windows in start order (``pipeline.metrics.windows``), so it has
    closed every window up to the newest one it shows: the newest window it wrote rows for
    (``newest_rows``), the newest of its recorded closes, and the newest window whose end plus
    grace its saved watermark has passed (which also covers windows in which it had no event).
    A saved checkpoint may be older than the partition's state, so this never claims more than
    was closed. A partition that never saw an event (no rows, no closes, no watermark: e.g. one
    that only got end-of-input markers, or none at all) holds nothing back.
    """
    window_ms, grace_ms = window_s * 1000, grace_s * 1000
    frontiers: list[int] = []
    for p in set(newest_rows) | set(checkpoints):
        best = newest_rows[p] * 1000 if p in newest_rows else NO_WATERMARK
        for cp in checkpoints.get(p, []):
            best = max([best, *cp.closes])  # window starts (ms)
            if cp.clock.watermark_ms > NO_WATERMARK:
                edge = cp.clock.watermark_ms - window_ms - grace_ms  # windows up to here closed
                best = max(best, edge - edge % window_ms)
        if best > NO_WATERMARK:
            frontiers.append(best)
    return min(frontiers) // 1000 if frontiers else None


def newest_window(client: Client, db: str, window_s: int) -> NewestWindow:
    """The k-suppressed rows (``engagement_windows``) and baselines (``window_baseline_ratio``)
    of the newest window with rows that every partition has closed (``closed_through``): a
    window some partition may still add to is never shown."""
    params = {"w": window_s}
    newest_rows = {
        int(p): int(start)
        for p, start in client.query(
            f"SELECT partition, toUnixTimestamp(max(window_start)) "
            f"FROM {db}.engagement_window_partials WHERE window_s = {{w:UInt32}} "
            "GROUP BY partition",
            parameters=params,
        ).result_rows
    }
    if not newest_rows:
        return NewestWindow()
    checkpoints: dict[int, list[Checkpoint]] = {}
    for p, state in client.query(
        f"SELECT partition, state FROM {db}.stream_checkpoints FINAL"
    ).result_rows:
        checkpoints.setdefault(int(p), []).append(Checkpoint.from_json(orjson.loads(state)))
    grace_s = int(
        client.query(
            f"SELECT toUInt32OrDefault(any(value), toUInt32(600)) FROM {db}.config FINAL "
            "WHERE key = 'grace_s'"
        ).result_rows[0][0]
    )
    through = closed_through(window_s, grace_s, newest_rows, checkpoints)
    if through is None:
        return NewestWindow()
    start = client.query(
        f"SELECT toUnixTimestamp(max(window_start)) FROM {db}.engagement_window_partials "
        "WHERE window_s = {w:UInt32} AND window_start <= toDateTime({t:Int64}, 'UTC')",
        parameters={**params, "t": through},
    ).result_rows[0][0]
    out = NewestWindow(start=int(start))
    if out.start <= 0:
        return NewestWindow()
    params["s"] = out.start
    for unit, active, by_type in client.query(
        f"SELECT unit, active_users, events_by_type FROM {db}.engagement_windows "
        f"WHERE window_s = {{w:UInt32}} AND window_start = toDateTime({{s:Int64}}, 'UTC')",
        parameters=params,
    ).result_rows:
        out.units[str(unit)] = (int(active), {str(k): int(v) for k, v in by_type.items()})
    for unit, base, ratio in client.query(
        f"SELECT unit, baseline_events, ratio FROM {db}.window_baseline_ratio "
        f"WHERE window_s = {{w:UInt32}} AND window_start = toDateTime({{s:Int64}}, 'UTC')",
        parameters=params,
    ).result_rows:
        out.baseline[str(unit)] = (float(base), None if ratio is None else float(ratio))
    return out


UNANSWERED_SQL = """
SELECT unit, count() AS posts
FROM {db}.post_first_response
WHERE posted_ms BETWEEN {since:Int64} AND {until:Int64} AND first_response_ms IS NULL
GROUP BY unit
HAVING uniqExact(author_id) >= {k}
"""


def unanswered_by_unit(
    client: Client, db: str, target_h: int, lookback_days: int, now_ms: int
) -> list[tuple[str, int]]:
    """(unit, posts): posts of the last ``lookback_days`` older than ``target_h`` hours that
    nobody but their author has replied to (``post_first_response``, the definition
    ``daily_response`` uses), units with fewer than k such authors left out (k from config)."""
    rows = client.query(
        UNANSWERED_SQL.replace("{k}", K_SQL).replace("{db}", db),
        parameters={
            "since": now_ms - lookback_days * 86_400_000,
            "until": now_ms - target_h * 3_600_000,
        },
    ).result_rows
    return [(str(unit), int(posts)) for unit, posts in rows]


#: The unanswered posts of ``UNANSWERED_SQL`` per space and platform of the post (``''`` when
#: none), left out as ``daily_response_by_space`` leaves rows out (migration 007): below k
#: authors, posts without a space, and by secondary suppression against the lookback's
#: unanswered posts (the units of ``teilhabe_unanswered_posts`` added up: the hidden rows'
#: authors, counted once, 0 or at least k); then the ``{top}`` spaces with the most.
UNANSWERED_BY_SPACE_SQL = """
WITH
    parts AS
    (
        SELECT ifNull(space_id, '') AS space, ifNull(platform, '') AS plat, count() AS posts,
               uniqExact(author_id) AS authors, groupUniqArray(author_id) AS author_ids,
               space != '' AND authors >= {k} AS primary_shown
        FROM {db}.post_first_response
        WHERE posted_ms BETWEEN {since:Int64} AND {until:Int64} AND first_response_ms IS NULL
        GROUP BY space, plat
    ),
    remainder AS
    (
        SELECT uniqExactArrayIf(author_ids, NOT primary_shown) AS hidden_authors,
               minIf((authors, space, plat), primary_shown) AS smallest
        FROM parts
    )
SELECT space, plat, posts
FROM parts CROSS JOIN remainder
WHERE primary_shown
  AND NOT (hidden_authors > 0 AND hidden_authors < {k} AND (authors, space, plat) = smallest)
ORDER BY posts DESC, space, plat
LIMIT {top}
"""


def unanswered_by_space(
    client: Client, db: str, target_h: int, lookback_days: int, now_ms: int
) -> list[tuple[str, str, int]]:
    """(space, platform, posts): the posts of ``unanswered_by_unit`` (same window, same
    ``post_first_response``) per space and platform they were posted in, k-suppressed by their
    authors and against differencing as ``daily_response_by_space``, capped to ``TOP_SPACES``
    (the cap drops only shown rows, of k or more authors)."""
    sql = UNANSWERED_BY_SPACE_SQL.replace("{k}", K_SQL).replace("{top}", str(TOP_SPACES))
    rows = client.query(
        sql.replace("{db}", db),
        parameters={
            "since": now_ms - lookback_days * 86_400_000,
            "until": now_ms - target_h * 3_600_000,
        },
    ).result_rows
    return [(str(space), str(platform), int(posts)) for space, platform, posts in rows]


@dataclass
class DayFigures:
    """The newest day of the facts and its k-suppressed figures, as the views give them."""

    day: date | None = None
    ei: list[tuple[str, float, float]] = field(default_factory=list)  # unit, E-I, share
    pyramid: list[tuple[str, int, int, int]] = field(default_factory=list)
    ideation: list[tuple[str, int, int, int]] = field(default_factory=list)
    spaces: list[tuple[str, str, int]] = field(default_factory=list)  # space, platform, active
    platforms: list[tuple[str, int]] = field(default_factory=list)
    zone: str = "UTC"  # config 'timezone': days end at its midnight (docs/metrics.md)

    def day_start(self) -> float | None:
        """Unix time (s) the day begins: its midnight in ``zone``, not in UTC."""
        if self.day is None:
            return None
        return datetime.combine(self.day, time(), ZoneInfo(self.zone)).timestamp()


def newest_day_figures(client: Client, db: str) -> DayFigures:
    """Cross-silo, participation, ideation, space and platform figures of the newest day
    (the views leave out groups below k, and where a total stands beside its parts, as the
    org's E-I row beside the units' or a platform's people beside its spaces', the parts a
    subtraction would give back: secondary suppression, ``pipeline.metrics.suppression``;
    spaces and platforms are capped, and a cap drops only shown groups of k or more)."""
    # duplicates cannot change the newest day: no FINAL (a merge of the whole table)
    day = client.query(f"SELECT max(day) FROM {db}.events").result_rows[0][0]
    if day is None or day.year < 1971:  # no facts yet
        return DayFigures()
    zone = client.query(f"SELECT any(value) FROM {db}.config FINAL WHERE key = 'timezone'")
    out = DayFigures(day=day, zone=str(zone.result_rows[0][0] or "UTC"))
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
            f"SELECT platform, active_users FROM {db}.daily_active_by_platform "
            f"WHERE day = {{d:Date}} ORDER BY active_users DESC, platform LIMIT {TOP_PLATFORMS}",
            parameters=params,
        ).result_rows
    ]
    return out


def unit_headcount(client: Client, db: str) -> list[tuple[str, int]]:
    """(unit, people) of the directory mirror, units below k left out (``unit_headcount``)."""
    rows = client.query(f"SELECT unit, people FROM {db}.unit_headcount").result_rows
    return [(str(unit), int(people)) for unit, people in rows]
