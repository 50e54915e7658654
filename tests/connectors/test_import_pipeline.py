"""Round trip per export format through the real pipeline: a seeded organisation written in
the platform's export format by a test helper, ``teilhabe import``-ed into the embedded
broker, processed by a worker into chDB. The ClickHouse figures equal the oracle computed from
the synthetic events the format can express, and a scan of ClickHouse, every Kafka topic and
the logs finds no raw person id, e-mail address or message text from the input."""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from pipeline.dev import generator as gen
from pipeline.dev.backfill import run_bounded
from pipeline.sinks.clickhouse import get_client
from pipeline.sources.importer import run_import
from tests.conftest import configure
from tests.faults.harness import (
    WINDOW_S,
    Dataset,
    FaultRun,
    Figures,
    WindowOracle,
    assert_equal_to_oracle,
    dataset_from_spec,
    read_figures,
    read_records,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Format:
    """How the tests write one export format and what it can express."""

    name: str
    module: str  # tests.connectors.export_<x>
    writer: str
    expressible: str
    filename: str


FORMATS = [
    Format("slack", "export_slack", "write_slack_export", "slack_expressible", "export.zip"),
    Format(
        "mattermost",
        "export_mattermost",
        "write_mattermost_export",
        "mattermost_expressible",
        "export.jsonl",
    ),
    Format(
        "viva-engage",
        "export_viva_engage",
        "write_viva_engage_export",
        "viva_engage_expressible",
        "export.zip",
    ),
    Format("mbox", "export_mbox", "write_mbox", "mbox_expressible", "list.mbox"),
    # the mail archive fetched by the real Perceval (its mbox backend), then imported as items
    Format("perceval", "export_mbox", "write_mbox", "mbox_expressible", "items.jsonl"),
]


def helpers(fmt: Format) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(write(events, people, path), expressible(events)) of a format's test helper."""
    module = importlib.import_module(f"tests.connectors.{fmt.module}")
    writer, expressible = getattr(module, fmt.writer), getattr(module, fmt.expressible)
    if fmt.name == "mbox":  # a mail archive has no profiles: no people to write

        def write(events: list[dict[str, Any]], people: dict[str, str], path: Path) -> Path:
            return Path(writer(events, path))

        return write, expressible
    if fmt.name == "perceval":

        def fetch(events: list[dict[str, Any]], people: dict[str, str], path: Path) -> Path:
            from tests.connectors.test_mbox import run_perceval

            archive = path.parent / "archive"
            archive.mkdir()
            writer(events, archive / "list.mbox")
            return run_perceval(archive, path)

        return fetch, expressible
    return writer, expressible


def message_texts(fmt: Format, events: list[dict[str, Any]], people: dict[str, str]) -> list[str]:
    """Texts (bodies, subjects) of the written export that must never be stored anywhere."""
    module = importlib.import_module(f"tests.connectors.{fmt.module}")
    if hasattr(module, "SECRET"):  # every body and subject carries it
        return [module.SECRET]
    plan = getattr(module, f"plan_{fmt.module.removeprefix('export_')}")(events, people)
    return [t for t in plan.texts if len(t) >= 12]  # long enough not to occur by chance


def small_org(root: Path) -> Dataset:
    """Three weekdays of a 150-person organisation (seeded)."""
    units = (("Vertrieb", 50), ("IT", 40), ("Personal", 30), ("Einkauf", 30))
    spec = gen.OrgSpec(seed=21, start=datetime(2026, 3, 2, tzinfo=UTC), days=3, units=units)
    return dataset_from_spec(root, spec)


def kafka_dump(bootstrap: str, topics: list[str]) -> bytes:
    """Every key, value and header of every record in ``topics``, concatenated."""
    parts: list[bytes] = []
    for record in read_records(bootstrap, *topics):
        parts += [record.key or b"", record.value or b""]
        parts += [v for _, v in record.headers or []]
    return b"\n".join(parts)


def clickhouse_dump(run: FaultRun) -> str:
    """Every row of every table of the database as text."""
    client = get_client(run.settings)
    db = run.settings.clickhouse_database
    try:
        tables = client.query(
            "SELECT name FROM system.tables "
            "WHERE database = {db:String} AND engine NOT LIKE '%View'",
            parameters={"db": db},
        ).result_rows
        return "\n".join(
            repr(client.query(f"SELECT * FROM {db}.`{name}`").result_rows) for (name,) in tables
        )
    finally:
        client.close()


def expected_figures(expected: list[dict[str, Any]], units: dict[str, str]) -> Figures:
    """The oracle: windows of the events the export can express, units from the directory."""
    oracle = WindowOracle(units, dedup=False)
    for ev in expected:
        oracle.add(ev)
    return oracle.figures()


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.name)
def test_import_through_the_pipeline_equals_the_oracle_and_leaks_nothing(
    fmt: Format, tmp_path: Path
) -> None:
    write, expressible = helpers(fmt)
    data = small_org(tmp_path / "data")
    export = write(data.events, data.units, tmp_path / fmt.filename)
    expected = expressible(data.events)
    assert len(expected) > 500, "the organisation should give a real amount of events"

    with FaultRun(tmp_path / "run", data) as run:
        run.start_worker()
        settings = run.settings.model_copy(
            update={"kafka_bootstrap": run.stack.bootstrap, "kafka_flavor": "tansu"}
        )
        stats = run_import(
            settings, fmt.name, export, end_of_input=True, console=Console(quiet=True)
        )
        run.wait_drained(timeout_s=300)
        actual = run.figures()
        client = get_client(run.settings)
        try:
            by_type = dict(
                client.query(
                    "SELECT event_type, count() FROM teilhabe.events FINAL GROUP BY event_type"
                ).result_rows
            )
        finally:
            client.close()
        s = run.settings
        topics = [s.topic_events, s.topic_activity, s.topic_deadletter, s.topic_directory]
        stored = kafka_dump(run.stack.bootstrap, topics)
        stored += clickhouse_dump(run).encode()
        stored += run.logs().encode()

    assert_equal_to_oracle(expected_figures(expected, data.units), actual)
    assert by_type == dict(Counter(ev["event_type"] for ev in expected))
    assert sum(stats.events.values()) == len(expected)

    raw_ids = {ev["actor_id"] for ev in data.events} | set(data.units)
    leaked = sorted(i for i in raw_ids if i.encode() in stored)
    assert not leaked, f"raw ids stored somewhere: {leaked[:5]}"
    assert b"@example.org" not in stored, "an e-mail address was stored"
    texts = message_texts(fmt, data.events, data.units)
    assert texts, "the export helper should give the texts it wrote"
    shown = [t for t in texts if t.encode() in stored]
    assert not shown, f"message text stored somewhere: {shown[:3]}"


def test_import_backfill_with_a_people_csv_runs_the_whole_pipeline(tmp_path: Path) -> None:
    """``teilhabe import mattermost EXPORT --directory people.csv --backfill``: the directory
    from the CSV gives the units, the pipeline runs to completion and exits."""
    from pipeline.sources.importer import people_csv_text

    write, expressible = helpers(FORMATS[1])
    data = small_org(tmp_path / "data")
    export = write(data.events, data.units, tmp_path / "export.jsonl.gz")
    people = tmp_path / "people.csv"
    records = ({"person_id": p, "unit": u} for p, u in data.units.items())
    people.write_text(people_csv_text(records))
    mp = pytest.MonkeyPatch()
    try:
        settings = configure(mp, tmp_path / "run", window_s=WINDOW_S, grace_s=1800)
        run_import(
            settings,
            "mattermost",
            export,
            backfill=run_bounded,
            people_csv=people,
            console=Console(quiet=True),
            timeout_s=300,
        )
        from pipeline.dev.clickhouse import EmbeddedClickHouse

        with EmbeddedClickHouse(settings):
            actual = read_figures(settings)
    finally:
        mp.undo()
    expected = expressible(data.events)
    assert_equal_to_oracle(expected_figures(expected, data.units), actual)
    assert "unknown" not in {unit for _, unit in actual.windows}, "units come from the CSV"
