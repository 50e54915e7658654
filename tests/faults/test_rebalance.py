"""Rebalance and graceful stop: a second worker joins mid-run, later the first leaves with
SIGTERM (graceful: it finishes its batches, flushes and commits, and exits 0); the input
produced after it left is committed by the remaining worker on every partition, and every
event is in ClickHouse exactly once (oracle).
Then a lone worker is stopped with SIGTERM and restarted on a damaged local state directory:
it rebuilds its state from the changelog (and says so), never a crash loop."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from pipeline.sources.producer import read_jsonl
from tests.faults.harness import FaultRun, assert_equal_to_oracle, make_dataset, oracle

pytestmark = pytest.mark.integration


def test_worker_joins_then_one_leaves_gracefully(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "data", seed=41, days=3)
    expected = oracle(dataset.events, dataset.units)
    lines = list(read_jsonl(dataset.events_path))
    half = len(lines) // 2
    with FaultRun(tmp_path, dataset) as run:
        run.report.scenario = "rebalance: join, then SIGTERM leave"
        # the first half paced, without end-of-input: the second worker joins while it flows
        run.produce(lines[:half], rate_per_s=half / 15, end_of_input=False, background=True)
        first = run.start_worker()
        run.sleep_until(lambda: run.activity_committed() > 0, 60, "a first flush")
        run.start_worker()  # joins mid-run: the first worker gives up partitions
        run.report.faults += 1
        first_log = run.stack.log_dir / "worker-0.log"
        run.sleep_until(lambda: "partitions revoked" in first_log.read_text(), 60, "a rebalance")
        run.join_producer()
        code = run.kill(first, signal.SIGTERM)
        before = run.group_offsets()  # the second half is produced after the first worker left
        run.produce(lines[half:])
        run.wait_drained(timeout_s=300)
        after = run.group_offsets()
        actual = run.figures()
        first_text = first_log.read_text()
    run.report.print(actual, expected)
    assert code == 0, f"graceful stop exited {code}"
    assert "graceful stop: work flushed and offsets committed" in first_text
    # the remaining worker took over every partition and committed past what came after
    behind = {
        f"{topic}[{p}]": (before[(topic, p)][1], committed, end)
        for (topic, p), (committed, end) in after.items()
        if not committed == end > before[(topic, p)][1]
    }
    assert not behind, f"(end before, committed, end) of partitions not taken over: {behind}"
    assert_equal_to_oracle(expected, actual)


def test_sigterm_then_restart_on_damaged_state_dir(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "data", seed=43, days=2)
    expected = oracle(dataset.events, dataset.units)
    with FaultRun(tmp_path, dataset) as run:
        run.report.scenario = "SIGTERM + restart on a damaged state directory"
        worker = run.start_paced(12)
        time.sleep(3)
        code = run.kill(worker, signal.SIGTERM)
        committed, checkpoints = run.committed_by_partition(), run.checkpoint_offsets()
        state = run.settings.data_dir / "faust"
        assert state.is_dir(), "the worker keeps its local directory under TEILHABE_DATA_DIR"
        for child in sorted(state.rglob("*"), reverse=True):
            (child.rmdir if child.is_dir() else child.unlink)()
        state.rmdir()
        state.write_bytes(b"\x00garbage where a directory was")  # damaged beyond use
        restarted = run.start_worker()
        log_path = run.stack.log_dir / "worker-1.log"
        # on a loaded machine the first worker's graceful stop may already have flushed all
        # there was: wait for the restarted worker's own start, not only for drained offsets
        run.sleep_until(
            lambda: "state is rebuilt from the changelog" in log_path.read_text(),
            120,
            "the restarted worker's check of its state directory",
        )
        run.wait_drained(timeout_s=300)
        assert restarted.poll() is None, "the restarted worker died"
        actual = run.figures()
        log = log_path.read_text()
    run.report.print(actual, expected)
    assert code == 0, f"graceful stop exited {code}"
    # everything the checkpoints cover was acknowledged and committed before the exit
    assert checkpoints and committed == checkpoints, "the stop did not commit what it flushed"
    assert "state is rebuilt from the changelog" in log and "is not a directory" in log
    assert_equal_to_oracle(expected, actual)
