"""Erasure (GDPR Art. 17) and access (Art. 15) for one or more people, by pseudonym.

What ``forget`` does, in an order that a crash can interrupt and a second run completes
(docs/privacy.md, "Erasure and access requests"):

1. Window aggregates: every ``engagement_window_partials`` key (window size, window start,
   unit) in which a forgotten person was counted is recomputed from the remaining on-time
   event facts (``events FINAL``, ``is_late = 0``: exactly the events the engagement stage
   counted in closed windows, see ``pipeline.metrics.windows``) and written back as one row
   under the key's lowest partition; the other partitions' rows of the key are deleted. The
   ``engagement_windows`` view sums partitions, so its figures are exact. Done first: it is
   found from the person's events, which step 2 deletes.
2. Facts the person made: rows whose actor column names them are deleted (lightweight
   ``DELETE``, every version of a Replacing engine's row).
3. Facts about the person: their pseudonym as a target is replaced by ``FORGOTTEN``
   (``ALTER TABLE ... UPDATE``); the other side's rows, units and target unit stay, so the
   figures of other people and units do not change.
4. The directory mirror ``directory_people``: their row is deleted (the tombstone on the
   compacted directory topic is the caller's, see ``pipeline.cli.privacy``).

The per-person tables are found in ``system.columns`` (tables, not views, with a person column),
so a table added later is covered without a change here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client

#: What a forgotten person's pseudonym becomes where someone else interacted with them.
FORGOTTEN = "forgotten"
#: Columns naming the person who made a fact (deleted rows) ...
ACTOR_COLUMNS = ("actor_id", "person_id")
#: ... and columns naming the person a fact is about (anonymised, the row stays).
TARGET_COLUMNS = ("target_actor_id",)
WINDOWS_TABLE = "engagement_window_partials"
#: Run mutations to the end before the statement returns (a second run then sees them).
SYNC = "SETTINGS mutations_sync = 2"


@dataclass(frozen=True)
class PersonTable:
    """A table holding per-person facts and its person columns."""

    name: str
    actor: tuple[str, ...]
    target: tuple[str, ...]

    def where(self, param: str = "ids", *, target: bool = True) -> str:
        """``WHERE`` condition: a person column in the array parameter ``param``."""
        cols = self.actor + (self.target if target else ())
        return " OR ".join(f"{c} IN {{{param}:Array(String)}}" for c in cols)


@dataclass
class ErasureReport:
    """What one ``forget`` removed: rows by table and action, people not found."""

    removed: dict[str, int] = field(default_factory=dict)
    not_found: list[str] = field(default_factory=list)

    def add(self, what: str, n: int) -> None:
        """Count ``n`` rows under ``what`` (``table`` or ``table (action)``)."""
        self.removed[what] = self.removed.get(what, 0) + n

    @property
    def total(self) -> int:
        """Rows changed in all."""
        return sum(self.removed.values())


def person_tables(client: Client, database: str) -> list[PersonTable]:
    """The tables (not views) of ``database`` with a person column, by name."""
    rows = client.query(
        "SELECT c.table, c.name FROM system.columns AS c "
        "INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table "
        "WHERE c.database = {db:String} AND c.name IN {cols:Array(String)} "
        "AND t.engine NOT LIKE '%View%' ORDER BY c.table, c.name",
        parameters={"db": database, "cols": [*ACTOR_COLUMNS, *TARGET_COLUMNS]},
    ).result_rows
    found: dict[str, tuple[list[str], list[str]]] = {}
    for table, col in rows:
        actor, target = found.setdefault(str(table), ([], []))
        (actor if col in ACTOR_COLUMNS else target).append(str(col))
    return [PersonTable(t, tuple(a), tuple(g)) for t, (a, g) in sorted(found.items())]


# -- SQL builders (pure) ----------------------------------------------------------------------
def count_sql(db: str, table: PersonTable, *, target: bool) -> str:
    """Rows (as ``FINAL`` reads them) where a person is the actor, or a target."""
    cols = table.target if target else table.actor
    cond = " OR ".join(f"{c} IN {{ids:Array(String)}}" for c in cols)
    return f"SELECT count() FROM {db}.{table.name} FINAL WHERE {cond}"


def delete_sql(db: str, table: PersonTable) -> str:
    """Lightweight delete of every row (every version) a person made."""
    cond = " OR ".join(f"{c} IN {{ids:Array(String)}}" for c in table.actor)
    return f"DELETE FROM {db}.{table.name} WHERE {cond}"


def anonymise_sql(db: str, table: PersonTable, column: str) -> str:
    """Replace a person's pseudonym as target by ``FORGOTTEN`` (the row stays)."""
    return (
        f"ALTER TABLE {db}.{table.name} UPDATE {column} = {{forgotten:String}} "
        f"WHERE {column} IN {{ids:Array(String)}} {SYNC}"
    )


def affected_windows_sql(db: str) -> str:
    """Window keys (``window_s``, start in s, unit) where a person had on-time events."""
    return (
        f"SELECT DISTINCT w.window_s, "
        f"intDiv(e.ts_ms, 1000 * w.window_s) * w.window_s AS start_s, e.actor_unit "
        f"FROM (SELECT ts_ms, actor_unit FROM {db}.events FINAL "
        f"WHERE actor_id IN {{ids:Array(String)}} AND is_late = 0) AS e "
        f"CROSS JOIN (SELECT DISTINCT window_s FROM {db}.{WINDOWS_TABLE}) AS w "
        f"ORDER BY 1, 2, 3"
    )


def key_expr(prefix: str = "") -> str:
    """One string per window key, to match keys with a single ``has`` on an array."""
    return (
        f"concat(toString({prefix}window_s), '|', "
        f"toString(toUnixTimestamp({prefix}window_start)), '|', {prefix}unit)"
    )


def window_key(window_s: int, start_s: int, unit: str) -> str:
    """The Python side of ``key_expr``."""
    return f"{window_s}|{start_s}|{unit}"


def recompute_sql(db: str) -> str:
    """Figures of window keys from the on-time facts of everyone but the forgotten people
    (events between ``lo`` and ``hi`` ms only), with the partition and close offset of the
    key's lowest partition row."""
    return (
        f"SELECT p.window_s, p.window_start, p.unit, p.first_partition, p.first_close, "
        f"f.events, f.events_by_type, f.active_users FROM "
        f"(SELECT window_s, window_start, unit, min(partition) AS first_partition, "
        f"argMin(close_offset, partition) AS first_close "
        f"FROM {db}.{WINDOWS_TABLE} FINAL WHERE has({{keys:Array(String)}}, {key_expr()}) "
        f"GROUP BY window_s, window_start, unit) AS p "
        f"INNER JOIN "
        f"(SELECT w AS window_s, toDateTime(intDiv(ts_ms, 1000 * w) * w, 'UTC') AS window_start, "
        f"actor_unit AS unit, count() AS events, "
        f"sumMap(map(toString(event_type), toUInt64(1))) AS events_by_type, "
        f"toUInt32(uniqExact(actor_id)) AS active_users "
        f"FROM {db}.events FINAL ARRAY JOIN {{sizes:Array(UInt32)}} AS w "
        f"WHERE ts_ms >= {{lo:Int64}} AND ts_ms < {{hi:Int64}} "
        f"AND is_late = 0 AND actor_id NOT IN {{ids:Array(String)}} "
        f"AND has({{keys:Array(String)}}, concat(toString(w), '|', "
        f"toString(intDiv(ts_ms, 1000 * w) * w), '|', actor_unit)) "
        f"GROUP BY window_s, window_start, unit) AS f "
        f"ON p.window_s = f.window_s AND p.window_start = f.window_start AND p.unit = f.unit"
    )


def delete_windows_sql(db: str) -> str:
    """Delete every partition's row of the given window keys."""
    return f"DELETE FROM {db}.{WINDOWS_TABLE} WHERE has({{keys:Array(String)}}, {key_expr()})"


# -- client side ------------------------------------------------------------------------------
def _count(client: Client, sql: str, ids: Sequence[str]) -> int:
    return int(client.query(sql, parameters={"ids": list(ids)}).result_rows[0][0])


def _recompute_windows(client: Client, db: str, ids: Sequence[str], report: ErasureReport) -> None:
    keys = client.query(affected_windows_sql(db), parameters={"ids": list(ids)}).result_rows
    if not keys:
        return
    names = [window_key(int(s), int(t), str(u)) for s, t, u in keys]
    sizes = sorted({int(s) for s, _, _ in keys})
    lo = min(int(t) for _, t, _ in keys) * 1000  # the time span bounds the scan of events
    hi = max((int(t) + int(s)) * 1000 for s, t, _ in keys)
    params = {"keys": names, "ids": list(ids), "sizes": sizes, "lo": lo, "hi": hi}
    rows = client.query(recompute_sql(db), parameters=params).result_rows
    client.command(delete_windows_sql(db), parameters={"keys": names})
    if rows:
        client.insert(
            f"{db}.{WINDOWS_TABLE}",
            [list(r) for r in rows],
            column_names=(
                "window_s",
                "window_start",
                "unit",
                "partition",
                "close_offset",
                "events",
                "events_by_type",
                "active_users",
            ),
        )
    report.add(f"{WINDOWS_TABLE} (recomputed)", len(rows))
    report.add(f"{WINDOWS_TABLE} (deleted, nobody left)", len(names) - len(rows))


def forget(client: Client, database: str, pseudonyms: Iterable[str]) -> ErasureReport:
    """Erase the people with these pseudonyms from ``database`` (see the module docstring).
    Safe to repeat: a second run changes nothing and reports every person as not found."""
    ids = sorted(set(pseudonyms))
    report = ErasureReport()
    if not ids:
        return report
    tables = person_tables(client, database)
    found = set(_present(client, database, tables, ids))
    report.not_found = [p for p in ids if p not in found]
    ids = sorted(found)
    if not ids:
        return report
    if any(t.name == "events" for t in tables):
        _recompute_windows(client, database, ids, report)
    for table in tables:
        if table.actor:
            n = _count(client, count_sql(database, table, target=False), ids)
            if n:
                client.command(delete_sql(database, table), parameters={"ids": ids})
            report.add(f"{table.name} (deleted)", n)
        for column in table.target:
            one = PersonTable(table.name, (), (column,))
            n = _count(client, count_sql(database, one, target=True), ids)
            if n:
                client.command(
                    anonymise_sql(database, table, column),
                    parameters={"ids": ids, "forgotten": FORGOTTEN},
                )
            report.add(f"{table.name}.{column} (set to '{FORGOTTEN}')", n)
    return report


def _present(
    client: Client, db: str, tables: Sequence[PersonTable], ids: Sequence[str]
) -> Iterator[str]:
    """The people of ``ids`` some table still names."""
    if not tables:
        return
    union = " UNION ALL ".join(
        f"SELECT arrayJoin([{', '.join(t.actor + t.target)}]) AS p FROM {db}.{t.name} "
        f"WHERE {t.where()}"
        for t in tables
    )
    rows = client.query(
        f"SELECT DISTINCT toString(p) FROM ({union}) WHERE p IN {{ids:Array(String)}}",
        parameters={"ids": list(ids)},
    ).result_rows
    yield from (str(r[0]) for r in rows)


def export_person(client: Client, database: str, pseudonym: str) -> Iterator[dict[str, Any]]:
    """Every row (as ``FINAL`` reads it) of every per-person table naming the person as actor
    or target, as ``{"table": name, "row": {column: value}}``; the directory row included
    (``directory_people`` is keyed by ``person_id``)."""
    for table in person_tables(client, database):
        result = client.query(
            f"SELECT * FROM {database}.{table.name} FINAL WHERE {table.where()}",
            parameters={"ids": [pseudonym]},
        )
        for row in result.result_rows:
            yield {"table": table.name, "row": dict(zip(result.column_names, row, strict=True))}


def send_tombstones(producer: Any, topic: str, pseudonyms: Iterable[str]) -> int:
    """A tombstone (key, no value) per person on the compacted directory topic, confirmed by
    Kafka (``producer``: a kafka-python producer); returns how many were sent. The workers'
    directory table drops the key, and the leader's mirror deletes its row (see
    ``pipeline.sinks.directory``), so the directory cannot bring the person back."""
    futures = [producer.send(topic, key=p.encode(), value=None) for p in sorted(set(pseudonyms))]
    producer.flush()
    for future in futures:
        future.get(timeout=30)
    return len(futures)
