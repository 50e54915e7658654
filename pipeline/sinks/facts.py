"""ClickHouse sink: batched, idempotent writes of event facts, closed windows and checkpoints.

Commit order per flush (as Quix Streams checkpoints): event facts -> closed windows ->
stream checkpoints; only then does the agent acknowledge the Kafka offsets they cover. Every
table uses a Replacing engine keyed so that a replay rewrites identical rows: nothing is lost
and nothing is counted twice.

Rows go out as Arrow tables (``insert_arrow``: one HTTP request per table, no per-value Python
work and no schema lookup per insert): the events as the engagement stage got them, turned into
columns by pyarrow in C++ (``FactBatch``). Arrow is a standard ClickHouse input format, so the
embedded gateway and a ClickHouse server take the same requests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
from clickhouse_connect.driver.client import Client

from pipeline.contract.events import OPTIONAL_FIELDS
from pipeline.metrics.baseline import baseline_ratios, baseline_starts
from pipeline.metrics.windows import Checkpoint, ClosedWindow
from pipeline.ops.exporter import TOP_PLATFORMS, TOP_SPACES, PipelineMetrics

log = logging.getLogger(__name__)

#: ``events`` columns: the contract's fields (ids pseudonymised), event time in ms, late flag.
EVENT_COLUMNS = (
    "event_id",
    "event_type",
    "ts_ms",
    "actor_id",
    *OPTIONAL_FIELDS,
    "is_late",
    "version",
)
WINDOW_COLUMNS = (
    "window_start",
    "window_s",
    "unit",
    "partition",
    "events",
    "events_by_type",
    "active_users",
    "close_offset",
)
CHECKPOINT_COLUMNS = ("consumer_group", "topic", "partition", "offset", "state")


#: The enriched event's keys in the order of EVENT_COLUMNS (``ts`` becomes ``ts_ms``) and
#: their Arrow types: every event of the activity topic has all of them (contract + enrich).
EVENT_STRUCT = pa.struct(
    [
        ("event_id", pa.string()),
        ("event_type", pa.string()),
        ("ts", pa.int64()),
        ("actor_id", pa.string()),
        *[(name, pa.string()) for name in OPTIONAL_FIELDS],
    ]
)
_UINT8_0, _UINT8_1 = pa.scalar(0, pa.uint8()), pa.scalar(1, pa.uint8())


class FactBatch:
    """Event facts waiting for the next flush: the event dicts themselves, on time and late.

    Nothing is copied per event here; ``table()`` converts them in one pyarrow call per kind
    (C++), which is what keeps the facts cheap at 100k events/s. Order within each kind is
    kept, so two rows with the same key and version are written in arrival order as before.
    """

    __slots__ = ("on_time", "late")

    def __init__(self) -> None:
        self.on_time: list[dict[str, Any]] = []
        self.late: list[dict[str, Any]] = []

    def add(self, on_time: list[dict[str, Any]], late: list[dict[str, Any]]) -> None:
        """Append one message's accepted and late events."""
        self.on_time += on_time
        self.late += late

    def __len__(self) -> int:
        return len(self.on_time) + len(self.late)

    def table(self) -> pa.Table:
        """The ``events`` rows as an Arrow table (columns EVENT_COLUMNS)."""
        parts = []
        for events, is_late, version in (
            (self.on_time, _UINT8_0, _UINT8_1),
            (self.late, _UINT8_1, _UINT8_0),
        ):
            if events:
                n = len(events)
                fields = pa.array(events, type=EVENT_STRUCT).flatten()
                parts.append(
                    pa.Table.from_arrays(
                        [*fields, pa.repeat(is_late, n), pa.repeat(version, n)],
                        names=list(EVENT_COLUMNS),
                    )
                )
        return pa.concat_tables(parts) if len(parts) > 1 else parts[0]


WINDOW_SCHEMA = pa.schema(
    [
        ("window_start", pa.uint32()),  # unix seconds: ClickHouse's DateTime('UTC') as a number
        ("window_s", pa.uint32()),
        ("unit", pa.string()),
        ("partition", pa.uint16()),
        ("events", pa.uint64()),
        ("events_by_type", pa.map_(pa.string(), pa.uint64())),
        ("active_users", pa.uint32()),
        ("close_offset", pa.int64()),
    ]
)
CHECKPOINT_SCHEMA = pa.schema(
    [
        ("consumer_group", pa.string()),
        ("topic", pa.string()),
        ("partition", pa.uint16()),
        ("offset", pa.int64()),
        ("state", pa.string()),
    ]
)


def window_table(closed: Sequence[ClosedWindow]) -> pa.Table:
    """``engagement_window_partials`` rows of closed windows, column by column."""
    cols: list[list[Any]] = [[] for _ in WINDOW_COLUMNS]
    start, window_s, unit, part, events, by_type, active, close_offset = cols
    for c in closed:
        n = len(c.units)
        start += [c.start_ms // 1000] * n
        window_s += [c.window_ms // 1000] * n
        part += [c.partition] * n
        close_offset += [c.close_offset] * n
        for u, users, types in c.rows():
            unit.append(u)
            active.append(users)
            by_type.append(types)
            events.append(sum(types.values()))
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(cols, WINDOW_SCHEMA, strict=True)],
        schema=WINDOW_SCHEMA,
    )


def event_row(ev: dict[str, Any], late: bool) -> tuple[Any, ...]:
    """One ``events`` row from an enriched event (order of EVENT_COLUMNS)."""
    return (
        ev["event_id"],
        ev["event_type"],
        ev["ts"],
        ev["actor_id"],
        *[ev.get(field) for field in OPTIONAL_FIELDS],
        1 if late else 0,
        0 if late else 1,
    )


class ClickHouseSink:
    """Writes batches to ClickHouse through one clickhouse-connect client."""

    def __init__(
        self,
        client_factory: Callable[[], Client],
        database: str,
        metrics: PipelineMetrics,
        consumer_group: str,
        topic: str,
    ) -> None:
        self._factory = client_factory
        self._client: Client | None = None
        self.database = database
        self.metrics = metrics
        self.group = consumer_group
        self.topic = topic

    @property
    def client(self) -> Client:
        """The client, (re)connected lazily so an outage at start is retried like any other."""
        if self._client is None:
            self._client = self._factory()
        return self._client

    def reset(self) -> None:
        """Drop the connection after a failure; the next call reconnects."""
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - closing a broken client may fail any way
                pass

    def flush(
        self,
        events: FactBatch,
        closed: Sequence[ClosedWindow],
        checkpoints: dict[int, Checkpoint],
    ) -> None:
        """Write one batch in commit order; raises on failure (the caller retries it whole)."""
        started = time.perf_counter()
        db = self.database
        client = self.client
        if len(events):
            table = events.table()
            client.insert_arrow(f"{db}.events", table)
            self.metrics.sink_rows.labels("events").inc(table.num_rows)
        if any(c.units for c in closed):
            windows = window_table(closed)
            client.insert_arrow(f"{db}.engagement_window_partials", windows)
            self.metrics.sink_rows.labels("engagement_window_partials").inc(windows.num_rows)
        if checkpoints:
            ordered = sorted(checkpoints.items())
            cp_table = pa.Table.from_pydict(
                {
                    "consumer_group": [self.group] * len(ordered),
                    "topic": [self.topic] * len(ordered),
                    "partition": [p for p, _ in ordered],
                    "offset": [cp.offset for _, cp in ordered],
                    "state": [orjson.dumps(cp.to_json()).decode() for _, cp in ordered],
                },
                schema=CHECKPOINT_SCHEMA,
            )
            client.insert_arrow(f"{db}.stream_checkpoints", cp_table)
        self.metrics.sink_flush_seconds.observe(time.perf_counter() - started)
        self.metrics.sink_last_success.set_to_current_time()
        self.metrics.window_flushes.inc(len(closed))

    def load_checkpoint(self, partition: int) -> Checkpoint | None:
        """The newest saved checkpoint of a partition, or None for a fresh start."""
        result = self.client.query(
            f"SELECT state FROM {self.database}.stream_checkpoints FINAL "
            "WHERE consumer_group = {g:String} AND topic = {t:String} AND partition = {p:UInt16}",
            parameters={"g": self.group, "t": self.topic, "p": partition},
        )
        if not result.result_rows:
            return None
        return Checkpoint.from_json(orjson.loads(result.result_rows[0][0]))

    def refresh_engagement_gauges(self, window_s: int) -> None:
        """Set the engagement gauges from the newest closed window (exact, k-suppressed)."""
        result = self.client.query(
            f"SELECT window_start, unit, active_users, events_by_type "
            f"FROM {self.database}.engagement_windows "
            f"WHERE window_s = {{w:UInt32}} AND window_start = ("
            f" SELECT max(window_start) FROM {self.database}.engagement_window_partials"
            f" WHERE window_s = {{w:UInt32}})",
            parameters={"w": window_s},
        )
        m = self.metrics
        m.active_users.clear()
        m.window_events.clear()
        current: dict[str, int] = {}
        newest = 0
        for start, unit, active, by_type in result.result_rows:
            newest = int(start.timestamp())
            m.window_start.set(newest)
            m.active_users.labels(unit).set(active)
            current[unit] = sum(by_type.values())
            for event_type, n in by_type.items():
                m.window_events.labels(unit, event_type).set(n)
        self._refresh_baseline(window_s, newest, current)

    def _refresh_baseline(self, window_s: int, newest: int, current: dict[str, int]) -> None:
        """Baseline gauges of the units shown in the newest window
        (``pipeline.metrics.baseline``)."""
        m = self.metrics
        m.baseline_ratio.clear()
        m.baseline_events.clear()
        if not current:
            return
        starts = baseline_starts(newest)
        db = self.database
        first = self.client.query(
            f"SELECT toUnixTimestamp(min(window_start)) FROM {db}.engagement_window_partials "
            "WHERE window_s = {w:UInt32}",
            parameters={"w": window_s},
        ).result_rows[0][0]
        if int(first) > starts[-1]:
            return  # less history than the baseline needs
        rows = self.client.query(
            f"SELECT toUnixTimestamp(window_start), unit, sum(events) "
            f"FROM {db}.engagement_window_partials FINAL WHERE window_s = {{w:UInt32}} "
            f"AND toUnixTimestamp(window_start) IN {{s:Array(Int64)}} GROUP BY 1, 2",
            parameters={"w": window_s, "s": starts},
        ).result_rows
        past: dict[int, dict[str, int]] = {s: {} for s in starts}
        for start, unit, events in rows:
            past[int(start)][str(unit)] = int(events)
        for unit, (base, ratio) in baseline_ratios(current, [past[s] for s in starts]).items():
            m.baseline_events.labels(unit).set(base)
            if ratio is not None:
                m.baseline_ratio.labels(unit).set(ratio)


UNANSWERED_SQL = """
SELECT p.unit, count() AS posts, uniqExact(p.author) AS authors
FROM
(
    SELECT assumeNotNull(content_id) AS cid, actor_id AS author, actor_unit AS unit
    FROM {db}.events FINAL
    WHERE event_type = 'post_created' AND content_id IS NOT NULL
      AND ts_ms BETWEEN {since:Int64} AND {until:Int64}
) AS p
LEFT JOIN
(
    SELECT assumeNotNull(root_content_id) AS cid, groupUniqArray(actor_id) AS repliers
    FROM {db}.events FINAL
    WHERE event_type = 'reply_created' AND root_content_id IS NOT NULL
      AND ts_ms >= {since:Int64}
    GROUP BY cid
) AS r ON p.cid = r.cid
WHERE length(arrayFilter(x -> x != p.author, r.repliers)) = 0
GROUP BY p.unit
"""


def refresh_unanswered_gauge(
    sink: ClickHouseSink, target_h: int, lookback_days: int, min_group_size: int, now_ms: int
) -> None:
    """Set ``teilhabe_unanswered_posts{unit}``: posts of the last ``lookback_days`` older than
    ``target_h`` hours that nobody but their author has replied to (k-suppressed by authors).

    Exact and restart-proof because it reads the facts; cheap enough to run every minute.
    """
    rows = sink.client.query(
        UNANSWERED_SQL.replace("{db}", sink.database),
        parameters={
            "since": now_ms - lookback_days * 86_400_000,
            "until": now_ms - target_h * 3_600_000,
        },
    ).result_rows
    gauge = sink.metrics.unanswered_posts
    gauge.clear()
    for unit, posts, authors in rows:
        if int(authors) >= min_group_size:
            gauge.labels(str(unit)).set(int(posts))


def refresh_fact_gauges(sink: ClickHouseSink, min_group_size: int) -> None:
    """Set the cross-silo, participation, ideation, space and platform gauges from the newest
    day of the facts (the views leave out groups below k; the platform query applies k
    itself; nothing here can add a person label; spaces and platforms are capped)."""
    db, m = sink.database, sink.metrics
    # duplicates cannot change the newest day: no FINAL (a merge of the whole table)
    day = sink.client.query(f"SELECT max(day) FROM {db}.events").result_rows[0][0]
    gauges = (m.ei_index, m.cross_silo_share, m.participation, m.ideation)
    for gauge in (*gauges, m.space_active, m.platform_active):
        gauge.clear()
    if day is None or day.year < 1971:  # no facts yet
        return
    m.facts_day.set(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    params = {"d": day}
    for unit, ei, share in sink.client.query(
        f"SELECT unit, ei_index, cross_silo_share FROM {db}.daily_ei_index WHERE day = {{d:Date}}",
        parameters=params,
    ).result_rows:
        if ei is not None:
            m.ei_index.labels(unit).set(ei)
            m.cross_silo_share.labels(unit).set(share)
    for unit, *tiers in sink.client.query(
        f"SELECT unit, observers, contributors, heavy_contributors "
        f"FROM {db}.participation_pyramid WHERE day = {{d:Date}}",
        parameters=params,
    ).result_rows:
        for tier, n in zip(("observers", "contributors", "heavy_contributors"), tiers, strict=True):
            m.participation.labels(unit, tier).set(n)
    for unit, *kinds in sink.client.query(
        f"SELECT unit, ideas, votes, comments FROM {db}.daily_ideation WHERE day = {{d:Date}}",
        parameters=params,
    ).result_rows:
        for kind, n in zip(("ideas", "votes", "comments"), kinds, strict=True):
            m.ideation.labels(unit, kind).set(n)
    for space, platform, active in sink.client.query(
        f"SELECT space_id, platform, active_users FROM {db}.daily_active_by_space "
        f"WHERE day = {{d:Date}} ORDER BY active_users DESC, space_id LIMIT {TOP_SPACES}",
        parameters=params,
    ).result_rows:
        m.space_active.labels(space, platform).set(active)
    for platform, active in sink.client.query(
        f"SELECT ifNull(platform, '') AS p, uniqExact(actor_id) AS people "
        f"FROM {db}.events FINAL WHERE day = {{d:Date}} GROUP BY p "
        f"HAVING people >= {{k:UInt32}} ORDER BY people DESC, p LIMIT {TOP_PLATFORMS}",
        parameters={**params, "k": min_group_size},
    ).result_rows:
        m.platform_active.labels(platform).set(active)


class DirectorySync:
    """Mirrors the directory (pseudonym -> unit, attributes) into ``directory_people``, the
    denominator of ``daily_active_by_unit.adoption_rate``; writes only what changed."""

    def __init__(self, sink: ClickHouseSink) -> None:
        self.sink = sink
        self._written: dict[str, tuple[str, str]] = {}

    def pending(self, entries: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
        """Rows (person_id, unit, attributes JSON) that differ from what was written."""
        out = []
        for person, entry in entries.items():
            attrs = orjson.dumps(
                {k: v for k, v in entry.items() if k != "unit"}, option=orjson.OPT_SORT_KEYS
            ).decode()
            row = (str(entry["unit"]), attrs)
            if self._written.get(person) != row:
                out.append((person, *row))
        return out

    def write(self, rows: list[tuple[str, str, str]]) -> None:
        """Insert the rows (raises on failure; nothing is marked written then)."""
        if rows:
            self.sink.client.insert(
                f"{self.sink.database}.directory_people",
                rows,
                column_names=("person_id", "unit", "attributes"),
            )
        for person, unit, attrs in rows:
            self._written[person] = (unit, attrs)
