"""The role classification (pipeline/sinks/access.py) against the migrations, users.xml and the
Grafana dashboards. The embedded engine (chDB) has a single user and the chDB gateway does no
authentication, so the grants cannot be enforced here: they are checked by parsing users.xml,
and the views' SQL SECURITY DEFINER is checked on a migrated chDB."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline.sinks.access import AGGREGATE_VIEWS, INTERNAL, PERSON_LEVEL, analyst_grants
from pipeline.sinks.migrate import migration_files, split_statements
from tests.conftest import migrated_clickhouse

ROOT = Path(__file__).resolve().parents[2]
USERS_XML = ROOT / "deploy" / "clickhouse" / "users.xml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
_CREATE = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(VIEW|TABLE|MATERIALIZED\s+VIEW|DICTIONARY)\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?\{db\}\.`?(\w+)`?",
    re.I,
)
_DEFINER = re.compile(
    r"^\s*ALTER\s+TABLE\s+\{db\}\.`?(\w+)`?\s+MODIFY\s+(?:DEFINER\s*=\s*\w+\s+)?"
    r"SQL\s+SECURITY\s+DEFINER\s*$",
    re.I,
)
_COMMENT = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)


def statements() -> list[str]:
    """Every statement of every migration in order, comments removed."""
    return [
        _COMMENT.sub("", s).strip() for m in migration_files() for s in split_statements(m.text)
    ]


def relations() -> dict[str, tuple[str, str]]:
    """name -> (kind, last definition) of every relation the migrations create."""
    out: dict[str, tuple[str, str]] = {}
    for s in statements():
        m = _CREATE.match(s)
        if m:
            out[m.group(2)] = (m.group(1).upper(), s)
    return out


def test_every_relation_is_classified_once() -> None:
    classes = [AGGREGATE_VIEWS, PERSON_LEVEL, INTERNAL]
    everything = [name for c in classes for name in c]
    assert len(everything) == len(set(everything)), "a relation in two classes"
    created = set(relations()) | {"schema_migrations"}  # the latter: pipeline/sinks/migrate.py
    assert created - set(everything) == set(), "unclassified: add it to pipeline/sinks/access.py"
    assert set(everything) - created == set(), "classified but never created"


#: Views whose rows come from a suppressed view (their first FROM) and only join counts of
#: events, not of people, onto its keys.
ROWS_FROM = {"window_baseline_ratio": "engagement_windows"}


def test_aggregate_views_are_views_and_suppress_small_groups() -> None:
    rels = relations()
    for view in AGGREGATE_VIEWS:
        kind, sql = rels[view]
        assert kind == "VIEW", view
        if view in ROWS_FROM:
            first = re.search(r"\bFROM\s+\{db\}\.`?(\w+)", sql)
            assert first and first.group(1) == ROWS_FROM[view] in AGGREGATE_VIEWS, view
            continue
        reads = set(re.findall(r"\{db\}\.`?(\w+)", sql)) - {view, "config"}
        # suppressed itself, or reading only suppressed views
        assert (
            "{min_group_size}" in sql or "min_group_size" in sql or reads <= set(AGGREGATE_VIEWS)
        ), f"{view} neither suppresses groups below k nor reads only suppressed views"


def test_aggregate_views_run_as_their_definer_after_their_last_definition() -> None:
    last_create: dict[str, int] = {}
    definer: dict[str, int] = {}
    for i, s in enumerate(statements()):
        if m := _CREATE.match(s):
            last_create[m.group(2)] = i
        if m := _DEFINER.match(s):
            definer[m.group(1)] = i
    for view in AGGREGATE_VIEWS:
        assert definer.get(view, -1) > last_create[view], (
            f"{view}: re-created without a later MODIFY SQL SECURITY DEFINER; an analyst "
            "could not read it"
        )
    assert set(definer) <= set(AGGREGATE_VIEWS), "only the analyst's views run as definer"


def users() -> ET.Element:
    root = ET.parse(USERS_XML).getroot()
    found = root.find("users")
    assert found is not None
    return found


def grants_of(user: str) -> list[str]:
    element = users().find(user)
    assert element is not None, user
    return [" ".join((q.text or "").split()) for q in element.findall("grants/query")]


def test_analyst_may_read_exactly_the_aggregate_views() -> None:
    assert sorted(grants_of("analyst")) == analyst_grants()
    for grant in grants_of("analyst"):
        assert not grant.endswith(".*"), grant


def test_data_steward_reads_everything_and_writes_nothing() -> None:
    assert grants_of("data_steward") == ["GRANT SELECT ON teilhabe.*"]
    steward = users().find("data_steward")
    assert steward is not None and steward.findtext("profile") == "teilhabe_readonly"


@pytest.mark.parametrize("probe", ["user_day_facts", "daily_new_thing"])
def test_the_checks_can_fail(probe: str) -> None:
    """An analyst grant on a person-level view, or an unclassified view, is caught."""
    if probe in PERSON_LEVEL:
        assert f"GRANT SELECT ON teilhabe.{probe}" not in analyst_grants()
    else:
        assert probe not in {*AGGREGATE_VIEWS, *PERSON_LEVEL, *INTERNAL}


def test_grafana_dashboards_read_only_analyst_views() -> None:
    used: set[str] = set()
    for path in DASHBOARDS.glob("*.json"):
        used |= set(re.findall(r"\bFROM\s+(?:teilhabe\.)?(\w+)", path.read_text()))
    assert used, "no ClickHouse query found in the dashboards"
    assert used - set(AGGREGATE_VIEWS) == set(), "Grafana reads as analyst: aggregate views only"


@pytest.mark.integration
def test_migrated_chdb_views_run_as_definer(tmp_path: Path) -> None:
    with migrated_clickhouse(tmp_path) as client:
        rows = client.query(
            "SELECT name, create_table_query FROM system.tables WHERE database = 'teilhabe' "
            "AND engine = 'View'"
        ).result_rows
        security = {name: "SQL SECURITY DEFINER" in sql for name, sql in rows}
        assert {v for v, definer in security.items() if definer} == set(AGGREGATE_VIEWS)
        for view in AGGREGATE_VIEWS:  # still queryable as definer
            client.query(f"SELECT * FROM teilhabe.{view} LIMIT 1")
