"""Erasure helpers without ClickHouse: the people list, the SQL builders, the tombstones and
the CLI's refusals (the statements themselves run on chDB in tests/integration/test_erasure.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from pipeline.cli.main import app
from pipeline.cli.privacy import read_people
from pipeline.sinks import erasure


def test_read_people_merges_arguments_and_file_once_each(tmp_path: Path) -> None:
    path = tmp_path / "people.txt"
    path.write_text("# erasures\n\nanna@example.org\n  jonas@example.org \nu17\n")
    got = read_people(["u17", "eva@example.org"], path)
    assert got == ["u17", "eva@example.org", "anna@example.org", "jonas@example.org"]


def test_builders_name_every_person_column() -> None:
    table = erasure.PersonTable("events", ("actor_id",), ("target_actor_id",))
    assert table.where() == (
        "actor_id IN {ids:Array(String)} OR target_actor_id IN {ids:Array(String)}"
    )
    assert erasure.delete_sql("db", table) == (
        "DELETE FROM db.events WHERE actor_id IN {ids:Array(String)}"
    )
    update = erasure.anonymise_sql("db", table, "target_actor_id")
    assert update.startswith("ALTER TABLE db.events UPDATE target_actor_id = {forgotten:String}")
    assert "mutations_sync" in update
    assert erasure.window_key(3600, 7200, "IT") == "3600|7200|IT"


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, Any]] = []
        self.flushed = False

    def send(self, topic: str, key: bytes, value: Any) -> Any:
        self.sent.append((topic, key, value))
        return self

    def flush(self) -> None:
        self.flushed = True

    def get(self, timeout: float) -> None:
        assert self.flushed


def test_tombstones_one_per_person_without_value() -> None:
    producer = FakeProducer()
    assert erasure.send_tombstones(producer, "dir", ["b", "a", "b"]) == 2
    assert producer.sent == [("dir", b"a", None), ("dir", b"b", None)]


@pytest.mark.usefixtures("clean_teilhabe_env")
def test_forget_without_people_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["forget"])
    assert result.exit_code == 2
    assert "at least one person" in result.output


@pytest.mark.usefixtures("clean_teilhabe_env")
def test_forget_with_a_missing_file_fails_cleanly(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["forget", "--file", str(tmp_path / "none.txt")])
    assert result.exit_code == 1
    assert "none.txt" in result.output
