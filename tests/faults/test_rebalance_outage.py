"""A rebalance during a ClickHouse outage: ClickHouse is stopped (connections refused) for
``REBALANCE_OUTAGE_S`` (60 s) while a second worker joins. The first worker is in the middle
of retrying a flush; its revocation must not wait for it (docs/reliability.md), so the group's
new assignment completes while ClickHouse is still down: both workers report disjoint halves
of the activity partitions. Had the revocation waited, the first worker would have missed the
rebalance timeout and the second would have been given every partition. Nothing is committed
during the outage, and once ClickHouse is back, ClickHouse equals the oracle."""

from __future__ import annotations

import re
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.faults.harness import (
    REBALANCE_OUTAGE_S,
    FaultRun,
    assert_equal_to_oracle,
    make_dataset,
    oracle,
)

pytestmark = pytest.mark.integration

_ASSIGNED = re.compile(r"^(\S+ \S+) .*partitions assigned partitions=\[([\d, ]*)\]", re.M)
_REVOKED = re.compile(
    r"^(\S+ \S+) .*partitions revoked partitions=\[[\d, ]*\].* in ([\d.]+) s", re.M
)


def _at(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def assignments(log: str) -> list[tuple[float, set[int]]]:
    """(time, activity partitions) of every completed assignment in a worker log."""
    return [
        (_at(t), {int(p) for p in parts.split(",") if p.strip()})
        for t, parts in _ASSIGNED.findall(log)
    ]


def test_rebalance_completes_while_clickhouse_is_down(tmp_path: Path) -> None:
    dataset = make_dataset(tmp_path / "data", seed=47, days=3)
    expected = oracle(dataset.events, dataset.units)
    with FaultRun(tmp_path, dataset) as run:
        run.report.scenario = f"rebalance during a {REBALANCE_OUTAGE_S:.0f} s ClickHouse outage"
        clickhouse = run.stack.clickhouse
        assert clickhouse is not None, "the test needs the embedded ClickHouse it can stop"
        n = run.settings.activity_partitions
        run.start_paced(45)  # input keeps coming into the outage: a flush is in flight
        # the second worker does its ClickHouse part (migrations) first, then waits, frozen,
        # until ClickHouse is down: it joins the group during the outage
        second = run.start_worker()
        run.sleep_until(lambda: "metrics http://" in run.log_of(1), 60, "the second worker")
        second.send_signal(signal.SIGSTOP)
        clickhouse.stop()
        outage_started = time.monotonic()
        run.report.faults += 2
        time.sleep(2)  # a flush in flight when the server went away fails and is retried
        committed_at_start = run.activity_committed()
        assert "partitions revoked" not in run.log_of(0), "rebalanced before the outage"
        second.send_signal(signal.SIGCONT)

        def split() -> bool:
            first, joined = assignments(run.log_of(0)), assignments(run.log_of(1))
            if len(first) < 2 or not joined:
                return False
            mine, theirs = first[-1][1], joined[-1][1]
            return bool(mine and theirs) and not mine & theirs and mine | theirs == set(range(n))

        run.sleep_until(split, REBALANCE_OUTAGE_S - 10, "the new assignment during the outage")
        assigned_within_s = time.monotonic() - outage_started
        assert assigned_within_s < REBALANCE_OUTAGE_S, "ClickHouse was meant to be down still"
        while time.monotonic() - outage_started < REBALANCE_OUTAGE_S:
            assert all(w.poll() is None for w in run.stack.workers), "a worker died"
            time.sleep(1)
        committed_at_end = run.activity_committed()
        clickhouse.start()
        run.wait_drained(timeout_s=300)
        assert all(w.poll() is None for w in run.stack.workers), "a worker died after it"
        actual = run.figures()
        first_log, second_log = run.log_of(0), run.log_of(1)
    revoked_at, revoke_s = _REVOKED.findall(first_log)[0]
    assert "flush_in_flight=True" in first_log, "no flush was retrying at the revocation"
    done_at = max(assignments(first_log)[1][0], assignments(second_log)[0][0])
    run.report.notes += [
        f"on_revoked_s={float(revoke_s):.3f}",
        f"rebalance_s={done_at - _at(revoked_at):.1f}",
        f"assigned_after_outage_start_s={assigned_within_s:.0f}",
    ]
    run.report.print(actual, expected)
    assert committed_at_end == committed_at_start, "offsets were committed while nothing flushed"
    assert_equal_to_oracle(expected, actual)
