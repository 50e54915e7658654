"""Erasure and access requests (docs/privacy.md) on real chDB and the embedded broker.

A seeded organisation goes through the pipeline (harness ``FaultRun``); two people are then
forgotten with ``teilhabe forget`` by their platform ids. The figures must equal the oracle
recomputed from the file without the events those two made; the unit x unit interaction counts of
everybody else must not change (their pseudonym as target is anonymised, the row stays); no
table may still hold their pseudonyms or their raw ids; the directory topic ends with a
tombstone for each. A second run removes nothing. ``export-person`` returns exactly the rows
the oracle gives the person. A small hand-made case checks the window recomputation across
partitions and a window left empty.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.ops.exporter import PipelineMetrics
from pipeline.sinks import erasure
from pipeline.sinks.clickhouse import get_client
from pipeline.sinks.directory import DirectorySync
from pipeline.sinks.facts import ClickHouseSink
from tests.conftest import TEST_KEY, migrated_clickhouse
from tests.faults.harness import (
    FaultRun,
    assert_equal_to_oracle,
    make_dataset,
    oracle,
    read_figures,
    read_records,
)

pytestmark = pytest.mark.integration

INTERACTION_TYPES = ("reply_created", "reaction_added", "mention", "share")
INTERACTIONS_BY_UNITS = (
    "SELECT from_unit, to_unit, count() FROM {db}.interactions {where} GROUP BY 1, 2"
)


def cli(run: FaultRun, *args: str) -> Any:
    """``teilhabe`` in this process against the run's ClickHouse and broker."""
    env = {"TEILHABE_KAFKA_BOOTSTRAP": run.stack.bootstrap, "TEILHABE_KAFKA_FLAVOR": "tansu"}
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def interactions_by_units(
    run: FaultRun, where: str = "", ids: list[str] | None = None
) -> Counter[tuple[str, str]]:
    client = get_client(run.settings)
    try:
        sql = INTERACTIONS_BY_UNITS.format(db=run.settings.clickhouse_database, where=where)
        rows = client.query(sql, parameters={"ids": ids or []}).result_rows
    finally:
        client.close()
    return Counter({(str(f), str(t)): int(n) for f, t, n in rows})


def pick_two(events: list[dict[str, Any]]) -> list[str]:
    """Two busy people who are also targets of others' interactions."""
    acts = Counter(ev["actor_id"] for ev in events)
    targeted = Counter(
        ev["target_actor_id"]
        for ev in events
        if ev.get("target_actor_id") and ev["target_actor_id"] != ev["actor_id"]
    )
    both = sorted((p for p in acts if targeted[p] >= 2), key=lambda p: (-acts[p], p))
    assert len(both) >= 2, "the dataset needs two people who act and are targeted"
    return both[:2]


def expected_export(
    events: list[dict[str, Any]], units: dict[str, str], person: str
) -> Counter[str]:
    """Rows the person has, by table: their events as actor or target (each id once), and
    their directory record."""
    ids = {
        ev["event_id"]
        for ev in events
        if ev["actor_id"] == person or ev.get("target_actor_id") == person
    }
    return Counter({"events": len(ids), "directory_people": int(person in units)})


def scan(run: FaultRun, needles: list[str]) -> list[str]:
    """Every (table, column, needle) where a string column of any table still contains a
    needle; empty when none does."""
    client = get_client(run.settings)
    db = run.settings.clickhouse_database
    found = []
    try:
        cols = client.query(
            "SELECT c.table, c.name FROM system.columns AS c "
            "INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
            "WHERE c.database = {db:String} AND c.type LIKE '%String%' "
            "AND t.engine NOT LIKE '%View%'",
            parameters={"db": db},
        ).result_rows
        assert any(t == "events" for t, _ in cols)
        for table, col in cols:
            for needle in needles:
                n = client.query(
                    f"SELECT count() FROM {db}.{table} WHERE position(ifNull(toString({col}), ''), "
                    "{n:String}) > 0",
                    parameters={"n": needle},
                ).result_rows[0][0]
                if n:
                    found.append(f"{table}.{col} holds {needle!r} ({n} rows)")
    finally:
        client.close()
    return found


@pytest.fixture(scope="module")
def forgotten(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("erasure")
    dataset = make_dataset(root / "data", seed=29, days=2)
    two = pick_two(dataset.events)
    pseudonymise = Pseudonymiser(TEST_KEY.encode())
    ids = [pseudonymise(p) for p in two]
    with FaultRun(root, dataset) as run:
        run.report.scenario = "forget two people"
        run.start_worker()
        run.produce()
        run.wait_drained()
        run.stack.stop_workers()
        exported = cli(run, "export-person", two[0].upper(), "--out", str(root / "export.jsonl"))
        others_before = interactions_by_units(run, "WHERE actor_id NOT IN {ids:Array(String)}", ids)
        started = time.monotonic()
        first = cli(run, "forget", two[0], "--file", str(_people_file(root, two[1:])))
        seconds = time.monotonic() - started
        after_first = read_figures(run.settings)
        second = cli(run, "forget", *two, "nobody-ever@example.org")
        unknown_export = cli(run, "export-person", "nobody-ever@example.org")
        yield {
            "run": run,
            "dataset": dataset,
            "two": two,
            "ids": ids,
            "exported": exported,
            "export_file": root / "export.jsonl",
            "others_before": others_before,
            "others_after": interactions_by_units(run),
            "first": first,
            "second": second,
            "unknown_export": unknown_export,
            "after_first": after_first,
            "after_second": read_figures(run.settings),
            "seconds": seconds,
        }


def _people_file(root: Path, people: list[str]) -> Path:
    path = root / "people.txt"
    path.write_text("# to forget\n\n" + "".join(f"  {p}  \n" for p in people))
    return path


def test_export_person_returns_the_oracles_rows(forgotten: dict[str, Any]) -> None:
    ds, person = forgotten["dataset"], forgotten["two"][0]
    assert forgotten["exported"].exit_code == 0, forgotten["exported"].output
    lines = [orjson.loads(x) for x in forgotten["export_file"].read_bytes().splitlines()]
    got = Counter(line["table"] for line in lines)
    assert got == expected_export(ds.events, ds.units, person)
    pseudonym = forgotten["ids"][0]
    for line in lines:
        row = line["row"]
        assert pseudonym in (row.get("actor_id"), row.get("target_actor_id"), row.get("person_id"))


def test_forget_leaves_the_oracles_figures_without_their_events(
    forgotten: dict[str, Any],
) -> None:
    ds, two = forgotten["dataset"], set(forgotten["two"])
    first = forgotten["first"]
    assert first.exit_code == 0, first.output
    print(f"\nERASURE forget 2 people of {len(ds.events)} events: {forgotten['seconds']:.1f} s")
    print(first.output)
    assert "events (deleted)" in first.output and "tombstone(s) sent" in first.output
    remaining = [ev for ev in ds.events if ev["actor_id"] not in two]
    assert len(remaining) < len(ds.events)
    assert_equal_to_oracle(oracle(remaining, ds.units), forgotten["after_first"])


def test_interactions_of_others_keep_their_units(forgotten: dict[str, Any]) -> None:
    assert forgotten["others_after"] == forgotten["others_before"]
    run = forgotten["run"]
    anonymised = interactions_by_units(run, "WHERE target_id = 'forgotten'")
    ds, two = forgotten["dataset"], set(forgotten["two"])
    expected = sum(
        1
        for ev in {e["event_id"]: e for e in ds.events}.values()
        if ev["event_type"] in INTERACTION_TYPES
        and ev.get("target_actor_id") in two
        and ev["actor_id"] not in two
    )
    assert sum(anonymised.values()) == expected > 0


def test_no_table_holds_them_any_more(forgotten: dict[str, Any]) -> None:
    assert scan(forgotten["run"], [*forgotten["ids"], *forgotten["two"]]) == []


def test_directory_topic_ends_with_tombstones(forgotten: dict[str, Any]) -> None:
    run = forgotten["run"]
    latest: dict[bytes, bytes | None] = {}
    for rec in read_records(run.stack.bootstrap, run.settings.topic_directory):
        latest[rec.key] = rec.value
    for pseudonym in forgotten["ids"]:
        assert pseudonym.encode() in latest
        assert latest[pseudonym.encode()] is None
    # the leader's full mirror sync over the topic as it now is writes nobody back
    client = get_client(run.settings)
    try:
        sink = ClickHouseSink(
            lambda: client, run.settings.clickhouse_database, PipelineMetrics.create(), "g", "t"
        )
        sync = DirectorySync(sink)
        sync.load()
        plan = sync.plan_all(latest.items())
    finally:
        client.close()
    assert not plan, (plan.upserts[:3], plan.deletes[:3])  # the mirror is the directory
    # residual until retention (docs/privacy.md): the activity topic still holds their events
    activity = read_records(run.stack.bootstrap, run.settings.topic_activity)
    assert any(forgotten["ids"][0].encode() in (rec.value or b"") for rec in activity)


def test_second_run_changes_nothing_and_reports_the_unknown(forgotten: dict[str, Any]) -> None:
    second = forgotten["second"]
    assert second.exit_code == 0, second.output
    assert "removed: 0 row(s)" in second.output
    for person in [*forgotten["two"], "nobody-ever@example.org"]:
        assert f"not found: {person}" in second.output
    assert forgotten["after_second"] == forgotten["after_first"]
    unknown = forgotten["unknown_export"]
    assert unknown.exit_code == 0 and '"table"' not in unknown.output
    assert "not found: nobody-ever@example.org" in unknown.output


def test_windows_recomputed_across_partitions_and_emptied(tmp_path: Path) -> None:
    """Hand-made: the forgotten person shares a window with someone of another partition (one
    row recomputed under the lowest partition) and is alone in another (deleted)."""
    t0 = 1_770_000_000_000 - 1_770_000_000_000 % 3_600_000
    start, later = (datetime.fromtimestamp(t // 1000, UTC) for t in (t0, t0 + 3_600_000))
    cols = ("event_id", "event_type", "ts_ms", "actor_id", "actor_unit", "target_actor_id")
    wcols = ("window_start", "window_s", "unit", "partition", "events", "events_by_type",
             "active_users", "close_offset")  # fmt: skip
    with migrated_clickhouse(tmp_path) as client:
        db = "teilhabe"
        client.insert(f"{db}.events", [
            ("e1", "post_created", t0 + 1, "A", "IT", None),
            ("e2", "reply_created", t0 + 2, "B", "HR", "A"),
            ("e3", "view", t0 + 3, "C", "IT", None),
            ("e4", "view", t0 + 3_600_001, "A", "IT", None),
        ], column_names=cols)  # fmt: skip
        client.insert(f"{db}.engagement_window_partials", [
            (start, 3600, "IT", 1, 1, {"post_created": 1}, 1, 7),
            (start, 3600, "IT", 0, 1, {"view": 1}, 1, 9),
            (start, 3600, "HR", 1, 1, {"reply_created": 1}, 1, 7),
            (later, 3600, "IT", 1, 1, {"view": 1}, 1, 8),
        ], column_names=wcols)  # fmt: skip
        client.insert(f"{db}.directory_people", [("A", "IT", "{}")],
                      column_names=("person_id", "unit", "attributes"))  # fmt: skip
        report = erasure.forget(client, db, ["A", "Z"])
        assert report.not_found == ["Z"]
        assert report.removed == {
            "engagement_window_partials (recomputed)": 1,
            "engagement_window_partials (deleted, nobody left)": 1,
            "directory_people (deleted)": 1,
            "events (deleted)": 2,
            "events.target_actor_id (set to 'forgotten')": 1,
        }
        rows = client.query(
            f"SELECT unit, partition, events, events_by_type, active_users, close_offset "
            f"FROM {db}.engagement_window_partials FINAL ORDER BY unit"
        ).result_rows
        assert rows == [("HR", 1, 1, {"reply_created": 1}, 1, 7), ("IT", 0, 1, {"view": 1}, 1, 9)]
        exported = list(erasure.export_person(client, db, "B"))
        assert [(r["table"], r["row"]["target_actor_id"]) for r in exported] == [
            ("events", "forgotten")
        ]
        again = erasure.forget(client, db, ["A"])
        assert again.total == 0 and again.not_found == ["A"]
