"""Opt-out end to end on the real embedded broker (Tansu) and chDB: a worker with
TEILHABE_OPT_OUT_FILE naming one person; the file gains a second person while the worker runs.
Checked against a plain recomputation over the events without theirs (docs/privacy.md,
"Opt-out")."""

from __future__ import annotations

import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.dev import generator as gen
from pipeline.dev.backfill import BACKFILL_ENV
from pipeline.dev.devstack import DevStack, log_end_offsets, wait_until_drained
from pipeline.metrics.enrich import OPTED_OUT_TARGET
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import get_client
from pipeline.sources.producer import (
    make_producer,
    produce_directory_file,
    produce_end_of_input,
    produce_events,
    read_jsonl,
)
from tests.conftest import TEST_KEY, configure
from tests.faults.harness import (
    WINDOW_S,
    assert_equal_to_oracle,
    metric_value,
    oracle,
    read_figures,
)

pytestmark = pytest.mark.integration


def wait_input_committed(bootstrap: str, settings: Settings, timeout_s: float) -> None:
    """Until the group committed every offset of the input topic: every event produced so far
    went through the ingest filter (the windows may still be open)."""
    tps = [TopicPartition(settings.topic_events, p) for p in range(settings.events_partitions)]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-opt-out")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    deadline = time.monotonic() + timeout_s
    try:
        end = log_end_offsets(consumer, tps)
        while True:
            done = admin.list_group_offsets({settings.app_id: tps}).get(settings.app_id, {})
            if all(tp in done and done[tp].offset >= end[tp] for tp in tps):
                return
            assert time.monotonic() < deadline, "input not consumed in time"
            time.sleep(0.5)
    finally:
        consumer.close()
        admin.close()


def wait_for_log(path: Path, text: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} never logged in {path}"
        time.sleep(0.5)


def test_opted_out_people_never_reach_clickhouse(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    spec = gen.OrgSpec(seed=7, start=datetime(2026, 1, 5, tzinfo=UTC), days=2)
    events_path, dir_path = d / "events.jsonl", d / "directory.jsonl"
    gen.write_jsonl(gen.Organisation(spec), events_path, dir_path)
    events = [orjson.loads(line) for line in read_jsonl(events_path)]
    units = {r["person_id"]: r["unit"] for r in map(orjson.loads, read_jsonl(dir_path))}
    day2 = "2026-01-06"
    first = [e for e in events if e["occurred_at"] < day2]
    second = [e for e in events if e["occurred_at"] >= day2]
    # A: opted out from the start; B: added while the worker runs. Both act on both days and
    # are targets of other people's events.
    acts = Counter(e["actor_id"] for e in events)
    targets = Counter(e.get("target_actor_id") for e in events)
    both_days = {e["actor_id"] for e in first} & {e["actor_id"] for e in second}
    a, b = sorted(both_days, key=lambda p: (-min(acts[p], targets[p]), p))[:2]
    assert targets[a] and targets[b] and acts[a] > 10 and acts[b] > 10

    opt_out = d / "opt-out.txt"
    opt_out.write_text(f"# people who opted out\n\n  {a.upper()}  \n")  # spelling normalised
    mp = pytest.MonkeyPatch()
    try:
        settings = configure(
            mp, tmp_path / "run", window_s=WINDOW_S, grace_s=1800, opt_out_file=opt_out
        )
        with DevStack(settings, extra_env=BACKFILL_ENV) as stack:
            producer = make_producer(stack.bootstrap, tansu=settings.tansu)
            produce_directory_file(producer, settings, dir_path)
            stack.start_worker()
            lines = [orjson.dumps(e) for e in first]
            produce_events(producer, settings.topic_events, lines, envelope_size=200)
            producer.flush()
            wait_input_committed(stack.bootstrap, settings, 240)
            opt_out.write_text(f"{a}\n{b}\n")
            wait_for_log(stack.log_dir / "worker-0.log", "2 people", 120)  # checked every 10 s
            lines = [orjson.dumps(e) for e in second]
            produce_events(producer, settings.topic_events, lines, envelope_size=200)
            produce_end_of_input(producer, settings.topic_events)
            producer.close()
            wait_until_drained(stack.bootstrap, settings, 240, workers=stack.workers)
            (url,) = stack.worker_metrics_urls()
            metrics = urllib.request.urlopen(url, timeout=5).read().decode()
            actual = read_figures(settings)
            client = get_client(settings)
            db = settings.clickhouse_database
            rows = client.query(
                f"SELECT actor_id, target_actor_id, day >= toDate('{day2}') FROM {db}.events FINAL"
            ).result_rows
            client.close()
    finally:
        mp.undo()

    p = Pseudonymiser(TEST_KEY.encode())
    pa, pb = p(a), p(b)
    kept = [e for e in first if e["actor_id"] != a] + [
        e for e in second if e["actor_id"] not in (a, b)
    ]
    dropped = len(events) - len(kept)
    assert dropped == acts[a] + sum(1 for e in second if e["actor_id"] == b)
    # no row with an opted-out actor (B's first day stays: before the change)
    assert {r[0] for r in rows if r[0] == pa} == set()
    assert not [r for r in rows if r[0] == pb and r[2]], "B's events after the change arrived"
    assert sum(1 for r in rows if r[0] == pb) == sum(1 for e in first if e["actor_id"] == b)
    # as targets: anonymised, the event kept
    assert pa not in {r[1] for r in rows}
    assert pb not in {r[1] for r in rows if r[2]}
    expected_forgotten = sum(
        1
        for e in kept
        if e.get("target_actor_id") == a
        or (e.get("target_actor_id") == b and e["occurred_at"] >= day2)
    )
    assert sum(1 for r in rows if r[1] == OPTED_OUT_TARGET) == expected_forgotten > 0
    # everybody else's figures: the oracle over the events without theirs
    assert_equal_to_oracle(oracle(kept, units), actual)
    assert metric_value(metrics, "teilhabe_events_opted_out_total") == dropped
