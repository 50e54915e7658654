"""Restore of an older ClickHouse backup, as docs/operations.md describes it: the database
copied while the first half of the input was processed (open windows in the checkpoints), the
second half processed after it, then the copy restored. The consumer group's offsets are past
everything by then, so a worker would read nothing; set back to the restored checkpoints (what
``kafka-consumer-groups.sh --reset-offsets --to-offset`` does), the worker replays the activity
topic from there and ClickHouse equals the oracle again."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.structs import OffsetAndMetadata, TopicPartition

from pipeline.sources.producer import read_jsonl
from tests.faults.harness import (
    FaultRun,
    assert_equal_to_oracle,
    differences,
    make_dataset,
    oracle,
)

pytestmark = pytest.mark.integration


def reset_activity_offsets(run: FaultRun, offsets: dict[int, int]) -> None:
    """Commit ``offsets`` for the app's group on the activity topic (no member is active)."""
    s = run.settings
    consumer = KafkaConsumer(
        bootstrap_servers=run.stack.bootstrap, group_id=s.app_id, enable_auto_commit=False
    )
    try:
        consumer.commit(
            {
                TopicPartition(s.topic_activity, p): OffsetAndMetadata(o, "", -1)
                for p, o in offsets.items()
            }
        )
    finally:
        consumer.close()


def test_restored_backup_replays_from_its_checkpoints_after_an_offset_reset(
    tmp_path: Path,
) -> None:
    dataset = make_dataset(tmp_path / "data", seed=53, days=2)
    expected = oracle(dataset.events, dataset.units)
    lines = list(read_jsonl(dataset.events_path))
    half = len(lines) // 2
    with FaultRun(tmp_path, dataset) as run:
        run.report.scenario = "restore of an older backup, offsets reset to its checkpoints"
        clickhouse = run.stack.clickhouse
        assert clickhouse is not None, "the test needs the embedded ClickHouse it can stop"
        data = Path(run.settings.clickhouse_dsn.removeprefix("chdb://"))
        backup = tmp_path / "backup"

        run.produce(lines[:half], end_of_input=False)  # windows stay open at the backup
        worker = run.start_worker()
        s = run.settings

        def first_half_in() -> bool:
            offsets = run.group_offsets()
            ingested = all(
                c == end for (topic, _), (c, end) in offsets.items() if topic == s.topic_events
            )
            return ingested and bool(run.checkpoint_offsets())

        run.sleep_until(first_half_in, 180, "the first half ingested and checkpointed")
        assert run.kill(worker, signal.SIGTERM) == 0  # graceful: flush, checkpoint, commit
        clickhouse.stop()
        shutil.copytree(data, backup, symlinks=True)  # cp -a, as docs/operations.md says
        clickhouse.start()

        run.produce(lines[half:])  # the rest, with end-of-input markers
        run.start_worker()
        run.wait_drained()
        assert_equal_to_oracle(expected, run.figures())
        for proc in run.live_workers():
            assert run.kill(proc, signal.SIGTERM) == 0

        clickhouse.stop()  # the disaster: the database is replaced by the older copy
        shutil.rmtree(data)
        shutil.copytree(backup, data, symlinks=True)
        clickhouse.start()
        restored = run.checkpoint_offsets()
        committed = run.committed_by_partition()
        assert differences(expected, run.figures()), "the backup already holds everything"
        assert any(committed.get(p, 0) > o for p, o in restored.items())
        offsets = run.group_offsets()
        assert all(c == end for (_, _), (c, end) in offsets.items()), (
            "without a reset a worker would read nothing"
        )

        reset = {p: restored.get(p, 0) for p in range(s.activity_partitions)}
        reset_activity_offsets(run, reset)
        assert run.committed_by_partition() == reset
        run.start_worker()
        run.wait_drained()
        actual = run.figures()
        logs = run.logs()
    run.report.print(actual, expected)
    assert "restored partition=" in logs
    assert_equal_to_oracle(expected, actual)
