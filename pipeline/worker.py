"""Run one worker: resolve the embedded parts, migrate ClickHouse, serve /metrics, run Faust."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import ExitStack

from pipeline.broker import EmbeddedBroker, ensure_topics
from pipeline.exporter import PipelineMetrics
from pipeline.logs import setup_logging
from pipeline.settings import Settings

log = logging.getLogger("teilhabe.worker")


def run_worker(settings: Settings) -> None:
    """Start a worker and block until it stops (SIGTERM/SIGINT = graceful stop)."""
    setup_logging(settings.log_level)
    if settings.min_group_size < 5:
        log.warning(
            "TEILHABE_MIN_GROUP_SIZE=%s is below 5: figures about very small groups are shown",
            settings.min_group_size,
        )
    settings.read_pseudonym_key()  # fail before anything starts when there is no key
    with ExitStack() as stack:
        bootstrap = settings.kafka_bootstrap
        if settings.embedded_broker:
            broker = stack.enter_context(EmbeddedBroker(settings.data_dir))
            bootstrap = broker.bootstrap
            log.info("embedded broker bootstrap=%s", bootstrap)
        ensure_topics(bootstrap, settings)
        from pipeline.clickhouse import ensure_embedded_server, get_client
        from pipeline.migrate import migrate

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

        from agents.app import create_app

        rt = create_app(settings, bootstrap, metrics)
        worker = faust.Worker(
            rt.app, loglevel=settings.log_level, quiet=True, override_logging=False
        )
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise
    sys.exit(0)


def _write_port_file(settings: Settings, port: int) -> None:
    """Record this worker's metrics port (the demo and tests find workers this way)."""
    run_dir = settings.data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"worker-{os.getpid()}.metrics").write_text(str(port))
