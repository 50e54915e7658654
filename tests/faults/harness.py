"""Fault-injection harness: a seeded organisation, its oracle, and a pipeline run on the real
embedded broker (Tansu) and chDB whose ClickHouse figures are compared with the oracle,
figure by figure.

The oracle is a plain batch recomputation from the JSON-lines file (no pipeline code): per
(window, unit) the distinct actors and the events, each event id counted once; and the
event facts (one row per distinct event id, late ones flagged). Every scenario runs with
``idle_close_mode=end_of_input`` and ends its input with end-of-input markers, so the expected
figures do not depend on timing: any difference is a fault of the pipeline.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.dev import generator as gen
from pipeline.dev.devstack import (
    DevStack,
    consumed_fraction,
    log_end_offsets,
    wait_until_drained,
)
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import get_client
from pipeline.sources.producer import (
    make_producer,
    produce_directory_file,
    produce_end_of_input,
    produce_events,
    read_jsonl,
)
from tests.conftest import configure

WINDOW_S = 3600
GRACE_S = 1800
#: Short forms run in ``make test``; the variables give the full forms (docs/reliability.md).
KILLS = int(os.environ.get("TEILHABE_FAULTS_KILLS", "10"))
OUTAGE_S = float(os.environ.get("TEILHABE_FAULTS_OUTAGE_S", "20"))
STALL_S = float(os.environ.get("TEILHABE_FAULTS_STALL_S", "20"))
#: ClickHouse down while a worker joins: 60 s in every form, far beyond the rebalance timeout
#: (12 s on the embedded broker), which is what the scenario has to outlast.
REBALANCE_OUTAGE_S = float(os.environ.get("TEILHABE_FAULTS_REBALANCE_OUTAGE_S", "60"))
FAULT_ENV = {
    "TEILHABE_IDLE_CLOSE_MODE": "end_of_input",
    "TEILHABE_SINK_FLUSH_INTERVAL_S": "0.2",
}

WindowKey = tuple[int, str]


@dataclass(frozen=True)
class Dataset:
    """A generated organisation as files plus its parsed valid events."""

    events_path: Path
    directory_path: Path
    events: list[dict[str, Any]]
    units: dict[str, str]


def make_dataset(root: Path, seed: int = 11, days: int = 4, day0: int = 2) -> Dataset:
    """Write a seeded organisation (``days`` days from 2026-02-``day0``) under ``root``."""
    spec = gen.OrgSpec(seed=seed, start=datetime(2026, 2, day0, tzinfo=UTC), days=days)
    return dataset_from_spec(root, spec, f"-{seed}")


def dataset_from_spec(root: Path, spec: gen.OrgSpec, suffix: str = "") -> Dataset:
    """Write the organisation of ``spec`` as events and directory files under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    events_path, dir_path = root / f"events{suffix}.jsonl", root / f"directory{suffix}.jsonl"
    gen.write_jsonl(gen.Organisation(spec), events_path, dir_path)
    events = [orjson.loads(line) for line in read_jsonl(events_path)]
    units = {r["person_id"]: r["unit"] for r in map(orjson.loads, read_jsonl(dir_path))}
    return Dataset(events_path, dir_path, events, units)


@dataclass
class Figures:
    """What a run left in ClickHouse (or what the oracle expects there)."""

    windows: dict[WindowKey, tuple[int, int]]  # (window start s, unit) -> (active, events)
    facts: int  # rows of ``events FINAL``
    distinct: int  # distinct event ids among them
    late: int  # of which flagged late

    def total_events(self) -> int:
        """Events counted in windows."""
        return sum(e for _, e in self.windows.values())


class WindowOracle:
    """The plain recomputation, one event at a time (the soak feeds millions of them)."""

    def __init__(self, units: dict[str, str], dedup: bool = True) -> None:
        self.units = units
        self.seen: set[str] | None = set() if dedup else None  # off: ids unique by construction
        self.actors: dict[WindowKey, set[str]] = defaultdict(set)
        self.counts: Counter[WindowKey] = Counter()
        self.n = 0

    def add(self, ev: dict[str, Any]) -> None:
        """Count one on-time event (a repeated event id counts once)."""
        if self.seen is not None:
            if ev["event_id"] in self.seen:
                return
            self.seen.add(ev["event_id"])
        t = datetime.fromisoformat(ev["occurred_at"].replace("Z", "+00:00")).timestamp()
        unit = ev.get("actor_unit") or self.units.get(ev["actor_id"], "unknown")
        key = (int(t) // WINDOW_S * WINDOW_S, unit)
        self.actors[key].add(ev["actor_id"])
        self.counts[key] += 1
        self.n += 1

    def figures(self, late: int = 0) -> Figures:
        """What ClickHouse must hold, with ``late`` more facts flagged late."""
        windows = {k: (len(a), self.counts[k]) for k, a in self.actors.items()}
        return Figures(windows, self.n + late, self.n + late, late)


def oracle(
    on_time: Iterable[dict[str, Any]],
    units: dict[str, str],
    late: Iterable[dict[str, Any]] = (),
) -> Figures:
    """Expected figures: ``on_time`` events counted in windows (each event id once); ``late``
    events (new ids arriving after their windows closed) only in the facts, flagged late."""
    counted = WindowOracle(units)
    for ev in on_time:
        counted.add(ev)
    assert counted.seen is not None
    late_ids = {ev["event_id"] for ev in late} - counted.seen
    return counted.figures(late=len(late_ids))


def read_figures(settings: Settings) -> Figures:
    """The figures in ClickHouse: closed windows summed over partitions, event facts."""
    client = get_client(settings)
    db = settings.clickhouse_database
    try:
        rows = client.query(
            f"SELECT toUnixTimestamp(window_start), unit, sum(active_users), sum(events) "
            f"FROM {db}.engagement_window_partials FINAL GROUP BY 1, 2"
        ).result_rows
        n, distinct, late = client.query(
            f"SELECT count(), uniqExact(event_id), countIf(is_late = 1) FROM {db}.events FINAL"
        ).result_rows[0]
    finally:
        client.close()
    windows = {(int(t), str(u)): (int(a), int(e)) for t, u, a, e in rows}
    return Figures(windows, int(n), int(distinct), int(late))


def differences(expected: Figures, actual: Figures, limit: int = 20) -> list[str]:
    """Every figure that differs, as readable lines (empty = equal)."""
    out: list[str] = []
    for key in sorted(expected.windows.keys() | actual.windows.keys()):
        want, got = expected.windows.get(key), actual.windows.get(key)
        if want != got:
            when = datetime.fromtimestamp(key[0], tz=UTC).strftime("%Y-%m-%d %H:%M")
            out.append(f"window {when} unit={key[1]}: (active, events) expected {want} got {got}")
    for name in ("facts", "distinct", "late"):
        want_n, got_n = getattr(expected, name), getattr(actual, name)
        if want_n != got_n:
            out.append(f"{name}: expected {want_n} got {got_n}")
    if len(out) > limit:
        out = out[:limit] + [f"... and {len(out) - limit} more"]
    return out


def assert_equal_to_oracle(expected: Figures, actual: Figures) -> None:
    """Fail with the differing figures listed."""
    diff = differences(expected, actual)
    assert not diff, "ClickHouse differs from the oracle:\n  " + "\n  ".join(diff)


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    """Resident set (or peak ``VmHWM``) of a process in kB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def metric_value(text: str, name: str, label: str = "") -> float:
    """Sum of the samples of ``name`` (optionally only those whose labels contain ``label``)."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#") and label in line:
            head = line.rsplit(" ", 1)[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def read_records(bootstrap: str, *topics: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record of ``topics`` (all partitions) up to their high watermarks, as kafka-python
    returns them: reads until each partition's position reaches its end, never waits for more."""
    from kafka import KafkaConsumer
    from kafka.structs import TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    try:
        tps = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        ends = log_end_offsets(consumer, tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"could not read {topics} to their ends"
            for batch in consumer.poll(timeout_ms=200).values():
                records += batch
        return records
    finally:
        consumer.close()


@dataclass
class Report:
    """Figures of one scenario, printed at its end (``pytest -s``) for the closing note."""

    scenario: str
    faults: int = 0
    events_in: int = 0
    peak_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)

    def print(self, actual: Figures, expected: Figures) -> None:
        """One line per scenario: faults, events in, in ClickHouse, differences, RSS."""
        diff = len(differences(expected, actual, limit=10**9))
        print(
            f"\nFAULTS {self.scenario}: faults={self.faults} events_in={self.events_in} "
            f"in_clickhouse(facts)={actual.facts} in_windows={actual.total_events()} "
            f"differences={diff} peak_rss_mb={self.peak_rss_mb:.0f} {' '.join(self.notes)}"
        )


class FaultRun:
    """A DevStack with the harness's settings, a producer thread and worker bookkeeping."""

    def __init__(self, root: Path, dataset: Dataset, **settings: object) -> None:
        self.root = root
        self.dataset = dataset
        self.mp = pytest.MonkeyPatch()
        values: dict[str, object] = {"window_s": WINDOW_S, "grace_s": GRACE_S}
        values.update(settings)
        self.settings = configure(self.mp, root, **values)
        self.stack = DevStack(self.settings, extra_env=FAULT_ENV)
        self.report = Report(scenario="")
        self._producer_thread: threading.Thread | None = None
        self._produce_error: BaseException | None = None
        self.rng = random.Random(20261125)

    def __enter__(self) -> FaultRun:
        try:
            self.stack.__enter__()
            producer = make_producer(self.stack.bootstrap, tansu=self.settings.tansu)
            produce_directory_file(producer, self.settings, self.dataset.directory_path)
            producer.close()
        except BaseException:
            self.mp.undo()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stack.__exit__(None, None, None)
        finally:
            self.mp.undo()

    # -- input ------------------------------------------------------------------------------
    def produce(
        self,
        lines: Iterable[bytes] | None = None,
        rate_per_s: float | None = None,
        end_of_input: bool = True,
        background: bool = False,
        envelope_size: int = 100,
    ) -> None:
        """Send events (default: the dataset), then end-of-input markers; optionally paced and
        in a background thread (``join_producer`` re-raises its error)."""
        source = lines if lines is not None else read_jsonl(self.dataset.events_path)

        def send() -> None:
            producer = make_producer(self.stack.bootstrap, tansu=self.settings.tansu)
            try:
                n = produce_events(
                    producer, self.settings.topic_events, source, envelope_size, rate_per_s
                )
                self.report.events_in += n
                if end_of_input:
                    produce_end_of_input(producer, self.settings.topic_events)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                self._produce_error = exc
            finally:
                producer.close()

        if not background:
            send()
            self.join_producer()
            return
        self._producer_thread = threading.Thread(target=send, name="fault-producer", daemon=True)
        self._producer_thread.start()

    def start_paced(self, seconds: float) -> subprocess.Popen[bytes]:
        """Produce the dataset over about ``seconds`` in the background, start a worker and
        wait for its first flush; returns the worker."""
        self.produce(rate_per_s=len(self.dataset.events) / seconds, background=True)
        worker = self.start_worker()
        self.sleep_until(lambda: self.activity_committed() > 0, 60, "a first flush")
        return worker

    def producing(self) -> bool:
        """True while the background producer runs."""
        return self._producer_thread is not None and self._producer_thread.is_alive()

    def join_producer(self, timeout_s: float = 300) -> None:
        """Wait for the background producer; raise what it raised."""
        if self._producer_thread is not None:
            self._producer_thread.join(timeout_s)
            assert not self._producer_thread.is_alive(), "the producer did not finish"
        if self._produce_error is not None:
            raise self._produce_error

    # -- workers ----------------------------------------------------------------------------
    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        """Start a worker subprocess (extra ``TEILHABE_*`` variables as keyword arguments)."""
        return self.stack.start_worker(env)

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> int:
        """Signal a worker, wait for it, record its peak RSS; returns its exit code."""
        self.note_rss(proc)
        proc.send_signal(sig)
        code = proc.wait(60)
        self.report.faults += 1
        return code

    def note_rss(self, proc: subprocess.Popen[bytes]) -> int:
        """Record the peak RSS of a running worker; returns its current RSS in kB."""
        peak = rss_kb(proc.pid, "VmHWM") / 1024
        self.report.peak_rss_mb = max(self.report.peak_rss_mb, peak)
        return rss_kb(proc.pid)

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        """Workers that are still running."""
        return [w for w in self.stack.workers if w.poll() is None]

    def wait_drained(self, timeout_s: float = 300) -> None:
        """Until every input and activity offset is committed (all flushed)."""
        self.join_producer()
        wait_until_drained(
            self.stack.bootstrap, self.settings, timeout_s, workers=self.stack.workers
        )
        for proc in self.live_workers():
            self.note_rss(proc)

    def progress(self) -> tuple[int, int]:
        """(committed, end) offsets over the input and activity topics."""
        return consumed_fraction(self.stack.bootstrap, self.settings)

    def activity_committed(self) -> int:
        """Committed offsets of the activity topic (advance only after a ClickHouse flush)."""
        return sum(self.committed_by_partition().values())

    def committed_by_partition(self) -> dict[int, int]:
        """Committed offset of each activity partition (absent: nothing committed yet)."""
        from kafka.admin import KafkaAdminClient
        from kafka.structs import TopicPartition

        s = self.settings
        admin = KafkaAdminClient(bootstrap_servers=self.stack.bootstrap, client_id="faults")
        try:
            tps = [TopicPartition(s.topic_activity, p) for p in range(s.activity_partitions)]
            got = admin.list_group_offsets({s.app_id: tps}).get(s.app_id, {})
            return {tp.partition: o.offset for tp, o in got.items() if o.offset >= 0}
        finally:
            admin.close()

    def group_offsets(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(committed, log end) of every input and activity partition (committed -1: none)."""
        from kafka import KafkaConsumer
        from kafka.admin import KafkaAdminClient
        from kafka.structs import TopicPartition

        s = self.settings
        tps = [TopicPartition(s.topic_events, p) for p in range(s.events_partitions)]
        tps += [TopicPartition(s.topic_activity, p) for p in range(s.activity_partitions)]
        admin = KafkaAdminClient(bootstrap_servers=self.stack.bootstrap, client_id="faults")
        consumer = KafkaConsumer(bootstrap_servers=self.stack.bootstrap, enable_auto_commit=False)
        try:
            ends = log_end_offsets(consumer, tps)
            got = admin.list_group_offsets({s.app_id: tps}).get(s.app_id, {})
        finally:
            consumer.close()
            admin.close()
        return {
            (tp.topic, tp.partition): (got[tp].offset if tp in got else -1, ends[tp]) for tp in tps
        }

    def checkpoint_offsets(self) -> dict[int, int]:
        """Offset of the newest saved checkpoint of each activity partition."""
        client = get_client(self.settings)
        try:
            rows = client.query(
                f"SELECT partition, offset FROM {self.settings.clickhouse_database}"
                ".stream_checkpoints FINAL"
            ).result_rows
        finally:
            client.close()
        return {int(p): int(o) for p, o in rows}

    def metrics_text(self) -> str:
        """/metrics of every live worker, concatenated."""
        texts = []
        for url in self.stack.worker_metrics_urls():
            try:
                texts.append(urllib.request.urlopen(url, timeout=5).read().decode())
            except OSError:
                pass
        return "\n".join(texts)

    def logs(self) -> str:
        """All worker logs of the run."""
        return "\n".join(p.read_text(errors="replace") for p in self.stack.log_dir.glob("worker-*"))

    def log_of(self, n: int) -> str:
        """The log of worker ``n`` so far."""
        return (self.stack.log_dir / f"worker-{n}.log").read_text(errors="replace")

    def figures(self) -> Figures:
        """What is in ClickHouse now."""
        return read_figures(self.settings)

    def sleep_until(self, predicate: Any, timeout_s: float, what: str) -> None:
        """Poll ``predicate`` every 0.2 s; fail naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            assert self.stack.workers, "no worker started"
            time.sleep(0.2)
