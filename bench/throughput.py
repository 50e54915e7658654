"""Throughput benchmark on the embedded broker (``make bench``; not a test).

Measures, in one run and on the same machine:
  (a) raw aiokafka consume + orjson decode of an envelope topic       [events/s]
  (b) a no-op Faust agent, one event per Kafka message                 [events/s]
  (c) the Teilhabe pipeline (ingest + windows + ClickHouse), one event per message
  (d) the same with envelopes of 500 events
  (e) end to end: ``teilhabe backfill`` of a year of generated history (BENCH_YEAR_PEOPLE
      people, default 100: ~365,000 events) against ClickHouse alone ingesting the same file
      (chDB in a fresh directory: raw events table, materialized views for daily active users
      per unit and the unit x unit interaction matrix, JSONEachRow inserts of 10,000 lines)
and prints the figures, the ratios c/b, d/a and e (targets: c/b >= 0.8, d >= 100k/s per
worker, d/a >= 0.3, backfill/ClickHouse >= 0.5) and the peak RSS of the worker. Sizes via
BENCH_EVENTS (default 400000) and BENCH_SINGLE (default 40000).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scale import backfill as timed_backfill  # noqa: E402
from pipeline.dev import generator as gen  # noqa: E402
from pipeline.dev.broker import EmbeddedBroker  # noqa: E402
from pipeline.dev.devstack import DevStack  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402
from pipeline.sources.producer import make_producer, produce_events  # noqa: E402

N_EVENTS = int(os.environ.get("BENCH_EVENTS", "400000"))
N_SINGLE = int(os.environ.get("BENCH_SINGLE", "40000"))
YEAR_PEOPLE = int(os.environ.get("BENCH_YEAR_PEOPLE", "100"))
POLL_S = 0.5
CH_BATCH = 10_000


def event_lines(n: int) -> list[bytes]:
    spec = gen.OrgSpec(seed=1, start=datetime(2026, 1, 5, tzinfo=UTC), days=120)
    out = []
    for ev in gen.Organisation(spec).events():
        out.append(orjson.dumps(ev))
        if len(out) >= n:
            break
    return out


def create(bootstrap: str, name: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(name, partitions, 1)])
    admin.close()


async def raw_consume(bootstrap: str, topic: str, expected: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    n, t0 = 0, 0.0
    try:
        while n < expected:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10000)
            for records in batch.values():
                if not t0:
                    t0 = time.perf_counter()
                for rec in records:
                    doc = orjson.loads(rec.value)
                    n += len(doc["events"]) if isinstance(doc, dict) and "events" in doc else 1
    finally:
        await consumer.stop()
    return time.perf_counter() - t0


def scrape(url: str, name: str) -> float:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def pipeline_rate(lines: list[bytes], envelope: int, root: Path) -> tuple[float, float]:
    """Pre-produce, start one worker, time first to last ingested event; (events/s, RSS MB)."""
    os.environ.update(
        {
            "TEILHABE_DATA_DIR": str(root / "var"),
            "TEILHABE_CLICKHOUSE_DSN": f"chdb://{root / 'var' / 'clickhouse'}",
            "TEILHABE_PSEUDONYM_KEY": "bench-key-0123456789abcdef",
            "TEILHABE_METRICS_PORT": "0",
            "TEILHABE_WINDOW_S": "3600",
            "TEILHABE_LOG_LEVEL": "WARNING",
        }
    )
    os.environ.pop("TEILHABE_KAFKA_BOOTSTRAP", None)
    settings = load_settings()
    with DevStack(settings) as stack:
        producer = make_producer(stack.bootstrap, tansu=settings.tansu)
        produce_events(producer, settings.topic_events, iter(lines), envelope_size=envelope)
        producer.close()
        proc = stack.start_worker()
        url = ""
        while not url:
            urls = stack.worker_metrics_urls()
            url = urls[0] if urls else ""
            time.sleep(0.1)
        # A scrape costs the worker CPU (every 50 ms was ~8%): poll every POLL_S and take
        # the times from the counter's own progress, interpolated between two scrapes.
        samples: list[tuple[float, float]] = []  # (time, events handled)
        peak_rss = 0.0
        while True:
            n = sum(  # every event the engagement stage has handled, on time or not
                scrape(url, name)
                for name in (
                    "teilhabe_events_ingested_total",
                    "teilhabe_events_late_total",
                    "teilhabe_events_duplicate_total",
                )
            )
            samples.append((time.perf_counter(), n))
            peak_rss = max(peak_rss, _rss_mb(proc.pid))
            if n >= len(lines):
                break
            if proc.poll() is not None:
                raise SystemExit(f"the worker exited early; see {stack.log_dir}")
            time.sleep(POLL_S)
    return measured_rate(samples, len(lines)), peak_rss


def measured_rate(samples: list[tuple[float, float]], total: int) -> float:
    """Events/s from (time, count) scrapes: from the first scrape that saw progress to the
    moment the count reached ``total``, interpolated between the last two scrapes (so the
    poll interval does not add to the measured time)."""
    first = next(i for i, (_, n) in enumerate(samples) if n > 0)
    (t_prev, n_prev), (t_end, n_end) = samples[-2] if len(samples) > 1 else (0.0, 0.0), samples[-1]
    if n_end > n_prev:
        t_end = t_prev + (total - n_prev) / (n_end - n_prev) * (t_end - t_prev)
    t0, n0 = samples[first]
    if first == len(samples) - 1:  # everything between two scrapes: the whole interval
        t0, n0 = (samples[first - 1][0], 0.0) if first else (t0, 0.0)
        t_end = samples[-1][0]
    return (total - n0) / max(t_end - t0, 1e-9)


def _rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    m = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(m.group(1)) / 1024 if m else 0.0


def main() -> None:
    if os.environ.get("BENCH_ONLY") == "e":  # just the end-to-end comparison
        with tempfile.TemporaryDirectory() as tmp:
            n, bf, bf_after, ch = backfill_vs_clickhouse(Path(tmp))
        print(e_line(n, bf, bf_after, ch))
        return
    print(f"generating {N_EVENTS} events ...", flush=True)
    lines = event_lines(N_EVENTS)
    single = lines[:N_SINGLE]
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(Path(tmp)) as broker:
        create(broker.bootstrap, "bench.env", 4)
        create(broker.bootstrap, "bench.single", 4)
        p = make_producer(broker.bootstrap, tansu=True)
        produce_events(p, "bench.env", iter(lines), envelope_size=500)
        produce_events(p, "bench.single", iter(single), envelope_size=1)
        p.close()
        a = N_EVENTS / asyncio.run(raw_consume(broker.bootstrap, "bench.env", N_EVENTS))
        print(f"(a) raw aiokafka + orjson, envelopes : {a:>10,.0f} events/s", flush=True)
        out = subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "noop_agent.py"),
                broker.bootstrap,
                "bench.single",
                str(N_SINGLE),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        m = re.search(r"elapsed_s=([\d.]+)", out.stdout + out.stderr)  # Faust logs stdout
        if not m:
            raise SystemExit(f"no-op agent failed:\n{out.stdout}\n{out.stderr[-2000:]}")
        b = N_SINGLE / float(m.group(1))
        print(f"(b) no-op Faust agent, 1 event/msg   : {b:>10,.0f} events/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        c, rss_c = pipeline_rate(single, 1, Path(tmp))
    print(f"(c) pipeline, 1 event/msg            : {c:>10,.0f} events/s  peak RSS {rss_c:.0f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        d, rss_d = pipeline_rate(lines, 500, Path(tmp))
    print(f"(d) pipeline, envelopes of 500       : {d:>10,.0f} events/s  peak RSS {rss_d:.0f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        n, bf, bf_after, ch = backfill_vs_clickhouse(Path(tmp))
    print(e_line(n, bf, bf_after, ch))
    print(
        f"c/b = {c / b:.2f} (target >= 0.8)   d/a = {d / a:.2f} (target >= 0.3)   "
        f"d = {d:,.0f}/s (target >= 100,000 per worker)   e = {bf / ch:.2f} (target >= 0.5)"
    )


def e_line(n: int, bf: float, bf_after: float, ch: float) -> str:
    """The (e) figures: both rates and their ratio."""
    return (
        f"(e) backfill, {n:,} events of a year : {bf:>10,.0f} events/s end to end "
        f"({bf_after:,.0f}/s after the stack started)\n"
        f"    ClickHouse alone, same file       : {ch:>10,.0f} events/s   "
        f"backfill/ClickHouse = {bf / ch:.2f} (target >= 0.5; {bf_after / ch:.2f} after start)"
    )


def year_history(root: Path) -> tuple[Path, Path, int]:
    """A year of history (ending yesterday) of ``YEAR_PEOPLE`` people as JSON lines."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    spec = gen.OrgSpec(
        seed=2, units=gen.scaled_units(YEAR_PEOPLE), start=today - timedelta(days=366), days=365
    )
    events, directory = root / "year.jsonl", root / "year.directory.jsonl"
    n, _ = gen.write_jsonl(gen.Organisation(spec), events, directory)
    return events, directory, n


#: ClickHouse alone: raw facts, the directory as a join table (units filled like the ingest
#: does), daily active people per unit and the unit x unit interaction matrix as views.
CH_ALONE_DDL = (
    "CREATE DATABASE bench",
    "CREATE TABLE bench.people (person_id String, unit String) ENGINE = Join(ANY, LEFT, person_id)",
    "CREATE TABLE bench.events (event_id String, event_type LowCardinality(String), "
    "occurred_at DateTime64(3, 'UTC'), actor_id String, actor_unit Nullable(String), "
    "space_id Nullable(String), platform Nullable(String), target_actor_id Nullable(String), "
    "target_unit Nullable(String), content_id Nullable(String), "
    "parent_content_id Nullable(String), root_content_id Nullable(String), "
    "idea_status Nullable(String)) ENGINE = MergeTree ORDER BY (toDate(occurred_at), event_id)",
    "CREATE TABLE bench.daily_active (day Date, unit String, "
    "active_users AggregateFunction(uniqExact, String), events SimpleAggregateFunction(sum, "
    "UInt64)) ENGINE = AggregatingMergeTree ORDER BY (day, unit)",
    "CREATE MATERIALIZED VIEW bench.daily_active_mv TO bench.daily_active AS SELECT "
    "toDate(occurred_at) AS day, coalesce(actor_unit, nullIf(joinGet('bench.people', 'unit', "
    "actor_id), ''), 'unknown') AS unit, uniqExactState(actor_id) AS active_users, "
    "toUInt64(count()) AS events FROM bench.events GROUP BY day, unit",
    "CREATE TABLE bench.silo_matrix (day Date, from_unit String, to_unit String, "
    "interactions UInt64) ENGINE = SummingMergeTree ORDER BY (day, from_unit, to_unit)",
    "CREATE MATERIALIZED VIEW bench.silo_matrix_mv TO bench.silo_matrix AS SELECT "
    "toDate(occurred_at) AS day, coalesce(actor_unit, nullIf(joinGet('bench.people', 'unit', "
    "actor_id), ''), 'unknown') AS from_unit, coalesce(target_unit, nullIf(joinGet("
    "'bench.people', 'unit', assumeNotNull(target_actor_id)), ''), 'unknown') AS to_unit, "
    "count() AS interactions FROM bench.events WHERE event_type IN ('reply_created', "
    "'reaction_added', 'mention', 'share') AND target_actor_id IS NOT NULL "
    "AND target_actor_id != actor_id GROUP BY day, from_unit, to_unit",
)
CH_INSERT = (
    "INSERT INTO bench.{table} SETTINGS date_time_input_format='best_effort', "
    "input_format_skip_unknown_fields=1 FORMAT JSONEachRow\n"
)


def clickhouse_alone(events: Path, directory: Path, root: Path) -> tuple[float, int, int]:
    """Ingest the file into chDB as ClickHouse alone would; (seconds, rows of both views)."""
    from chdb import session

    t0 = time.perf_counter()
    sess = session.Session(str(root / "chdb"))
    try:
        for ddl in CH_ALONE_DDL:
            sess.query(ddl)
        sess.query(CH_INSERT.format(table="people") + directory.read_text())
        with open(events, "rb") as fh:
            while batch := list(itertools.islice(fh, CH_BATCH)):
                sess.query(CH_INSERT.format(table="events") + b"".join(batch).decode())
        active = sess.query(
            "SELECT day, unit, uniqExactMerge(active_users), sum(events) "
            "FROM bench.daily_active GROUP BY day, unit",
            "CSV",
        )
        matrix = sess.query(
            "SELECT day, from_unit, to_unit, sum(interactions) FROM bench.silo_matrix "
            "GROUP BY day, from_unit, to_unit",
            "CSV",
        )
        seconds = time.perf_counter() - t0
    finally:
        sess.close()
    return seconds, str(active).count("\n"), str(matrix).count("\n")


def backfill_vs_clickhouse(root: Path) -> tuple[int, float, float, float]:
    """(e): (events, backfill events/s end to end, the same after the stack started,
    ClickHouse alone events/s), both on the same generated file in this run."""
    print(f"generating a year of history of {YEAR_PEOPLE} people ...", flush=True)
    events, directory, n = year_history(root)
    run_root = root / "backfill"
    run_root.mkdir()
    run = timed_backfill(events, directory, n, run_root)
    if run.in_clickhouse not in (-1, n):
        print(f"WARNING: backfill left {run.in_clickhouse} of {n} events in ClickHouse")
    ch_s, active_rows, matrix_rows = clickhouse_alone(events, directory, root)
    print(
        f"    (backfill {run.seconds:.1f} s of which {run.startup:.1f} s stack start; "
        f"ClickHouse alone {ch_s:.1f} s, {active_rows:,} daily_active and "
        f"{matrix_rows:,} matrix rows)",
        flush=True,
    )
    return n, n / run.seconds, n / (run.seconds - run.startup), n / ch_s


if __name__ == "__main__":
    main()
