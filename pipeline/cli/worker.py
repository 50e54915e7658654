"""Run one worker: resolve the embedded parts, migrate ClickHouse, serve /metrics, run Faust."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from pipeline.dev.broker import EmbeddedBroker
from pipeline.logs import setup_logging
from pipeline.ops.exporter import PipelineMetrics
from pipeline.ops.topics import ensure_topics
from pipeline.settings import Settings

log = logging.getLogger("teilhabe.worker")
#: Allocations between two collections of the youngest generation (CPython: 700).
GC_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """Collect young objects less often: a batch creates hundreds of thousands of event
    dicts, which live until the next flush and are not cyclic garbage. With CPython's
    default threshold (700 allocations) the collector ran over them again and again
    (docs/performance.md); reference counting still frees them at once."""
    gc.collect()
    gc.freeze()  # what the start-up loaded is never garbage: keep it out of every collection
    gc.set_threshold(GC_THRESHOLD, 20, 20)


def run_worker(settings: Settings) -> None:
    """Start a worker and block until it stops (SIGTERM/SIGINT = graceful stop)."""
    setup_logging(settings.log_level)
    if settings.min_group_size < 5:
        log.warning(
            "TEILHABE_MIN_GROUP_SIZE=%s is below 5: figures about very small groups are shown",
            settings.min_group_size,
        )
    settings.read_pseudonym_key()  # fail before anything starts when there is no key
    tune_garbage_collector()
    with ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap
        if settings.embedded_broker:
            broker = stack.enter_context(EmbeddedBroker(settings.data_dir / "logs"))
            bootstrap = broker.bootstrap
            log.info("embedded broker bootstrap=%s", bootstrap)
        ensure_topics(bootstrap, settings)
        from pipeline.dev.clickhouse import ensure_embedded_server
        from pipeline.sinks.clickhouse import get_client
        from pipeline.sinks.migrate import migrate

        if settings.embedded_clickhouse:
            server = ensure_embedded_server(settings)
            if server is not None:
                stack.enter_context(server)
        client = get_client(settings)
        applied = migrate(client, settings)
        if applied:
            log.info("clickhouse migrations applied=%s", ",".join(applied))
        client.close()
        metrics = PipelineMetrics.create()
        logging.getLogger().addHandler(metrics.count_client_problems())
        port = metrics.serve(settings.metrics_host, settings.metrics_port)
        log.info("metrics http://%s:%s/metrics pid=%s", settings.metrics_host, port, os.getpid())
        _write_port_file(settings, port)

        import faust

        from agents.app import create_app, state_dir

        prepare_state_dir(state_dir(settings))

        rt = create_app(settings, bootstrap, metrics)
        worker = faust.Worker(
            rt.app, loglevel=settings.log_level, quiet=True, override_logging=False
        )
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                # app.crash (a statement ClickHouse refuses, a failed seek back): the reason
                # was logged in full when it happened; repeat it as the last line
                reason = worker.crash_reason or rt.app.crash_reason
                log.critical("worker stopped, exit code %s: %s", exc.code, reason)
                raise
    sys.exit(0)


def prepare_state_dir(path: Path) -> None:
    """Make sure the local state directory is usable; never a crash loop over it.

    Nothing in it is needed (tables are in memory and rebuilt from Kafka and ClickHouse), so a
    directory that is damaged (a file in its place, not writable, unreadable entries) is moved
    aside and recreated, and the log says so.
    """
    problem = ""
    if path.exists() and not path.is_dir():
        problem = "is not a directory"
    elif path.exists():
        try:
            for child in path.rglob("*"):
                child.stat()
            probe = path / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            problem = f"is not usable ({exc.strerror or exc})"
    if problem:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        try:
            path.rename(aside)
            where = f"moved to {aside}"
        except OSError:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            where = "removed"
        log.warning(
            "local state directory %s %s: %s; state is rebuilt from the changelog "
            "(directory topic, ClickHouse checkpoints and the activity topic)",
            path,
            problem,
            where,
        )
    elif not path.exists():
        log.info("local state directory %s is new: state is rebuilt from the changelog", path)
    path.mkdir(parents=True, exist_ok=True)


def _write_port_file(settings: Settings, port: int) -> None:
    """Record this worker's metrics port (the demo and tests find workers this way)."""
    run_dir = settings.data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"worker-{os.getpid()}.metrics").write_text(str(port))
