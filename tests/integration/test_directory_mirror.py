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


def scraped_headcounts(stack: Any) -> list[dict[str, float]]:
    """teilhabe_directory_headcount of each running worker's /metrics."""
    import re
    import urllib.request

    out = []
    for url in stack.worker_metrics_urls():
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        pattern = r'^teilhabe_directory_headcount\{unit="(.*)"\} (\S+)$'
        out.append({m.group(1): float(m.group(2)) for m in re.finditer(pattern, text, re.M)})
    return out


def test_two_workers_mirror_a_move_and_a_leaver_and_one_exports_the_headcount(
    tmp_path: Path,
) -> None:
    """Through Kafka: the directory topic, the workers' tables, the leader's mirror, the view
    and /metrics. A person moved and a leaver's tombstone show in the mirror, the view and the
    gauge; exactly one worker exports the headcount (the other its family empty)."""
    import time

    from pipeline.dev.devstack import DevStack
    from pipeline.sources.producer import make_producer

    mp = pytest.MonkeyPatch()
    settings = configure(mp, tmp_path, min_group_size=2)
    table = {f"{i:032x}".encode(): record("IT" if i < 3 else "HR") for i in range(6)}
    try:
        with DevStack(settings) as stack:
            producer = make_producer(stack.bootstrap, tansu=settings.tansu)
            for key, value in table.items():
                producer.send(settings.topic_directory, key=key, value=value).get(timeout=30)
            stack.start_worker()
            stack.start_worker()
            client = get_client(settings)

            def state() -> tuple[dict[str, str], dict[str, int], list[dict[str, float]]]:
                people = client.query(
                    "SELECT person_id, unit FROM teilhabe.directory_people FINAL"
                ).result_rows
                view = client.query("SELECT unit, people FROM teilhabe.unit_headcount")
                return dict(people), dict(view.result_rows), scraped_headcounts(stack)

            def settled() -> tuple[dict[str, str], dict[str, int], list[dict[str, float]]]:
                expected = oracle(table)
                big = {u: n for u, n in Counter(expected.values()).items() if n >= 2}
                deadline = time.monotonic() + 90
                while True:
                    people, view, scraped = state()
                    exported = [s for s in scraped if s]
                    done = people == expected and view == big and len(scraped) == 2
                    if done and exported == [{u: float(n) for u, n in big.items()}]:
                        return people, view, scraped
                    if time.monotonic() > deadline:
                        return people, view, scraped
                    time.sleep(0.5)

            def check_settled() -> None:
                people, view, scraped = settled()
                expected = oracle(table)
                big = {u: float(n) for u, n in Counter(expected.values()).items() if n >= 2}
                assert people == expected
                assert view == {u: int(n) for u, n in big.items()}
                assert sorted(map(len, scraped)) == [0, len(big)], "one worker exports it"
                assert [s for s in scraped if s] == [big]

            check_settled()  # IT 3, HR 3
            moved, leaver, joiner = b"%032x" % 0, b"%032x" % 3, b"%032x" % 6
            table[moved] = record("HR")
            del table[leaver]
            table[joiner] = record("Sales")  # alone: below k, in the mirror, not in the view
            producer.send(settings.topic_directory, key=moved, value=table[moved]).get(30)
            producer.send(settings.topic_directory, key=leaver, value=None).get(30)  # tombstone
            producer.send(settings.topic_directory, key=joiner, value=table[joiner]).get(30)
            producer.close()
            check_settled()  # IT 2, HR 3, Sales 1 (suppressed)
            client.close()
    finally:
        mp.undo()
