"""The embedded ClickHouse HTTP server on the real thing: a chDB child process, driven through
clickhouse-connect's ordinary HttpClient exactly as the pipeline does in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import clickhouse_connect
import orjson
import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from pipeline.dev.clickhouse import (
    EmbeddedClickHouse,
    ensure_embedded_server,
    start_embedded_server,
)
from pipeline.errors import SinkError
from pipeline.settings import Settings, load_settings
from pipeline.sinks.clickhouse import addr_file, embedded_url, format_rows, get_client, run_query

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

COLUMNS = ["s", "n", "ts", "ns", "arr", "lc"]
TYPES_DDL = (
    "s String, n UInt64, ts DateTime64(3, 'UTC'), ns Nullable(String), arr Array(String), "
    "lc LowCardinality(String)"
)


def make_settings(root: Path, **values: Any) -> Settings:
    """Settings for a server under ``root`` (explicit values win over TEILHABE_* variables)."""
    base: dict[str, Any] = {
        "data_dir": root / "var",
        "clickhouse_dsn": f"chdb://{root / 'var' / 'clickhouse'}",
        "clickhouse_database": "chtest",
    }
    base.update(values)
    return load_settings(**base)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    """One server for the module (chDB starts in about a second)."""
    settings = make_settings(tmp_path_factory.mktemp("chserver"))
    with start_embedded_server(settings) as srv:
        get_client(settings).close()  # creates the database chtest
        yield srv


@pytest.fixture
def client(server: EmbeddedClickHouse) -> Iterator[Client]:
    c = get_client(server.settings)
    yield c
    c.close()


def rows_of_all_types(n: int, offset: int = 0) -> list[tuple[Any, ...]]:
    t0 = datetime(2026, 3, 2, 9, 30, 0, 123000, tzinfo=UTC)
    return [
        (
            f"s{i}\t'ä\"\n" if i % 7 == 0 else f"s{i}",
            2**63 + i if i % 11 == 0 else i,
            t0 + timedelta(milliseconds=i),
            None if i % 3 else f"ns{i}",
            [f"a{j}" for j in range(i % 4)],
            f"unit-{i % 5}",
        )
        for i in range(offset, offset + n)
    ]


def as_read(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """What clickhouse-connect returns (tz_mode naive_utc): naive UTC datetimes."""
    return [(r[0], r[1], r[2].astimezone(UTC).replace(tzinfo=None), *r[3:]) for r in rows]


# --- server lifecycle -------------------------------------------------------------------------


def test_publishes_its_url_and_answers_ping(server: EmbeddedClickHouse) -> None:
    url = addr_file(server.settings).read_text().strip()
    assert url == server.url
    assert url.startswith("http://127.0.0.1:") and int(url.rsplit(":", 1)[1]) > 0
    with urllib.request.urlopen(url + "/ping", timeout=5) as resp:
        assert resp.read() == b"Ok.\n"
    assert embedded_url(server.settings) == url
    assert ensure_embedded_server(server.settings) is None  # reuses the running one


def test_get_client_refuses_when_no_server_runs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(SinkError, match="not running.*pipeline.dev.chserver"):
        get_client(settings)


def test_second_server_on_the_same_directory_fails_with_its_log(
    server: EmbeddedClickHouse,
) -> None:
    with pytest.raises(SinkError, match="exited at start") as info:
        EmbeddedClickHouse(server.settings).start(timeout_s=30)
    assert "lock" in str(info.value).lower()
    assert embedded_url(server.settings) == server.url  # the running one is still published


def test_sigterm_stops_cleanly_and_kill_surfaces_as_operational_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    srv = start_embedded_server(settings)
    try:
        c = get_client(settings)
        c.command("CREATE TABLE t (a UInt8) ENGINE = MergeTree ORDER BY a")
        c.insert("t", [(1,)], column_names=["a"])
        os.kill(srv.pid, signal.SIGKILL)
        assert srv.proc is not None
        srv.proc.wait(timeout=10)
        with pytest.raises(OperationalError):
            c.query("SELECT count() FROM t")
        with pytest.raises(OperationalError):
            c.insert("t", [(2,)], column_names=["a"])
        with pytest.raises(SinkError, match="not running"):
            get_client(settings)  # stale addr file, nobody answers
    finally:
        srv.stop()
    # a new server takes over the directory, the data survived the kill
    with start_embedded_server(settings) as again:
        c = get_client(settings)
        assert c.command("SELECT count() FROM t") == 1
        af = addr_file(settings)
        assert af.exists()
        pid = again.pid
    assert not af.exists()  # removed on a clean (SIGTERM) stop
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_refuses_to_bind_beyond_loopback(tmp_path: Path) -> None:
    from pipeline.dev.chserver.server import create_server

    with pytest.raises(ValueError, match="loopback"):
        create_server(tmp_path / "ch", host="0.0.0.0")


# --- protocol ---------------------------------------------------------------------------------


def test_http_headers_and_error_body(server: EmbeddedClickHouse) -> None:
    req = urllib.request.Request(
        server.url + "/?query_id=q-1&database=chtest&max_threads=2",
        data=b"SELECT number AS n FROM system.numbers LIMIT 3 FORMAT JSONEachRow",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.read() == b'{"n":0}\n{"n":1}\n{"n":2}\n'
        assert resp.headers["X-ClickHouse-Query-Id"] == "q-1"
        assert resp.headers["X-ClickHouse-Format"] == "JSONEachRow"
        assert resp.headers["X-ClickHouse-Timezone"]
        assert int(orjson.loads(resp.headers["X-ClickHouse-Summary"])["read_rows"]) >= 3
    url = server.url + "/?query=" + urllib.request.quote("SELECT nope FROM nowhere")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=10)
    assert info.value.code == 500
    assert info.value.headers["X-ClickHouse-Exception-Code"] == "60"
    assert info.value.read().decode().startswith("Code: 60. DB::Exception: ")


@pytest.mark.parametrize("compress", [False, "lz4", "zstd", "gzip"])
def test_insert_and_query_round_trip_all_types(server: EmbeddedClickHouse, compress: Any) -> None:
    table = f"chtest.types_{compress or 'plain'}"
    c = clickhouse_connect.get_client(dsn=server.url, compress=compress)
    c.command(f"CREATE TABLE {table} ({TYPES_DDL}) ENGINE = MergeTree ORDER BY n")
    rows = rows_of_all_types(2000)
    summary = c.insert(table, rows, column_names=COLUMNS)
    assert summary.written_rows == len(rows)
    result = c.query(f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY n")
    assert result.column_names == tuple(COLUMNS)
    assert [t.name for t in result.column_types] == [
        "String",
        "UInt64",
        "DateTime64(3, 'UTC')",
        "Nullable(String)",
        "Array(String)",
        "LowCardinality(String)",
    ]
    assert result.result_rows == sorted(as_read(rows), key=lambda r: r[1])
    # column subsets, insert without column names (DESCRIBE first), query parameters
    c.insert(table, rows_of_all_types(5, offset=10_000))
    assert c.command(f"SELECT count() FROM {table}") == 2005
    server_side = c.query(
        f"SELECT s FROM {table} WHERE n = {{n:UInt64}} AND lc = {{lc:String}}",
        parameters={"n": 10_001, "lc": "unit-1"},
    )
    assert server_side.result_rows == [("s10001",)]
    client_side = c.query(f"SELECT n FROM {table} WHERE s = %(s)s", parameters={"s": "s10002"})
    assert client_side.result_rows == [(10_002,)]
    c.close()


def test_command_results(client: Client) -> None:
    assert client.command("SELECT 42") == 42
    assert client.command("SELECT 'x', 2") == ["x", "2"]
    assert client.command("SELECT 'a' WHERE 0") == ""  # a result set, empty
    client.command("CREATE TABLE cmd (a UInt32, b String) ENGINE = MergeTree ORDER BY a")
    summary = client.command("INSERT INTO cmd VALUES (1, 'x'), (2, 'y')")
    assert summary.written_rows == 2  # type: ignore[union-attr]
    assert client.command("SELECT currentDatabase()") == "chtest"  # get_client selects it
    assert client.raw_query("SELECT a, b FROM cmd ORDER BY a FORMAT JSONEachRow") == (
        b'{"a":1,"b":"x"}\n{"a":2,"b":"y"}\n'
    )
    assert client.raw_insert("cmd", ["a", "b"], "3,z\n", fmt="CSV").written_rows == 1
    assert client.query("SELECT a, b FROM cmd LIMIT 0").column_names == ("a", "b")


def test_errors_are_database_errors_with_the_server_message(client: Client) -> None:
    with pytest.raises(DatabaseError, match="Syntax error") as info:
        client.query("SELEC 1")
    assert info.value.code == 62
    with pytest.raises(DatabaseError, match="no_such_table") as info:
        client.command("SELECT * FROM no_such_table")
    assert info.value.code == 60
    with pytest.raises(DatabaseError, match="UNKNOWN_SETTING"):
        client.query("SELECT 1", settings={"no_such_setting": 1})
    with pytest.raises(DatabaseError):
        client.insert("no_such_table", [(1,)], column_names=["a"], column_type_names=["UInt8"])
    assert client.command("SELECT 1") == 1  # the server is fine afterwards


def test_replacing_merge_tree_final(client: Client) -> None:
    client.command(
        "CREATE TABLE rmt (k String, v String, version UInt32) "
        "ENGINE = ReplacingMergeTree(version) ORDER BY k"
    )
    client.insert("rmt", [("a", "old", 1), ("b", "only", 1)], column_names=["k", "v", "version"])
    client.insert("rmt", [("a", "new", 2)], column_names=["k", "v", "version"])
    client.insert("rmt", [("a", "stale", 0)], column_names=["k", "v", "version"])
    assert client.command("SELECT count() FROM rmt") == 4
    final = client.query("SELECT k, v FROM rmt FINAL ORDER BY k").result_rows
    assert final == [("a", "new"), ("b", "only")]


def test_insert_deduplication_token(client: Client) -> None:
    client.command(
        "CREATE TABLE dedup (id UInt64, v String) ENGINE = MergeTree ORDER BY id "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    batch = [(i, f"v{i}") for i in range(100)]
    for _ in range(3):  # a retried flush
        client.insert(
            "dedup", batch, column_names=["id", "v"], settings={"insert_deduplication_token": "f1"}
        )
    assert client.command("SELECT count() FROM dedup") == 100
    client.insert(
        "dedup", batch, column_names=["id", "v"], settings={"insert_deduplication_token": "f2"}
    )
    assert client.command("SELECT count() FROM dedup") == 200
    # the token is per request: different data without a token is not taken for f2's retry
    other = [(i, "w") for i in range(1000, 1010)]
    client.insert("dedup", other, column_names=["id", "v"])
    assert client.command("SELECT count() FROM dedup") == 210


def test_settings_apply_per_request_and_per_session(server: EmbeddedClickHouse) -> None:
    plain = get_client(server.settings)
    get = "SELECT getSetting('max_block_size')"
    default = plain.command(get)
    assert plain.command(get, settings={"max_block_size": 777}) == 777
    assert plain.command(get) == default
    with pytest.raises(DatabaseError, match="UNKNOWN_SETTING"):  # fails after applying the first
        plain.command(get, settings={"max_block_size": 778, "no_such_setting": 1})
    assert plain.command(get) == default
    # SET without a session does not stick (as on a ClickHouse server)
    plain.command("SET max_block_size = 555")
    assert plain.command("SELECT getSetting('max_block_size')") == default
    # with a session it sticks for that session only
    s1 = clickhouse_connect.get_client(dsn=server.url, session_id="s1")
    s1.command("SET max_block_size = 4321")
    s1.command("USE chtest")
    assert s1.command("SELECT getSetting('max_block_size')") == 4321
    s1.database = None
    assert s1.command("SELECT currentDatabase()") == "chtest"
    assert plain.command("SELECT getSetting('max_block_size')") == default
    assert plain.command("SELECT currentDatabase()") == "chtest"
    other = clickhouse_connect.get_client(dsn=server.url)
    assert other.command("SELECT currentDatabase()") == "default"
    with pytest.raises(DatabaseError, match="UNKNOWN_DATABASE|does not exist"):
        s1.command("USE no_such_db")
    for c in (plain, s1, other):
        c.close()


def test_form_encoded_query_parameters(server: EmbeddedClickHouse) -> None:
    c = clickhouse_connect.get_client(dsn=server.url, form_encode_query_params=True)
    result = c.query("SELECT {a:String} || {b:String}", parameters={"a": "x", "b": "y;"})
    assert result.result_rows == [("xy;",)]
    c.close()


# --- concurrency ------------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys, clickhouse_connect
    url, tag, batches = sys.argv[1], sys.argv[2], int(sys.argv[3])
    c = clickhouse_connect.get_client(dsn=url, compress=False)
    for b in range(batches):
        c.insert("chtest.conc", [(tag, b, i) for i in range(250)], column_names=["w", "b", "i"])
    """
)


def test_concurrent_writers_from_threads_and_processes(server: EmbeddedClickHouse) -> None:
    setup = get_client(server.settings)
    setup.command(
        "CREATE TABLE conc (w String, b UInt32, i UInt32) ENGINE = MergeTree ORDER BY (w, b, i)"
    )
    batches = 20
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, server.url, f"proc{k}", str(batches)])
        for k in range(2)
    ]
    errors: list[BaseException] = []

    def thread_writer(tag: str) -> None:
        try:
            c = get_client(server.settings)
            for b in range(batches):
                c.insert("conc", [(tag, b, i) for i in range(250)], column_names=["w", "b", "i"])
                c.query("SELECT count() FROM conc WHERE w = %(w)s", parameters={"w": tag})
            c.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread_writer, args=(f"thread{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    # one client shared by threads too (no HTTP session, so this is allowed)
    shared_counts: list[int] = []

    def reader() -> None:
        for _ in range(20):
            shared_counts.append(int(str(setup.command("SELECT count() FROM conc"))))

    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in readers:
        t.start()
    for t in threads + readers:
        t.join(timeout=60)
    for p in procs:
        assert p.wait(timeout=60) == 0
    assert not errors, errors
    writers = 6
    rows = setup.query("SELECT w, count(), uniqExact(b, i) FROM conc GROUP BY w ORDER BY w")
    assert len(rows.result_rows) == writers
    assert all(n == batches * 250 and u == n for _, n, u in rows.result_rows)
    assert len(shared_counts) == 40
    setup.close()


# --- CLI helpers ------------------------------------------------------------------------------


def test_run_query_and_format_rows(client: Client) -> None:
    client.command(f"CREATE TABLE fmt ({TYPES_DDL}) ENGINE = MergeTree ORDER BY n")
    client.insert("fmt", rows_of_all_types(3, offset=1), column_names=COLUMNS)
    columns, rows = run_query(client, "SELECT s, n, ts, ns, arr FROM fmt ORDER BY n")
    assert columns == ["s", "n", "ts", "ns", "arr"]
    docs = orjson.loads(format_rows(columns, rows, "json"))
    assert docs[0] == {
        "s": "s1",
        "n": 1,
        "ts": "2026-03-02T09:30:00.124000",
        "ns": None,
        "arr": ["a0"],
    }
    csv_text = format_rows(columns, rows, "csv").splitlines()
    assert csv_text[0] == "s,n,ts,ns,arr"
    assert csv_text[3] == 's3,3,2026-03-02T09:30:00.126000,ns3,"[""a0"",""a1"",""a2""]"'
    table = format_rows(columns, rows, "table").splitlines()
    assert table[0].split() == columns
    assert table[2].split()[:4] == ["s1", "1", "2026-03-02T09:30:00.124000", "NULL"]
    assert table[-1] == "(3 rows)"
    empty_columns, empty_rows = run_query(client, "SELECT s, n FROM fmt WHERE n > 100")
    assert (empty_columns, empty_rows) == (["s", "n"], [])
    assert format_rows(empty_columns, empty_rows, "csv") == "s,n"


# --- throughput (reported, loosely asserted) --------------------------------------------------


def test_insert_throughput(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    client.command(
        "CREATE TABLE bench (id String, n UInt64, ts DateTime64(3, 'UTC'), "
        "unit LowCardinality(String), v Nullable(String)) ENGINE = MergeTree ORDER BY id"
    )
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        (f"e{i}", i, t0 + timedelta(seconds=i), f"u{i % 20}", None if i % 3 else "x")
        for i in range(100_000)
    ]
    cols = ["id", "n", "ts", "unit", "v"]
    client.insert("bench", rows[:10], column_names=cols)  # warm up
    start = time.perf_counter()
    client.insert("bench", rows, column_names=cols)
    one = time.perf_counter() - start
    start = time.perf_counter()
    for k in range(0, len(rows), 10_000):
        client.insert("bench", rows[k : k + 10_000], column_names=cols)
    batched = time.perf_counter() - start
    assert client.command("SELECT count() FROM bench") == 200_010
    with capsys.disabled():
        print(
            f"\nchserver insert 100k rows x 5 cols: one insert {len(rows) / one:,.0f} rows/s, "
            f"10 x 10k {len(rows) / batched:,.0f} rows/s"
        )
    assert len(rows) / one > 20_000
