"""Engagement against its seasonal baseline: the basis of the drop alert.

The baseline of a unit in a window is the mean of its events in the same window of each of the
trailing ``weeks`` weeks (weekly seasonality: a Monday 9:00 is compared with Mondays 9:00). A
past window in which the unit had no event counts as 0; without a complete history (a past
window the pipeline never closed) there is no baseline. The ratio is current / baseline: 1 =
as usual, 0.3 = a drop to 30 %. Pure functions; the sink feeds them from ClickHouse.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

WEEK_S = 7 * 24 * 3600
BASELINE_WEEKS = 4


def baseline_starts(window_start_s: int, weeks: int = BASELINE_WEEKS) -> list[int]:
    """Starts of the same window in each of the trailing ``weeks`` weeks (newest first)."""
    return [window_start_s - WEEK_S * i for i in range(1, weeks + 1)]


def baseline_ratios(
    current: Mapping[str, int], past: Sequence[Mapping[str, int] | None]
) -> dict[str, tuple[float, float | None]]:
    """unit -> (baseline events, current / baseline) for every unit of ``current``.

    ``past`` holds one mapping per trailing week (unit -> events), None for a week whose window
    was never closed: then there is no baseline and the result is empty. The ratio is None
    when the baseline is 0 (a unit that was never active at that time).
    """
    if not past or any(week is None for week in past):
        return {}
    out: dict[str, tuple[float, float | None]] = {}
    for unit, events in current.items():
        base = sum((week or {}).get(unit, 0) for week in past) / len(past)
        out[unit] = (base, events / base if base > 0 else None)
    return out
