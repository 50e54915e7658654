"""CPU time per event of each stage of a worker, in one process (``make bench-stages``).

Runs the worker's own per-event code on generated events (envelopes of 500, as ``produce``
sends them), stage by stage, without Kafka or ClickHouse in the way, and prints microseconds
of CPU per event (the best of several rounds: the figure least disturbed by other processes)
and the implied ceiling in events/s of one core. What the stages leave out (Faust and aiokafka,
the ClickHouse HTTP request, the gateway and chDB) is in docs/performance.md's profiles.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.ingest import activity_records  # noqa: E402
from bench.throughput import event_lines  # noqa: E402
from pipeline.contract.activity import decode_activity  # noqa: E402
from pipeline.contract.events import validate_event  # noqa: E402
from pipeline.contract.pseudonym import Pseudonymiser  # noqa: E402
from pipeline.contract.records import value_budget  # noqa: E402
from pipeline.metrics.enrich import decode_message, enrich, partition_for  # noqa: E402
from pipeline.metrics.windows import PartitionWindows  # noqa: E402
from pipeline.sinks.facts import FactBatch  # noqa: E402

N_EVENTS = int(os.environ.get("BENCH_EVENTS", "100000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
PARTITIONS = 4


def best(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Least CPU seconds of ``ROUNDS`` calls, and the last result."""
    times, out = [], None
    for _ in range(ROUNDS):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return min(times), out


def main() -> None:
    lines = event_lines(N_EVENTS)
    messages = [
        b'{"schema_version":1,"events":[' + b",".join(lines[i : i + 500]) + b"]}"
        for i in range(0, len(lines), 500)
    ]
    now_ms = int(time.time() * 1000)
    pseudonymise = Pseudonymiser(b"bench-key-0123456789abcdef")
    budget = value_budget(1_000_000, b"0000")
    n = len(lines)
    figures: list[tuple[str, float]] = []

    def event_by_event() -> list[list[dict[str, Any]]]:
        return [
            [validate_event(e, now_ms, 3_600_000) for e in orjson.loads(m)["events"]]
            for m in messages
        ]

    t_slow, _ = best(event_by_event)
    t, valid = best(
        lambda: [decode_message(m, now_ms, 3_600_000, 1 << 20).events for m in messages]
    )
    figures.append(("ingest: decode + validate (one pass)", t))

    def enrich_all() -> list[dict[str, Any]]:
        out = []
        for batch in valid:
            for ev in batch:
                ev = dict(ev)
                enrich(ev, pseudonymise, lambda _: None)
                del ev["occurred_at"]
                out.append(ev)
        return out

    t, enriched = best(enrich_all)
    figures.append(("ingest: pseudonymise + enrich", t))

    def route() -> list[bytes]:
        routed: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
        for ev in enriched:
            routed[(partition_for(ev["actor_id"], PARTITIONS), 0)].append(ev)
        return [
            r.value
            for (p, src), evs in routed.items()
            for r in activity_records(None, p, src, evs, budget)[0]
        ]

    t, activity = best(route)
    figures.append(("ingest: route + encode activity records", t))
    t, decoded = best(lambda: [decode_activity(v) for v in activity])
    figures.append(("engagement: decode activity records", t))

    def windows() -> FactBatch:
        facts = FactBatch()
        state = {p: PartitionWindows(p, 3_600_000, 600_000) for p in range(PARTITIONS)}
        for offset, doc in enumerate(decoded):
            p = partition_for(doc["events"][0]["actor_id"], PARTITIONS)
            outcome, _ = state[p].add(offset, doc["events"], doc["src"])
            facts.add(outcome.accepted, outcome.late)
        return facts

    t, facts = best(windows)
    figures.append(("engagement: windows (event time, distinct actors)", t))
    t, table = best(facts.table)
    figures.append(("sink: facts to Arrow columns", t))

    def ipc() -> int:
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return len(sink.getvalue())

    t, _ = best(ipc)
    figures.append(("sink: Arrow stream bytes (the insert's body)", t))

    total = sum(t for _, t in figures)
    print(
        f"(not in the sum) decode + validate event by event, the path of envelopes holding "
        f"an invalid event: {t_slow / n * 1e6:.2f} us"
    )
    print(f"{n:,} events, envelopes of 500, best of {ROUNDS} rounds, CPU time per event")
    for label, t in figures:
        print(f"  {label:52} {t / n * 1e6:6.2f} us")
    print(f"  {'sum of the stages':52} {total / n * 1e6:6.2f} us  = {n / total:,.0f} events/s")


if __name__ == "__main__":
    main()
