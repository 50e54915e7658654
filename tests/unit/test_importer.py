"""The import's own steps without Kafka: units from profiles, pseudonymisation, the external
sort by event time, the people CSV and the summary."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.errors import TeilhabeError
from pipeline.sources.connectors.base import ImportContext, event, iso
from pipeline.sources.importer import (
    directory_records,
    prepare,
    read_people_csv,
    reader_for,
    summary_lines,
    time_sorted,
)

P = Pseudonymiser(b"k" * 32)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 10**6), max_size=300), st.integers(1, 40))
def test_time_sorted_equals_a_plain_sort_whatever_the_run_size(times: list[int], run: int) -> None:
    items = [(t, f'{{"i":{i}}}'.encode()) for i, t in enumerate(times)]
    got = list(time_sorted(items, run_size=run))
    # stable: equal times keep the order in which they came
    assert got == [line for _, line in sorted(items, key=lambda x: x[0])]


def test_prepare_fills_units_from_profiles_and_pseudonymises_both_ids() -> None:
    ctx = ImportContext()
    ctx.people["anna@example.org"] = {"unit": "IT"}
    ev = event(
        "e1",
        "mention",
        iso(1_700_000_000),
        "anna@example.org",
        platform="slack",
        target_actor_id="jonas@example.org",
    )
    bad = dict(ev, event_id="e2", occurred_at="yesterday")
    ((ts, line),) = list(prepare([ev, bad], ctx, P))
    doc = orjson.loads(line)
    assert ts == 1_700_000_000_000
    assert doc["actor_id"] == P("anna@example.org") and doc["actor_unit"] == "IT"
    assert doc["target_actor_id"] == P("jonas@example.org") and "target_unit" not in doc
    assert b"example.org" not in line
    assert ctx.stats.events == {"mention": 1} and ctx.stats.skipped == {"bad_timestamp": 1}
    assert summary_lines(ctx.stats)[:2] == ["events: 1", "  mention: 1"]
    assert list(directory_records(ctx.people)) == [{"person_id": "anna@example.org", "unit": "IT"}]


def test_people_csv_reads_keys_units_and_attributes(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "\ufeffemail,unit,location,cohorts\nAnna@Example.org,IT,Berlin,a; b\nU123,HR,,\n"
    )
    assert list(read_people_csv(path)) == [
        {
            "person_id": "anna@example.org",
            "unit": "IT",
            "location": "Berlin",
            "cohorts": ["a", "b"],
        },
        {"person_id": "U123", "unit": "HR", "cohorts": []},
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [("name,team\nx,y\n", "header needs a person column"), ("person,unit\nx,\n", "line 2")],
)
def test_people_csv_errors_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "people.csv"
    path.write_text(text)
    with pytest.raises(TeilhabeError, match=message):
        list(read_people_csv(path))


def test_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(TeilhabeError, match="known: mattermost, mbox, perceval"):
        reader_for("teams")


def test_person_key_is_passed_to_readers_that_offer_it(tmp_path: Path) -> None:
    from pipeline.sources.connectors.base import ImportContext as Ctx

    path = tmp_path / "export.jsonl"
    lines = [
        {"type": "version", "version": 1},
        {"type": "user", "user": {"username": "anna", "email": "Anna@Example.org"}},
        {
            "type": "post",
            "post": {"team": "t", "channel": "c", "user": "anna", "message": "hi", "create_at": 1},
        },
    ]
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n")
    by_email = [ev["actor_id"] for ev in reader_for("mattermost")(path, Ctx())]
    by_id = [ev["actor_id"] for ev in reader_for("mattermost", "id")(path, Ctx())]
    assert (by_email, by_id) == (["anna@example.org"], ["anna"])
    with pytest.raises(TeilhabeError, match="--identify-by is not an option of the mbox format"):
        reader_for("mbox", "id")


def test_events_beyond_the_retention_are_warned_about() -> None:
    from datetime import UTC, datetime, timedelta
    from io import StringIO

    from rich.console import Console

    from pipeline.sources.connectors.base import ImportStats
    from pipeline.sources.importer import warn_beyond_retention

    out = StringIO()
    console = Console(file=out, width=200)
    stats = ImportStats(first_ms=int((datetime.now(UTC) - timedelta(days=40)).timestamp() * 1000))
    assert not warn_beyond_retention(stats, 60, console) and not out.getvalue()
    assert warn_beyond_retention(stats, 30, console)
    assert "TEILHABE_FACTS_TTL_DAYS=30" in out.getvalue()
