"""The synthetic organisation: determinism, contract conformance and the behaviour model."""

from __future__ import annotations

import hashlib
import math
import tracemalloc
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.contract.events import INTERACTION_TYPES, load_schema, parse_time_ms, validate_event
from pipeline.dev import generator as gen

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
SCHEMA = load_schema()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
SCHEDULED = {"idea_status_changed", "member_joined", "member_left"}
SILOS = {
    "Vertrieb": 0.95,
    "Produktion": 0.8,
    "IT": 0.35,
    "Controlling": 0.65,
    "Personal": 0.5,
    "Einkauf": 0.2,
}

Events = list[dict[str, Any]]


def ts(ev: dict[str, Any]) -> int:
    return parse_time_ms(ev["occurred_at"])


def units_of(org: gen.Organisation) -> dict[str, str]:
    return {p.person_id: p.unit for p in org.people}


@pytest.fixture(scope="module")
def org() -> gen.Organisation:
    return gen.Organisation(gen.OrgSpec(seed=3, start=MONDAY, days=14))


@pytest.fixture(scope="module")
def events(org: gen.Organisation) -> Events:
    return list(org.events())


@pytest.fixture(scope="module")
def silo_run() -> tuple[gen.Organisation, Events]:
    o = gen.Organisation(gen.OrgSpec(seed=11, start=MONDAY, days=14, unit_silo=SILOS))
    return o, list(o.events())


def write(tmp_path: Path, name: str, spec: gen.OrgSpec) -> tuple[bytes, bytes, tuple[int, int]]:
    ev, di = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.dir.jsonl"
    counts = gen.write_jsonl(gen.Organisation(spec), ev, di)
    return ev.read_bytes(), di.read_bytes(), counts


# ---- determinism, contract ------------------------------------------------------------------


def test_same_seed_same_files_other_seed_differs(tmp_path: Path) -> None:
    spec = gen.OrgSpec(seed=5, start=MONDAY, days=3)
    a_ev, a_dir, a_n = write(tmp_path, "a", spec)
    b_ev, b_dir, b_n = write(tmp_path, "b", gen.OrgSpec(seed=5, start=MONDAY, days=3))
    assert a_ev == b_ev and a_dir == b_dir and a_n == b_n
    assert a_n == (a_ev.count(b"\n"), a_dir.count(b"\n")) and a_n[0] > 1000
    c_ev, c_dir, _ = write(tmp_path, "c", gen.OrgSpec(seed=6, start=MONDAY, days=3))
    assert c_ev != a_ev and c_dir != a_dir
    # events() can be iterated again and gives the same sequence
    o = gen.Organisation(spec)
    assert [orjson.dumps(e) for e in o.events()] == a_ev.splitlines()


def test_every_event_validates_against_the_schema(tmp_path: Path) -> None:
    ev_bytes, _, _ = write(tmp_path, "v", gen.OrgSpec(seed=9, start=MONDAY, days=3))
    names = set(SCHEMA["properties"])
    for line in ev_bytes.splitlines():
        ev = orjson.loads(line)
        VALIDATOR.validate(ev)
        assert set(ev) <= names
        assert ev["occurred_at"].endswith("Z") and ev["occurred_at"][-5] == "."
        validate_event(ev, now_ms=2**62, future_tolerance_ms=0)  # the hot-path validator agrees


def test_sorted_in_period_and_unique_ids(org: gen.Organisation, events: Events) -> None:
    times = [ts(e) for e in events]
    assert times == sorted(times)
    assert org.spec.start_ms <= times[0] and times[-1] < org.spec.end_ms
    assert len({e["event_id"] for e in events}) == len(events)
    created = [
        e["content_id"]
        for e in events
        if e["event_type"] in ("post_created", "reply_created", "idea_submitted", "idea_commented")
    ]
    assert len(set(created)) == len(created)


def test_directory_matches_spec_and_events(org: gen.Organisation, events: Events) -> None:
    records = list(org.directory_records())
    assert all(set(r) == {"person_id", "unit", "cohorts", "location"} for r in records)
    assert Counter(r["unit"] for r in records) == Counter(dict(org.spec.units))
    assert len({r["person_id"] for r in records}) == len(records)
    digitisers = sum("digitisers" in r["cohorts"] for r in records)
    assert digitisers == round(0.08 * len(records))
    unit = {r["person_id"]: r["unit"] for r in records}
    for e in events:
        assert e["actor_id"] in unit
        if e.get("actor_unit"):
            assert e["actor_unit"] == unit[e["actor_id"]]
        if e.get("target_unit"):
            assert e["target_unit"] == unit[e["target_actor_id"]]


def test_units_often_left_for_the_directory(events: Events) -> None:
    missing = sum(not e.get("actor_unit") for e in events) / len(events)
    assert 0.27 < missing < 0.33
    assert any("actor_unit" in e and e["actor_unit"] is None for e in events)
    targeted = [e for e in events if e.get("target_actor_id")]
    assert 0.27 < sum(not e.get("target_unit") for e in targeted) / len(targeted) < 0.33


# ---- content model --------------------------------------------------------------------------


def test_replies_reactions_and_views_reference_earlier_content(events: Events) -> None:
    made: dict[str, tuple[str, str]] = {}  # content_id -> (author, root)
    ideas: dict[str, str] = {}
    for e in events:
        kind, cid = e["event_type"], e.get("content_id", "")
        if kind == "post_created":
            assert e["root_content_id"] == cid and "target_actor_id" not in e
            made[cid] = (e["actor_id"], cid)
        elif kind == "reply_created":
            author, root = made[e["parent_content_id"]]
            assert (e["target_actor_id"], e["root_content_id"]) == (author, root)
            made[cid] = (e["actor_id"], root)
        elif kind in ("reaction_added", "share"):
            assert (e["target_actor_id"], e["root_content_id"]) == made[cid]
        elif kind == "view" and cid:
            assert cid in made
        elif kind == "mention":
            assert e["target_actor_id"] != e["actor_id"]
        elif kind == "idea_submitted":
            ideas[cid] = e["actor_id"]
        elif kind in ("idea_voted", "idea_commented"):
            assert ideas[e["root_content_id"]] == e["target_actor_id"]
        elif kind == "idea_status_changed":
            assert cid in ideas and e["idea_status"] in gen.IDEA_STATUSES
    interactions = [e for e in events if e["event_type"] in INTERACTION_TYPES]
    assert all(e.get("target_actor_id") for e in interactions)
    selfish = sum(e["target_actor_id"] == e["actor_id"] for e in interactions)
    assert selfish <= 0.01 * len(interactions)


def test_idea_campaign_window(org: gen.Organisation, events: Events) -> None:
    start, end = org.spec.start_ms, org.spec.end_ms
    lo, hi = (start + f * (end - start) for f in org.spec.campaign or (0, 0))
    actions = [
        e for e in events if e["event_type"] in ("idea_submitted", "idea_voted", "idea_commented")
    ]
    assert len(actions) > 100
    assert all(lo <= ts(e) < hi for e in actions)
    statuses = Counter(e["idea_status"] for e in events if e["event_type"] == "idea_status_changed")
    assert statuses["in_review"] and statuses["accepted"] and statuses["rejected"]


def test_joiners_and_leavers(org: gen.Organisation, events: Events) -> None:
    joined = {e["actor_id"]: ts(e) for e in events if e["event_type"] == "member_joined"}
    left = {e["actor_id"]: ts(e) for e in events if e["event_type"] == "member_left"}
    assert joined and left
    assert joined == {p.person_id: p.joined_ms for p in org.people if p.joined_ms is not None}
    for e in events:
        a = e["actor_id"]
        assert ts(e) >= joined.get(a, 0) and ts(e) <= left.get(a, 2**62)


# ---- behaviour ------------------------------------------------------------------------------


def in_unit_shares(o: gen.Organisation, events: Events) -> dict[str, tuple[float, int]]:
    unit = units_of(o)
    inside: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for e in events:
        if e["event_type"] in INTERACTION_TYPES and e["target_actor_id"] != e["actor_id"]:
            u = unit[e["actor_id"]]
            total[u] += 1
            inside[u] += unit[e["target_actor_id"]] == u
    return {u: (inside[u] / total[u], total[u]) for u in total}


def test_in_unit_share_matches_default_silo_strength(org: gen.Organisation, events: Events) -> None:
    for u, (share, n) in in_unit_shares(org, events).items():
        assert n > 500, u
        assert abs(share - 0.7) < 4 * math.sqrt(0.21 / n) + 0.01, (u, share, n)


def test_per_unit_silo_strengths_measured_and_ordered(
    silo_run: tuple[gen.Organisation, Events],
) -> None:
    o, events = silo_run
    shares = in_unit_shares(o, events)
    for u, s in SILOS.items():
        share, n = shares[u]
        assert abs(share - s) < 4 * math.sqrt(s * (1 - s) / n) + 0.01, (u, share, s, n)
    assert sorted(SILOS, key=lambda u: shares[u][0]) == sorted(SILOS, key=SILOS.__getitem__)


def test_drop_thins_one_unit_after_drop_from() -> None:
    drop_from = MONDAY + timedelta(days=7)
    base = gen.Organisation(gen.OrgSpec(seed=4, start=MONDAY, days=14))
    dropped = gen.Organisation(
        gen.OrgSpec(seed=4, start=MONDAY, days=14, drop_unit="Vertrieb", drop_from=drop_from)
    )
    cut = int(drop_from.timestamp() * 1000)

    def tally(o: gen.Organisation) -> tuple[list[tuple[str, str, str]], Counter[str]]:
        unit = units_of(o)
        before, after = [], Counter[str]()
        for e in o.events():
            if e["event_type"] in SCHEDULED:
                continue
            if ts(e) < cut:
                before.append((e["event_type"], e["occurred_at"], e["actor_id"]))
            else:
                after[unit[e["actor_id"]]] += 1
        return before, after

    b_before, b_after = tally(base)
    d_before, d_after = tally(dropped)
    assert b_before == d_before  # identical up to the drop
    assert abs(d_after["Vertrieb"] / b_after["Vertrieb"] - 0.3) < 0.05
    for u, n in b_after.items():
        if u != "Vertrieb":
            assert abs(d_after[u] / n - 1) < 5 / math.sqrt(n), (u, d_after[u], n)


def test_weekly_and_daily_season(events: Events) -> None:
    per_day: Counter[int] = Counter()
    per_hour: Counter[int] = Counter()
    for e in events:
        t = datetime.fromtimestamp(ts(e) / 1000, UTC)
        per_day[t.toordinal()] += 1
        if t.weekday() < 5:
            per_hour[t.hour] += 1
    weekday = [n for d, n in per_day.items() if datetime.fromordinal(d).weekday() < 5]
    weekend = [n for d, n in per_day.items() if datetime.fromordinal(d).weekday() >= 5]
    ratio = (sum(weekend) / len(weekend)) / (sum(weekday) / len(weekday))
    assert 0.14 < ratio < 0.28  # configured 0.2
    assert min(per_hour[h] for h in range(8, 16)) > 5 * max(per_hour[h] for h in (0, 1, 2, 3))


def test_mean_activity_per_user_day(org: gen.Organisation, events: Events) -> None:
    actions = sum(e["event_type"] not in SCHEDULED for e in events)
    assert abs(actions / (len(org.people) * org.spec.days) / 10.0 - 1) < 0.1


def test_personas_behave_differently(org: gen.Organisation, events: Events) -> None:
    persona = {p.person_id: p.persona for p in org.people}
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    for e in events:
        if e["event_type"] not in SCHEDULED:
            kinds[persona[e["actor_id"]]][e["event_type"]] += 1

    def share(p: str, *types: str) -> float:
        return sum(kinds[p][t] for t in types) / sum(kinds[p].values())

    assert share("observer", "view", "reaction_added", "idea_voted") > 0.9
    assert share("observer", "post_created", "reply_created") < 0.05
    assert share("broadcaster", "post_created") > 0.35
    assert share("responder", "reply_created", "reaction_added") > 0.5
    assert max(gen.PERSONAS, key=lambda p: share(p, "post_created")) == "broadcaster"
    assert max(gen.PERSONAS, key=lambda p: share(p, "reply_created")) == "responder"
    counts = Counter(p.persona for p in org.people)
    assert counts["observer"] == pytest.approx(0.6 * len(org.people), abs=len(org.spec.units))


# ---- live stream ----------------------------------------------------------------------------


def test_live_events_are_now_valid_and_paced() -> None:
    o = gen.Organisation(gen.OrgSpec(seed=2))
    t0 = 1_800_000_000.0
    stream = gen.live_events(o, rate_per_s=1000.0, clock=lambda: t0)
    got = [next(stream) for _ in range(500)]
    times = [ts(e) for e in got]
    assert times == sorted(times)
    assert times[0] >= t0 * 1000 and times[-1] <= (t0 + 1) * 1000
    assert 0.35 < (times[-1] - times[0]) / 1000 < 0.7  # ~500 events at 1000/s
    assert len({e["event_id"] for e in got}) == 500
    for e in got:
        VALIDATOR.validate(e)

    now = [t0]

    def clock() -> float:  # the caller falls behind: stamps follow the wall clock
        now[0] += 0.5
        return now[0]

    lagging = gen.live_events(o, rate_per_s=10.0, clock=clock)
    for _ in range(50):
        e = next(lagging)
        assert abs(ts(e) / 1000 - now[0]) < 1.0


# ---- spec validation, random specs ----------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"drop_unit": "Marketing"},
        {"unit_silo": {"Nowhere": 0.5}},
        {"silo_strength": 1.5},
        {"units": ()},
        {"persona_mix": (("lurker", 1.0),)},
        {"days": 0},
    ],
)
def test_bad_specs_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        gen.OrgSpec(**kwargs)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31),
    sizes=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    silo=st.floats(0, 1),
    days=st.floats(0.05, 2.0),
    omit=st.floats(0, 1),
)
def test_random_small_organisations_stay_consistent(
    seed: int, sizes: list[int], silo: float, days: float, omit: float
) -> None:
    spec = gen.OrgSpec(
        seed=seed,
        units=tuple((f"U{i}", n) for i, n in enumerate(sizes)),
        silo_strength=silo,
        start=MONDAY + timedelta(hours=seed % 200),
        days=days,
        omit_unit_share=omit,
        events_per_user_day=30,
    )
    o = gen.Organisation(spec)
    unit = units_of(o)
    evs = list(o.events())
    assert [ts(e) for e in evs] == sorted(ts(e) for e in evs)
    assert len({e["event_id"] for e in evs}) == len(evs)
    for e in evs:
        VALIDATOR.validate(e)
        if e["event_type"] in INTERACTION_TYPES:
            assert e["target_actor_id"] in unit
            if silo == 1.0:  # ideas are org-wide, the silo applies to interactions
                assert unit[e["target_actor_id"]] == unit[e["actor_id"]]


# ---- real size: scaled organisations, event limits, streaming ------------------------------

#: sha256 of (events, directory) written for these specs before the real-size options existed:
#: the options must leave every existing output byte for byte as it was
GOLDEN = (
    (
        gen.OrgSpec(seed=5, start=MONDAY, days=3),
        "a2fc821ef27890a280bfdf76850e643679fe18e0af671fc9303d1d00ceb2e0d8",
        "d4ebe1944a06c59cb89532f4333aab5e24b226b5fa51616e0ec2e31dc33a9e2a",
    ),
    (
        gen.OrgSpec(
            seed=8,
            start=MONDAY,
            days=5,
            units=(("A", 300), ("B", 40), ("C", 3)),
            silo_strength=0.3,
            drop_unit="B",
            drop_from=MONDAY + timedelta(days=2),
        ),
        "87178e84b4004230a006eea4679e7b29b3a8d1e0222746ab5dbfe1edb748d8f6",
        "17f0366c15618f6dc9aec04efc023ab4d956559d25322052f3ad15abcee9dab7",
    ),
)


@pytest.mark.parametrize(("spec", "events_sha", "directory_sha"), GOLDEN)
def test_existing_outputs_unchanged(
    tmp_path: Path, spec: gen.OrgSpec, events_sha: str, directory_sha: str
) -> None:
    ev, di, _ = write(tmp_path, "g", spec)
    assert hashlib.sha256(ev).hexdigest() == events_sha
    assert hashlib.sha256(di).hexdigest() == directory_sha


def test_scaled_units_keep_the_default_organisation_and_proportions() -> None:
    assert gen.scaled_units(395) == gen.DEFAULT_UNITS  # --people 395: the default output
    big = gen.scaled_units(100_000)
    assert [u for u, _ in big] == [u for u, _ in gen.DEFAULT_UNITS]
    assert sum(n for _, n in big) == 100_000
    for (_, n), (_, base) in zip(big, gen.DEFAULT_UNITS, strict=True):
        assert abs(n - base * 100_000 / 395) <= 1
    many = gen.scaled_units(1000, 20)
    names = [u for u, _ in many]
    assert len(set(names)) == 20 and names[6] == "Vertrieb 2" and names[19] == "Produktion 4"
    assert sum(n for _, n in many) == 1000
    tiny = gen.scaled_units(9, 8)  # rounding would leave units empty: everyone gets one
    assert sum(n for _, n in tiny) == 9 and min(n for _, n in tiny) >= 1
    with pytest.raises(ValueError):
        gen.scaled_units(3, 4)


def test_limit_writes_a_prefix_of_the_full_history(tmp_path: Path) -> None:
    org = gen.Organisation(gen.OrgSpec(seed=4, start=MONDAY, days=2))
    full, short = tmp_path / "full.jsonl", tmp_path / "short.jsonl"
    n_full, _ = gen.write_jsonl(org, full, tmp_path / "d1.jsonl")
    n_short, people = gen.write_jsonl(org, short, tmp_path / "d2.jsonl", limit=5000)
    assert n_full > 5000 and n_short == 5000 and people == len(org.people)
    assert short.read_bytes().splitlines() == full.read_bytes().splitlines()[:5000]
    assert (tmp_path / "d1.jsonl").read_bytes() == (tmp_path / "d2.jsonl").read_bytes()
    assert gen.write_jsonl(org, short, tmp_path / "d3.jsonl", limit=0)[0] == 0


def test_memory_does_not_grow_with_the_number_of_events(tmp_path: Path) -> None:
    """Streaming: 6x the events, about the same peak of Python allocations."""
    org = gen.Organisation(gen.OrgSpec(seed=6, units=gen.scaled_units(2000), days=30))

    def peak(n: int) -> int:
        tracemalloc.start()
        try:
            gen.write_jsonl(org, tmp_path / "e.jsonl", tmp_path / "d.jsonl", limit=n)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(4_000), peak(24_000)
    assert large < 1.5 * small, (small, large)


def test_generate_command_at_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from pipeline.cli.main import app

    monkeypatch.setenv("TEILHABE_DATA_DIR", str(tmp_path / "var"))
    out = tmp_path / "big.jsonl"
    args = ["generate", "--out", str(out), "--start", "2026-01-05T00:00:00Z", "--days", "3"]
    result = CliRunner().invoke(
        app, [*args, "--people", "20000", "--units", "12", "--events", "20000"]
    )
    assert result.exit_code == 0, result.output
    directory = [orjson.loads(line) for line in (tmp_path / "big.directory.jsonl").open("rb")]
    assert len(directory) == 20_000
    assert Counter(r["unit"] for r in directory) == dict(gen.scaled_units(20_000, 12))
    lines = out.read_bytes().splitlines()
    assert len(lines) == 20_000
    assert len({orjson.loads(line)["actor_id"] for line in lines}) > 5000  # many people act
    # the period ends before the limit: fewer events and a hint
    result = CliRunner().invoke(app, [*args, "--people", "10", "--events", "1000000"])
    assert result.exit_code == 0 and "raise --days or --people" in result.output
    # without the new options: exactly the organisation of the same OrgSpec
    result = CliRunner().invoke(app, [*args, "--seed", "5"])
    assert result.exit_code == 0, result.output
    expected = tmp_path / "expected.jsonl"
    gen.write_jsonl(
        gen.Organisation(gen.OrgSpec(seed=5, start=MONDAY, days=3.0)), expected, tmp_path / "x"
    )
    assert out.read_bytes() == expected.read_bytes()
    result = CliRunner().invoke(app, [*args, "--people", "3", "--units", "4"])
    assert result.exit_code != 0 and "cannot fill" in result.output
