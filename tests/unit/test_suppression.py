"""The secondary suppression rule (pipeline.metrics.suppression) over plain numbers: the case
measured on real e-mails, the edges, and its promise on random totals (docs/privacy.md)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.metrics.suppression import Suppression, secondary_suppression


def test_four_large_departments_and_one_of_three() -> None:
    """The org row minus four shown departments would be the department of 3: the smallest
    large one is left out too, so the org row minus the rest covers 3 + 40 people."""
    parts = {"A": 120, "B": 80, "C": 40, "D": 95, "E": 3}
    got = secondary_suppression(parts, sum(parts.values()), 5)
    assert got == Suppression(frozenset({"E", "C"}), False)


def test_hidden_parts_of_k_people_need_nothing_more() -> None:
    assert secondary_suppression({"A": 9, "B": 2, "C": 3}, 14, 5).hidden_parts == {"B", "C"}


def test_nothing_hidden_hides_nothing_more() -> None:
    assert secondary_suppression({"A": 9, "B": 5}, 14, 5) == Suppression(frozenset(), False)


def test_ties_of_the_smallest_shown_part_go_by_name() -> None:
    got = secondary_suppression({"Z": 6, "B": 6, "M": 7, "S": 1}, 20, 5)
    assert got.hidden_parts == {"S", "B"}


def test_total_under_k_is_hidden() -> None:
    assert secondary_suppression({"A": 2, "B": 2}, 4, 5) == Suppression(frozenset({"A", "B"}), True)


def test_total_is_hidden_when_no_part_is_left_to_hide() -> None:
    """Parts that overlap (a person in two parts) may add up under k while the total has k."""
    assert secondary_suppression({"A": 2, "B": 2}, 5, 5) == Suppression(frozenset({"A", "B"}), True)


def test_k_of_one_hides_only_empty_parts() -> None:
    assert secondary_suppression({"A": 1, "B": 0}, 1, 1) == Suppression(frozenset({"B"}), False)


@given(
    st.dictionaries(st.sampled_from("ABCDEFG"), st.integers(0, 12), max_size=7), st.integers(1, 8)
)
def test_no_union_of_hidden_parts_under_k_is_recoverable(parts: dict[str, int], k: int) -> None:
    """With the total shown, total - shown parts covers 0 or >= k people; no part under k is
    shown; at most one part of k or more people is hidden, and only when it had to be."""
    total = sum(parts.values())
    got = secondary_suppression(parts, total, k)
    shown = {p for p in parts if p not in got.hidden_parts}
    assert all(parts[p] >= k for p in shown)
    assert got.total_hidden == (total < k)
    if not got.total_hidden:
        covered = sum(parts[p] for p in got.hidden_parts)
        assert covered == 0 or covered >= k
    extra = {p for p in got.hidden_parts if parts[p] >= k}
    primary = sum(n for n in parts.values() if n < k)
    assert len(extra) == (1 if 0 < primary < k and total >= k else 0)
    if extra:
        (p,) = extra
        assert all((parts[p], p) <= (parts[q], q) for q in shown), "the smallest shown part"
