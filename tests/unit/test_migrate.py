"""Versioned migrations: file discovery, statement splitting, ordering, idempotence and
checksums, applied to the embedded ClickHouse through the HTTP server."""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.contract.events import CONTRIBUTION_TYPES, INTERACTION_TYPES
from pipeline.dev.clickhouse import EmbeddedClickHouse, start_embedded_server
from pipeline.errors import ConfigError
from pipeline.settings import Settings, load_settings
from pipeline.sinks.clickhouse import get_client
from pipeline.sinks.migrate import (
    facts_ttl_tables,
    migrate,
    migration_files,
    split_statements,
    sql_tuple,
)

_db_numbers = itertools.count()


# --- without ClickHouse -----------------------------------------------------------------------


def test_split_statements_respects_quotes_and_comments() -> None:
    text = """
    -- header; with a semicolon
    CREATE TABLE {db}.a (s String DEFAULT 'x;y') ENGINE = Memory;
    /* block; comment */
    INSERT INTO {db}.a VALUES ('it''s; fine'), ('back\\'slash;');

    ;
    SELECT `odd;name` FROM {db}.a
    -- trailing comment only;
    """
    stmts = split_statements(text)
    assert len(stmts) == 3
    assert stmts[0].endswith("ENGINE = Memory")
    assert "'it''s; fine'" in stmts[1] and "('back\\'slash;')" in stmts[1]
    assert stmts[2].startswith("SELECT `odd;name`")


def test_migration_files_are_ordered_by_version(tmp_path: Path) -> None:
    for name in ["010_late.sql", "002_second.sql", "001_first.sql"]:
        (tmp_path / name).write_text("SELECT 1;")
    (tmp_path / "README.md").write_text("not a migration")
    assert [m.name for m in migration_files(tmp_path)] == [
        "001_first.sql",
        "002_second.sql",
        "010_late.sql",
    ]
    assert [m.version for m in migration_files(tmp_path)] == [1, 2, 10]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["001_a.sql", "001_b.sql"], "share version 1"),
        (["1_a.sql"], "'1_a.sql' is not named NNN_name.sql"),
        (["001-Core.sql"], "not named NNN_name.sql"),
    ],
)
def test_bad_migration_files_are_config_errors(
    tmp_path: Path, names: list[str], message: str
) -> None:
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    with pytest.raises(ConfigError, match=message):
        migration_files(tmp_path)


def test_contract_sets_are_filled_in_and_never_copied_into_the_sql() -> None:
    """The contribution and interaction types have one definition, the event contract: the
    SQL names them only as placeholders, and rendering fills in exactly the contract's sets."""
    sets = {"{contribution_types}": CONTRIBUTION_TYPES, "{interaction_types}": INTERACTION_TYPES}
    settings = load_settings()
    used: set[str] = set()
    # the definition in force of each view is its last CREATE (a later migration re-creates a
    # view; the applied files stay unchanged): those must name the sets by placeholder only
    in_force: dict[str, tuple[str, str]] = {}
    for mig in migration_files():
        for statement in split_statements(mig.text):
            name = re.search(
                r"CREATE\s+(?:OR REPLACE\s+)?\w+\s+(?:IF NOT EXISTS\s+)?(\S+)", statement
            )
            in_force[name.group(1) if name else statement] = (mig.name, statement)
    for mig_name, statement in in_force.values():
        for literal in re.findall(r"\(\s*'[^()]*'\s*\)", statement):
            names = frozenset(re.findall(r"'([^']*)'", literal))
            for placeholder, types in sets.items():
                # the set itself, or a near copy (one type missing or one added)
                assert len(names & types) < len(types) - 1, (
                    f"{mig_name}: literal {literal} copies {placeholder}; use the placeholder"
                )
    for mig in migration_files():
        used |= {p for p in sets if p in mig.text}
        rendered = "\n".join(mig.render(settings))
        assert not re.search(r"\{[a-z_]+\}", rendered), f"{mig.name}: placeholder left unfilled"
        for placeholder, types in sets.items():
            if placeholder in mig.text:
                assert sql_tuple(types) in rendered
    assert used == set(sets), "the views use both sets"
    tuples = re.findall(r"'([a-z_]+)'", sql_tuple(CONTRIBUTION_TYPES))
    assert set(tuples) == CONTRIBUTION_TYPES


def test_sql_tuple_refuses_anything_but_plain_names() -> None:
    assert sql_tuple(frozenset({"b", "a_c"})) == "('a_c', 'b')"
    for bad in (frozenset(), frozenset({"x'); DROP TABLE t; --"}), frozenset({"A"})):
        with pytest.raises(ValueError):
            sql_tuple(bad)


def test_packaged_migrations_are_found() -> None:
    files = migration_files()
    assert files, "schemas/clickhouse/*.sql ships with the package"
    assert [m.version for m in files] == sorted({m.version for m in files})


# --- on the embedded ClickHouse ---------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedClickHouse]:
    root = tmp_path_factory.mktemp("migrate")
    settings = load_settings(
        data_dir=root / "var", clickhouse_dsn=f"chdb://{root / 'var' / 'clickhouse'}"
    )
    with start_embedded_server(settings) as srv:
        yield srv


@pytest.fixture
def env(
    server: EmbeddedClickHouse, tmp_path: Path
) -> Iterator[tuple[Settings, Client, Path, Callable[[str, str], Path]]]:
    """(settings with a fresh database, client, migrations dir, write(name, sql))."""
    settings = server.settings.model_copy(
        update={"clickhouse_database": f"mig{next(_db_numbers)}", "facts_ttl_days": 30}
    )
    client = get_client(settings)
    folder = tmp_path / "migrations"
    folder.mkdir()

    def write(name: str, sql: str) -> Path:
        path = folder / name
        path.write_text(sql)
        return path

    yield settings, client, folder, write
    client.close()


FIRST = """
-- the facts table
CREATE TABLE IF NOT EXISTS {db}.facts (id String, ts DateTime)
ENGINE = MergeTree ORDER BY id
TTL ts + INTERVAL {ttl_days} DAY;
INSERT INTO {db}.facts VALUES ('seed', now());
"""
SECOND = """
ALTER TABLE {db}.facts ADD COLUMN IF NOT EXISTS kind LowCardinality(String) DEFAULT 'x';
CREATE OR REPLACE VIEW {db}.kinds AS SELECT kind, count() AS n FROM {db}.facts GROUP BY kind;
"""


def test_applies_in_order_fills_placeholders_and_records(env: tuple) -> None:
    settings, client, folder, write = env
    db = settings.clickhouse_database
    write("002_kinds.sql", SECOND)  # depends on 001: only works in version order
    write("001_facts.sql", FIRST)
    assert migrate(client, settings, folder) == ["001_facts.sql", "002_kinds.sql"]
    assert client.query(f"SELECT kind, n FROM {db}.kinds").result_rows == [("x", 1)]
    ddl = str(client.command(f"SHOW CREATE TABLE {db}.facts"))
    assert "toIntervalDay(30)" in ddl.replace("\\n", " ")
    recorded = client.query(
        f"SELECT version, name, length(checksum), applied_at > now() - 600 "
        f"FROM {db}.schema_migrations FINAL ORDER BY version"
    ).result_rows
    assert recorded == [(1, "001_facts.sql", 64, True), (2, "002_kinds.sql", 64, True)]


def test_is_idempotent_and_applies_only_new_ones(env: tuple) -> None:
    settings, client, folder, write = env
    db = settings.clickhouse_database
    write("001_facts.sql", FIRST)
    assert migrate(client, settings, folder) == ["001_facts.sql"]
    assert migrate(client, settings, folder) == []
    assert migrate(client, settings, folder) == []
    assert client.command(f"SELECT count() FROM {db}.facts") == 1  # the seed ran once
    write("002_kinds.sql", SECOND)
    assert migrate(client, settings, folder) == ["002_kinds.sql"]
    assert migrate(client, settings, folder) == []
    assert client.command(f"SELECT count() FROM {db}.schema_migrations FINAL") == 2


def test_changed_applied_migration_is_an_error_naming_the_file(env: tuple) -> None:
    settings, client, folder, write = env
    db = settings.clickhouse_database
    first = write("001_facts.sql", FIRST)
    migrate(client, settings, folder)
    first.write_text(FIRST.replace("id String", "id String, extra UInt8"))
    write("002_kinds.sql", SECOND)
    with pytest.raises(ConfigError, match=r"001_facts\.sql changed after it was applied"):
        migrate(client, settings, folder)
    # nothing else ran: 002 is still pending
    assert client.command(f"EXISTS TABLE {db}.kinds") == 0
    first.write_text(FIRST)
    assert migrate(client, settings, folder) == ["002_kinds.sql"]


def test_failed_migration_is_not_recorded_and_retried(env: tuple) -> None:
    settings, client, folder, write = env
    db = settings.clickhouse_database
    write("001_facts.sql", FIRST)
    bad = write("002_kinds.sql", SECOND.replace("GROUP BY kind", "GROUP BY no_such_column"))
    with pytest.raises(DatabaseError, match="no_such_column"):
        migrate(client, settings, folder)
    versions = client.query(f"SELECT version FROM {db}.schema_migrations FINAL").result_rows
    assert versions == [(1,)]
    bad.write_text(SECOND)  # never applied, so fixing it is allowed
    assert migrate(client, settings, folder) == ["002_kinds.sql"]


def test_min_group_size_is_written_to_the_config_table(env: tuple) -> None:
    settings, client, folder, write = env
    db = settings.clickhouse_database
    write(
        "001_config.sql",
        "CREATE TABLE IF NOT EXISTS {db}.config (key String, value String) "
        "ENGINE = ReplacingMergeTree ORDER BY key;",
    )
    migrate(client, settings.model_copy(update={"min_group_size": 7}), folder)
    migrate(client, settings.model_copy(update={"min_group_size": 9}), folder)
    rows = dict(client.query(f"SELECT key, value FROM {db}.config FINAL").result_rows)
    assert rows["min_group_size"] == "9", "the newest value wins"
    assert rows["response_target_h"] == str(settings.response_target_h)
    assert rows["persona_ratio"] == str(settings.persona_ratio)
    assert rows["grace_s"] == str(settings.grace_s)


# --- retention: TEILHABE_FACTS_TTL_DAYS applies on every migrate ----------------------------

DAY_MS = 86_400_000
#: The interval of a table's TTL as ClickHouse shows it (an oracle independent of migrate.py).
TTL_DAYS_RE = re.compile(r"TTL .*?toIntervalDay\((\d+)\)")


def ttl_in_force(client: Client, db: str, table: str) -> tuple[int, int]:
    """The TTL days of ``table`` read back from system.tables, as (engine_full, create query)."""
    engine_full, create = client.query(
        "SELECT engine_full, create_table_query FROM system.tables "
        f"WHERE database = '{db}' AND name = '{table}'"
    ).result_rows[0]
    days = [TTL_DAYS_RE.search(text) for text in (engine_full, create)]
    assert all(days), (engine_full, create)
    return int(days[0].group(1)), int(days[1].group(1))  # type: ignore[union-attr]


def test_the_tables_with_a_facts_ttl_are_found_in_the_migrations() -> None:
    """Every CREATE TABLE of the packaged migrations that uses ``{ttl_days}``, found by a plain
    text scan, is one whose TTL migrate keeps in line."""
    expected = set()
    for mig in migration_files():
        for statement in split_statements(mig.text):
            table = re.search(r"CREATE TABLE IF NOT EXISTS \{db\}\.(\w+)", statement)
            if table and "{ttl_days}" in statement:
                expected.add(table.group(1))
    assert expected == {"events"}
    assert set(facts_ttl_tables(migration_files())) == expected
    assert facts_ttl_tables(migration_files())["events"] == (
        "toDate(fromUnixTimestamp64Milli(ts_ms, 'UTC'))"
    )


def test_a_later_modify_ttl_wins_and_comments_do_not_count(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text(FIRST)
    (tmp_path / "002_b.sql").write_text(
        "-- TTL x + INTERVAL {ttl_days} DAY in a comment\n"
        "ALTER TABLE {db}.facts MODIFY TTL toDate(ts)\n  + INTERVAL {ttl_days} DAY;\n"
        "CREATE TABLE IF NOT EXISTS {db}.other (id String) ENGINE = MergeTree ORDER BY id;"
    )
    assert facts_ttl_tables(migration_files(tmp_path)) == {"facts": "toDate(ts)"}


def test_migrate_brings_the_facts_ttl_to_the_setting_both_ways(
    server: EmbeddedClickHouse, caplog: pytest.LogCaptureFixture
) -> None:
    """730 -> 5000 -> 730 -> 5000 days on the real migrations: the TTL in force follows the
    setting; lowering drops the rows now past it, raising keeps what is there (and brings
    nothing back); an unchanged setting changes nothing."""
    settings = server.settings.model_copy(
        update={"clickhouse_database": f"ret{next(_db_numbers)}", "facts_ttl_days": 730}
    )
    db = settings.clickhouse_database
    client = get_client(settings)

    def run(days: int) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="teilhabe.migrate"):
            migrate(client, settings.model_copy(update={"facts_ttl_days": days}))
        return [r.getMessage() for r in caplog.records if "retention" in r.getMessage()]

    def ages() -> list[int]:
        rows = client.query(f"SELECT event_id FROM {db}.events ORDER BY ts_ms DESC").result_rows
        return [int(event_id.removeprefix("age")) for (event_id,) in rows]

    def mutations() -> int:
        return int(client.command(f"SELECT count() FROM system.mutations WHERE database = '{db}'"))

    try:
        assert run(730) == []  # created with 730: nothing to change
        assert ttl_in_force(client, db, "events") == (730, 730)

        changed = run(5000)
        assert ttl_in_force(client, db, "events") == (5000, 5000)
        assert len(changed) == 1 and "TTL 730 -> 5000 days" in changed[0]
        assert mutations() == 0, "raising does not rewrite the table"
        assert run(5000) == [] and mutations() == 0, "equal: nothing done"

        now_ms = int(time.time() * 1000)
        client.insert(
            f"{db}.events",
            [(f"age{a}", "post_created", now_ms - a * DAY_MS, "a", "u", 1, 0) for a in AGES],
            column_names=(
                "event_id",
                "event_type",
                "ts_ms",
                "actor_id",
                "actor_unit",
                "version",
                "is_late",
            ),
        )
        client.command(f"OPTIMIZE TABLE {db}.events FINAL")
        assert ages() == [a for a in AGES if a <= 5000 - 2]

        changed = run(730)
        assert ttl_in_force(client, db, "events") == (730, 730)
        assert len(changed) == 1 and "TTL 5000 -> 730 days" in changed[0]
        assert "being deleted" in changed[0]
        # chDB runs the MATERIALIZE TTL mutation synchronously: the old rows are gone already
        assert ages() == [a for a in AGES if a <= 730 - 2]
        client.command(f"OPTIMIZE TABLE {db}.events FINAL")
        assert ages() == [a for a in AGES if a <= 730 - 2]

        assert run(5000) and ttl_in_force(client, db, "events") == (5000, 5000)
        assert ages() == [a for a in AGES if a <= 730 - 2], "deleted rows do not come back"
    finally:
        client.close()


#: Ages (days) of the rows inserted: inside and outside both TTLs, two days from each boundary
AGES = (10, 728, 732, 1000, 3000, 4998, 5002, 6000)


def test_retention_applies_to_any_table_with_a_facts_ttl(env: tuple) -> None:
    settings, client, folder, write = env
    db = settings.clickhouse_database
    write("001_facts.sql", FIRST)
    assert migrate(client, settings, folder) == ["001_facts.sql"]
    assert ttl_in_force(client, db, "facts") == (30, 30)
    assert migrate(client, settings.model_copy(update={"facts_ttl_days": 10}), folder) == []
    assert ttl_in_force(client, db, "facts") == (10, 10)
