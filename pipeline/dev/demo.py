"""``teilhabe demo``: broker, ClickHouse, worker(s), a live synthetic organisation, live view."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pipeline.dev.devstack import DevStack
from pipeline.dev.supervisor import RestartPolicy, Supervised, Supervisor
from pipeline.settings import Settings

DEMO_ENV = {"TEILHABE_DEMO": "1"}


def supervise_workers(
    stack: DevStack, workers: int, policy: RestartPolicy | None = None
) -> Supervisor:
    """Start ``workers`` workers of ``stack``, each restarted when it exits (see
    pipeline/dev/supervisor.py); the caller calls ``check()`` on the result regularly."""
    supervisor = Supervisor(
        [
            Supervised(
                f"worker-{i}",
                partial(stack.start_worker, slot=i),
                stack.log_dir / f"worker-{i}.log",
                policy,
            )
            for i in range(workers)
        ]
    )
    supervisor.start()
    return supervisor


def start_generator(stack: DevStack, rate: float) -> subprocess.Popen[bytes]:
    """``teilhabe generate --live`` against the stack, logging to ``logs/generator.log``."""
    with open(stack.log_dir / "generator.log", "ab") as gen_log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", "generate", "--live", "--rate", str(rate)],
            env=stack.worker_env(),
            stdout=gen_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_demo(settings: Settings, rate: float, workers: int = 1, seconds: float = 0.0) -> None:
    """Run until Ctrl-C (or ``seconds``), refreshing a compact view of the current window."""
    console = Console()
    settings.read_pseudonym_key()  # demo mode creates DATA_DIR/pseudonym.key if missing
    env = dict(DEMO_ENV)
    env.setdefault("TEILHABE_WINDOW_S", str(settings.window_s))
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    console.print("[bold]Teilhabe demo[/bold]: starting broker, ClickHouse and workers ...")
    with DevStack(settings, extra_env=env) as stack:
        supervisor = supervise_workers(stack, workers)
        generator = start_generator(stack, rate)
        from pipeline.sinks.clickhouse import get_client

        client = get_client(settings)
        started = time.monotonic()
        try:
            with Live(console=console, refresh_per_second=1, transient=False) as live:
                while not stop and (not seconds or time.monotonic() - started < seconds):
                    live.update(view(settings, stack, client, generator, supervisor))
                    for _ in range(20):
                        supervisor.check()  # raises SupervisionGaveUp: the demo stops
                        if stop:
                            break
                        time.sleep(0.1)
        finally:
            console.print("stopping ...")
            generator.send_signal(signal.SIGTERM)
            try:
                generator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                generator.kill()
            client.close()
    where = "" if settings.data_dir == Path("var") else f"--data-dir {settings.data_dir} "
    console.print(
        f"demo stopped; data stays in {settings.data_dir}; "
        f"a report of it: teilhabe report {where}--out report.html"
    )


def view(
    settings: Settings,
    stack: DevStack,
    client: object,
    generator: subprocess.Popen[bytes],
    supervisor: Supervisor,
) -> Group:
    """The live view: where things run, worker status and restarts, the current window."""
    db = settings.clickhouse_database
    window_ms = settings.window_s * 1000
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - now_ms % window_ms
    k = settings.min_group_size
    rows = client.query(  # type: ignore[attr-defined]
        f"SELECT actor_unit, uniqExact(actor_id) AS active, count() AS events, "
        f"countIf(event_type IN ('post_created','reply_created','idea_submitted')) AS contrib "
        f"FROM {db}.events FINAL WHERE ts_ms >= {{s:Int64}} "
        "GROUP BY actor_unit ORDER BY actor_unit",
        parameters={"s": start_ms},
    ).result_rows
    window = datetime.fromtimestamp(start_ms / 1000, tz=UTC).strftime("%H:%M:%S")
    table = Table(title=f"current window from {window} UTC ({settings.window_s} s), k={k}")
    for col in ("unit", "active users", "events", "contributions"):
        table.add_column(col, justify="right" if col != "unit" else "left")
    for unit, active, events, contrib in rows:
        if active < k:
            table.add_row(unit, f"< {k}", "suppressed", "suppressed")
        else:
            table.add_row(unit, str(active), str(events), str(contrib))
    total = client.query(f"SELECT count() FROM {db}.events").result_rows[0][0]  # type: ignore[attr-defined]
    where = "" if settings.data_dir == Path("var") else f"--data-dir {settings.data_dir} "
    ch = f"chdb://{settings.chdb_path}" if settings.embedded_clickhouse else settings.clickhouse_dsn
    info = Text.from_markup(
        f"broker [cyan]{stack.bootstrap}[/]  clickhouse [cyan]{ch}[/]  "
        f"workers alive [cyan]{supervisor.status()}[/]  generator "
        f"[cyan]{'running' if generator.poll() is None else 'stopped'}[/]\n"
        f"metrics {' '.join(stack.worker_metrics_urls()) or '(starting)'}\n"
        f'events in ClickHouse: [bold]{total}[/]   query: teilhabe query {where}"SELECT * FROM '
        f'{db}.engagement_windows ORDER BY window_start DESC LIMIT 10"   Ctrl-C stops'
    )
    return Group(info, table)
