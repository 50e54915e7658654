"""The analyst views (daily_active_by_unit, daily_silo_matrix, daily_ei_index, daily_response,
participation_pyramid) on the real engine, against plain Python recomputations from the
definitions in docs/design.md, over randomised facts (duplicates, late rows, any order), plus the
E-I index on a hand-checkable example and its edge cases, and k-suppression."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from statistics import median
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract.events import CONTRIBUTION_TYPES, INTERACTION_TYPES
from pipeline.sinks.facts import EVENT_COLUMNS, event_row
from tests.conftest import migrated_clickhouse

pytestmark = pytest.mark.integration

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
HOUR_MS = 3_600_000
INTERACTIONS = INTERACTION_TYPES  # the contract's sets, the ones the views get at migrate time
CONTRIBUTIONS = CONTRIBUTION_TYPES
TYPES = [
    "post_created",
    "reply_created",
    "reaction_added",
    "mention",
    "share",
    "view",
    "member_joined",
    "idea_submitted",
    "idea_voted",
    "idea_commented",
    "idea_status_changed",
]
STATUSES = ["in_review", "accepted", "rejected", "implemented"]


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with migrated_clickhouse(tmp_path_factory.mktemp("views"), min_group_size=1) as client:
        yield client


def set_config(client: Any, **values: int) -> None:
    client.insert(
        "teilhabe.config", [(k, str(v)) for k, v in values.items()], column_names=("key", "value")
    )


def load(
    client: Any,
    events: list[dict[str, Any]],
    directory: dict[str, str],
    cohorts: dict[str, list[str]] | None = None,
) -> None:
    """Replace the facts and the directory with ``events`` / ``directory`` (person -> unit,
    ``cohorts``: person -> cohort names)."""
    client.command("TRUNCATE TABLE teilhabe.events")
    client.command("TRUNCATE TABLE teilhabe.directory_people")
    rows = [event_row(ev, late=bool(ev.get("late"))) for ev in events]
    if rows:
        client.insert("teilhabe.events", rows, column_names=EVENT_COLUMNS)
    if directory:
        client.insert(
            "teilhabe.directory_people",
            [
                (p, u, json.dumps({"cohorts": (cohorts or {}).get(p, [])}))
                for p, u in directory.items()
            ],
            column_names=("person_id", "unit", "attributes"),
        )


def event(
    eid: str,
    etype: str,
    ts: int,
    actor: str,
    unit: str,
    target: str | None = None,
    target_unit: str | None = None,
    content: str | None = None,
    root: str | None = None,
    late: bool = False,
    space: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    """A fact as the pipeline writes it (ids already pseudonymised)."""
    return {
        "event_id": eid,
        "event_type": etype,
        "ts": ts,
        "actor_id": actor,
        "actor_unit": unit,
        "space_id": space,
        "platform": None,
        "target_actor_id": target,
        "target_unit": target_unit,
        "content_id": content,
        "parent_content_id": root,
        "root_content_id": root,
        "idea_status": status,
        "late": late,
    }


# --- oracles: plain recomputations from docs/design.md ------------------------------------------


def unique(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One fact per event id, the on-time copy winning (as events FINAL)."""
    by_id: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev["event_id"] not in by_id or not ev["late"]:
            by_id[ev["event_id"]] = ev
    return list(by_id.values())


def day_of(ev: dict[str, Any]) -> date:
    return datetime.fromtimestamp(ev["ts"] / 1000, tz=UTC).date()


def active_people(events: list[dict[str, Any]]) -> dict[tuple[date, str], set[str]]:
    out: dict[tuple[date, str], set[str]] = defaultdict(set)
    for ev in events:
        out[(day_of(ev), ev["actor_unit"])].add(ev["actor_id"])
    return out


def is_interaction(ev: dict[str, Any]) -> bool:
    return (
        ev["event_type"] in INTERACTIONS
        and ev["target_actor_id"] is not None
        and ev["target_actor_id"] != ev["actor_id"]
    )


def oracle_active(events: list[dict[str, Any]], directory: dict[str, str], k: int) -> set[Any]:
    """The day's active people of the whole org are the total of the unit rows."""
    heads = Counter(directory.values())
    counts = Counter((day_of(ev), ev["actor_unit"]) for ev in events)
    people = active_people(events)
    hidden: set[tuple[date, str]] = set()
    for day in {d for d, _ in people}:
        units = {u: len(p) for (d, u), p in people.items() if d == day}
        org = len(set().union(*(p for (d, _), p in people.items() if d == day)))
        hidden |= {(day, u) for u in hide_to_stop_differencing(units, org, k)}
    return {
        (d, u, len(p), counts[(d, u)], round(len(p) / heads[u], 9) if heads[u] else None)
        for (d, u), p in people.items()
        if (d, u) not in hidden
    }


def oracle_matrix(events: list[dict[str, Any]], k: int) -> set[Any]:
    """A cell when both its units are shown in daily_ei_index that day and neither unit's
    cells reach hidden units of 1 to k - 1 people in all; no crossing cell on a day whose
    hidden crossing cells have 1 to k - 1 people at their ends (secondary suppression: rows
    and columns add up to figures of daily_ei_index)."""
    cells: Counter[tuple[date, str, str]] = Counter()
    for ev in filter(is_interaction, events):
        cells[(day_of(ev), ev["actor_unit"], ev["target_unit"] or "unknown")] += 1
    groups = ei_groups(events)
    shown = {(d, u) for d, u, *_ in oracle_ei(events, k)}
    others: dict[tuple[date, str], set[str]] = defaultdict(set)
    for d, a, b in cells:
        if a != b:
            others[(d, a)].add(b)
            others[(d, b)].add(a)
    exposed = set()
    for (d, u), units in others.items():
        covered = sum(len(groups[(d, x)]) for x in units if (d, x) not in shown)
        if 0 < covered < k:
            exposed.add((d, u))
    visible = {
        (d, a, b)
        for d, a, b in cells
        if {(d, a), (d, b)} <= shown and not {(d, a), (d, b)} & exposed
    }
    ends: dict[date, set[str]] = defaultdict(set)  # units at the ends of hidden crossing cells
    for d, a, b in set(cells) - visible:
        if a != b:
            ends[d] |= {a, b}
    crossing_exposed = {d for d, us in ends.items() if sum(len(groups[(d, u)]) for u in us) < k}
    return {
        (d, a, b, n)
        for (d, a, b), n in cells.items()
        if (d, a, b) in visible and (a == b or d not in crossing_exposed)
    }


def ei_groups(events: list[dict[str, Any]]) -> dict[tuple[date, str], set[str]]:
    """The group of a unit's E-I row: its people active that day or at an end of its ties."""
    groups = active_people(events)
    for ev in filter(is_interaction, events):
        groups[(day_of(ev), ev["target_unit"] or "unknown")].add(ev["target_actor_id"])
    return groups


def hide_to_stop_differencing(people: dict[str, int], total: int, k: int) -> set[str]:
    """The parts (and "*" for the total) a total and its parts must leave out: those under k,
    and while the hidden parts cover 1 to k - 1 people the smallest shown part (by people,
    then name), or the total when none is shown (docs/privacy.md)."""
    hidden = {u for u, n in people.items() if n < k} | ({"*"} if total < k else set())
    covered = sum(n for u, n in people.items() if u in hidden)
    if "*" not in hidden and 0 < covered < k:
        shown = [u for u in people if u not in hidden]
        hidden.add(min(shown, key=lambda u: (people[u], u)) if shown else "*")
    return hidden


def oracle_ei(events: list[dict[str, Any]], k: int) -> set[Any]:
    """Per unit: internal ties counted once, external ties for the units of both ends; a row
    for every unit active or at an end of a tie; group: those people (org: all of them)."""
    internal: Counter[tuple[date, str]] = Counter()
    external: Counter[tuple[date, str]] = Counter()
    groups = active_people(events)
    for ev in filter(is_interaction, events):
        d, a, b = day_of(ev), ev["actor_unit"], ev["target_unit"] or "unknown"
        groups[(d, b)].add(ev["target_actor_id"])
        if a == b:
            internal[(d, a)] += 1
            internal[(d, "*")] += 1
        else:
            external[(d, a)] += 1
            external[(d, b)] += 1
            external[(d, "*")] += 1
    for (d, _), p in list(groups.items()):
        groups.setdefault((d, "*"), set())
        groups[(d, "*")] |= p
    hidden: set[tuple[date, str]] = set()
    for day in {d for d, _ in groups}:
        units = {u: len(p) for (d, u), p in groups.items() if d == day and u != "*"}
        hidden |= {(day, u) for u in hide_to_stop_differencing(units, len(groups[(day, "*")]), k)}
    out = set()
    for d, u in groups:
        if (d, u) in hidden:
            continue
        i, e = internal[(d, u)], external[(d, u)]
        out.add((d, u, i, e, None if i + e == 0 else round((e - i) / (e + i), 9)))
    return out


def p90(delays_ms: list[int]) -> float | None:
    """The 0.9 quantile, linear between the two nearest ranks (numpy's default, R-7)."""
    if not delays_ms:
        return None
    xs = sorted(x / 1000 for x in delays_ms)
    pos = 0.9 * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def oracle_response(events: list[dict[str, Any]], k: int, target_h: int) -> set[Any]:
    posts = [ev for ev in events if ev["event_type"] == "post_created" and ev["content_id"]]
    by_day: dict[tuple[date, str], list[dict[str, Any]]] = defaultdict(list)
    for post in posts:
        by_day[(day_of(post), post["actor_unit"])].append(post)
    out = set()
    for (d, u), ps in by_day.items():
        if len({p["actor_id"] for p in ps}) < k:
            continue
        delays = []
        for p in ps:
            replies = [
                ev["ts"]
                for ev in events
                if ev["event_type"] == "reply_created"
                and ev["root_content_id"] == p["content_id"]
                and ev["actor_id"] != p["actor_id"]
            ]
            if replies:  # a reply stamped before its post (clock skew): answered after 0 s
                delays.append(max(0, min(replies) - p["ts"]))
        within = sum(1 for x in delays if x <= target_h * HOUR_MS)
        med = round(median(delays) / 1000, 3) if delays else None
        out.add((d, u, len(ps), within, med, p90(delays)))
    return out


def oracle_personas(events: list[dict[str, Any]], k: int, r: float) -> set[Any]:
    if not events:
        return set()
    days = sorted({day_of(ev) for ev in events})
    out = set()
    d = days[0]
    while d <= days[-1]:
        window = [ev for ev in events if 0 <= (d - day_of(ev)).days < 28]
        made: Counter[str] = Counter()
        posts: Counter[str] = Counter()
        received: Counter[str] = Counter()
        unit: dict[str, str] = {}
        for ev in window:
            unit[ev["actor_id"]] = ev["actor_unit"]
            made[ev["actor_id"]] += ev["event_type"] in (
                "post_created",
                "reply_created",
                "reaction_added",
            )
            posts[ev["actor_id"]] += ev["event_type"] == "post_created"
            if (
                ev["event_type"] in ("reply_created", "reaction_added")
                and ev["target_actor_id"] is not None
                and ev["target_actor_id"] != ev["actor_id"]
            ):
                received[ev["target_actor_id"]] += 1
        tiers: dict[str, Counter[str]] = defaultdict(Counter)
        for person, u in unit.items():
            m, rec = made[person], received[person]
            if m == 0:
                tier = "observer"
            elif rec >= r * m:
                tier = "catalyst"
            elif m >= r * rec:
                tier = "broadcaster" if posts[person] * 2 > m else "responder"
            else:
                tier = "engager"
            tiers[u][tier] += 1
        for u, t in tiers.items():
            if sum(t.values()) >= k:
                out.add(
                    (
                        d,
                        u,
                        t["observer"],
                        t["engager"],
                        t["catalyst"],
                        t["responder"],
                        t["broadcaster"],
                    )
                )
        d = date.fromordinal(d.toordinal() + 1)
    return out


def oracle_growth(events: list[dict[str, Any]], k: int) -> set[Any]:
    joined: dict[tuple[date, str], set[str]] = defaultdict(set)
    first: dict[
        str, tuple[int, str, str]
    ] = {}  # person -> (ts, event_id, unit) of 1st contribution
    days_of: dict[str, set[date]] = defaultdict(set)
    unit_days_of: dict[tuple[str, str], set[date]] = defaultdict(set)
    for ev in events:
        days_of[ev["actor_id"]].add(day_of(ev))
        unit_days_of[(ev["actor_id"], ev["actor_unit"])].add(day_of(ev))
        if ev["event_type"] == "member_joined":
            joined[(day_of(ev), ev["actor_unit"])].add(ev["actor_id"])
        if ev["event_type"] in CONTRIBUTIONS:
            key = (ev["ts"], ev["event_id"], ev["actor_unit"])
            if ev["actor_id"] not in first or key < first[ev["actor_id"]]:
                first[ev["actor_id"]] = key
    firsts = Counter(
        (datetime.fromtimestamp(ts / 1000, tz=UTC).date(), unit) for ts, _, unit in first.values()
    )
    out = set()
    for (d, u), people in active_people(events).items():
        if len(people) < k:
            continue
        returning = sum(1 for p in people if any(0 < (d - x).days <= 28 for x in days_of[p]))
        dormant = sum(
            1
            for p, unit_days in unit_days_of.items()
            if p[1] == u
            and any(28 <= (d - x).days < 56 for x in unit_days)
            and not any(0 <= (d - x).days < 28 for x in unit_days)
        )
        out.add((d, u, len(people), len(joined[(d, u)]), firsts[(d, u)], returning, dormant))
    return out


def oracle_ideation(events: list[dict[str, Any]], k: int) -> set[Any]:
    rows: dict[tuple[date, str], dict[str, Any]] = defaultdict(
        lambda: {"i": 0, "v": 0, "c": 0, "vu": set(), "cu": set(), "people": set()}
    )
    for ev in events:
        d, kind = day_of(ev), ev["event_type"]
        if kind == "idea_submitted":
            r = rows[(d, ev["actor_unit"])]
            r["i"] += 1
            r["people"].add(ev["actor_id"])
        elif kind in ("idea_voted", "idea_commented") and ev["target_actor_id"] is not None:
            unit = ev["target_unit"] or "unknown"
            r = rows[(d, unit)]
            r["people"].add(ev["target_actor_id"])
            r["v" if kind == "idea_voted" else "c"] += 1
            if ev["actor_unit"] != unit:
                r["vu" if kind == "idea_voted" else "cu"].add(ev["actor_unit"])
    return {
        (d, u, r["i"], r["v"], r["c"], len(r["vu"]), len(r["cu"]))
        for (d, u), r in rows.items()
        if len(r["people"]) >= k
    }


def oracle_funnel(events: list[dict[str, Any]], k: int) -> dict[tuple[date, str], list[Any]]:
    statuses: dict[str, set[str]] = defaultdict(set)
    decided: dict[str, int] = {}
    for ev in events:
        if ev["event_type"] == "idea_status_changed" and ev["idea_status"]:
            statuses[ev["content_id"]].add(ev["idea_status"])
            if ev["idea_status"] in ("accepted", "rejected"):
                decided[ev["content_id"]] = min(ev["ts"], decided.get(ev["content_id"], ev["ts"]))
    groups: dict[tuple[date, str], list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        if ev["event_type"] == "idea_submitted":
            groups[(day_of(ev), ev["actor_unit"])].append(ev)
    out = {}
    for key, ideas in groups.items():
        if len({i["actor_id"] for i in ideas}) < k:
            continue
        counts = [sum(1 for i in ideas if st in statuses[i["content_id"]]) for st in STATUSES]
        delays = [
            (decided[i["content_id"]] - i["ts"]) / 86_400_000
            for i in ideas
            if i["content_id"] in decided
        ]
        out[key] = [len(ideas), *counts, median(delays) if delays else None]
    return out


def oracle_cohorts(
    events: list[dict[str, Any]], directory: dict[str, str], cohorts: dict[str, list[str]], k: int
) -> set[Any]:
    members: dict[str, set[str]] = defaultdict(set)
    for person, names in cohorts.items():
        if person in directory:
            for name in names:
                members[name].add(person)
    active: dict[tuple[date, str], set[str]] = defaultdict(set)
    reached: dict[tuple[date, str], set[str]] = defaultdict(set)
    for ev in events:
        for name, people in members.items():
            if ev["actor_id"] in people:
                active[(day_of(ev), name)].add(ev["actor_id"])
                to = ev["target_unit"] or "unknown"
                if is_interaction(ev) and to not in (ev["actor_unit"], "unknown"):
                    reached[(day_of(ev), name)].add(to)
    org = active_people(events)  # the day's active people: a cohort and the rest are parts
    day_people = {
        d: len(set().union(*(p for (dd, _), p in org.items() if dd == d))) for d, _ in org
    }
    return {
        (d, c, len(members[c]), len(p), round(len(p) / len(members[c]), 9), len(reached[(d, c)]))
        for (d, c), p in active.items()
        if "c"
        not in hide_to_stop_differencing(
            {"c": len(p), "rest": day_people[d] - len(p)}, day_people[d], k
        )
    }


def oracle_by_space(events: list[dict[str, Any]], k: int) -> set[Any]:
    groups: dict[tuple[date, str, str], list[dict[str, Any]]] = defaultdict(list)
    for ev in events:
        groups[(day_of(ev), ev["space_id"] or "", ev["platform"] or "")].append(ev)
    platform_people: dict[tuple[date, str], set[str]] = defaultdict(set)
    for (d, _, platform), evs in groups.items():
        platform_people[(d, platform)] |= {ev["actor_id"] for ev in evs}
    spaces = {
        (d, platform): {
            s: len({ev["actor_id"] for ev in evs})
            for (dd, s, pl), evs in groups.items()
            if (dd, pl) == (d, platform)
        }
        for d, platform in platform_people
    }
    hidden = {
        key: hide_to_stop_differencing(parts, len(platform_people[key]), k)
        for key, parts in spaces.items()
    }
    out = set()
    for (d, space, platform), evs in groups.items():
        people = {ev["actor_id"] for ev in evs}
        if space not in hidden[(d, platform)]:
            made = sum(ev["event_type"] in CONTRIBUTIONS for ev in evs)
            out.add((d, space, platform, len(people), len(evs), made))
    return out


def oracle_health(events: list[dict[str, Any]], k: int) -> set[Any]:
    days = {day_of(ev) for ev in events}
    by_unit: dict[str, list[tuple[date, str]]] = defaultdict(list)
    for ev in events:
        by_unit[ev["actor_unit"]].append((day_of(ev), ev["actor_id"]))
    out = set()
    for d in days:
        for unit, seen in by_unit.items():
            year = {p for x, p in seen if 0 <= (d - x).days < 365}
            month = {p for x, p in seen if 0 <= (d - x).days < 28}
            if year and len(year) >= k:
                out.add((d, unit, len(month), len(year), round(len(month) / len(year), 9)))
    return out


def assert_same_response(got: set[Any], want: set[Any]) -> None:
    """Equal rows, the median compared to the millisecond (float rounding differs)."""
    g = {(d, u): rest for d, u, *rest in got}
    w = {(d, u): rest for d, u, *rest in want}
    assert g.keys() == w.keys()
    for key, (posts, within, med, q90) in w.items():
        assert g[key][:2] == [posts, within], key
        for got_q, want_q in ((g[key][2], med), (g[key][3], q90)):
            assert (got_q is None) == (want_q is None), key
            if want_q is not None:
                assert abs(got_q - want_q) < 0.002, key


def oracle_pyramid(events: list[dict[str, Any]], k: int, heavy: int) -> set[Any]:
    made: Counter[tuple[date, str, str]] = Counter()
    for ev in events:
        key = (day_of(ev), ev["actor_unit"], ev["actor_id"])
        made[key] += ev["event_type"] in CONTRIBUTIONS
    tiers: dict[tuple[date, str], Counter[str]] = defaultdict(Counter)
    for (d, u, _), n in made.items():
        tiers[(d, u)]["o" if n == 0 else "h" if n >= heavy else "c"] += 1
    return {(d, u, t["o"], t["c"], t["h"]) for (d, u), t in tiers.items() if sum(t.values()) >= k}


def oracle_stickiness(events: list[dict[str, Any]], k: int) -> set[Any]:
    days: dict[tuple[date, str], set[str]] = active_people(events)
    out = set()
    for (d, u), dau in days.items():
        if len(dau) < max(1, k):
            continue
        wau: set[str] = set()
        mau: set[str] = set()
        for (d2, u2), people in days.items():
            if u2 == u and 0 <= (d - d2).days < 28:
                mau |= people
                if (d - d2).days < 7:
                    wau |= people
        out.add((d, u, len(dau), len(wau), len(mau), round(len(dau) / len(mau), 9)))
    return out


def oracle_spanners(events: list[dict[str, Any]], k: int, min_units: int) -> set[Any]:
    others: dict[tuple[date, str, str], set[str]] = defaultdict(set)
    for ev in filter(is_interaction, events):
        d, a, b = day_of(ev), ev["actor_unit"], ev["target_unit"] or "unknown"
        others[(d, a, ev["actor_id"])].add(b)
        others[(d, b, ev["target_actor_id"])].add(a)
    spanners: Counter[tuple[date, str]] = Counter()
    for (d, u, _), units in others.items():
        if len(units - {u, "unknown"}) >= min_units:
            spanners[(d, u)] += 1
    return {
        (d, u, len(p), spanners[(d, u)])
        for (d, u), p in active_people(events).items()
        if len(p) >= k
    }


def oracle_diversity(events: list[dict[str, Any]], k: int) -> set[Any]:
    by_space: dict[tuple[date, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    org_units: dict[date, set[str]] = defaultdict(set)
    for ev in events:
        org_units[day_of(ev)].add(ev["actor_unit"])
        if ev["space_id"] is not None:
            by_space[(day_of(ev), ev["space_id"])][ev["actor_unit"]].add(ev["actor_id"])
    # every row of the space in daily_active_by_space must be shown
    shown = {(d, s, p) for d, s, p, *_ in oracle_by_space(events, k)}
    rows_of = {(day_of(ev), ev["space_id"] or "", ev["platform"] or "") for ev in events}
    out = set()
    for (d, space), units in by_space.items():
        sizes = [len(p) for p in units.values()]
        n = sum(sizes)
        if n < k or any(r not in shown for r in rows_of if r[:2] == (d, space)):
            continue
        blau = 1 - sum((x / n) ** 2 for x in sizes)
        kk = len(org_units[d])
        norm = round(blau / ((kk - 1) / kk), 9) if kk > 1 else None
        out.add((d, space, n, len(sizes), round(blau, 9), norm))
    return out


def oracle_inequality(events: list[dict[str, Any]], k: int) -> set[Any]:
    made: dict[tuple[date, str], Counter[str]] = defaultdict(Counter)
    for ev in events:
        made[(day_of(ev), ev["actor_unit"])][ev["actor_id"]] += ev["event_type"] in CONTRIBUTIONS
    out = set()
    for (d, u), per_person in made.items():
        xs = sorted(per_person.values())
        n, total = len(xs), sum(xs)
        if n < k:
            continue
        if total == 0:
            out.add((d, u, n, 0, None, None, None))
            continue
        # Gini as the mean absolute difference over all pairs / (2 * mean)
        gini = sum(abs(a - b) for a in xs for b in xs) / (2 * n * n * (total / n))
        top = sum(sorted(xs, reverse=True)[: -(-n // 10)]) / total
        running, absence = 0, 0
        for x in sorted(xs, reverse=True):
            running += x
            absence += 1
            if 2 * running >= total:
                break
        out.add((d, u, n, total, round(gini, 9), round(top, 9), absence))
    return out


# --- what ClickHouse says ------------------------------------------------------------------


def rows(client: Any, sql: str) -> set[Any]:
    return {
        tuple(round(v, 9) if isinstance(v, float) else v for v in row)
        for row in client.query(sql).result_rows
    }


def views(client: Any) -> dict[str, set[Any]]:
    return {
        "active": rows(client, "SELECT * FROM teilhabe.daily_active_by_unit"),
        "matrix": rows(client, "SELECT * FROM teilhabe.daily_silo_matrix"),
        "ei": rows(
            client,
            "SELECT day, unit, internal, external, ei_index FROM teilhabe.daily_ei_index",
        ),
        "response": rows(
            client,
            "SELECT day, unit, posts, answered_within_target, "
            "if(isNaN(median_first_response_s), NULL, round(median_first_response_s, 3)), "
            "if(isNaN(p90_first_response_s), NULL, p90_first_response_s) "
            "FROM teilhabe.daily_response",
        ),
        "pyramid": rows(client, "SELECT * FROM teilhabe.participation_pyramid"),
        "stickiness": rows(client, "SELECT * FROM teilhabe.daily_stickiness"),
        "spanners": rows(client, "SELECT * FROM teilhabe.daily_boundary_spanners"),
        "diversity": rows(client, "SELECT * FROM teilhabe.daily_space_diversity"),
        "inequality": rows(client, "SELECT * FROM teilhabe.daily_contribution_inequality"),
        "personas": rows(client, "SELECT * FROM teilhabe.persona_28d"),
        "growth": rows(client, "SELECT * FROM teilhabe.daily_growth"),
        "ideation": rows(client, "SELECT * FROM teilhabe.daily_ideation"),
        "cohorts": rows(client, "SELECT * FROM teilhabe.daily_cohort_activity"),
        "by_space": rows(client, "SELECT * FROM teilhabe.daily_active_by_space"),
        "health": rows(client, "SELECT * FROM teilhabe.daily_community_health"),
        "funnel": rows(
            client,
            "SELECT day, unit, submitted, in_review, accepted, rejected, implemented, "
            "if(isNaN(median_days_to_decision), NULL, median_days_to_decision) "
            "FROM teilhabe.idea_funnel",
        ),
    }


@st.composite
def organisations(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Random facts over 9 or 70 days: 4 units, up to 14 people (some unknown to the directory),
    up to 3 more in unit E who only receive ties, posts and replies to them (before or after,
    by anyone), other interactions, views,
    duplicates and late copies, in any order."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    n_people = draw(st.integers(2, 14))
    span_days = draw(st.sampled_from([9, 70]))  # 70: rolling 28-day figures and dormancy
    people = {f"{i:032x}": rng.choice(["A", "B", "C", "D"]) for i in range(n_people)}
    # people of unit E are only ever the targets of ties (E-I: a unit that only received ties)
    receivers = {f"{100 + i:032x}": "E" for i in range(draw(st.integers(0, 3)))}
    everyone = {**people, **receivers}
    directory = {p: u for p, u in everyone.items() if rng.random() < 0.85}
    events: list[dict[str, Any]] = []
    posts: list[dict[str, Any]] = []
    for i in range(draw(st.integers(0, 70))):
        actor = rng.choice(list(people))
        ts = int(DAY0.timestamp() * 1000) + rng.randrange(span_days * 24 * HOUR_MS)
        etype = rng.choice(TYPES)
        target = rng.choice(list(everyone)) if etype in INTERACTIONS else None
        root = None
        if etype == "reply_created" and posts:
            post = rng.choice(posts)
            root, target = post["content_id"], post["actor_id"]
        ideas = [ev for ev in events if ev["event_type"] == "idea_submitted"]
        if etype in ("idea_voted", "idea_commented", "idea_status_changed"):
            if not ideas:
                etype = "idea_submitted"
            else:
                idea = rng.choice(ideas)
                if etype == "idea_status_changed":
                    events.append(
                        event(
                            f"e{i}",
                            etype,
                            ts,
                            actor,
                            people[actor],
                            content=idea["content_id"],
                            root=idea["content_id"],
                            status=rng.choice(STATUSES),
                        )
                    )
                    continue
                author = idea["actor_id"]
                events.append(
                    event(
                        f"e{i}",
                        etype,
                        ts,
                        actor,
                        people[actor],
                        author,
                        people[author] if author in directory else "unknown",
                        content=idea["content_id"] if etype == "idea_voted" else f"c{i}",
                        root=idea["content_id"],
                    )
                )
                continue
        if etype == "idea_submitted":
            events.append(
                event(f"e{i}", etype, ts, actor, people[actor], content=f"i{i}", root=f"i{i}")
            )
            continue
        ev = event(
            f"e{i}",
            etype,
            ts,
            actor,
            people[actor],
            target,
            None if target is None else everyone[target] if target in directory else "unknown",
            content=f"c{i}" if etype in ("post_created", "reply_created") else None,
            root=f"c{i}" if etype == "post_created" else root,
            late=rng.random() < 0.1,
            space=rng.choice(["s1", "s2", None]),
        )
        events.append(ev)
        if etype == "post_created":
            posts.append(ev)
    events += [dict(ev, late=True) for ev in rng.sample(events, len(events) // 5)]  # copies
    rng.shuffle(events)
    return events, directory


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    organisations(), st.sampled_from([1, 2, 3]), st.sampled_from([1, 2]), st.sampled_from([1, 6])
)
def test_views_equal_their_oracles(
    ch: Any, org: tuple[list[dict[str, Any]], dict[str, str]], k: int, heavy: int, target_h: int
) -> None:
    events, directory = org
    spanner_units = 1 + heavy  # 2 or 3 other units
    ratio = 1.5 if heavy == 1 else 2.0
    set_config(
        ch,
        min_group_size=k,
        heavy_contributions=heavy,
        response_target_h=target_h,
        boundary_spanner_units=spanner_units,
    )
    ch.insert("teilhabe.config", [("persona_ratio", str(ratio))], column_names=("key", "value"))
    cohorts = {
        p: [c for c in ("digitisers", "mentors") if hash((p, c)) % 3 == 0] for p in directory
    }
    load(ch, events, directory, cohorts)
    facts = unique(events)
    got = views(ch)
    assert got["active"] == oracle_active(facts, directory, k)
    assert got["matrix"] == oracle_matrix(facts, k)
    assert got["ei"] == oracle_ei(facts, k)
    assert_same_response(got["response"], oracle_response(facts, k, target_h))
    # the views whose group is the unit's active people show daily_active_by_unit's rows
    units = {(d, u) for d, u, *_ in got["active"]}

    def as_active(found: set[Any]) -> set[Any]:
        return {r for r in found if (r[0], r[1]) in units}

    assert got["pyramid"] == as_active(oracle_pyramid(facts, k, heavy))
    assert got["stickiness"] == as_active(oracle_stickiness(facts, k))
    assert got["spanners"] == as_active(oracle_spanners(facts, k, spanner_units))
    assert got["diversity"] == oracle_diversity(facts, k)
    assert got["inequality"] == as_active(oracle_inequality(facts, k))
    assert got["personas"] == oracle_personas(facts, k, ratio)
    assert got["growth"] == as_active(oracle_growth(facts, k))
    assert got["ideation"] == oracle_ideation(facts, k)
    assert got["cohorts"] == oracle_cohorts(facts, directory, cohorts, k)
    assert got["by_space"] == oracle_by_space(facts, k)
    assert got["health"] == oracle_health(facts, k)
    funnel = {(d, u): list(rest) for d, u, *rest in got["funnel"]}
    want = oracle_funnel(facts, k)
    assert funnel.keys() == want.keys()
    for key, (*counts, med) in want.items():
        assert funnel[key][:5] == counts, key
        assert (funnel[key][5] is None) == (med is None), key
        if med is not None:
            assert abs(funnel[key][5] - med) < 1e-6, key


def ties(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    """Mentions between people named '<unit><n>' (the unit is the first letter)."""
    t0 = int(DAY0.timestamp() * 1000)
    return [event(f"t{i}", "mention", t0 + i, a, a[0], b, b[0]) for i, (a, b) in enumerate(pairs)]


def ei_rows(client: Any) -> dict[str, tuple[int, int, float | None]]:
    return {
        u: (i, e, None if x is None else round(x, 9))
        for _, u, i, e, x in client.query(
            "SELECT day, unit, internal, external, ei_index FROM teilhabe.daily_ei_index"
        ).result_rows
    }


def test_ei_index_hand_checked_example(ch: Any) -> None:
    """Krackhardt & Stern (1988): E-I = (E - I) / (E + I). A: 2 ties inside, 1 to B; B: 3
    inside, 1 from A. A = (1-2)/3, B = (1-3)/4, org = (1-5)/6."""
    set_config(ch, min_group_size=1)
    load(
        ch,
        ties(("A1", "A2"), ("A2", "A3"), ("A1", "B1"), ("B1", "B2"), ("B2", "B3"), ("B3", "B1")),
        {},
    )
    assert ei_rows(ch) == {
        "A": (2, 1, round(-1 / 3, 9)),
        "B": (3, 1, -0.5),
        "*": (5, 1, round(-2 / 3, 9)),
    }
    shares = dict(
        ch.query("SELECT unit, cross_silo_share FROM teilhabe.daily_ei_index").result_rows
    )
    assert shares == pytest.approx({"A": 1 / 3, "B": 1 / 4, "*": 1 / 6})


def test_ei_index_edge_cases(ch: Any) -> None:
    """Only internal ties = -1, only external = +1, an active unit without ties = NULL, a unit
    that only received ties = +1 (it has a row); a person's tie with themself is no tie."""
    set_config(ch, min_group_size=1)
    t0 = int(DAY0.timestamp() * 1000)
    facts = ties(("A1", "A2"), ("A2", "A1"), ("B1", "C1"))
    facts += [event("v", "view", t0, "D1", "D"), event("s", "mention", t0, "D1", "D", "D1", "D")]
    load(ch, facts, {})
    got = ei_rows(ch)
    assert got["A"] == (2, 0, -1.0)
    assert got["B"] == (0, 1, 1.0)
    assert got["D"] == (0, 0, None)
    assert got["C"] == (0, 1, 1.0), "C only received a tie from B: external to C as well"
    assert got["*"] == (2, 1, round(-1 / 3, 9))


#: Views whose rows add up to an org total shown elsewhere (secondary suppression).
BESIDE_ORG_TOTALS = (
    "ei",
    "matrix",
    "active",
    "pyramid",
    "stickiness",
    "spanners",
    "inequality",
    "growth",
    # spaces: parts of their platform's people (10); cohorts: the cohort and the rest of the
    # day's people (with k = 5, L's 6 leave S's 4)
    "by_space",
    "diversity",
    "cohorts",
)


def test_every_view_suppresses_groups_below_k(ch: Any) -> None:
    """4 active people in unit S, 6 in unit L: with k = 5 nothing about S is shown anywhere,
    with k = 4 it is."""
    t0 = int(DAY0.timestamp() * 1000)
    facts = []
    for unit, n in (("S", 4), ("L", 6)):
        for i in range(n):
            me, peer = f"{unit}{i}", f"{unit}{(i + 1) % n}"
            facts.append(
                event(
                    f"{me}p",
                    "post_created",
                    t0 + i,
                    me,
                    unit,
                    content=f"{me}c",
                    root=f"{me}c",
                    space=unit,  # the space of unit S has S's 4 people (diversity's group)
                )
            )
            facts.append(
                event(
                    f"{me}r",
                    "reply_created",
                    t0 + 60_000 + i,
                    peer,
                    unit,
                    me,
                    unit,
                    content=f"{me}r",
                    root=f"{me}c",
                )
            )
            facts.append(
                event(
                    f"{me}i",
                    "idea_submitted",
                    t0 + 2 * i,
                    me,
                    unit,
                    content=f"{me}i",
                    root=f"{me}i",
                )
            )
    people = {f"{u}{i}": u for u, n in (("S", 4), ("L", 6)) for i in range(n)}
    load(ch, facts, people, {p: [u] for p, u in people.items()})  # a cohort per unit
    for k, shown in ((5, {"L"}), (4, {"S", "L"})):
        set_config(ch, min_group_size=k)
        got = views(ch)
        for name, found in got.items():
            units = {r[1] for r in found} - {"*", ""}  # "": no space (S and L together)
            # S's 4 people under k = 5 would be the org row minus L's: L is left out too
            want = set() if k == 5 and name in BESIDE_ORG_TOTALS else shown
            assert units == want, f"{name} with k={k}: {units}"
        beside_total = set() if k == 5 else shown
        assert {(r[1], r[2]) for r in got["matrix"]} == {(u, u) for u in beside_total}
        assert {r[1] for r in got["ei"]} == beside_total | {"*"}, "the org row: 10 people"
        heads = rows(ch, "SELECT * FROM teilhabe.unit_headcount")
        assert heads == {(u, {"S": 4, "L": 6}[u]) for u in shown}, f"headcount with k={k}"
        platforms = rows(ch, "SELECT platform, active_users FROM teilhabe.daily_active_by_platform")
        assert platforms == {("", 10)}, "S and L together: 10 people without a platform"
    set_config(ch, min_group_size=11)
    assert not rows(ch, "SELECT * FROM teilhabe.daily_active_by_platform")


def test_example_questions_in_the_docs_run(ch: Any) -> None:
    """Every SQL example of docs/metrics.md runs against the migrated schema."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    examples = re.findall(r"```sql\n(.*?)```", doc, re.S)
    assert len(examples) >= 5
    for sql in examples:
        ch.query(sql)


def oracle_baseline(
    counts: dict[tuple[int, str], int], week: int
) -> dict[tuple[int, str], tuple[int, float, float | None]]:
    """(period, unit) -> (events, baseline, ratio): events against the mean of the same period
    of each of the 4 weeks before. A period without any event at all is missing and a missing
    week means no baseline (no row, never a 0 in the mean); a unit without events in a period
    that has some counts 0; the ratio is None when the baseline is 0. ``week``: the period key
    distance of one week (7 for day numbers, 604800 for window starts in seconds)."""
    seen = {period for (period, _), n in counts.items() if n > 0}
    out: dict[tuple[int, str], tuple[int, float, float | None]] = {}
    for (period, unit), n in counts.items():
        past = [period - week * i for i in range(1, 5)]
        if n == 0 or not all(q in seen for q in past):
            continue
        base = sum(counts.get((q, unit), 0) for q in past) / 4
        out[(period, unit)] = (n, base, round(n / base, 9) if base else None)
    return out


@pytest.mark.parametrize("seed", [5, 6])
def test_daily_baseline_ratio_equals_its_oracle(ch: Any, seed: int) -> None:
    """Seven weeks of random daily activity per unit, two days without any event at all (the
    pipeline was down), duplicates and late copies: day d's ratio = events(d) / the mean of
    events(d - 7i), i = 1..4 (0 for a unit absent on a day with events; no row when one of
    those days had no event at all, nor before 4 weeks of history)."""
    rng = random.Random(seed)
    t0 = int(DAY0.timestamp() * 1000)
    down = set(rng.sample(range(1, 30), 2))
    facts, counts = [], Counter[tuple[int, str]]()
    for d in range(49):
        for unit in ("A", "B", "C"):
            n = 0 if d in down or rng.random() < 0.2 else rng.randrange(1, 6)
            counts[(d, unit)] = n
            for i in range(n):
                ts = t0 + d * 24 * HOUR_MS + rng.randrange(24 * HOUR_MS)
                late = rng.random() < 0.2
                facts.append(event(f"{unit}{d}-{i}", "view", ts, f"{unit}{i}", unit, late=late))
    facts += [dict(ev, late=True) for ev in rng.sample(facts, len(facts) // 5)]  # copies
    rng.shuffle(facts)
    set_config(ch, min_group_size=1)
    load(ch, facts, {})
    got = {
        ((day - DAY0.date()).days, unit): (events, base, None if ratio is None else round(ratio, 9))
        for day, unit, events, base, ratio in ch.query(
            "SELECT * FROM teilhabe.daily_baseline_ratio"
        ).result_rows
    }
    expected = oracle_baseline(dict(counts), 7)
    assert any(d - 7 * i in down for d, _ in counts for i in range(1, 5) if d >= 28)
    assert got == expected
