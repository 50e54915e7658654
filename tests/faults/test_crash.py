"""Worker crash: ``kill -9`` at random moments, at least 10 times in one run, restarting each
time; one worker alone, and one of two workers in a group. ClickHouse must equal the oracle.

The kills land while the worker consumes, while it flushes to ClickHouse (flushes run every
0.2 s, and every other kill waits for a new checkpoint, i.e. comes right after a flush) and
while it restores its state from the checkpoint (a kill soon after a restart).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from pipeline.sinks.clickhouse import get_client
from tests.faults.harness import (
    KILLS,
    Dataset,
    FaultRun,
    assert_equal_to_oracle,
    make_dataset,
    oracle,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return make_dataset(tmp_path_factory.mktemp("crash-data"), seed=11, days=4)


def checkpoint_rows(run: FaultRun) -> int:
    """Saved checkpoints so far (grows with every flush that covered a partition)."""
    client = get_client(run.settings)
    try:
        db = run.settings.clickhouse_database
        return int(client.query(f"SELECT count() FROM {db}.stream_checkpoints").result_rows[0][0])
    finally:
        client.close()


@pytest.mark.parametrize("workers", [1, 2], ids=["one-worker", "two-workers-one-killed"])
def test_kill9_at_random_moments_loses_and_doubles_nothing(
    workers: int, dataset: Dataset, tmp_path: Path
) -> None:
    expected = oracle(dataset.events, dataset.units)
    with FaultRun(tmp_path, dataset) as run:
        run.report.scenario = f"kill -9 x{KILLS} ({workers} worker{'s' if workers > 1 else ''})"
        # paced so that the input lasts about as long as the kills (~6 s apart)
        rate = len(dataset.events) / (KILLS * 6.0)
        run.produce(rate_per_s=rate, background=True)
        steady = run.start_worker() if workers == 2 else None
        for i in range(KILLS):
            victim = run.start_worker()
            if i % 2:  # right after a flush: wait for a new checkpoint row
                before = checkpoint_rows(run)
                deadline = time.monotonic() + 20
                while checkpoint_rows(run) == before and time.monotonic() < deadline:
                    time.sleep(0.1)
            else:  # anywhere: starting, restoring, consuming, flushing
                time.sleep(run.rng.uniform(1.0, 9.0))
            assert victim.poll() is None, f"worker died on its own (exit {victim.returncode})"
            run.kill(victim, signal.SIGKILL)
        run.start_worker()
        run.wait_drained(timeout_s=300)
        if steady is not None:
            assert steady.poll() is None, "the worker that was never killed died"
        actual = run.figures()
        logs = run.logs()
    run.report.notes.append(f"restores={logs.count('restored partition=')}")
    run.report.print(actual, expected)
    assert "restored partition=" in logs, "no restart went through a checkpoint"
    assert_equal_to_oracle(expected, actual)
