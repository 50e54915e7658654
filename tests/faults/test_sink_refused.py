"""A statement ClickHouse refuses for good (here: the ``events`` table lost a column the
worker writes, so every insert fails with NO_SUCH_COLUMN_IN_TABLE): the worker does not retry
it forever but stops with a non-zero exit and a message naming the error and what to do, and
commits nothing past the records it could not write. Once the table is repaired, a restarted
worker writes everything: ClickHouse equals the oracle."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from pipeline.sinks.clickhouse import get_client
from tests.faults.harness import FaultRun, assert_equal_to_oracle, make_dataset, oracle

pytestmark = pytest.mark.integration


_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}")


def _stamp(line: str) -> float:
    """The time of a worker log line (``pipeline.logs`` format)."""
    found = _STAMP.search(line)
    assert found, line
    return datetime.strptime(found.group(0), "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_a_refused_statement_stops_the_worker_and_commits_nothing_past_it(
    tmp_path: Path,
) -> None:
    dataset = make_dataset(tmp_path / "data", seed=31, days=2)
    expected = oracle(dataset.events, dataset.units)
    with FaultRun(tmp_path, dataset) as run:
        run.report.scenario = "a statement ClickHouse refuses"
        db = run.settings.clickhouse_database
        client = get_client(run.settings)
        try:
            client.command(f"ALTER TABLE {db}.events DROP COLUMN is_late")
        finally:
            client.close()
        worker = run.start_worker()
        run.produce()
        code = worker.wait(180)
        run.report.faults += 1
        log = (run.stack.log_dir / "worker-0.log").read_text(errors="replace")
        committed, checkpoints = run.committed_by_partition(), run.checkpoint_offsets()
        # the operator repairs the table and restarts the worker: the replay writes it all
        client = get_client(run.settings)
        try:
            facts = int(str(client.command(f"SELECT count() FROM {db}.events")))
            client.command(f"ALTER TABLE {db}.events ADD COLUMN is_late UInt8 AFTER idea_status")
        finally:
            client.close()
        restarted = run.start_worker()
        run.wait_drained(timeout_s=300)
        assert restarted.poll() is None, "the restarted worker died"
        actual = run.figures()
    stamps = [_stamp(line) for line in log.splitlines() if _STAMP.search(line)]
    refused_at = next(
        _stamp(line) for line in log.splitlines() if "stopping the worker: clickhouse" in line
    )
    run.report.notes += [f"exit_code={code}", f"stopped_after_s={max(stamps) - refused_at:.1f}"]
    run.report.print(actual, expected)
    assert code != 0, "the worker exited 0 after ClickHouse refused its writes"
    refused = [line for line in log.splitlines() if "clickhouse refused the flush" in line]
    assert refused, "no message naming the refused statement"
    assert re.search(r"code=16 \(NO_SUCH_COLUMN_IN_TABLE\)", refused[0]), refused[0]
    assert "is_late" in refused[0] and "restart the worker" in refused[0]
    assert "worker stopped, exit code 1: clickhouse refused the flush" in log
    assert log.count("failing, retrying with backoff") == 0, "a refused statement was retried"
    # nothing was written, so nothing of the activity topic may be committed
    assert facts == 0 and not checkpoints, "rows or checkpoints written despite the refusal"
    assert all(offset == 0 for offset in committed.values()), f"committed {committed}"
    assert_equal_to_oracle(expected, actual)
