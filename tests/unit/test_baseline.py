"""Baseline ratio against a plain recomputation, and its edge cases."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.metrics.baseline import WEEK_S, baseline_ratios, baseline_starts

UNITS = st.sampled_from(["A", "B", "C"])
WEEK = st.dictionaries(UNITS, st.integers(0, 50))


@given(WEEK, st.lists(WEEK, min_size=4, max_size=4))
def test_ratio_is_current_over_the_mean_of_the_same_window_in_past_weeks(
    current: dict[str, int], past: list[dict[str, int]]
) -> None:
    got = baseline_ratios(current, past)
    assert set(got) == set(current)
    for unit, events in current.items():
        history = [week[unit] if unit in week else 0 for week in past]
        mean = sum(history) / 4
        assert got[unit][0] == mean
        assert got[unit][1] == (events / mean if mean else None)


def test_drop_in_one_unit_shows_only_there() -> None:
    past = [{"A": 100, "B": 40}] * 4
    got = baseline_ratios({"A": 30, "B": 41}, past)
    assert got["A"] == (100.0, 0.3)
    assert got["B"][1] is not None and 1.0 < got["B"][1] < 1.1


def test_no_baseline_without_complete_history() -> None:
    assert baseline_ratios({"A": 5}, [{"A": 5}, None, {"A": 5}, {"A": 5}]) == {}
    assert baseline_ratios({"A": 5}, []) == {}


def test_same_window_of_the_trailing_weeks() -> None:
    assert baseline_starts(10 * WEEK_S, weeks=2) == [9 * WEEK_S, 8 * WEEK_S]
