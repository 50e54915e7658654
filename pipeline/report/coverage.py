"""Coverage: which event types each platform delivered in the period, and the share of events
whose unit is unknown (docs/report.md, "Coverage").

These are counts of events, not of people, but no view offers them, so they are read from
``events`` and k is applied here: a (type, platform) cell is shown only when its events come
from at least k distinct people, and secondary suppression (``pipeline.metrics.suppression``)
runs with all the period's people as the total, because the shares shown let a reader work
back to the total. The unknown share is shown only when the events with an unknown unit come
from 0 or at least k people. No absolute total is shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.contract.events import EVENT_TYPES
from pipeline.metrics.suppression import secondary_suppression

PERIOD = "day BETWEEN {first:Date} AND {last:Date}"
UNIT_FILTER = "(empty({units:Array(String)}) OR has({units:Array(String)}, toString(actor_unit)))"


@dataclass
class Coverage:
    """Shown cells (event_type, platform, events), what the text must say, the unknown share."""

    cells: list[dict[str, Any]] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    absent_types: list[str] = field(default_factory=list)  # no event of the type at all
    hidden_cells: int = 0  # cells with events of fewer than k people (or left out with them)
    unknown_share: float | None = None  # None: hidden (1 to k - 1 people) or no events
    unknown_hidden: bool = False


def read_coverage(client: Client, db: str, params: dict[str, Any], k: int) -> Coverage:
    """The coverage of the period for the selected units (the unknown share: the whole org)."""
    got = client.query(
        f"SELECT event_type, toString(ifNull(platform, '')) AS plat, count() AS n, "
        f"uniqExact(actor_id) AS people FROM {db}.events FINAL WHERE {PERIOD} AND {UNIT_FILTER} "
        f"GROUP BY event_type, plat ORDER BY event_type, plat",
        parameters=params,
    ).result_rows
    total_people, unknown_events, unknown_people, all_events = client.query(
        f"SELECT uniqExactIf(actor_id, {UNIT_FILTER}), countIf(actor_unit = 'unknown'), "
        f"uniqExactIf(actor_id, actor_unit = 'unknown'), count() "
        f"FROM {db}.events FINAL WHERE {PERIOD}",
        parameters=params,
    ).result_rows[0]
    people = {f"{t}\t{p}": int(n) for t, p, _, n in got}
    rule = secondary_suppression(people, int(total_people), k)
    cov = Coverage(
        platforms=sorted({p for _, p, _, _ in got}),
        absent_types=sorted(EVENT_TYPES - {t for t, _, _, _ in got}),
        hidden_cells=len(rule.hidden_parts),
    )
    cov.cells = [
        {"event_type": t, "platform": p, "events": int(n)}
        for t, p, n, _ in got
        if f"{t}\t{p}" not in rule.hidden_parts
    ]
    if all_events and (unknown_people == 0 or unknown_people >= k):
        cov.unknown_share = unknown_events / all_events
    cov.unknown_hidden = bool(all_events) and 0 < unknown_people < k
    return cov


def types_by_platform(cov: Coverage) -> dict[str, set[str]]:
    """The event types shown per platform."""
    out: dict[str, set[str]] = {p: set() for p in cov.platforms}
    for c in cov.cells:
        out[c["platform"]].add(c["event_type"])
    return out
