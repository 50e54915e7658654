"""Broker stall: the embedded broker process frozen with SIGSTOP (30 s in the issue's full
form, ``TEILHABE_FAULTS_STALL_S`` = 20 s in ``make test``), then SIGCONT. The worker survives,
reports the stall (``teilhabe_broker_up`` 0 from the worker's broker probe, no message
consumed for as long, client problems counted in /metrics, an error in the log)
and catches up: ClickHouse equals the oracle."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.faults.harness import (
    STALL_S,
    FaultRun,
    assert_equal_to_oracle,
    make_dataset,
    metric_value,
    oracle,
)

pytestmark = pytest.mark.integration


def test_broker_frozen_then_resumed_loses_and_doubles_nothing(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "data", seed=31, days=3)
    expected = oracle(dataset.events, dataset.units)
    with FaultRun(tmp_path, dataset) as run:
        run.report.scenario = f"broker SIGSTOP {STALL_S:.0f} s"
        broker = run.stack.broker
        assert broker is not None and broker.proc is not None, "needs the embedded broker"
        # input keeps coming before, during (the producer blocks too) and after the stall
        worker = run.start_paced(STALL_S + 20)
        problems_before = metric_value(run.metrics_text(), "teilhabe_client_problems_total")
        os.kill(broker.proc.pid, signal.SIGSTOP)
        run.report.faults += 1
        try:
            time.sleep(STALL_S)
            assert worker.poll() is None, "the worker died while the broker was frozen"
            during = run.metrics_text()  # the worker's own endpoint still answers
            seen_at = time.time()
        finally:
            os.kill(broker.proc.pid, signal.SIGCONT)
        run.wait_drained(timeout_s=300)
        assert worker.poll() is None, "the worker died after the stall"
        after = run.metrics_text()
        actual = run.figures()
        log = run.logs()
    last = metric_value(during, "teilhabe_last_consumed_timestamp_seconds", "teilhabe.events")
    quiet_s = seen_at - last
    problems = metric_value(after, "teilhabe_client_problems_total") - problems_before
    run.report.notes += [f"quiet_s={quiet_s:.0f}", f"client_problems={problems:.0f}"]
    run.report.print(actual, expected)
    assert quiet_s >= STALL_S - 5, f"last message {quiet_s:.0f} s ago: the stall is not visible"
    assert problems > 0, "the stall left no trace in /metrics"
    assert metric_value(during, "teilhabe_broker_up") == 0, "broker_up stayed 1 while frozen"
    assert metric_value(after, "teilhabe_broker_up") == 1
    assert "kafka broker not answering" in log and "kafka broker answers again" in log
    assert_equal_to_oracle(expected, actual)
