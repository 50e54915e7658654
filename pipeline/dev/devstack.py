"""The embedded default as one context: broker, ClickHouse server and N worker processes.

Used by ``teilhabe demo``, ``teilhabe backfill``, the integration tests and the benchmark.
With ``TEILHABE_KAFKA_BOOTSTRAP`` / an http(s) ClickHouse DSN configured, the same code runs
against them and starts only the workers.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

from pipeline.dev.broker import EmbeddedBroker
from pipeline.kafka_security import client_kwargs
from pipeline.ops.topics import ensure_topics
from pipeline.settings import Settings

if TYPE_CHECKING:
    from pipeline.dev.clickhouse import EmbeddedClickHouse

log = logging.getLogger(__name__)


class DevStack:
    """Starts what the settings leave embedded, then worker subprocesses on demand."""

    def __init__(self, settings: Settings, extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.extra_env = dict(extra_env or {})
        self.bootstrap = settings.kafka_bootstrap
        self.workers: list[subprocess.Popen[bytes]] = []
        self.broker: EmbeddedBroker | None = None
        self.clickhouse: EmbeddedClickHouse | None = None  # when this stack started it
        self._stack = ExitStack()
        self.log_dir = settings.data_dir / "logs"

    def __enter__(self) -> DevStack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.settings.embedded_broker:
                broker = self._stack.enter_context(EmbeddedBroker(self.log_dir))
                self.bootstrap = broker.bootstrap
                self.broker = broker
            ensure_topics(self.bootstrap, self.settings)
            if self.settings.embedded_clickhouse:
                from pipeline.dev.clickhouse import ensure_embedded_server

                server = ensure_embedded_server(self.settings)
                if server is not None:
                    self.clickhouse = self._stack.enter_context(server)
            from pipeline.sinks.clickhouse import get_client
            from pipeline.sinks.migrate import migrate

            client = get_client(self.settings)
            migrate(client, self.settings)
            client.close()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_workers()
        self._stack.close()

    def worker_env(self) -> dict[str, str]:
        """Environment of a worker subprocess: the resolved broker, same everything else."""
        env = dict(os.environ)
        env.update(self.extra_env)
        env["TEILHABE_KAFKA_BOOTSTRAP"] = self.bootstrap
        if self.settings.embedded_broker:
            env["TEILHABE_KAFKA_FLAVOR"] = "tansu"
        env["TEILHABE_DATA_DIR"] = str(self.settings.data_dir)
        env["TEILHABE_CLICKHOUSE_DSN"] = self.settings.clickhouse_dsn
        env.setdefault("TEILHABE_METRICS_PORT", "0")
        return env

    def start_worker(
        self, env: dict[str, str] | None = None, slot: int | None = None
    ) -> subprocess.Popen[bytes]:
        """Spawn ``teilhabe worker`` with its log in ``data_dir/logs/worker-N.log``; ``slot``
        N replaces worker N (a restart, appending to its log) instead of adding one."""
        n = len(self.workers) if slot is None else slot
        log_path = self.log_dir / f"worker-{n}.log"
        full_env = self.worker_env()
        full_env.update(env or {})
        with open(log_path, "ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli.main", "worker"],
                env=full_env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if n < len(self.workers):
            self.workers[n] = proc
        else:
            self.workers.append(proc)
        log.info("worker started pid=%s log=%s", proc.pid, log_path)
        return proc

    def stop_workers(self, timeout_s: float = 20.0) -> None:
        """SIGTERM every worker, SIGKILL what is left after ``timeout_s``."""
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.workers:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        self.workers = []

    def worker_metrics_urls(self) -> list[str]:
        """/metrics URLs of the running workers (from their port files)."""
        urls = []
        for proc in self.workers:
            f = self.settings.data_dir / "run" / f"worker-{proc.pid}.metrics"
            if f.exists():
                urls.append(f"http://{self.settings.metrics_host}:{f.read_text().strip()}/metrics")
        return urls


def log_end_offsets(
    consumer: KafkaConsumer, tps: list[TopicPartition], timeout_s: float = 10.0
) -> dict[TopicPartition, int]:
    """Log-end offset of each partition as a Fetch response reports it (high watermark).

    Not ListOffsets alone: the embedded broker answers it with the base offset of the last
    *batch* + 1 (docs/design.md), so a partition whose last batch holds several records looks
    finished too early. Fetching from just before that answer returns the real high watermark
    on Tansu and on Apache Kafka alike, at the cost of reading one batch per partition.
    """
    listed = consumer.end_offsets(tps)
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, max(listed[tp] - 1, 0))
    ends: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(ends) < len(tps):
        if time.monotonic() > deadline:
            missing = sorted(f"{tp.topic}[{tp.partition}]" for tp in tps if tp not in ends)
            raise TimeoutError(f"no high watermark from the broker for {', '.join(missing)}")
        consumer.poll(timeout_ms=100)
        for tp in tps:
            hw = consumer.highwater(tp)
            if hw is not None:
                ends[tp] = max(hw, listed[tp])
    return ends


def consumed_fraction(bootstrap: str, settings: Settings) -> tuple[int, int]:
    """(committed, end) offsets summed over the input and activity topics for the app's group."""
    security = client_kwargs(settings)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="teilhabe-progress", **security)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id="teilhabe-progress",
        enable_auto_commit=False,
        **security,
    )
    try:
        tps = [
            TopicPartition(topic, p)
            for topic, n in (
                (settings.topic_events, settings.events_partitions),
                (settings.topic_activity, settings.activity_partitions),
            )
            for p in range(n)
        ]
        end = log_end_offsets(consumer, tps)
        committed = admin.list_group_offsets({settings.app_id: tps}).get(settings.app_id, {})
        done = sum(
            min(committed[tp].offset, end[tp])
            if tp in committed and committed[tp].offset >= 0
            else 0
            for tp in tps
        )
        return done, sum(end.values())
    finally:
        consumer.close()
        admin.close()


class Pacer:
    """Keeps a bounded input at most ``max_backlog`` messages ahead of what the workers have
    committed on the input topic.

    Without it, ``backfill`` and ``import --backfill`` put the whole history into Kafka at
    once and the workers read its partitions unevenly: the further behind they fall, the
    further apart in event time their input partitions get, and the event-time windows a
    partition must hold open until the slowest one catches up grow with the history's
    length (seen: peak worker RSS 1.1 GB for 1M events, 2.2 GB for 5M). With a bounded
    backlog the windows held stay bounded too. Checks every ``CHECK_EVERY`` messages.
    """

    CHECK_EVERY = 16

    def __init__(
        self,
        bootstrap: str,
        settings: Settings,
        max_backlog: int,
        workers: list[subprocess.Popen[bytes]] | None = None,
    ) -> None:
        self.settings = settings
        self.max_backlog = max_backlog
        self.workers = workers or []
        self.sent = 0
        self.waited_s = 0.0
        self._admin: KafkaAdminClient | None = None
        self._bootstrap = bootstrap
        self._tps = [
            TopicPartition(settings.topic_events, p) for p in range(settings.events_partitions)
        ]

    def committed(self) -> int:
        """Input messages the workers have committed (all partitions)."""
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self._bootstrap,
                client_id="teilhabe-pacer",
                **client_kwargs(self.settings),
            )
        app = self.settings.app_id
        offsets = self._admin.list_group_offsets({app: self._tps}).get(app, {})
        return sum(max(o.offset, 0) for o in offsets.values())

    def __call__(self, messages: int = 1) -> None:
        """Count ``messages`` sent; wait while the backlog is above the bound."""
        self.sent += messages
        if not self.max_backlog or self.sent % self.CHECK_EVERY:
            return
        started = time.monotonic()
        while self.sent - self.committed() > self.max_backlog:
            if self.workers and all(w.poll() is not None for w in self.workers):
                raise RuntimeError("every worker exited before the input was processed")
            time.sleep(0.1)
        self.waited_s += time.monotonic() - started

    def close(self) -> None:
        """Close the admin connection."""
        if self._admin is not None:
            self._admin.close()


def wait_until_drained(
    bootstrap: str,
    settings: Settings,
    timeout_s: float,
    on_progress: object = None,
    workers: list[subprocess.Popen[bytes]] | None = None,
) -> None:
    """Block until the group has committed every offset of the input and activity topics.

    Offsets of the activity topic are committed only after the windows holding them are in
    ClickHouse, so "all committed" means "all processed and flushed".
    """
    deadline = time.monotonic() + timeout_s
    while True:
        done, end = consumed_fraction(bootstrap, settings)
        if callable(on_progress):
            on_progress(done, end)
        if end > 0 and done >= end:
            return
        if workers and all(w.poll() is not None for w in workers):
            raise RuntimeError("every worker exited before the input was processed")
        if time.monotonic() > deadline:
            raise TimeoutError(f"not drained after {timeout_s:.0f} s ({done}/{end} offsets)")
        time.sleep(0.5)


def ensure_dir(path: Path) -> Path:
    """mkdir -p, returning the path."""
    path.mkdir(parents=True, exist_ok=True)
    return path
