"""The oracle at realistic size: ``run_backfill`` over ~300,000 generated events spanning ten
months (out of order in places, some of it late), on the real embedded broker and chDB,
compared exactly with plain-Python recomputations over the same events: the window
aggregates (``engagement_window_partials`` and the k-suppressed ``engagement_windows``), the
``events`` facts (count, distinct ids, late ones) and the analyst views
``daily_active_by_unit`` and ``daily_silo_matrix``.

Out-of-order input: the generated history is in time order; 5% of the events are moved later
in the file by less than the grace period (never late: the watermark never passes what the
file held before them, so not their window's end + grace) and 0.1% by a month or more, with a
month of newer events before them in the file (late: every activity partition has seen
newer events than their window in earlier records, however the ingest cut its batches; they
are kept in the facts, flagged late, and the daily views count them). One input partition
makes which events are late a function of the file: with several, the watermark is the
minimum over the input partitions, and how far each has got when a late event arrives
depends on timing.
"""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from pipeline.dev import generator as gen
from pipeline.dev.backfill import run_backfill
from pipeline.dev.clickhouse import EmbeddedClickHouse
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import get_client
from tests.conftest import configure
from tests.faults.harness import (
    GRACE_S,
    WINDOW_S,
    Dataset,
    assert_equal_to_oracle,
    dataset_from_spec,
    oracle,
    read_figures,
)
from tests.integration.test_analyst_views import oracle_active, oracle_matrix, rows

pytestmark = pytest.mark.integration

K = 3  # some (hour, unit) and (day, unit) groups fall below it: suppression is checked too
SPEC = gen.OrgSpec(
    seed=23, units=gen.scaled_units(100), start=datetime(2025, 1, 6, tzinfo=UTC), days=305
)
DAY_MS = 86_400_000
SHORT_SHARE, FAR_SHARE = 0.05, 0.001
#: Far enough to be late whatever the batching: an activity record holds at most
#: TEILHABE_KAFKA_MAX_RECORD_BYTES (1 MB, ~3,500 events, ~2 weeks of one partition's events
#: here), so records before the late event's own already carry newer events than its window.
FAR_MIN_MS = 30 * DAY_MS


def ms(ev: dict[str, Any]) -> int:
    when = datetime.fromisoformat(ev["occurred_at"].replace("Z", "+00:00"))
    return round(when.timestamp() * 1000)


def out_of_order(dataset: Dataset, path: Path) -> set[str]:
    """Write the dataset's events to ``path`` with some moved later in the file; returns the
    ids of those moved far enough to be late."""
    rng = random.Random(5)
    lines = dataset.events_path.read_bytes().splitlines()
    keys, far = [], set()
    for ev in dataset.events:
        delay, r, t = 0, rng.random(), ms(ev)
        if r < FAR_SHARE and t < SPEC.end_ms - FAR_MIN_MS:  # a month of newer events before it
            delay = rng.randrange(FAR_MIN_MS, 3 * FAR_MIN_MS)
            far.add(ev["event_id"])
        elif r < FAR_SHARE + SHORT_SHARE:
            delay = rng.randrange((GRACE_S - 60) * 1000)
        keys.append(t + delay)
    # an event moves behind every event older than its key: the newest event before it in
    # the file is at most ``delay`` newer than itself
    order = sorted(range(len(lines)), key=keys.__getitem__)
    path.write_bytes(b"\n".join(lines[i] for i in order) + b"\n")
    return far


def facts(dataset: Dataset) -> list[dict[str, Any]]:
    """The events as the pipeline stores them (units filled from the directory as the
    ingest does), in the shape of the analyst-view oracles."""
    units = dataset.units
    out = []
    for ev in dataset.events:
        target = ev.get("target_actor_id")
        out.append(
            {
                "event_id": ev["event_id"],
                "event_type": ev["event_type"],
                "ts": ms(ev),
                "actor_id": ev["actor_id"],
                "actor_unit": ev.get("actor_unit") or units.get(ev["actor_id"], "unknown"),
                "target_actor_id": target,
                "target_unit": (ev.get("target_unit") or units.get(target, "unknown"))
                if target
                else None,
            }
        )
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, Dataset, set[str]]]:
    root = tmp_path_factory.mktemp("real-size")
    dataset = dataset_from_spec(root / "data", SPEC)
    shuffled = root / "data" / "shuffled.jsonl"
    far = out_of_order(dataset, shuffled)
    mp = pytest.MonkeyPatch()
    try:
        settings = configure(
            mp,
            root,
            window_s=WINDOW_S,
            grace_s=GRACE_S,
            events_partitions=1,
            min_group_size=K,
            facts_ttl_days=36500,  # the history is fixed in 2025: keep it whatever today is
        )
        summary = run_backfill(
            settings, shuffled, dataset.directory_path, console=Console(file=io.StringIO())
        )
        assert summary["events"] == len(dataset.events)
        with EmbeddedClickHouse(settings):
            yield settings, dataset, far
    finally:
        mp.undo()


def test_the_history_is_real_size(run: tuple[Settings, Dataset, set[str]]) -> None:
    _, dataset, far = run
    days = {ev["occurred_at"][:10] for ev in dataset.events}
    assert len(dataset.events) >= 300_000 and len(days) >= 300
    assert 100 <= len(far) <= 1000


def test_windows_and_facts_equal_the_oracle(run: tuple[Settings, Dataset, set[str]]) -> None:
    settings, dataset, far = run
    on_time = [ev for ev in dataset.events if ev["event_id"] not in far]
    late = [ev for ev in dataset.events if ev["event_id"] in far]
    expected = oracle(on_time, dataset.units, late)
    assert expected.late == len(far)
    assert_equal_to_oracle(expected, read_figures(settings))
    client = get_client(settings)
    try:
        suppressed = {
            (int(t), str(u)): (int(a), int(e))
            for t, u, a, e in client.query(
                "SELECT toUnixTimestamp(window_start), unit, active_users, events "
                f"FROM {settings.clickhouse_database}.engagement_windows"
            ).result_rows
        }
    finally:
        client.close()
    want = {key: v for key, v in expected.windows.items() if v[0] >= K}
    assert len(want) < len(expected.windows), "k must leave some windows out"
    assert suppressed == want


def test_daily_views_equal_the_oracle(run: tuple[Settings, Dataset, set[str]]) -> None:
    settings, dataset, _ = run
    all_facts = facts(dataset)  # late ones included: the views are over every fact
    client = get_client(settings)
    db = settings.clickhouse_database
    try:
        people = client.query(f"SELECT count() FROM {db}.directory_people FINAL").result_rows
        assert people[0][0] == len(dataset.units), "the directory mirror is incomplete"
        active = rows(client, f"SELECT * FROM {db}.daily_active_by_unit")
        matrix = rows(client, f"SELECT * FROM {db}.daily_silo_matrix")
    finally:
        client.close()
    want_active = oracle_active(all_facts, dataset.units, K)
    assert len(want_active) > 1000
    assert active == want_active
    want_matrix = oracle_matrix(all_facts, K)
    assert {(f, t) for _, f, t, _ in want_matrix} >= {("IT", "Vertrieb"), ("IT", "IT")}
    assert matrix == want_matrix
