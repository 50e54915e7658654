"""Throughput benchmark on the embedded broker (``make bench``; not a test).

Measures, in one run and on the same machine:
  (a) raw aiokafka consume + orjson decode of an envelope topic       [events/s]
  (b) a no-op Faust agent, one event per Kafka message                 [events/s]
  (c) the Teilhabe pipeline (ingest + windows + ClickHouse), one event per message
  (d) the same with envelopes of 500 events
and prints the figures, the ratios c/b and d/a (targets: c/b >= 0.8, d >= 100k/s per worker,
d/a >= 0.3) and the peak RSS of the worker. Sizes via BENCH_EVENTS (default 400000) and
BENCH_SINGLE (default 40000).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer
from kafka.admin import KafkaAdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline import generator as gen  # noqa: E402
from pipeline.broker import EmbeddedBroker  # noqa: E402
from pipeline.devstack import DevStack  # noqa: E402
from pipeline.producer import make_producer, produce_events  # noqa: E402
from pipeline.settings import load_settings  # noqa: E402

N_EVENTS = int(os.environ.get("BENCH_EVENTS", "400000"))
N_SINGLE = int(os.environ.get("BENCH_SINGLE", "40000"))


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
        t0 = 0.0
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
            if n and not t0:
                t0 = time.perf_counter()
            rss = _rss_mb(proc.pid)
            peak_rss = max(peak_rss, rss)
            if n >= len(lines):
                break
            if proc.poll() is not None:
                raise SystemExit(f"the worker exited early; see {stack.log_dir}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
    return len(lines) / elapsed, peak_rss


def _rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0.0
    m = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(m.group(1)) / 1024 if m else 0.0


def main() -> None:
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
    print(
        f"c/b = {c / b:.2f} (target >= 0.8)   d/a = {d / a:.2f} (target >= 0.3)   "
        f"d = {d:,.0f}/s (target >= 100,000 per worker)"
    )


if __name__ == "__main__":
    main()
