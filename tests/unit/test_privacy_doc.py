"""docs/privacy.md's data inventory names everything Teilhabe keeps: every table and view the
migrations create (and the migration log) and every Kafka topic of the settings. A new relation
or topic cannot be added without being documented for the works council and the data
protection officer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.settings import Settings
from pipeline.sinks.access import AGGREGATE_VIEWS, INTERNAL, PERSON_LEVEL
from tests.unit.test_access import relations

PRIVACY_MD = Path(__file__).resolve().parents[2] / "docs" / "privacy.md"


def created_relations() -> set[str]:
    """Every table and view a migration creates (read as ``tests/unit/test_access.py`` reads
    them), plus ``schema_migrations`` (created by pipeline/sinks/migrate.py itself)."""
    return set(relations()) | {"schema_migrations"}


def topics() -> dict[str, str]:
    """``TEILHABE_TOPIC_*`` variable -> default topic name, for every ``topic_*`` setting."""
    return {
        f"TEILHABE_{name.upper()}": str(field.default)
        for name, field in Settings.model_fields.items()
        if name.startswith("topic_")
    }


def inventory(text: str) -> str:
    """The "Data inventory" section of ``text``: from its heading to the next ``## `` heading."""
    m = re.search(r"^## Data inventory\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "docs/privacy.md has no '## Data inventory' section followed by another section"
    return m.group(1)


def missing(section: str) -> list[str]:
    """Relations, topics and topic variables the section does not name in backticks."""
    names = sorted(created_relations()) + sorted(topics().values()) + sorted(topics())
    return [name for name in names if f"`{name}`" not in section]


def test_the_sources_are_not_empty() -> None:
    """Guards the guard: the parsing finds the relations and topics (else nothing is checked)."""
    relations = created_relations()
    assert {"events", "directory_people", "engagement_window_partials", "config"} <= relations
    assert set(AGGREGATE_VIEWS) | set(PERSON_LEVEL) | set(INTERNAL) == relations
    assert set(topics()) == {
        "TEILHABE_TOPIC_EVENTS",
        "TEILHABE_TOPIC_ACTIVITY",
        "TEILHABE_TOPIC_DIRECTORY",
        "TEILHABE_TOPIC_DEADLETTER",
    }


def test_inventory_names_every_relation_and_topic() -> None:
    section = inventory(PRIVACY_MD.read_text(encoding="utf-8"))
    assert missing(section) == [], "add them to docs/privacy.md, 'Data inventory'"


@pytest.mark.parametrize(
    "name", ["directory_people", "teilhabe.deadletter", "TEILHABE_TOPIC_EVENTS"]
)
def test_a_name_left_out_is_reported(name: str) -> None:
    """The check can fail: the inventory with one name removed is reported."""
    section = inventory(PRIVACY_MD.read_text(encoding="utf-8"))
    assert f"`{name}`" in section
    assert missing(section.replace(f"`{name}`", "`elsewhere`")) == [name]


def test_a_name_outside_the_inventory_does_not_count() -> None:
    """A name mentioned only in another section (say, under "Roles in ClickHouse") is missing."""
    text = "## Data inventory\n\n`events`\n\n## Roles in ClickHouse\n\n`directory_people`\n"
    section = inventory(text)
    assert "directory_people" in missing(section)
    assert "events" not in missing(section)
