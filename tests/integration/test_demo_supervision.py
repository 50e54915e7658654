"""``teilhabe demo`` supervision with real processes: the demo's stack (embedded broker and
ClickHouse, a worker, the live generator), one worker killed with ``kill -9``; a new worker
process must come up, the live view must count the restart, and the new worker must go on
processing (more events in ClickHouse and further committed offsets than at the kill)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
from rich.console import Console

from pipeline.dev.demo import DEMO_ENV, start_generator, supervise_workers, view
from pipeline.dev.devstack import DevStack, consumed_fraction
from pipeline.dev.supervisor import RestartPolicy, Supervisor
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import get_client

pytestmark = pytest.mark.integration


def wait_for(
    what: str, cond: Callable[[], bool], supervisor: Supervisor, limit_s: float = 120
) -> None:
    """Poll ``cond``, running the supervisor's checks as the demo loop does; the limit only
    stops a hung test (not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not cond():
        supervisor.check()
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def test_killed_worker_is_restarted_counted_and_goes_on(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    db = settings.clickhouse_database
    with DevStack(settings, extra_env=DEMO_ENV) as stack:
        supervisor = supervise_workers(stack, 1, RestartPolicy(backoff_s=0.5))
        generator = start_generator(stack, rate=100)
        client = get_client(settings)

        def events() -> int:
            q = f"SELECT count() FROM (SELECT DISTINCT event_id FROM {db}.events)"
            return int(client.query(q).result_rows[0][0])

        try:
            wait_for("first events in ClickHouse", lambda: events() > 0, supervisor)
            first = supervisor.slots[0].proc
            assert first is not None and supervisor.restarts == 0
            os.killpg(first.pid, signal.SIGKILL)
            first.wait(timeout=30)
            # the only worker is dead: whatever appears from now on the new one wrote
            events_at_kill = events()
            committed_at_kill = consumed_fraction(stack.bootstrap, settings)[0]

            wait_for("a restarted worker", lambda: supervisor.alive == 1, supervisor)
            second = supervisor.slots[0].proc
            assert second is not None and second.pid != first.pid
            assert stack.workers == [second] and supervisor.restarts == 1
            console = Console(record=True, width=300)
            console.print(view(settings, stack, client, generator, supervisor))
            assert "workers alive 1/1 · restarts 1" in console.export_text()

            wait_for("new events after the restart", lambda: events() > events_at_kill, supervisor)
            wait_for(
                "committed offsets past the kill",
                lambda: consumed_fraction(stack.bootstrap, settings)[0] > committed_at_kill,
                supervisor,
            )
            assert second.poll() is None and supervisor.restarts == 1
            assert generator.poll() is None, "the generator died"
        finally:
            generator.terminate()
            generator.wait(timeout=30)
            client.close()
