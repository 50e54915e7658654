"""Versioned ClickHouse migrations from ``schemas/clickhouse/NNN_name.sql``.

A file may hold several statements separated by ``;`` (outside quotes and comments); ``{db}``
is replaced by the database, ``{ttl_days}`` by ``TEILHABE_FACTS_TTL_DAYS``, ``{min_group_size}``
by a subquery of the privacy threshold k in ``{db}.config``, and ``{contribution_types}`` /
``{interaction_types}`` by the event contract's sets (``pipeline.contract.events``) as SQL tuples,
so the SQL never holds its own copy of them, and ``{secondary_shown}`` by the secondary
suppression rule of ``pipeline.metrics.suppression`` (the one definition). Applied versions
are recorded with the SHA-256 of the file in ``{db}.schema_migrations``; editing an applied
migration is an error (add a new one). A migration is recorded after all its statements ran, so
a failed one is retried from its first statement: write statements that may run twice
(``IF NOT EXISTS``, ``CREATE OR REPLACE VIEW``).

Retention follows ``TEILHABE_FACTS_TTL_DAYS`` on every run, not only when a table is created:
each table whose migrations give it a ``TTL <expr> + INTERVAL {ttl_days} DAY`` gets
``ALTER TABLE ... MODIFY TTL`` when the TTL in force (``system.tables.engine_full``) differs
(``apply_retention``). Lowering it deletes the rows now past it; raising it keeps the rows still
there, but rows already deleted do not come back.

Days follow ``TEILHABE_TIMEZONE`` the same way (``apply_timezone``): the ``day`` column of
``{db}.events``, which every daily view reads, is cut at midnight of that zone; a change is
applied to the rows already there (docs/metrics.md, "Days and the time zone").
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.contract.events import CONTRIBUTION_TYPES, INTERACTION_TYPES
from pipeline.errors import ConfigError
from pipeline.metrics import suppression
from pipeline.settings import Settings

#: ``{min_group_size}`` in a migration: k, read from ``{db}.config`` when a view is queried, so a
#: new TEILHABE_MIN_GROUP_SIZE applies at the next worker start or ``teilhabe migrate``.
MIN_GROUP_SIZE_SQL = (
    "(SELECT toUInt32OrDefault(any(value), toUInt32(5)) FROM {db}.config FINAL "
    "WHERE key = 'min_group_size')"
)


def sql_tuple(values: frozenset[str]) -> str:
    """``('a', 'b')``: a set of plain identifiers as an SQL tuple for ``IN`` (sorted, stable)."""
    if not values or not all(re.fullmatch(r"[a-z_]+", v) for v in values):
        raise ValueError(f"not a set of plain identifiers: {sorted(values)}")
    return "(" + ", ".join(f"'{v}'" for v in sorted(values)) + ")"


#: ``{name}`` placeholders that stand for a definition of the event contract.
CONTRACT_PLACEHOLDERS = {
    "{contribution_types}": sql_tuple(CONTRIBUTION_TYPES),
    "{interaction_types}": sql_tuple(INTERACTION_TYPES),
}
_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
#: A statement of a migration that sets a table's facts TTL: its table and TTL expression.
_TTL_TABLE_RE = re.compile(
    r"^\s*(?:CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?|ALTER\s+TABLE\s+)\{db\}\.`?(\w+)`?", re.I
)
_TTL_TEMPLATE_RE = re.compile(r"\bTTL\s+(.+?)\s*\+\s*INTERVAL\s+\{ttl_days\}\s+DAY\b", re.I | re.S)
#: The TTL in force as ``system.tables.engine_full`` shows it: ``TTL <expr> + toIntervalDay(N)``.
_TTL_IN_FORCE_RE = re.compile(r"\bTTL\s+(.+?)\s*\+\s*toIntervalDay\((\d+)\)", re.S)
_COMMENT_RE = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
#: ``events.day`` as ``system.columns.default_expression`` shows it (spaces removed): the zone
#: of the time and, when given, the zone ``toDate`` cuts the day in.
_DAY_EXPR_RE = re.compile(
    r"toDate\(fromUnixTimestamp64Milli\(ts_ms,'([^'\\]+)'\)(?:,'([^'\\]+)')?\)"
)
#: An IANA zone name as an SQL literal may hold: letters, digits, ``_+-`` and ``/`` between.
_ZONE_RE = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")

log = logging.getLogger("teilhabe.migrate")


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str  # file name, e.g. 001_core.sql
    text: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file text (before placeholders are filled in)."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def render(self, settings: Settings) -> list[str]:
        """The statements with the placeholders filled in (see the module docstring)."""
        text = self.text
        for placeholder, sql in suppression.placeholders().items():  # before {min_group_size}
            text = text.replace(placeholder, sql)
        text = text.replace("{min_group_size}", MIN_GROUP_SIZE_SQL)
        for placeholder, sql in CONTRACT_PLACEHOLDERS.items():
            text = text.replace(placeholder, sql)
        text = text.replace("{db}", settings.clickhouse_database).replace(
            "{ttl_days}", str(settings.facts_ttl_days)
        )
        return split_statements(text)


def _default_dir() -> Traversable:
    return resources.files("schemas") / "clickhouse"


def migration_files(migrations_dir: Path | None = None) -> list[Migration]:
    """Every migration in version order; ConfigError for misnamed files or duplicate versions."""
    folder: Traversable = migrations_dir if migrations_dir is not None else _default_dir()
    out: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        m = _FILE_RE.match(entry.name)
        if not m:
            raise ConfigError(
                f"migration file {entry.name!r} is not named NNN_name.sql "
                "(three digits, lower-case letters, digits and _)"
            )
        out.append(Migration(int(m.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    out.sort(key=lambda mig: mig.version)
    for prev, cur in zip(out, out[1:], strict=False):
        if prev.version == cur.version:
            raise ConfigError(f"migrations {prev.name} and {cur.name} share version {cur.version}")
    return out


def split_statements(text: str) -> list[str]:
    """Split SQL at ``;`` outside quotes and comments; comment-only pieces are dropped."""
    statements: list[str] = []
    buf: list[str] = []
    has_code = False
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            buf.append(text[i:end])
            i = end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            buf.append(text[i:end])
            i = end
            continue
        if ch in "'\"`":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            buf.append(text[i : j + 1])
            has_code = True
            i = j + 1
            continue
        if ch == ";":
            if has_code:
                statements.append("".join(buf).strip())
            buf, has_code = [], False
            i += 1
            continue
        buf.append(ch)
        has_code = has_code or not ch.isspace()
        i += 1
    if has_code:
        statements.append("".join(buf).strip())
    return statements


def applied_migrations(client: Client, database: str) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of the recorded migrations (creates the table if missing)."""
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.command(
        f"CREATE TABLE IF NOT EXISTS `{database}`.schema_migrations (version UInt32, name String, "
        "checksum String, applied_at DateTime) ENGINE = ReplacingMergeTree ORDER BY version"
    )
    rows = client.query(
        f"SELECT version, name, checksum FROM `{database}`.schema_migrations FINAL"
    ).result_rows
    return {int(v): (str(name), str(checksum)) for v, name, checksum in rows}


@dataclass(frozen=True)
class RetentionChange:
    """A table's facts TTL brought to ``TEILHABE_FACTS_TTL_DAYS``."""

    table: str
    before_days: int | None  # None: the table had no such TTL in force
    after_days: int


def facts_ttl_tables(files: list[Migration]) -> dict[str, str]:
    """table -> TTL expression, for the tables whose migrations set ``TTL <expr> + INTERVAL
    {ttl_days} DAY`` (in version order: a later ``MODIFY TTL`` wins)."""
    out: dict[str, str] = {}
    for mig in files:
        for statement in split_statements(mig.text):
            code = _COMMENT_RE.sub("", statement)
            table, ttl = _TTL_TABLE_RE.match(code), _TTL_TEMPLATE_RE.search(code)
            if table and ttl:
                out[table.group(1)] = " ".join(ttl.group(1).split())
    return out


def ttl_days_in_force(client: Client, database: str, tables: list[str]) -> dict[str, int | None]:
    """table -> days of its ``TTL ... + toIntervalDay(N)`` in force (None without one), for the
    tables of ``tables`` that exist."""
    rows = client.query(
        "SELECT name, engine_full FROM system.tables "
        "WHERE database = {db:String} AND has({tables:Array(String)}, name)",
        parameters={"db": database, "tables": tables},
    ).result_rows
    out: dict[str, int | None] = {}
    for name, engine_full in rows:
        found = _TTL_IN_FORCE_RE.search(str(engine_full))
        out[str(name)] = int(found.group(2)) if found else None
    return out


def apply_retention(
    client: Client, settings: Settings, files: list[Migration] | None = None
) -> list[RetentionChange]:
    """Bring every facts TTL to ``TEILHABE_FACTS_TTL_DAYS``; nothing when it is already in force.

    Lowering materialises the new TTL (``materialize_ttl_after_modify=1``): rows now past it are
    deleted by a mutation (synchronous on chDB; on a server in the background, see
    ``system.mutations``). Raising does not rewrite the table (``=0``): every TTL merge evaluates
    the TTL in force, so the rows still there stay; rows already deleted are gone for good.
    """
    db = settings.clickhouse_database
    templates = facts_ttl_tables(files if files is not None else migration_files())
    days = settings.facts_ttl_days
    changes: list[RetentionChange] = []
    in_force = ttl_days_in_force(client, db, sorted(templates)) if templates else {}
    for table, before in sorted(in_force.items()):
        if before == days:
            continue
        expr = templates[table].replace("{db}", db)
        lowering = before is None or days < before
        client.command(
            f"ALTER TABLE `{db}`.`{table}` MODIFY TTL {expr} + INTERVAL {days} DAY",
            settings={"materialize_ttl_after_modify": 1 if lowering else 0},
        )
        change = RetentionChange(table, before, days)
        changes.append(change)
        log.warning(
            "retention of %s.%s changed: TTL %s -> %s days (TEILHABE_FACTS_TTL_DAYS)%s",
            db,
            table,
            "none" if before is None else before,
            days,
            "; rows older than that are being deleted" if lowering else "",
        )
    return changes


def zone_literal(zone: str) -> str:
    """``'Europe/Berlin'``: a zone name as an SQL string literal; ConfigError for any name with
    a character outside ``_ZONE_RE`` (an IANA name never has one, so nothing needs escaping)."""
    if not _ZONE_RE.fullmatch(zone):
        raise ConfigError(f"TEILHABE_TIMEZONE={zone!r} is not an IANA time zone name")
    return f"'{zone}'"


def day_expression(zone: str) -> str:
    """The ``day`` column's expression: the event's date at ``zone``."""
    return f"toDate(fromUnixTimestamp64Milli(ts_ms, 'UTC'), {zone_literal(zone)})"


def day_zone(expression: str) -> str | None:
    """The zone ``events.day`` is cut in by ``expression`` (its default_expression), or None
    when it is not the form ``day_expression`` writes (or 001_core.sql's, which is UTC)."""
    found = _DAY_EXPR_RE.fullmatch("".join(expression.split()))
    return None if found is None else (found.group(2) or found.group(1))


def config_value(client: Client, database: str, key: str) -> str | None:
    """The value of ``key`` in ``{db}.config`` (None when absent)."""
    rows = client.query(
        f"SELECT value FROM `{database}`.config FINAL WHERE key = {{key:String}}",
        parameters={"key": key},
    ).result_rows
    return str(rows[0][0]) if rows else None


@dataclass(frozen=True)
class TimezoneChange:
    """``events.day`` brought to ``TEILHABE_TIMEZONE``; the rows there were cut again."""

    before: str | None  # the zone the column's expression had (None: not recognised)
    after: str
    seconds: float  # the time the rows took to be cut again


def apply_timezone(client: Client, settings: Settings) -> TimezoneChange | None:
    """Cut the days of ``{db}.events`` at midnight of ``TEILHABE_TIMEZONE``; None when they are.

    ``day`` is ``MATERIALIZED``, so its value is stored in every part: changing the expression
    (``MODIFY COLUMN``) changes new rows only, and ``MATERIALIZE COLUMN`` (a mutation, awaited:
    ``mutations_sync``) computes it again for the rows there, the late and duplicate copies
    too, so the views' FINAL reads see the new days. The zone the stored rows were last cut in
    is ``{db}.config`` key ``timezone`` (UTC before there was one): if a run stopped between
    the two statements, the next one cuts the rows again. The sort, partition and TTL keys
    stay on UTC days (docs/metrics.md)."""
    db, zone = settings.clickhouse_database, settings.timezone
    literal = zone_literal(zone)
    rows = client.query(
        "SELECT default_expression FROM system.columns "
        "WHERE database = {db:String} AND table = 'events' AND name = 'day'",
        parameters={"db": db},
    ).result_rows
    if not rows:  # no events table (yet)
        return None
    before = day_zone(str(rows[0][0]))
    has_config = client.command(f"EXISTS TABLE `{db}`.config") == 1
    cut = (config_value(client, db, "timezone") if has_config else None) or "UTC"
    if before == zone and cut == zone:
        return None
    try:  # ClickHouse has its own zone data: a name it lacks fails here, not in a view
        client.query(f"SELECT toDateTime(0, {literal})")
    except DatabaseError as exc:
        raise ConfigError(
            f"TEILHABE_TIMEZONE={zone}: ClickHouse does not know this time zone ({exc})"
        ) from None
    started = time.monotonic()
    if before != zone:
        client.command(
            f"ALTER TABLE `{db}`.events MODIFY COLUMN day Date MATERIALIZED {day_expression(zone)}"
        )
    client.command(
        f"ALTER TABLE `{db}`.events MATERIALIZE COLUMN day", settings={"mutations_sync": 2}
    )
    if has_config:
        client.insert(f"`{db}`.config", [("timezone", zone)], column_names=("key", "value"))
    change = TimezoneChange(before, zone, time.monotonic() - started)
    if not client.query(f"SELECT count() FROM `{db}`.events").result_rows[0][0]:  # new database
        log.info("days of %s.events end at midnight %s (TEILHABE_TIMEZONE)", db, zone)
        return change
    log.warning(
        "days of %s.events now end at midnight %s (TEILHABE_TIMEZONE), before %s; "
        "the rows there were cut again in %.1f s",
        db,
        zone,
        before if before == cut else f"{before or 'an unknown expression'} (rows cut in {cut})",
        change.seconds,
    )
    return change


def migrate(client: Client, settings: Settings, migrations_dir: Path | None = None) -> list[str]:
    """Apply pending migrations in version order; return the file names applied (idempotent).

    Raises ConfigError when an applied migration's file changed (its checksum differs) and
    lets ClickHouse errors of a failing statement through (nothing recorded for that file).
    Then the facts TTLs follow ``TEILHABE_FACTS_TTL_DAYS`` (``apply_retention``) and the days
    TEILHABE_TIMEZONE (``apply_timezone``), each logged when changed. Afterwards the settings
    the views read (TEILHABE_MIN_GROUP_SIZE, TEILHABE_RESPONSE_TARGET_H,
    TEILHABE_HEAVY_CONTRIBUTIONS, ..., the window's grace TEILHABE_GRACE_S, with which the
    engagement gauges tell which windows every partition has closed, and TEILHABE_TIMEZONE,
    for readers that state the days' zone) are written to ``{db}.config`` when it exists.
    """
    db = settings.clickhouse_database
    files = migration_files(migrations_dir)
    done = applied_migrations(client, db)
    for mig in files:
        if mig.version in done and done[mig.version][1] != mig.checksum:
            raise ConfigError(
                f"migration {mig.name} changed after it was applied (checksum differs from the "
                f"one recorded in {db}.schema_migrations); never edit an applied migration, "
                "add a new one"
            )
    applied: list[str] = []
    for mig in files:
        if mig.version in done:
            continue
        for statement in mig.render(settings):
            client.command(statement)
        client.insert(
            f"`{db}`.schema_migrations",
            [(mig.version, mig.name, mig.checksum, datetime.now(UTC).replace(tzinfo=None))],
            column_names=("version", "name", "checksum", "applied_at"),
        )
        applied.append(mig.name)
    apply_retention(client, settings, files)
    apply_timezone(client, settings)
    if client.command(f"EXISTS TABLE `{db}`.config") == 1:
        client.insert(
            f"`{db}`.config",
            list(config_values(settings).items()),
            column_names=("key", "value"),
        )
    return applied


def config_values(settings: Settings) -> dict[str, str]:
    """The rows of ``{db}.config`` the views read, as every migrate writes them."""
    values: dict[str, int | float | str] = {
        "min_group_size": settings.min_group_size,
        "response_target_h": settings.response_target_h,
        "heavy_contributions": settings.heavy_contributions,
        "boundary_spanner_units": settings.boundary_spanner_units,
        "persona_ratio": settings.persona_ratio,
        "grace_s": settings.grace_s,
        "timezone": settings.timezone,
    }
    return {key: str(value) for key, value in values.items()}
