"""The directory mirror on the real engine (chDB behind the HTTP server): written on change,
leavers removed, and the headcount gauge read from the same ``unit_headcount`` view as SQL.

The directory here is a dict of raw records, as the worker's table holds them (key bytes ->
value bytes); a tombstone is a deleted key. Oracle: a plain count of the dict's valid records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.dev.clickhouse import EmbeddedClickHouse
from pipeline.ops.exporter import PipelineMetrics
from pipeline.ops.gauges import refresh_headcount_gauge
from pipeline.sinks.clickhouse import get_client
from pipeline.sinks.directory import DirectorySync
from pipeline.sinks.facts import ClickHouseSink
from pipeline.sinks.migrate import migrate
from tests.conftest import configure

pytestmark = pytest.mark.integration
K = 3


class CountingClient:
    """The real client; counts the rows inserted into and the statements run on the mirror."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.inserted: list[str] = []  # person ids, one per inserted row
        self.deletes = 0

    def insert(self, table: str, rows: list[Any], **kw: Any) -> Any:
        if table.endswith("directory_people"):
            self.inserted += [r[0] for r in rows]
        return self.client.insert(table, rows, **kw)

    def command(self, sql: str, **kw: Any) -> Any:
        if sql.startswith("DELETE FROM"):
            self.deletes += 1
        return self.client.command(sql, **kw)

    def query(self, sql: str, **kw: Any) -> Any:
        return self.client.query(sql, **kw)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[DirectorySync, CountingClient, PipelineMetrics]]:
    mp = pytest.MonkeyPatch()
    settings = configure(mp, tmp_path, min_group_size=K)
    try:
        with EmbeddedClickHouse(settings):
            client = get_client(settings)
            migrate(client, settings)
            counting = CountingClient(client)
            metrics = PipelineMetrics.create()
            sink = ClickHouseSink(lambda: counting, "teilhabe", metrics, "g", "t")  # type: ignore[arg-type, return-value]
            yield DirectorySync(sink), counting, metrics
            client.close()
    finally:
        mp.undo()


def record(unit: str, **attrs: Any) -> bytes:
    return orjson.dumps({"unit": unit, **attrs})


def oracle(table: dict[bytes, bytes]) -> dict[str, str]:
    """Person -> unit of the valid records, recomputed plainly."""
    out = {}
    for key, raw in table.items():
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict) and isinstance(value.get("unit"), str) and value["unit"]:
            out[key.decode()] = value["unit"]
    return out


def sync(mirror: DirectorySync, table: dict[bytes, bytes], changed: list[bytes]) -> None:
    """What the leader does every few seconds: note the changelog's keys, write the changes."""
    mirror.note(changed)
    mirror.write(mirror.plan_changes(table.get))


def check(mirror: DirectorySync, client: CountingClient, m: PipelineMetrics, table: Any) -> None:
    """Mirror, view and gauge against the oracle."""
    people = dict(
        client.query("SELECT person_id, unit FROM teilhabe.directory_people FINAL").result_rows
    )
    expected = oracle(table)
    assert people == expected
    counts = Counter(expected.values())
    big = {u: n for u, n in counts.items() if n >= K}
    view = dict(client.query("SELECT unit, people FROM teilhabe.unit_headcount").result_rows)
    assert view == big
    refresh_headcount_gauge(client, "teilhabe", m)  # type: ignore[arg-type]
    gauge = {
        s.labels["unit"]: s.value
        for fam in m.registry.collect()
        if fam.name == "teilhabe_directory_headcount"
        for s in fam.samples
    }
    assert gauge == {u: float(n) for u, n in big.items()}


def test_add_move_and_leave(env: Any) -> None:
    mirror, client, m = env
    table = {f"p{i}".encode(): record("IT" if i < 4 else "HR", cohorts=["x"]) for i in range(7)}
    mirror.load()
    mirror.write(mirror.plan_all(list(table.items())))  # the first leader: the whole directory
    assert len(client.inserted) == 7
    check(mirror, client, m, table)  # IT 4, HR 3

    table[b"p7"] = record("HR")  # a new person
    sync(mirror, table, [b"p7"])
    assert client.inserted[7:] == ["p7"]
    check(mirror, client, m, table)  # IT 4, HR 4

    table[b"p0"] = record("HR")  # moved: IT 3, HR 5
    sync(mirror, table, [b"p0", b"p1"])  # p1 re-sent unchanged: not written again
    assert client.inserted[8:] == ["p0"]
    check(mirror, client, m, table)

    del table[b"p1"]  # a leaver (tombstone): IT 2 < k, gone from view and gauge
    sync(mirror, table, [b"p1"])
    assert client.inserted[9:] == [] and client.deletes == 1
    check(mirror, client, m, table)

    table[b"p1"] = record("IT")  # back again
    table[b"p2"] = b"not json"  # a record that is no longer valid: out of the mirror
    sync(mirror, table, [b"p1", b"p2", b"\xff", b""])  # keys no event can name: ignored
    assert client.inserted[9:] == ["p1"] and client.deletes == 2
    check(mirror, client, m, table)

    sync(mirror, table, [])  # nothing changed, nothing written
    assert len(client.inserted) == 10 and client.deletes == 2
    assert (mirror.rows_inserted, mirror.rows_deleted) == (10, 2)


def test_a_new_leader_reconciles_what_it_missed(env: Any) -> None:
    """A takeover compares the whole directory with the mirror: leavers whose tombstones the
    compaction dropped are removed, unchanged people are not written again."""
    first, client, m = env
    table = {f"p{i}".encode(): record("IT") for i in range(5)}
    first.load()
    first.write(first.plan_all(list(table.items())))
    del table[b"p4"]  # never seen as a tombstone by the next leader
    table[b"p3"] = record("HR")
    table[b"p9"] = record("IT")
    nxt = DirectorySync(first.sink)
    nxt.note([b"p0"])  # noted before the takeover: covered by the full compare
    nxt.load()
    plan = nxt.plan_all(list(table.items()))
    assert sorted(r[0] for r in plan.upserts) == ["p3", "p9"] and plan.deletes == ["p4"]
    nxt.write(plan)
    check(nxt, client, m, table)
    assert not nxt.plan_changes(table.get), "the full compare took the noted keys"


def test_a_failed_write_is_retried_with_its_keys(env: Any) -> None:
    mirror, client, m = env
    table = {f"p{i}".encode(): record("IT") for i in range(3)}
    mirror.load()
    mirror.write(mirror.plan_all(list(table.items())))
    table[b"p0"] = record("HR")
    mirror.note([b"p0"])
    plan = mirror.plan_changes(table.get)
    mirror.retry(plan)  # the write failed: nothing marked written, the keys noted again
    sync(mirror, table, [])
    check(mirror, client, m, table)
