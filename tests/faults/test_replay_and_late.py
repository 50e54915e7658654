"""Late and replayed data, exactly as docs/reliability.md documents it:

* the same file produced twice: every event id counted once (a copy inside an open window is
  a duplicate, a copy after its window closed is late; both are left out of the windows and
  the facts keep the on-time copy);
* a day of late events (new ids) after its windows closed: counted as late, kept in the event
  facts and the user-day facts, not in the closed windows.

The last test proves the comparison can fail: a deliberately dropped and a deliberately doubled
batch in ClickHouse show up as differences.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from pipeline.sinks.clickhouse import get_client
from pipeline.sources.producer import read_jsonl
from tests.faults.harness import (
    Dataset,
    FaultRun,
    assert_equal_to_oracle,
    differences,
    make_dataset,
    metric_value,
    oracle,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("replay")
    dataset = make_dataset(root / "data", seed=53, days=3)
    late_day = [  # day 2 again, as new events: they arrive after its windows closed
        {**ev, "event_id": "late-" + ev["event_id"]}
        for ev in dataset.events
        if ev["occurred_at"].startswith("2026-02-03")
    ]
    assert late_day, "the dataset must cover 2026-02-03"
    with FaultRun(root, dataset, window_s=3600) as run:
        run.report.scenario = "replayed file + late day"
        run.start_worker()
        run.produce(end_of_input=False)
        run.produce()  # the same file again, then end-of-input
        run.wait_drained()
        first = {"figures": run.figures(), "metrics": run.metrics_text()}
        run.produce(lines=[orjson.dumps(ev) for ev in late_day], end_of_input=False)
        run.wait_drained()
        second = {"figures": run.figures(), "metrics": run.metrics_text()}
        client = get_client(run.settings)
        db = run.settings.clickhouse_database
        late_in_user_days = int(
            client.query(f"SELECT sum(late_events) FROM {db}.user_day_facts").result_rows[0][0]
        )
        client.close()
        yield {
            "run": run,
            "dataset": dataset,
            "late_day": late_day,
            "first": first,
            "second": second,
            "late_in_user_days": late_in_user_days,
        }


def test_file_produced_twice_counts_every_event_once(replayed: dict[str, Any]) -> None:
    ds: Dataset = replayed["dataset"]
    expected = oracle(ds.events, ds.units)
    actual = replayed["first"]["figures"]
    text = replayed["first"]["metrics"]
    dup = metric_value(text, "teilhabe_events_duplicate_total")
    late = metric_value(text, "teilhabe_events_late_total")
    replayed["run"].report.notes += [f"duplicates={dup:.0f}", f"late_copies={late:.0f}"]
    replayed["run"].report.print(actual, expected)
    assert dup + late == len(ds.events), "every second copy is a duplicate or late"
    assert_equal_to_oracle(expected, actual)


def test_late_day_is_counted_and_kept_in_the_facts(replayed: dict[str, Any]) -> None:
    ds: Dataset = replayed["dataset"]
    late_day = replayed["late_day"]
    expected = oracle(ds.events, ds.units, late=late_day)
    actual = replayed["second"]["figures"]
    late_before = metric_value(replayed["first"]["metrics"], "teilhabe_events_late_total")
    late_after = metric_value(replayed["second"]["metrics"], "teilhabe_events_late_total")
    assert late_after - late_before == len(late_day)
    assert replayed["late_in_user_days"] == len(late_day)
    assert_equal_to_oracle(expected, actual)


def test_comparison_catches_a_dropped_and_a_doubled_batch(replayed: dict[str, Any]) -> None:
    """Corrupt ClickHouse on purpose; the oracle comparison must name what changed."""
    run: FaultRun = replayed["run"]
    ds: Dataset = replayed["dataset"]
    expected = oracle(ds.events, ds.units, late=replayed["late_day"])
    assert not differences(expected, run.figures())
    client = get_client(run.settings)
    db = run.settings.clickhouse_database
    batch = [orjson.loads(line)["event_id"] for line in read_jsonl(ds.events_path)][:100]
    ids = ", ".join(f"'{i}'" for i in batch)
    # a dropped batch: its 100 event facts are gone (ids are not pseudonymised)
    client.command(
        f"ALTER TABLE {db}.events DELETE WHERE event_id IN ({ids})", settings={"mutations_sync": 2}
    )
    dropped = differences(expected, run.figures())
    # a doubled batch: one window's partial rows written again under another partition
    client.command(
        f"INSERT INTO {db}.engagement_window_partials SELECT window_start, window_s, unit, "
        f"partition + 100, events, events_by_type, active_users, close_offset "
        f"FROM {db}.engagement_window_partials FINAL WHERE window_start = "
        f"(SELECT min(window_start) FROM {db}.engagement_window_partials)"
    )
    doubled = differences(expected, run.figures())
    client.close()
    assert any(line.startswith("facts: expected") for line in dropped), dropped
    assert not any(line.startswith("window") for line in dropped)
    assert any(line.startswith("window") for line in doubled), doubled
