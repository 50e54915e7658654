"""The leader role (the worker holding partition 0 of the activity topic) and the directory
table's report of changed keys, without a broker."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from agents.leader import Leadership
from pipeline.ops.exporter import PipelineMetrics
from pipeline.settings import Settings


class Consumer:
    def __init__(self) -> None:
        self.assigned: set[TP] = set()

    def assignment(self) -> set[TP]:
        return self.assigned


def test_the_role_follows_partition_0_and_survives_an_empty_assignment() -> None:
    m = PipelineMetrics.create()
    consumer = Consumer()
    role = Leadership(SimpleNamespace(_consumer=consumer), "activity", m.fact_gauges)
    m.set_headcounts({"IT": 9}, min_group_size=5)
    assert not role.leading and m.fact_gauges.value(m.headcount, ["IT"]) is None, "serves empty"

    consumer.assigned = {TP("activity", 1), TP("directory", 0)}
    assert role.check() is False and not role.leading
    consumer.assigned = {TP("activity", 0), TP("activity", 2), TP("directory", 0)}
    assert role.check() is True and role.leading and role.generation == 1
    m.set_headcounts({"IT": 9}, min_group_size=5)
    assert m.fact_gauges.value(m.headcount, ["IT"]) == 9

    consumer.assigned = set()  # between revocation and assignment: nothing changes
    assert role.check() is False and role.leading
    assert m.fact_gauges.value(m.headcount, ["IT"]) == 9
    consumer.assigned = {TP("activity", 0)}  # kept through the rebalance: no new takeover
    assert role.check() is False and role.generation == 1

    consumer.assigned = {TP("activity", 1)}  # another worker has partition 0 now
    assert role.check() is False and not role.leading
    assert m.fact_gauges.value(m.headcount, ["IT"]) is None, "no stale copy"
    m.set_headcounts({"IT": 9}, min_group_size=5)  # a refresh still in flight: dropped
    assert m.fact_gauges.value(m.headcount, ["IT"]) is None
    consumer.assigned = {TP("activity", 0)}
    assert role.check() is True and role.generation == 2

    role_without_consumer = Leadership(SimpleNamespace(), "activity", m.fact_gauges)
    assert role_without_consumer.check() is False


def event(key: bytes, value: bytes | None) -> Any:
    message = SimpleNamespace(key=key, value=value, partition=0)
    return SimpleNamespace(key=key, value=value, message=message)


def test_the_directory_table_reports_the_keys_of_each_changelog_batch(
    make_settings: Callable[..., Settings],
) -> None:
    from agents.app import DirectoryTable, create_app

    rt = create_app(make_settings(), "localhost:9", PipelineMetrics.create())
    table = rt.directory
    assert isinstance(table, DirectoryTable)
    noted: list[list[object]] = []
    table.on_changed = lambda keys: noted.append(list(keys))
    table.apply_changelog_batch([event(b"a", b'{"unit": "IT"}'), event(b"b", b'{"unit": "HR"}')])
    table.apply_changelog_batch([event(b"a", None)])  # a tombstone: the key is gone
    assert noted == [[b"a", b"b"], [b"a"]]
    assert dict(table.items()) == {b"b": b'{"unit": "HR"}'}
    assert table.recovery_buffer_size == 1, "live changes are applied at once, not per 1000"
