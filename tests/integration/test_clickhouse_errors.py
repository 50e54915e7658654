"""classify_error on what the real embedded ClickHouse (the chDB HTTP gateway) answers:
statements it refuses are permanent, its transient states (a query over its memory or time
limit) and a stopped server are not; ``ClickHouseSink.flush`` into a table that lost a column
raises a permanent error."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.ops.exporter import PipelineMetrics
from pipeline.sinks.clickhouse import ClickHouseFailure, classify_error
from pipeline.sinks.facts import ClickHouseSink, FactBatch
from tests.conftest import migrated_clickhouse

pytestmark = pytest.mark.integration


def failure_of(call: Callable[[], Any]) -> ClickHouseFailure:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - any exception: it is classified
        call()
    return classify_error(caught.value)


def test_refused_statements_are_permanent_transient_states_are_not(tmp_path: Path) -> None:
    with migrated_clickhouse(tmp_path) as client:
        db = client.database
        refused = {
            "SELECT * FROM nope_no_table": 60,  # UNKNOWN_TABLE
            "SELEC 1": 62,  # SYNTAX_ERROR
            f"SELECT no_such_column FROM {db}.events": 47,  # UNKNOWN_IDENTIFIER
            "SELECT 1 + 'a'": 43,  # ILLEGAL_TYPE_OF_ARGUMENT
            f"INSERT INTO {db}.events (nope) VALUES (1)": 16,  # NO_SUCH_COLUMN_IN_TABLE
            "SELECT toInt32('x')": 6,  # CANNOT_PARSE_TEXT
        }
        for sql, code in refused.items():
            failure = failure_of(partial(client.command, sql))
            assert (failure.permanent, failure.code) == (True, code), (sql, failure)
            assert failure.name == failure.describe().split("(")[1].split(")")[0]
        transient = {  # the server's limits: the same statement may pass later
            "SELECT groupArray(number) FROM numbers(10000000) "
            "SETTINGS max_memory_usage = 1000000": 241,  # MEMORY_LIMIT_EXCEEDED
            "SELECT count() FROM numbers(100000000000) "
            "SETTINGS max_execution_time = 0.2, timeout_overflow_mode = 'throw'": 159,
        }
        for sql, code in transient.items():
            failure = failure_of(partial(client.command, sql))
            assert (failure.permanent, failure.code) == (False, code), (sql, failure)


def test_a_flush_into_a_table_that_lost_a_column_is_refused_for_good(tmp_path: Path) -> None:
    with migrated_clickhouse(tmp_path) as client:
        db = client.database
        client.command(f"ALTER TABLE {db}.events DROP COLUMN is_late")
        sink = ClickHouseSink(lambda: client, db, PipelineMetrics.create(), "g", "t")
        facts = FactBatch()
        ev = {"event_id": "e1", "event_type": "view", "ts": 1_000, "actor_id": "a"}
        facts.add([ev], [])
        with pytest.raises(DatabaseError) as caught:
            sink.flush(facts, [], {})
        failure = classify_error(caught.value)
        assert failure.permanent and (failure.code, failure.name) == (
            16,
            "NO_SUCH_COLUMN_IN_TABLE",
        )
        assert "is_late" in failure.text
