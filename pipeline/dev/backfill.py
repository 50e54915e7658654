"""``teilhabe backfill``: run the whole pipeline over a JSON-lines file, then exit.

After the file, an end-of-input marker goes to every input partition and the workers run with
``idle_close_mode=end_of_input``: windows close in event time and, once every partition has
ended, all at once; never by wall clock. So the figures do not depend on timing or on worker
restarts, and the command can wait until each offset is committed, which happens only after
its windows are in ClickHouse.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from kafka import KafkaProducer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from pipeline.dev.devstack import DevStack, Pacer, wait_until_drained
from pipeline.settings import Settings
from pipeline.sources.importer import Sender
from pipeline.sources.producer import (
    produce_directory_file,
    produce_end_of_input,
    produce_events,
    producer_for,
    read_jsonl,
    record_limits,
)

log = logging.getLogger(__name__)

#: A backfill closes windows at the end-of-input markers it sends, never by wall clock: the
#: figures do not depend on timing, worker restarts or how fast the input is read.
BACKFILL_ENV = {"TEILHABE_IDLE_CLOSE_MODE": "end_of_input"}


def run_backfill(
    settings: Settings,
    events_file: Path,
    directory_file: Path | None,
    workers: int = 1,
    timeout_s: float = 3600.0,
    console: Console | None = None,
) -> dict[str, int]:
    """Process ``events_file`` end to end; returns a summary of what reached ClickHouse."""
    if not events_file.exists():
        raise FileNotFoundError(f"no such file: {events_file}")
    console = console or Console(stderr=True)

    def send(producer: KafkaProducer, progress: Callable[[int], None]) -> None:
        if directory_file is not None:
            n = produce_directory_file(producer, settings, directory_file)
            console.print(f"directory: {n} people")
        produce_events(
            producer,
            settings.topic_events,
            read_jsonl(events_file),
            progress=progress,
            **record_limits(settings),
        )

    total = sum(1 for _ in read_jsonl(events_file))
    return run_bounded(settings, send, total, workers, timeout_s, console)


def run_bounded(
    settings: Settings,
    send: Sender,
    total: int | None,
    workers: int = 1,
    timeout_s: float = 3600.0,
    console: Console | None = None,
) -> dict[str, int]:
    """Start the stack and ``workers`` workers, let ``send`` produce a bounded input (it calls
    its progress callback with the events sent), end it with end-of-input markers and wait
    until every offset is committed (= in ClickHouse). Shared by ``backfill`` and ``import``."""
    console = console or Console(stderr=True)
    settings.read_pseudonym_key()  # fail before anything starts when there is no key
    started = time.monotonic()
    with DevStack(settings, extra_env=BACKFILL_ENV) as stack:
        producer = producer_for(settings, stack.bootstrap)
        for _ in range(workers):
            stack.start_worker()
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        pacer = Pacer(stack.bootstrap, settings, settings.backfill_max_backlog, stack.workers)
        with Progress(*columns, console=console, transient=False) as progress:
            sent_task = progress.add_task("produced ", total=total)

            def sent(n: int) -> None:  # called once per record (envelope) sent
                progress.advance(sent_task, n)
                pacer()

            try:
                send(producer, sent)
            finally:
                pacer.close()
            produce_end_of_input(producer, settings.topic_events)
            producer.close()
            done_task = progress.add_task("processed (offsets)", total=None)

            def on_progress(done: int, end: int) -> None:
                progress.update(done_task, completed=done, total=end)

            wait_until_drained(
                stack.bootstrap, settings, timeout_s, on_progress, workers=stack.workers
            )
        stack.stop_workers()
        summary = _summary(settings)
    summary["seconds"] = int(time.monotonic() - started)
    console.print(
        f"backfill done: {summary['events']} events in ClickHouse, "
        f"{summary['windows']} window rows, {summary['late']} late, in {summary['seconds']} s"
    )
    return summary


def _summary(settings: Settings) -> dict[str, int]:
    from pipeline.sinks.clickhouse import get_client

    client = get_client(settings)
    db = settings.clickhouse_database
    events, late = client.query(
        f"SELECT count(), countIf(is_late = 1) FROM {db}.events FINAL"
    ).result_rows[0]
    windows = client.query(
        f"SELECT count() FROM {db}.engagement_window_partials FINAL"
    ).result_rows[0][0]
    client.close()
    return {"events": int(events), "late": int(late), "windows": int(windows)}
