"""Days end at midnight of TEILHABE_TIMEZONE (docs/metrics.md, "Days and the time zone"), on
the real engine: events around both daylight-saving changes of Europe/Berlin in 2026, just
before and after local midnight and the switch hours, several people and units, late and
duplicate copies, in any order; daily_active_by_unit, user_day_facts, daily_silo_matrix and the
gauges' newest day against a plain recomputation with ``zoneinfo``; a database filled under one
zone and migrated under another cuts its rows again (``apply_timezone``), both ways."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from pipeline.contract.events import CONTRIBUTION_TYPES, INTERACTION_TYPES
from pipeline.errors import ConfigError
from pipeline.ops import readings
from pipeline.ops.exporter import PipelineMetrics
from pipeline.ops.gauges import refresh_fact_gauges
from pipeline.settings import Settings, load_settings
from pipeline.sinks.facts import EVENT_COLUMNS, event_row
from pipeline.sinks.migrate import apply_timezone, day_zone, migrate, zone_literal
from tests.conftest import migrated_clickhouse
from tests.integration.test_analyst_views import event, unique

pytestmark = pytest.mark.integration

BERLIN = "Europe/Berlin"
HOUR_MS = 3_600_000
#: UTC days around the changes: 29 March 2026 02:00 CET -> 03:00 CEST (01:00 UTC) and
#: 25 October 2026 03:00 CEST -> 02:00 CET (01:00 UTC).
DAYS = [date(2026, 3, 27) + timedelta(n) for n in range(5)] + [
    date(2026, 10, 23) + timedelta(n) for n in range(5)
]
#: Offsets from UTC midnight: Berlin's midnight is 22:00 UTC in summer and 23:00 UTC in winter,
#: the switches are at 01:00 UTC; each boundary is hit on its last and its first millisecond.
OFFSETS_MS = [
    -150 * 60_000,
    -2 * HOUR_MS - 1,
    -2 * HOUR_MS,
    -90 * 60_000,
    -HOUR_MS - 1,
    -HOUR_MS,
    -30 * 60_000,
    -1,
    0,
    30 * 60_000,
    HOUR_MS - 1,
    HOUR_MS,
    90 * 60_000,
    150 * 60_000,
]
PEOPLE = {f"p{i}": "abc"[i % 3] for i in range(8)}
TYPES = ["post_created", "view", "reply_created", "reaction_added", "mention", "idea_voted"]


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Settings]]:
    with migrated_clickhouse(tmp_path_factory.mktemp("timezone"), min_group_size=1) as client:
        yield client, load_settings()


def in_zone(settings: Settings, zone: str) -> Settings:
    return settings.model_copy(update={"timezone": zone})


def history(seed: int, days: list[date] = DAYS) -> list[dict[str, Any]]:
    """Facts at every offset of ``days``: 1-3 people each (one of them sometimes in another
    unit), interactions across units, late duplicates and late-only copies, shuffled."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for d in days:
        midnight = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
        for offset in OFFSETS_MS:
            for actor in rng.sample(sorted(PEOPLE), rng.randint(1, 3)):
                unit = "d" if actor == "p7" and rng.random() < 0.3 else PEOPLE[actor]
                etype = rng.choice(TYPES)
                target = rng.choice([p for p in PEOPLE if p != actor])
                ev = event(
                    f"{seed}-{len(out)}",
                    etype,
                    midnight + offset,
                    actor,
                    unit,
                    target=target if etype in INTERACTION_TYPES else None,
                    target_unit=PEOPLE[target] if etype in INTERACTION_TYPES else None,
                    content=f"c{len(out)}",
                    late=rng.random() < 0.05,
                )
                out.append(ev)
                if rng.random() < 0.15:
                    out.append({**ev, "late": True})
    # at 23:30 UTC of the last day: in Berlin the newest day is the next one
    out.append(event(f"{seed}-last", "view", midnight + 23 * HOUR_MS + 1_800_000, "p0", "a"))
    rng.shuffle(out)
    return out


def insert(client: Any, events: list[dict[str, Any]]) -> None:
    """Write ``events`` in three inserts (three parts, so FINAL has copies to merge)."""
    for part in (events[0::3], events[1::3], events[2::3]):
        if part:
            client.insert(
                "teilhabe.events",
                [event_row(ev, late=bool(ev["late"])) for ev in part],
                column_names=EVENT_COLUMNS,
            )


# --- the oracle: each event's local date with zoneinfo ---------------------------------------


def local_day(ev: dict[str, Any], zone: str) -> date:
    return datetime.fromtimestamp(ev["ts"] / 1000, tz=ZoneInfo(zone)).date()


def oracle(events: list[dict[str, Any]], zone: str) -> dict[str, set[Any]]:
    facts = unique(events)
    people: dict[tuple[date, str], set[str]] = defaultdict(set)
    counts: Counter[tuple[date, str]] = Counter()
    user_days: dict[tuple[date, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    cells: Counter[tuple[date, str, str]] = Counter()
    for ev in facts:
        d, unit = local_day(ev, zone), ev["actor_unit"]
        people[(d, unit)].add(ev["actor_id"])
        counts[(d, unit)] += 1
        row = user_days[(d, ev["actor_id"], unit)]
        row[0] += 1
        row[1] += ev["event_type"] in CONTRIBUTION_TYPES
        row[2] += bool(ev["late"])
        if ev["event_type"] in INTERACTION_TYPES:
            cells[(d, unit, ev["target_unit"])] += 1
    return {
        "active": {(d, u, len(p), counts[(d, u)], None) for (d, u), p in people.items()},
        "user_days": {(*key, *row) for key, row in user_days.items()},
        "matrix": {(*key, n) for key, n in cells.items()},
    }


def views(client: Any) -> dict[str, set[Any]]:
    def rows(sql: str) -> set[Any]:
        return {tuple(row) for row in client.query(sql).result_rows}

    return {
        "active": rows(
            "SELECT day, unit, active_users, events, adoption_rate "
            "FROM teilhabe.daily_active_by_unit"
        ),
        "user_days": rows(
            "SELECT day, actor_id, unit, events, contributions, late_events "
            "FROM teilhabe.user_day_facts"
        ),
        "matrix": rows(
            "SELECT day, from_unit, to_unit, interactions FROM teilhabe.daily_silo_matrix"
        ),
    }


def assert_days_in(client: Any, events: list[dict[str, Any]], zone: str) -> None:
    want, got = oracle(events, zone), views(client)
    for name in want:
        assert got[name] == want[name], f"{name} in {zone}: {got[name] ^ want[name]}"
    newest = readings.newest_day_figures(client, "teilhabe")  # the gauges' newest day
    assert newest.day == max(local_day(ev, zone) for ev in events) and newest.zone == zone
    start = datetime.combine(newest.day, datetime.min.time(), ZoneInfo(zone))
    assert newest.day_start() == start.timestamp()  # local midnight
    metrics = PipelineMetrics.create()  # the gauge Grafana reads
    refresh_fact_gauges(client, "teilhabe", metrics)
    gauge = metrics.registry.get_sample_value("teilhabe_facts_day_timestamp_seconds")
    assert gauge == start.timestamp()


def config_zone(client: Any) -> str:
    sql = "SELECT value FROM teilhabe.config FINAL WHERE key = 'timezone'"
    return str(client.query(sql).result_rows[0][0])


# --- tests -----------------------------------------------------------------------------------


def test_the_oracle_tells_the_zones_apart() -> None:
    """Without this the tests below could pass with days cut in UTC."""
    events = history(1)
    berlin, utc = oracle(events, BERLIN), oracle(events, "UTC")
    assert all(berlin[name] != utc[name] for name in berlin)
    newest = {max(local_day(ev, zone) for ev in events) for zone in (BERLIN, "UTC")}
    assert newest == {date(2026, 10, 27), date(2026, 10, 28)}
    summer = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # 00:00 CEST on 30 March
    assert local_day({"ts": summer.timestamp() * 1000}, BERLIN) == date(2026, 3, 30)
    assert local_day({"ts": summer.timestamp() * 1000 - 1}, BERLIN) == date(2026, 3, 29)
    winter = datetime(2026, 10, 25, 23, 0, tzinfo=UTC)  # 00:00 CET on 26 October
    assert local_day({"ts": winter.timestamp() * 1000}, BERLIN) == date(2026, 10, 26)
    assert local_day({"ts": winter.timestamp() * 1000 - 1}, BERLIN) == date(2026, 10, 25)
    day = readings.DayFigures(day=date(2026, 10, 26), zone=BERLIN)
    assert day.day_start() == winter.timestamp()
    assert readings.DayFigures(day=date(2026, 3, 30), zone=BERLIN).day_start() == (
        summer.timestamp()
    )


@pytest.mark.parametrize(("zone", "seed"), [(BERLIN, 2), (BERLIN, 3), ("UTC", 4)])
def test_daily_views_cut_days_at_local_midnight(
    ch: tuple[Any, Settings], zone: str, seed: int
) -> None:
    client, settings = ch
    migrate(client, in_zone(settings, zone))
    client.command("TRUNCATE TABLE teilhabe.events")
    events = history(seed)
    insert(client, events)
    assert_days_in(client, events, zone)
    assert config_zone(client) == zone


def test_changing_the_zone_cuts_the_rows_there_again(ch: tuple[Any, Settings]) -> None:
    client, settings = ch
    migrate(client, in_zone(settings, "UTC"))
    client.command("TRUNCATE TABLE teilhabe.events")
    events = history(5)
    insert(client, events)
    assert_days_in(client, events, "UTC")

    migrate(client, in_zone(settings, BERLIN))  # as a worker start with the new setting does
    assert_days_in(client, events, BERLIN)
    assert config_zone(client) == BERLIN
    assert apply_timezone(client, in_zone(settings, BERLIN)) is None  # nothing left to do
    more = history(6, DAYS[-2:])  # rows written after the change
    insert(client, more)
    assert_days_in(client, events + more, BERLIN)

    migrate(client, in_zone(settings, "UTC"))  # and back
    assert_days_in(client, events + more, "UTC")
    assert config_zone(client) == "UTC"


def test_a_change_stopped_between_its_two_statements_is_completed(
    ch: tuple[Any, Settings],
) -> None:
    """The column's expression says Berlin but the rows were cut in UTC (config 'timezone'):
    the next migrate cuts them again."""
    client, settings = ch
    migrate(client, in_zone(settings, "UTC"))
    client.command("TRUNCATE TABLE teilhabe.events")
    events = history(7)
    insert(client, events)
    client.command(
        "ALTER TABLE teilhabe.events MODIFY COLUMN day Date MATERIALIZED "
        "toDate(fromUnixTimestamp64Milli(ts_ms, 'UTC'), 'Europe/Berlin')"
    )
    assert views(client) == oracle(events, "UTC")  # MODIFY alone leaves the stored days
    change = apply_timezone(client, in_zone(settings, BERLIN))
    assert change is not None and change.before == BERLIN and change.after == BERLIN
    assert_days_in(client, events, BERLIN)
    migrate(client, in_zone(settings, "UTC"))


def test_a_zone_clickhouse_does_not_know_stops_naming_the_variable(
    ch: tuple[Any, Settings],
) -> None:
    client, settings = ch
    migrate(client, in_zone(settings, "UTC"))
    with pytest.raises(ConfigError, match="TEILHABE_TIMEZONE=Mars/Olympus"):
        apply_timezone(client, in_zone(settings, "Mars/Olympus"))  # past the settings' check
    expression = client.query(
        "SELECT default_expression FROM system.columns "
        "WHERE database = 'teilhabe' AND table = 'events' AND name = 'day'"
    ).result_rows[0][0]
    assert day_zone(str(expression)) == "UTC"


def test_the_day_expression_is_read_and_the_zone_quoted_safely() -> None:
    assert day_zone("toDate(fromUnixTimestamp64Milli(ts_ms, 'UTC'))") == "UTC"
    assert day_zone("toDate(fromUnixTimestamp64Milli(ts_ms, 'UTC'), 'Etc/GMT+1')") == "Etc/GMT+1"
    assert day_zone("toDate(fromUnixTimestamp64Milli(ts_ms,'UTC'),'Europe/Berlin')") == BERLIN
    assert day_zone("toDate(occurred_at)") is None
    assert zone_literal("America/Port-au-Prince") == "'America/Port-au-Prince'"
    for bad in ["Europe/Berlin'", "x\\", "a b", "", "/abs", "a//b"]:
        with pytest.raises(ConfigError, match="TEILHABE_TIMEZONE"):
            zone_literal(bad)
