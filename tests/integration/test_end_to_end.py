"""End to end on the real embedded broker (Tansu) and chDB: generated organisation -> Kafka ->
workers -> ClickHouse and /metrics, checked against a plain recomputation from the JSONL."""

from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.dev import generator as gen
from pipeline.dev.devstack import DevStack, wait_until_drained
from pipeline.settings import Settings
from pipeline.sources.producer import (
    make_producer,
    produce_directory_file,
    produce_end_of_input,
    produce_events,
    read_jsonl,
)
from tests.conftest import TEST_KEY, configure
from tests.faults.harness import WINDOW_S, metric_value, oracle, read_records

pytestmark = pytest.mark.integration

#: every analyst view: a pure function of the facts, so 1 and 2 workers must agree exactly
ANALYST_VIEWS = (
    "daily_active_by_unit",
    "daily_silo_matrix",
    "daily_ei_index",
    "daily_response",
    "daily_response_by_space",
    "participation_pyramid",
    "daily_stickiness",
    "daily_boundary_spanners",
    "daily_space_diversity",
    "daily_contribution_inequality",
    "persona_28d",
    "daily_growth",
    "daily_ideation",
    "idea_funnel",
    "daily_cohort_activity",
    "daily_baseline_ratio",
    "daily_active_by_space",
    "daily_community_health",
)
BAD_LINES = {
    b"this is not json": "not_json",
    orjson.dumps(
        {
            "event_id": "bad-1",
            "event_type": "teleported",
            "occurred_at": "2026-01-05T10:00:00Z",
            "actor_id": "x",
        }
    ): "unknown_event_type",
    orjson.dumps(
        {"event_id": "bad-2", "event_type": "view", "occurred_at": "2026-01-05T10:00:00Z"}
    ): "missing_field",
    orjson.dumps(
        {
            "event_id": "bad-3",
            "event_type": "view",
            "occurred_at": "2999-01-05T10:00:00Z",
            "actor_id": "x",
        }
    ): "future_timestamp",
    orjson.dumps(
        {
            "event_id": "bad-4",
            "event_type": "view",
            "occurred_at": "2026-01-05T10:00:00Z",
            "actor_id": 17,
        }
    ): "wrong_type",
}


@pytest.fixture(scope="module")
def dataset(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, list[dict[str, Any]], dict[str, str]]:
    """A seeded organisation (2 days) as JSONL, with invalid lines mixed in."""
    d = tmp_path_factory.mktemp("data")
    spec = gen.OrgSpec(seed=7, start=datetime(2026, 1, 5, tzinfo=UTC), days=2)
    events_path, dir_path = d / "events.jsonl", d / "directory.jsonl"
    gen.write_jsonl(gen.Organisation(spec), events_path, dir_path)
    good = [orjson.loads(line) for line in read_jsonl(events_path)]
    mixed = d / "mixed.jsonl"
    with open(mixed, "wb") as fh:
        bad = list(BAD_LINES)
        step = max(1, len(good) // (len(bad) + 1))
        for i, line in enumerate(read_jsonl(events_path)):
            fh.write(line + b"\n")
            if i % step == step - 1 and bad:
                fh.write(bad.pop() + b"\n")
    units = {r["person_id"]: r["unit"] for r in map(orjson.loads, read_jsonl(dir_path))}
    return mixed, dir_path, good, units


def scrape_after_gauge_refresh(urls: list[str], timeout_s: float = 30.0) -> list[str]:
    """The workers' /metrics, once the leader's engagement gauges show the drained windows:
    they are refreshed from ClickHouse on a period (agents/engagement.py), so a scrape right
    after the drain may come before it on a loaded machine."""
    deadline = time.monotonic() + timeout_s
    while True:
        texts = [urllib.request.urlopen(u, timeout=5).read().decode() for u in urls]
        shown = metric_value("\n".join(texts), "teilhabe_engagement_active_users") > 0
        if shown or time.monotonic() > deadline:
            return texts
        time.sleep(0.5)


def run_pipeline(settings: Settings, mixed: Path, directory: Path, workers: int) -> dict[str, Any]:
    """Produce the file, run ``workers`` workers until drained; collect what they produced."""
    from pipeline.dev.backfill import BACKFILL_ENV
    from pipeline.sinks.clickhouse import get_client

    with DevStack(settings, extra_env=BACKFILL_ENV) as stack:
        producer = make_producer(stack.bootstrap, tansu=settings.tansu)
        produce_directory_file(producer, settings, directory)
        for _ in range(workers):
            stack.start_worker()
        produce_events(producer, settings.topic_events, read_jsonl(mixed), envelope_size=200)
        produce_end_of_input(producer, settings.topic_events)
        producer.close()
        wait_until_drained(stack.bootstrap, settings, 240, workers=stack.workers)
        metrics = scrape_after_gauge_refresh(stack.worker_metrics_urls())
        dead = [
            (dict(m.headers)["reason"].decode(), m.value)
            for m in read_records(stack.bootstrap, settings.topic_deadletter)
        ]
        client = get_client(settings)
        db = settings.clickhouse_database
        windows = client.query(
            f"SELECT toUnixTimestamp(window_start), unit, sum(active_users), sum(events) "
            f"FROM {db}.engagement_window_partials FINAL GROUP BY 1, 2"
        ).result_rows
        facts = client.query(
            f"SELECT count(), countIf(is_late = 1), uniqExact(event_id) FROM {db}.events FINAL"
        ).result_rows[0]
        ids = client.query(f"SELECT DISTINCT actor_id FROM {db}.events").result_rows
        deadline = time.monotonic() + 15  # the directory mirror runs every 5 s
        while True:
            people = client.query(
                f"SELECT person_id, unit FROM {db}.directory_people FINAL"
            ).result_rows
            if len(people) >= len(set(read_jsonl(directory))) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        views = {
            name: sorted(client.query(f"SELECT * FROM {db}.{name}").result_rows, key=repr)
            for name in ANALYST_VIEWS
        }
        adoption = client.query(
            f"SELECT unit, sum(active_users), any(adoption_rate) FROM {db}.daily_active_by_unit "
            "GROUP BY unit"
        ).result_rows
        client.close()
    return {
        "windows": {(int(t), u): (int(a), int(e)) for t, u, a, e in windows},
        "facts": facts,
        "dead": dead,
        "metrics": metrics,
        "actor_ids": {r[0] for r in ids},
        "directory_people": dict(people),
        "views": views,
        "adoption": adoption,
    }


@pytest.fixture(scope="module")
def one_worker(dataset: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    mp = pytest.MonkeyPatch()
    try:
        settings = _settings(mp, tmp_path_factory.mktemp("one"))
        return run_pipeline(settings, dataset[0], dataset[1], workers=1)
    finally:
        mp.undo()


def _settings(mp: pytest.MonkeyPatch, root: Path) -> Settings:
    return configure(mp, root, window_s=WINDOW_S, grace_s=1800)


def test_clickhouse_windows_equal_the_oracle(one_worker: dict[str, Any], dataset: Any) -> None:
    _, _, good, units = dataset
    expected = oracle(good, units).windows
    assert one_worker["facts"][1] == 0, "input in time order: nothing may be late here"
    assert one_worker["windows"] == expected


def test_event_facts_complete_and_deduplicated(one_worker: dict[str, Any], dataset: Any) -> None:
    good = dataset[2]
    n, _late, distinct = one_worker["facts"]
    assert n == distinct == len({e["event_id"] for e in good})


def test_invalid_messages_all_in_dead_letter_topic(one_worker: dict[str, Any]) -> None:
    got = Counter(reason for reason, _ in one_worker["dead"])
    assert got == Counter(BAD_LINES.values())
    payloads = {v for _, v in one_worker["dead"]}
    assert b"this is not json" in payloads


def test_metrics_expose_counts_and_gauges(one_worker: dict[str, Any], dataset: Any) -> None:
    texts = one_worker["metrics"]
    all_text = "\n".join(texts)
    assert metric_value(all_text, "teilhabe_events_ingested_total") == len(dataset[2])
    for reason, n in Counter(BAD_LINES.values()).items():
        assert metric_value(all_text, "teilhabe_events_invalid_total", f'reason="{reason}"') == n
    assert metric_value(all_text, "teilhabe_engagement_active_users") > 0
    assert metric_value(all_text, "teilhabe_window_flushes_total") > 0
    lag = [
        line
        for text in texts
        for line in text.splitlines()
        if line.startswith("teilhabe_consumer_lag_messages{")
    ]
    topics = {m.group(1) for line in lag if (m := re.search(r'topic="([^"]+)"', line))}
    assert {"teilhabe.events", "teilhabe.activity"} <= topics, f"lag not reported: {lag}"
    assert all(float(line.rsplit(" ", 1)[1]) == 0 for line in lag), f"drained, yet lag: {lag}"


def test_no_raw_ids_reach_clickhouse(one_worker: dict[str, Any], dataset: Any) -> None:
    raw = {e["actor_id"] for e in dataset[2]}
    assert not raw & one_worker["actor_ids"]
    assert all(len(a) == 32 for a in one_worker["actor_ids"])


def test_directory_is_mirrored_for_adoption_rates(
    one_worker: dict[str, Any], dataset: Any, settings_key: bytes = TEST_KEY.encode()
) -> None:
    """Every person of the directory is in ClickHouse (pseudonymised), so adoption rates have
    their denominator: active people / headcount of the unit."""
    from pipeline.contract.pseudonym import Pseudonymiser

    units = dataset[3]
    pseudonymise = Pseudonymiser(settings_key)
    assert one_worker["directory_people"] == {pseudonymise(p): u for p, u in units.items()}
    headcount = Counter(units.values())
    for unit, _active, rate in one_worker["adoption"]:
        if unit in headcount:
            assert rate is not None and 0 < rate <= 1, (unit, rate)


def test_two_workers_give_the_same_totals(
    one_worker: dict[str, Any], dataset: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    mp = pytest.MonkeyPatch()
    try:
        settings = _settings(mp, tmp_path_factory.mktemp("two"))
        two = run_pipeline(settings, dataset[0], dataset[1], workers=2)
    finally:
        mp.undo()
    assert two["windows"] == one_worker["windows"]
    assert two["facts"] == one_worker["facts"]
    for name, rows in one_worker["views"].items():
        assert repr(two["views"][name]) == repr(rows), f"{name} differs between 1 and 2 workers"
    assert one_worker["views"]["daily_ei_index"], "the views must have something to compare"
    assert len(two["metrics"]) == 2
