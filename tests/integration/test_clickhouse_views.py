"""ClickHouse views on the real engine (chDB behind the HTTP server): minimum group size and
idempotent rewrites."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from pipeline.dev.clickhouse import EmbeddedClickHouse
from pipeline.metrics.windows import NO_WATERMARK, Checkpoint, Clock, ClosedWindow, UnitWindow
from pipeline.ops.exporter import PipelineMetrics
from pipeline.ops.gauges import refresh_engagement_gauges
from pipeline.ops.readings import closed_through
from pipeline.sinks.clickhouse import get_client
from pipeline.sinks.facts import EVENT_COLUMNS, ClickHouseSink, FactBatch, event_row
from pipeline.sinks.migrate import migrate
from tests.conftest import configure

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[ClickHouseSink, Any]]:
    mp = pytest.MonkeyPatch()
    settings = configure(mp, tmp_path, min_group_size=5)
    try:
        with EmbeddedClickHouse(settings):
            client = get_client(settings)
            migrate(client, settings)
            yield (
                ClickHouseSink(
                    lambda: get_client(settings), "teilhabe", PipelineMetrics.create(), "g", "t"
                ),
                client,
            )
            client.close()
    finally:
        mp.undo()


def facts(on_time: list[dict[str, Any]], late: list[dict[str, Any]] | None = None) -> FactBatch:
    """The facts of one flush."""
    batch = FactBatch()
    batch.add(on_time, late or [])
    return batch


def window(partition: int, units: dict[str, int]) -> ClosedWindow:
    """A closed window whose unit u has ``units[u]`` distinct actors (one view each)."""
    agg = {}
    for unit, n in units.items():
        w = UnitWindow()
        for i in range(n):
            w.actors.add(f"{unit}-{partition}-{i}")
            w.events_by_type["view"] += 1
        agg[unit] = w
    return ClosedWindow(partition, int(T0.timestamp() * 1000), 3_600_000, 10, agg)


def test_units_below_k_people_are_suppressed_after_merging_partitions(sink: Any) -> None:
    s, client = sink
    # 'Small' has 2 + 2 = 4 people (< k = 5) although no single partition shows it;
    # 'Big' has 3 + 3 = 6 people, each partition alone below k.
    s.flush(facts([]), [window(0, {"Small": 2, "Big": 3}), window(1, {"Small": 2, "Big": 3})], {})
    rows = client.query("SELECT unit, active_users FROM teilhabe.engagement_windows").result_rows
    assert rows == [("Big", 6)]
    refresh_engagement_gauges(s.client, s.database, s.metrics, 3600)
    reg = s.metrics.registry
    assert reg.get_sample_value("teilhabe_engagement_active_users", {"unit": "Big"}) == 6
    assert reg.get_sample_value("teilhabe_engagement_active_users", {"unit": "Small"}) is None


def test_replayed_flush_rewrites_identical_rows_and_counts_once(sink: Any) -> None:
    s, client = sink
    ev = {
        "event_id": "e1",
        "event_type": "view",
        "ts": int(T0.timestamp() * 1000),
        "actor_id": "a" * 32,
        "actor_unit": "IT",
        "space_id": None,
        "platform": None,
        "target_actor_id": None,
        "target_unit": None,
        "content_id": None,
        "parent_content_id": None,
        "root_content_id": None,
        "idea_status": None,
    }
    cp = {0: Checkpoint(11, Clock(), {})}
    for _ in range(3):  # a crash before the offset commit replays the same flush
        s.flush(facts([ev]), [window(0, {"IT": 6})], cp)
    s.flush(facts([], [ev]), [], {})  # the same event again, after its window
    assert client.query("SELECT count() FROM teilhabe.events FINAL").result_rows == [(1,)]
    assert client.query("SELECT is_late FROM teilhabe.events FINAL").result_rows == [(0,)]
    assert client.query(
        "SELECT sum(active_users), sum(events) FROM teilhabe.engagement_windows"
    ).result_rows == [(6, 6)]
    assert s.load_checkpoint(0) == cp[0]
    assert len(EVENT_COLUMNS) == len(event_row(ev, late=False))


def test_baseline_ratio_gauge_shows_a_drop_in_one_unit_only(sink: Any) -> None:
    """Same window of the 4 weeks before: A had 10 events, B 6; now A has 5, B 6. A week whose
    window was never closed is no baseline (never 0); a unit absent from a closed window is 0."""
    week_ms = 7 * 24 * 3600 * 1000
    s, _ = sink
    now = window(0, {"A": 5, "B": 6})
    reg = s.metrics.registry

    def at(weeks_back: int, units: dict[str, int]) -> ClosedWindow:
        return replace(window(0, units), start_ms=now.start_ms - weeks_back * week_ms)

    s.flush(facts([]), [at(w, {"A": 10, "B": 6}) for w in (1, 2, 4)] + [now], {})
    refresh_engagement_gauges(s.client, s.database, s.metrics, 3600)
    assert reg.get_sample_value("teilhabe_engagement_active_users", {"unit": "A"}) == 5
    assert reg.get_sample_value("teilhabe_engagement_baseline_ratio", {"unit": "A"}) is None, (
        "the window 3 weeks back was never closed: no baseline (not a 0 in the mean)"
    )
    assert reg.get_sample_value("teilhabe_engagement_baseline_events", {"unit": "A"}) is None
    s.flush(facts([]), [at(3, {"A": 10, "B": 6})], {})
    refresh_engagement_gauges(s.client, s.database, s.metrics, 3600)
    assert reg.get_sample_value("teilhabe_engagement_baseline_ratio", {"unit": "A"}) == 0.5
    assert reg.get_sample_value("teilhabe_engagement_baseline_ratio", {"unit": "B"}) == 1.0
    assert reg.get_sample_value("teilhabe_engagement_baseline_events", {"unit": "A"}) == 10
    s.flush(facts([]), [replace(window(1, {"C": 8}), start_ms=now.start_ms)], {})
    s.flush(facts([]), [replace(window(1, {"C": 8}), start_ms=now.start_ms - week_ms)], {})
    refresh_engagement_gauges(s.client, s.database, s.metrics, 3600)
    assert reg.get_sample_value("teilhabe_engagement_baseline_events", {"unit": "C"}) == 2.0, (
        "C had 8 events in one of the 4 closed windows and none in the others (0, not missing)"
    )


def test_newest_window_is_the_newest_every_partition_has_closed(sink: Any) -> None:
    """Partition 0 has closed T0 and T0 + 1 h, partition 1 only T0 (its watermark is short of
    T0 + 1 h + grace): the gauges show T0 with both partitions' people. Once partition 1's
    watermark passes, T0 + 1 h shows although partition 1 had no event in it; a partition that
    never saw an event (only end-of-input markers) holds nothing back."""
    s, client = sink
    reg = s.metrics.registry
    t0 = int(T0.timestamp() * 1000)
    hour, grace = 3_600_000, 600_000
    assert client.query(
        "SELECT value FROM teilhabe.config FINAL WHERE key = 'grace_s'"
    ).result_rows == [("600",)]

    def checkpoint(watermark_ms: int, closes: dict[int, int] | None = None) -> Checkpoint:
        return Checkpoint(100, Clock(watermark_ms, ((0, watermark_ms),)), closes or {})

    second = ClosedWindow(0, t0 + hour, hour, 20, window(0, {"A": 6}).units)
    cps = {0: checkpoint(t0 + 2 * hour + grace), 1: checkpoint(t0 + 2 * hour + grace - 1)}
    s.flush(facts([]), [window(0, {"A": 3}), window(1, {"A": 4}), second], cps)
    refresh_engagement_gauges(s.client, s.database, s.metrics, 3600)
    start = reg.get_sample_value("teilhabe_engagement_window_start_timestamp_seconds")
    assert start == T0.timestamp(), "partition 1 may still add to T0 + 1 h"
    assert reg.get_sample_value("teilhabe_engagement_active_users", {"unit": "A"}) == 7
    never = Checkpoint(5, Clock(sources=((0, NO_WATERMARK),), idle=frozenset({0})), {})
    s.flush(facts([]), [], {1: checkpoint(t0 + 2 * hour + grace), 2: never})
    refresh_engagement_gauges(s.client, s.database, s.metrics, 3600)
    start = reg.get_sample_value("teilhabe_engagement_window_start_timestamp_seconds")
    assert start == T0.timestamp() + 3600
    assert reg.get_sample_value("teilhabe_engagement_active_users", {"unit": "A"}) == 6
    # partition 0 closes T0 + 2 h (rows); partition 1's checkpoint records that it closed it
    # too (a close after its saved offset), whatever its saved watermark says
    s.flush(facts([]), [replace(second, start_ms=t0 + 2 * hour)], {})
    s.flush(facts([]), [], {1: checkpoint(t0 + hour, {t0 + 2 * hour: 120})})
    refresh_engagement_gauges(s.client, s.database, s.metrics, 3600)
    start = reg.get_sample_value("teilhabe_engagement_window_start_timestamp_seconds")
    assert start == T0.timestamp() + 7200


def test_closed_through_rule() -> None:
    """The frontier rule without ClickHouse: the minimum over partitions of the newest window
    each shows closed (rows, recorded closes, watermark minus window and grace)."""
    hour = 3600
    cp = Checkpoint(1, Clock(10 * hour * 1000 + 600_000), {})  # closes up to 9:00
    assert closed_through(hour, 600, {0: 5 * hour}, {0: [cp]}) == 9 * hour
    assert closed_through(hour, 600, {0: 5 * hour, 1: 3 * hour}, {0: [cp]}) == 3 * hour
    never = Checkpoint(1, Clock(), {})
    assert closed_through(hour, 600, {0: 5 * hour}, {1: [never]}) == 5 * hour
    assert closed_through(hour, 600, {}, {1: [never]}) is None
    assert closed_through(hour, 600, {0: hour}, {0: [Checkpoint(1, Clock(), {7_200_000: 9})]}) == (
        2 * hour
    )


def test_unanswered_posts_gauge(sink: Any) -> None:
    """Posts older than the target without a reply by someone else, per unit, k-suppressed."""
    import time

    from pipeline.ops.gauges import refresh_unanswered_gauge

    s, _ = sink
    now = int(time.time() * 1000)
    hour = 3_600_000

    def fact(eid: str, etype: str, ts: int, actor: str, unit: str, root: str) -> Any:
        ev = {
            "event_id": eid,
            "event_type": etype,
            "ts": ts,
            "actor_id": actor,
            "actor_unit": unit,
            "space_id": None,
            "platform": None,
            "target_actor_id": None,
            "target_unit": None,
            "content_id": eid,
            "parent_content_id": root,
            "root_content_id": root,
            "idea_status": None,
        }
        return ev

    rows = []
    for i in range(7):  # unit A: 7 authors, each with one old post
        rows.append(fact(f"a{i}", "post_created", now - 30 * hour, f"pa{i}", "A", f"a{i}"))
    rows.append(fact("r0", "reply_created", now - 29 * hour, "pb0", "B", "a0"))  # answered
    rows.append(fact("r1", "reply_created", now - 29 * hour, "pa1", "A", "a1"))  # self only
    # a reply stamped a minute before its post (clock skew) answers it all the same
    rows.append(fact("r2", "reply_created", now - 30 * hour - 60_000, "pb1", "B", "a2"))
    rows.append(fact("y", "post_created", now - 2 * hour, "pa0", "A", "y"))  # too young
    rows.append(fact("o", "post_created", now - 20 * 24 * hour, "pa0", "A", "o"))  # too old
    for i in range(2):  # unit B: 2 authors, below k = 5
        rows.append(fact(f"b{i}", "post_created", now - 30 * hour, f"pb{i}", "B", f"b{i}"))
    s.flush(facts(rows), [], {})
    refresh_unanswered_gauge(
        s.client, s.database, s.metrics, target_h=24, lookback_days=14, now_ms=now
    )
    reg = s.metrics.registry
    assert reg.get_sample_value("teilhabe_unanswered_posts", {"unit": "A"}) == 5
    assert reg.get_sample_value("teilhabe_unanswered_posts", {"unit": "B"}) is None
    # k comes from the config table the views read, not from the worker's argument
    s.client.insert("teilhabe.config", [("min_group_size", "1")], column_names=("key", "value"))
    refresh_unanswered_gauge(
        s.client, s.database, s.metrics, target_h=24, lookback_days=14, now_ms=now
    )
    assert reg.get_sample_value("teilhabe_unanswered_posts", {"unit": "B"}) == 2


def test_fact_gauges_show_the_newest_day_of_the_views(sink: Any) -> None:
    """E-I, cross-silo share, participation tiers and ideation gauges = the views' rows of the
    newest day (the views are checked against oracles in test_analyst_views)."""
    from pipeline.ops.gauges import refresh_fact_gauges

    s, client = sink
    day_ms = 86_400_000
    t_new = int(T0.timestamp() * 1000)

    def fact(eid: str, etype: str, ts: int, actor: str, unit: str, **more: Any) -> Any:
        ev = dict.fromkeys(EVENT_COLUMNS[4:-2])
        ev.update(event_id=eid, event_type=etype, ts=ts, actor_id=actor, actor_unit=unit)
        ev.update(more)
        return ev

    rows = []
    for i in range(6):  # newest day: A mentions B 6 times, A-internal twice; B views
        rows.append(
            fact(
                f"m{i}",
                "mention",
                t_new + i,
                f"a{i}",
                "A",
                target_actor_id=f"b{i}",
                target_unit="B",
            )
        )
        rows.append(fact(f"v{i}", "view", t_new + i, f"b{i}", "B"))
        rows.append(fact(f"p{i}", "post_created", t_new + i, f"a{i}", "A", content_id=f"c{i}"))
        rows.append(fact(f"i{i}", "idea_submitted", t_new + i, f"b{i}", "B", content_id=f"i{i}"))
    for i in range(2):
        rows.append(
            fact(
                f"n{i}",
                "mention",
                t_new + 10 + i,
                f"a{i}",
                "A",
                target_actor_id=f"a{i + 2}",
                target_unit="A",
            )
        )
    for i in range(6):  # an older day: all internal, must not show
        rows.append(
            fact(
                f"o{i}",
                "mention",
                t_new - day_ms,
                f"a{i}",
                "A",
                target_actor_id=f"a{(i + 1) % 6}",
                target_unit="A",
            )
        )
    s.flush(facts(rows), [], {})
    refresh_fact_gauges(s.client, s.database, s.metrics)
    get = s.metrics.registry.get_sample_value
    assert get("teilhabe_ei_index", {"unit": "A"}) == (6 - 2) / 8
    assert get("teilhabe_ei_index", {"unit": "B"}) == 1.0
    assert get("teilhabe_cross_silo_share", {"unit": "*"}) == 6 / 8
    assert get("teilhabe_participation_people", {"unit": "B", "tier": "contributors"}) == 6
    assert get("teilhabe_participation_people", {"unit": "A", "tier": "observers"}) == 0
    assert get("teilhabe_ideation", {"unit": "B", "kind": "ideas"}) == 6
    assert get("teilhabe_facts_day_timestamp_seconds") == T0.replace(hour=0).timestamp()


def test_space_and_platform_gauges_are_capped_and_k_suppressed(sink: Any) -> None:
    """The busiest TOP_SPACES spaces (by distinct people, newest day) and the platforms with
    at least k people: input-defined label values cannot grow without bound."""
    from pipeline.ops.exporter import TOP_SPACES
    from pipeline.ops.gauges import refresh_fact_gauges

    s, _ = sink
    t_new = int(T0.timestamp() * 1000)
    rows, people = [], TOP_SPACES + 5
    for i in range(people):  # space s{i} has i + 1 distinct people on slack
        for j in range(i + 1):
            ev = dict.fromkeys(EVENT_COLUMNS[4:-2])
            ev.update(event_id=f"s{i}-{j}", event_type="post_created", ts=t_new + j)
            ev.update(actor_id=f"p{j}", actor_unit="A", space_id=f"s{i:02d}", platform="slack")
            rows.append(ev)
    for j in range(4):  # mattermost: 4 people, below k = 5
        ev = dict.fromkeys(EVENT_COLUMNS[4:-2])
        ev.update(event_id=f"m{j}", event_type="view", ts=t_new, actor_id=f"p{j}")
        ev.update(actor_unit="A", space_id="tiny", platform="mattermost")
        rows.append(ev)
    s.flush(facts(rows), [], {})
    refresh_fact_gauges(s.client, s.database, s.metrics)
    samples = {
        sample.labels["space"]: sample.value
        for family in s.metrics.registry.collect()
        if family.name == "teilhabe_space_active_users"
        for sample in family.samples
    }
    busiest = {f"s{i:02d}": float(i + 1) for i in range(people - TOP_SPACES, people)}
    assert samples == busiest
    get = s.metrics.registry.get_sample_value
    assert get("teilhabe_platform_active_users", {"platform": "slack"}) == people
    assert get("teilhabe_platform_active_users", {"platform": "mattermost"}) is None


def test_fact_batch_writes_each_event_as_its_row(sink: Any) -> None:
    """The Arrow path writes exactly the rows ``event_row`` defines: every column, NULLs,
    non-ASCII text, late flag and version, on-time and late events of one flush."""
    s, client = sink
    t0 = int(T0.timestamp() * 1000)
    events = []
    for i in range(40):
        ev = dict.fromkeys(EVENT_COLUMNS[4:-2])
        ev.update(event_id=f"e{i}", event_type=("view", "mention", "share")[i % 3])
        ev.update(ts=t0 + i * 61_001, actor_id=f"{i:032x}", actor_unit=("IT", "Küche")[i % 2])
        if i % 4 == 0:
            ev.update(space_id=f"s{i}", platform="slack", content_id=f"c{i}")
        if i % 5 == 0:
            ev.update(target_actor_id=f"{i + 1:032x}", target_unit="日本", idea_status="new")
            ev.update(parent_content_id="p'\\\"x", root_content_id="r\n\t")
        events.append(ev)
    on_time, late = events[:30], events[30:]
    s.flush(facts(on_time[:10]), [], {})  # two flushes, the second with on-time and late
    batch = facts(on_time[10:], late)
    assert len(batch) == 30
    s.flush(batch, [], {})
    got = client.query(
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM teilhabe.events ORDER BY event_id"
    ).result_rows
    expected = [event_row(ev, late=False) for ev in on_time] + [
        event_row(ev, late=True) for ev in late
    ]
    assert sorted(tuple(r) for r in got) == sorted(expected)


def test_closed_windows_are_written_with_their_figures(sink: Any) -> None:
    """Window rows: one per unit, events = sum by type, distinct actors, close offset."""
    s, client = sink
    w1 = window(3, {"A": 2, "B": 7})
    w1.units["A"].events_by_type["share"] += 4  # 2 views + 4 shares by the same 2 people
    w2 = ClosedWindow(1, w1.start_ms + 3_600_000, 3_600_000, 99, {"C": UnitWindow()})
    w2.units["C"].actors.add("x")
    w2.units["C"].events_by_type.update({"post_created": 1, "view": 3})
    s.flush(facts([]), [w1, w2], {})
    got = client.query(
        "SELECT toUnixTimestamp(window_start), window_s, unit, partition, events, "
        "events_by_type, active_users, close_offset "
        "FROM teilhabe.engagement_window_partials ORDER BY window_start, unit"
    ).result_rows
    start = int(T0.timestamp())
    assert [tuple(r) for r in got] == [
        (start, 3600, "A", 3, 6, {"share": 4, "view": 2}, 2, 10),
        (start, 3600, "B", 3, 7, {"view": 7}, 7, 10),
        (start + 3600, 3600, "C", 1, 4, {"post_created": 1, "view": 3}, 1, 99),
    ]
