"""Secondary suppression on the real engine (docs/privacy.md, "Secondary suppression
(differencing)"): the SQL of the views and the Python rule agree; over random organisations
with small units no total minus its shown parts singles out fewer than k people, in
daily_ei_index, daily_silo_matrix, daily_active_by_unit, daily_active_by_space (spaces against
their platform), daily_space_diversity, daily_cohort_activity (a cohort against the day's
people) and the gauges' readings; what is shown equals the oracle."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.metrics.suppression import SECONDARY_SHOWN_SQL, secondary_suppression
from pipeline.ops import readings
from tests.conftest import migrated_clickhouse
from tests.integration.test_analyst_views import (
    DAY0,
    active_people,
    day_of,
    ei_groups,
    event,
    load,
    oracle_active,
    oracle_ei,
    oracle_matrix,
    rows,
    set_config,
    unique,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with migrated_clickhouse(tmp_path_factory.mktemp("secondary"), min_group_size=1) as client:
        yield client


# --- the SQL rule and the Python rule ------------------------------------------------------

totals = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(["a", "b", "B", "c", "dd", "e"]), st.integers(0, 9)),
        st.integers(0, 3),  # total people beyond the parts' sum (parts may also overlap)
    ),
    min_size=1,
    max_size=6,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(totals, st.integers(1, 7))
def test_sql_rule_equals_python_rule(
    ch: Any, groups: list[tuple[dict[str, int], int]], k: int
) -> None:
    values = []
    want = set()
    for t, (parts, extra) in enumerate(groups):
        total = max(0, sum(parts.values()) + extra - 2)  # sometimes less than the parts' sum
        values.append(f"({t}, '*', 1, {total}, {k})")
        values += [f"({t}, '{p}', 0, {n}, {k})" for p, n in parts.items()]
        got = secondary_suppression(parts, total, k)
        want |= {(t, p) for p in parts if p not in got.hidden_parts}
        if not got.total_hidden:
            want.add((t, "*"))
    shown = ch.query(
        f"SELECT _total, _part FROM (SELECT *, {SECONDARY_SHOWN_SQL} AS s FROM values("
        "'_total UInt32, _part String, _is_total UInt8, _people UInt32, _k UInt32', "
        f"{', '.join(values)})) WHERE s"
    ).result_rows
    assert set(shown) == want


# --- no differencing in the views ----------------------------------------------------------


def exposures(
    ei: set[Any], matrix: set[Any], groups: dict[tuple[date, str], set[str]], k: int
) -> list[str]:
    """Every total shown whose shown parts leave 1 to k - 1 people by subtraction."""
    found = []
    days = {d for d, _ in groups}
    shown_ei = {(d, u) for d, u, *_ in ei}
    cells: dict[date, set[tuple[str, str]]] = defaultdict(set)
    for d, a, b, _ in matrix:
        cells[d].add((a, b))
    size = {key: len(p) for key, p in groups.items()}
    for d in days:
        units = {u for dd, u in groups if dd == d and u != "*"}
        for u in units:
            if (d, u) in shown_ei and size[(d, u)] < k:
                found.append(f"{d} {u}: shown with {size[(d, u)]} people")
        if (d, "*") in shown_ei:  # the org row minus the shown unit rows
            covered = sum(size[(d, u)] for u in units if (d, u) not in shown_ei)
            if 0 < covered < k:
                found.append(f"{d} '*' - units: {covered} people")
    return found


def matrix_exposures(
    ei: set[Any], matrix: set[Any], all_cells: set[tuple[date, str, str]], groups: Any, k: int
) -> list[str]:
    """A shown unit's external ties (or the org's) minus its shown crossing cells, when some
    are shown: the units at the other end of its hidden cells (both ends for the org) must
    have 0 or >= k people. (Without a shown cell nothing is subtracted: the total alone is
    daily_ei_index's row, a figure about its own group.)"""
    found = []
    shown_ei = {(d, u) for d, u, *_ in ei}
    shown = {(d, a, b) for d, a, b, _ in matrix}
    hidden = {(d, a, b) for d, a, b in all_cells - shown if a != b}
    others: dict[tuple[date, str], set[str]] = defaultdict(set)
    ends: dict[date, set[str]] = defaultdict(set)
    for d, a, b in hidden:
        others[(d, a)].add(b)
        others[(d, b)].add(a)
        ends[d] |= {a, b}
    for (d, u), us in others.items():
        covered = sum(len(groups[(d, x)]) for x in us)
        subtracted = any(dd == d and a != b and u in (a, b) for dd, a, b in shown)
        if (d, u) in shown_ei and subtracted and 0 < covered < k:
            found.append(f"{d} {u} - cells: {covered} people")
    for d, us in ends.items():
        covered = sum(len(groups[(d, x)]) for x in us)
        crossing_shown = any(dd == d and a != b for dd, a, b in shown)
        if (d, "*") in shown_ei and crossing_shown and 0 < covered < k:
            found.append(f"{d} '*' - cells: {covered} people")
    return found


@st.composite
def small_unit_orgs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Units of 1 to 8 people (each person in one unit), a few days of random activity and
    mentions (some to people outside the directory: unit 'unknown'), duplicates and late
    copies."""
    sizes = draw(st.lists(st.integers(1, 8), min_size=2, max_size=5))
    rng = random.Random(draw(st.integers(0, 2**32)))
    people = {f"{chr(65 + u)}{i}": chr(65 + u) for u, n in enumerate(sizes) for i in range(n)}
    t0 = int(DAY0.timestamp() * 1000)
    events = []
    for day in range(draw(st.integers(1, 4))):
        active = [p for p in people if rng.random() < 0.7]
        for i in range(rng.randint(0, 3 * len(active))):
            a = rng.choice(active)
            ts = t0 + day * 86_400_000 + i * 1000
            if rng.random() < 0.2:
                events.append(event(f"v{day}.{i}", "view", ts, a, people[a]))
                continue
            b = rng.choice(active)
            bu = None if rng.random() < 0.05 else people[b]
            events.append(event(f"m{day}.{i}", "mention", ts, a, people[a], b, bu))
    events += [dict(ev, late=True) for ev in rng.sample(events, len(events) // 5)]
    rng.shuffle(events)
    return events


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(small_unit_orgs(), st.sampled_from([2, 3, 5]))
def test_no_total_minus_shown_parts_singles_out_fewer_than_k(
    ch: Any, events: list[dict[str, Any]], k: int
) -> None:
    set_config(ch, min_group_size=k)
    load(ch, events, {})
    facts = unique(events)
    groups = ei_groups(facts)
    for (d, _), p in list(groups.items()):
        groups.setdefault((d, "*"), set()).update(p)
    ei = rows(ch, "SELECT day, unit, internal, external, ei_index FROM teilhabe.daily_ei_index")
    matrix = rows(ch, "SELECT * FROM teilhabe.daily_silo_matrix")
    assert ei == oracle_ei(facts, k)
    assert matrix == oracle_matrix(facts, k)
    all_cells = {(d, a, b) for d, a, b, _ in oracle_matrix(facts, 1)}
    assert exposures(ei, matrix, groups, k) == []
    assert matrix_exposures(ei, matrix, all_cells, groups, k) == []
    # the day's active people of the org minus the shown unit rows of daily_active_by_unit
    active = rows(ch, "SELECT * FROM teilhabe.daily_active_by_unit")
    assert active == oracle_active(facts, {}, k)
    people = active_people(facts)
    shown_active = {(d, u) for d, u, *_ in active}
    for day in {d for d, _ in people}:
        covered = sum(
            len(p) for (d, u), p in people.items() if d == day and (d, u) not in shown_active
        )
        org = len(set().union(*(p for (d, _), p in people.items() if d == day)))
        assert covered == 0 or covered >= k or org < k, f"{day}: org - units = {covered} people"
    # the gauges read these rows (pipeline.ops.readings): nothing beyond the view's
    figures = readings.newest_day_figures(ch, "teilhabe")
    if figures.day is not None:
        assert {u for u, *_ in figures.ei} <= {u for d, u, *_ in ei if d == figures.day}


def rings(sizes: dict[str, int], *ties: tuple[str, str, str, str, str]) -> list[dict[str, Any]]:
    """Departments (name -> people) whose people each mention the next one of their own
    department, then ``ties``: (event id, actor, actor's unit, target, target's unit)."""
    t0 = int(DAY0.timestamp() * 1000)
    evs: list[dict[str, Any]] = []
    for u, n in sizes.items():
        for i in range(n):
            peer = f"{u}{(i + 1) % n}"
            evs.append(event(f"{u}{i}", "mention", t0 + len(evs), f"{u}{i}", u, peer, u))
    for eid, a, au, b, bu in ties:
        evs.append(event(eid, "mention", t0 + len(evs), a, au, b, bu))
    return evs


def four_large_and_one_of_three() -> list[dict[str, Any]]:
    """Four departments of 6 people mentioning each other, one of 3 whose people mention
    their own department."""
    return rings({"A": 6, "B": 7, "C": 6, "D": 8, "E": 3}, ("x", "A0", "A", "B0", "B"))


def test_the_check_finds_what_primary_suppression_alone_leaves(ch: Any) -> None:
    """With primary suppression only (every group of k shown) the org row minus the four
    large departments is the department of 3: the check sees it; the views leave out the
    smallest large department as well."""
    set_config(ch, min_group_size=5)
    facts = four_large_and_one_of_three()
    load(ch, facts, {})
    groups = ei_groups(facts)
    for (d, _), p in list(groups.items()):
        groups.setdefault((d, "*"), set()).update(p)
    primary_only = {r for r in oracle_ei(facts, 1) if len(groups[(r[0], r[1])]) >= 5}
    assert exposures(primary_only, set(), groups, 5) != []
    ei = rows(ch, "SELECT day, unit, internal, external, ei_index FROM teilhabe.daily_ei_index")
    assert {r[1] for r in ei} == {"*", "B", "C", "D"}, "E (3) and the smallest, A (6, as C)"
    assert exposures(ei, set(), groups, 5) == []
    matrix = rows(ch, "SELECT from_unit, to_unit FROM teilhabe.daily_silo_matrix")
    assert matrix == {("B", "B"), ("C", "C"), ("D", "D")}


def test_a_unit_exposed_by_its_ties_hides_its_column_too(ch: Any) -> None:
    """B's only ties to hidden units go to T (2 people): B's row and column are left out, so
    D's mentions of B (a cell with B as its target, D itself not exposed) must go too."""
    set_config(ch, min_group_size=5)
    evs = rings(
        {"A": 8, "B": 7, "C": 6, "D": 9, "T": 2},
        ("bt", "B0", "B", "T0", "T"),
        ("db", "D0", "D", "B1", "B"),
    )
    load(ch, evs, {})
    matrix = rows(ch, "SELECT * FROM teilhabe.daily_silo_matrix")
    assert matrix == oracle_matrix(unique(evs), 5)
    cells = {(a, b) for _, a, b, _ in matrix}
    assert ("D", "B") not in cells and ("D", "D") in cells and ("B", "B") not in cells


# --- spaces against their platform, cohorts against the day's people (006) -----------------


@st.composite
def small_space_orgs(
    draw: st.DrawFn,
) -> tuple[list[dict[str, Any]], dict[str, str], dict[str, list[str]]]:
    """Units of 1 to 8 people, each person with a home space on one of two platforms (or
    none), now and then active in another space (spaces then overlap in people); cohorts of
    random members; duplicates and late copies."""
    sizes = draw(st.lists(st.integers(1, 8), min_size=2, max_size=4))
    rng = random.Random(draw(st.integers(0, 2**32)))
    people = {f"{chr(65 + u)}{i}": chr(65 + u) for u, n in enumerate(sizes) for i in range(n)}
    spaces = [(f"s{i}", rng.choice([None, "chat", "wiki"])) for i in range(rng.randint(1, 5))]
    home = {p: rng.choice(spaces) for p in people}
    cohorts = {p: [c for c in ("x", "y") if rng.random() < 0.6] for p in people}
    t0 = int(DAY0.timestamp() * 1000)
    events = []
    for day in range(draw(st.integers(1, 3))):
        for i, p in enumerate(p for p in people if rng.random() < 0.7):
            space, platform = home[p] if rng.random() < 0.85 else rng.choice(spaces)
            for j in range(rng.randint(1, 2)):
                ev = event(
                    f"e{day}.{i}.{j}", "view", t0 + day * 86_400_000 + i * 10 + j, p, people[p]
                )
                ev.update(space_id=None if rng.random() < 0.1 else space, platform=platform)
                events.append(ev)
    events += [dict(ev, late=True) for ev in rng.sample(events, len(events) // 5)]
    rng.shuffle(events)
    return events, people, cohorts


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(small_space_orgs(), st.sampled_from([2, 3, 5]))
def test_spaces_and_cohorts_leave_no_small_remainder(
    ch: Any, org: tuple[list[dict[str, Any]], dict[str, str], dict[str, list[str]]], k: int
) -> None:
    events, directory, cohorts = org
    set_config(ch, min_group_size=k)
    load(ch, events, directory, cohorts)
    facts = unique(events)
    # oracle: each (day, platform)'s people and its spaces' people, each day's people
    space_people: dict[tuple[date, str, str], set[str]] = defaultdict(set)
    for ev in facts:
        space_people[(day_of(ev), ev["space_id"] or "", ev["platform"] or "")].add(ev["actor_id"])
    platform_people: dict[tuple[date, str], set[str]] = defaultdict(set)
    for (d, _, pl), p in space_people.items():
        platform_people[(d, pl)] |= p
    day_people: dict[date, set[str]] = defaultdict(set)
    for ev in facts:
        day_people[day_of(ev)].add(ev["actor_id"])

    by_space = rows(
        ch, "SELECT day, space_id, platform, active_users FROM teilhabe.daily_active_by_space"
    )
    shown = {(d, s, pl) for d, s, pl, _ in by_space}
    want: set[Any] = set()
    for (d, pl), everyone in platform_people.items():
        parts = {s: len(p) for (dd, s, pp), p in space_people.items() if (dd, pp) == (d, pl)}
        hidden = {s for s, n in parts.items() if n < k}
        if 0 < sum(parts[s] for s in hidden) < k:  # the smallest shown space goes too
            rest = sorted((n, s) for s, n in parts.items() if s not in hidden)
            hidden |= {rest[0][1]} if rest else set()
        want |= {(d, s, pl, parts[s]) for s in parts if s not in hidden}
        # what subtraction gives: the platform's people minus the shown spaces' people
        hidden_people = set().union(*(space_people[(d, s, pl)] for s in hidden))
        disjoint = sum(parts.values()) == len(everyone)
        if len(everyone) >= k and disjoint:
            assert len(hidden_people) == 0 or len(hidden_people) >= k, (d, pl, parts)
    assert by_space == want
    # diversity: only spaces all of whose rows are shown
    diversity = rows(ch, "SELECT day, space_id, people FROM teilhabe.daily_space_diversity")
    for d, s, _ in diversity:
        assert all(key in shown for key in space_people if key[:2] == (d, s)), (d, s)
    # cohorts: the day's people minus a shown cohort's active members is 0 or >= k
    cohort_rows = rows(ch, "SELECT day, cohort, active_users FROM teilhabe.daily_cohort_activity")
    want_cohorts = set()
    for d, everyone in day_people.items():
        for c in ("x", "y"):
            n = len({p for p in everyone if c in cohorts.get(p, [])})
            if n >= k and (len(everyone) - n == 0 or len(everyone) - n >= k):
                want_cohorts.add((d, c, n))
    assert cohort_rows == want_cohorts
    # the gauges read these rows (pipeline.ops.readings): nothing beyond the view's
    figures = readings.newest_day_figures(ch, "teilhabe")
    if figures.day is not None:
        assert {(s, pl) for s, pl, _ in figures.spaces} <= {
            (s, pl) for d, s, pl in shown if d == figures.day
        }


def test_a_space_of_three_beside_its_platform_is_not_given_back(ch: Any) -> None:
    """Platform 'chat' with a space of 6 people and one of 3 (k = 5): primary suppression alone
    would show the 6 beside the platform's 9 (daily_active_by_platform), giving the 3 back;
    the view leaves out both spaces, and the cohort of the 6 (the rest: 3 people)."""
    set_config(ch, min_group_size=5)
    t0 = int(DAY0.timestamp() * 1000)
    facts: list[dict[str, Any]] = []
    for space, n in (("big", 6), ("small", 3)):
        for i in range(n):
            ev = event(f"{space}{i}", "view", t0 + len(facts), f"{space}{i}", "U")
            facts.append(dict(ev, space_id=space, platform="chat"))
    directory = {ev["actor_id"]: "U" for ev in facts}
    cohorts = {p: ["c"] for p in directory if p.startswith("big")}
    load(ch, facts, directory, cohorts)
    platform = rows(ch, "SELECT platform, active_users FROM teilhabe.daily_active_by_platform")
    assert platform == {("chat", 9)}
    assert rows(ch, "SELECT space_id FROM teilhabe.daily_active_by_space") == set()
    assert rows(ch, "SELECT space_id FROM teilhabe.daily_space_diversity") == set()
    assert rows(ch, "SELECT cohort FROM teilhabe.daily_cohort_activity") == set()
    set_config(ch, min_group_size=3)  # every part has k people: all shown
    assert rows(ch, "SELECT space_id FROM teilhabe.daily_active_by_space") == {("big",), ("small",)}
    assert rows(ch, "SELECT cohort FROM teilhabe.daily_cohort_activity") == {("c",)}
