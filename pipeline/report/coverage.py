"""Coverage: which event types each platform delivered in the period, and the share of events
whose unit is unknown (docs/report.md, "Coverage").

These are counts of events, not of people, but no view offers them, so they are read from
``events`` and k is applied here as the views apply it, per day:

* a (day, type, platform) cell is shown only when its events come from at least k distinct
  people; the day's cells are parts of the day's events, so the hidden cells of a day must
  together come from 0 or at least k distinct people (counted exactly, not added up), otherwise
  the shown cell with the fewest people is left out too (the rule of
  ``pipeline.metrics.suppression``; that cell has k people, so one step is enough);
* the period's figure of a (type, platform) is the sum of its shown days, so two reports of
  overlapping periods differ only by shown days;
* the whole organisation always, whatever ``--unit`` says: per-unit sums of the same cells
  would differ from the organisation's by the events of the other units;
* the unknown share: the events whose actor unit is ``unknown``, over the days on which those
  come from 0 or at least k people; no absolute total is shown.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from clickhouse_connect.driver.client import Client

from pipeline.contract.events import EVENT_TYPES

PERIOD = "day BETWEEN {first:Date} AND {last:Date}"
CELL = "(day, event_type, toString(ifNull(platform, '')))"


@dataclass
class Coverage:
    """Shown cells (event_type, platform, events), what the text must say, the unknown share."""

    cells: list[dict[str, Any]] = field(default_factory=list)
    platforms: list[str] = field(default_factory=list)
    absent_types: list[str] = field(default_factory=list)  # no event of the type at all
    hidden_cells: int = 0  # (day, type, platform) cells left out
    unknown_share: float | None = None  # None: no day to show it on
    unknown_days_hidden: int = 0  # days whose unknown events come from 1 to k - 1 people
    denied: str = ""  # why coverage is left out (the report's user may not read events)


def shown_cells(
    cells: list[tuple[date, str, str, int, int]], hidden_people: dict[date, int], k: int
) -> set[tuple[date, str, str]]:
    """The (day, type, platform) cells to show: at least k people each, and the day's hidden
    cells together 0 or at least k distinct people (``hidden_people``: exactly, per day, the
    people of the cells under k); otherwise the shown cell with the fewest people (ties: the
    smallest type, then platform) is left out too."""
    shown = {(d, t, p): n for d, t, p, _, n in cells if n >= k}
    for day, people in hidden_people.items():
        if 0 < people < k:
            rest = sorted((n, t, p) for (d, t, p), n in shown.items() if d == day)
            if rest:
                _, t, p = rest[0]
                del shown[(day, t, p)]
    return set(shown)


def read_coverage(client: Client, db: str, params: dict[str, Any], k: int) -> Coverage:
    """The coverage of the period (the whole organisation)."""
    p = {"first": params["first"], "last": params["last"], "k": k}
    cells = [
        (d, str(t), str(pl), int(n), int(people))
        for d, t, pl, n, people in client.query(
            f"SELECT day, event_type, toString(ifNull(platform, '')) AS plat, count(), "
            f"uniqExact(actor_id) FROM {db}.events FINAL WHERE {PERIOD} "
            f"GROUP BY day, event_type, plat",
            parameters=p,
        ).result_rows
    ]
    hidden_people = {
        d: int(n)
        for d, n in client.query(
            f"SELECT day, uniqExact(actor_id) FROM {db}.events FINAL WHERE {PERIOD} "
            f"AND {CELL} IN (SELECT day, event_type, toString(ifNull(platform, '')) AS plat "
            f"FROM {db}.events FINAL WHERE {PERIOD} GROUP BY day, event_type, plat "
            f"HAVING uniqExact(actor_id) < {{k:UInt32}}) GROUP BY day",
            parameters=p,
        ).result_rows
    }
    shown = shown_cells(cells, hidden_people, k)
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for d, t, pl, n, _ in cells:
        if (d, t, pl) in shown:
            sums[(t, pl)] += n
    cov = Coverage(
        cells=[
            {"event_type": t, "platform": pl, "events": n} for (t, pl), n in sorted(sums.items())
        ],
        platforms=sorted({pl for _, _, pl, _, _ in cells}),
        absent_types=sorted(EVENT_TYPES - {t for _, t, _, _, _ in cells}),
        hidden_cells=len(cells) - len(shown),
    )
    days = client.query(
        f"SELECT day, countIf(actor_unit = 'unknown'), uniqExactIf(actor_id, "
        f"actor_unit = 'unknown'), count() FROM {db}.events FINAL WHERE {PERIOD} GROUP BY day",
        parameters=p,
    ).result_rows
    ok = [(u, n) for _, u, people, n in days if people == 0 or people >= k]
    cov.unknown_days_hidden = len(days) - len(ok)
    if ok:
        cov.unknown_share = sum(u for u, _ in ok) / sum(n for _, n in ok)
    return cov


def types_by_platform(cov: Coverage) -> dict[str, set[str]]:
    """The event types shown per platform."""
    out: dict[str, set[str]] = {p: set() for p in cov.platforms}
    for c in cov.cells:
        out[c["platform"]].add(c["event_type"])
    return out
