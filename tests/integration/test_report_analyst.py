"""The report run by a ClickHouse user with the analyst's grants only (docs/privacy.md, "Roles
in ClickHouse"): SELECT on the k-suppressed views of ``AGGREGATE_VIEWS`` and nothing else.

The embedded chDB has no users, so the grant check is done at the client, as a server does it:
a statement that names a table of the database outside ``AGGREGATE_VIEWS`` is refused with the
server's ACCESS_DENIED error (code 497); everything else runs on the real chDB. The report must
then still be written: the newest day from a view, k and the parameters from the settings,
coverage and the period median left out with a sentence saying why, every other figure as the
data steward sees it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from pipeline.report.figures import collect, period
from pipeline.report.html import render
from pipeline.settings import load_settings
from pipeline.sinks.access import AGGREGATE_VIEWS
from pipeline.sinks.migrate import config_values
from tests.conftest import migrated_clickhouse
from tests.integration.test_report import FIRST, LAST, build, embedded, load, set_k

pytestmark = pytest.mark.integration

DB = "teilhabe"
TABLE = re.compile(rf"\b{DB}\.(\w+)")


class AnalystClient:
    """A real client whose statements are checked against the analyst's grants first."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.refused: list[str] = []
        self.read: set[str] = set()

    def _check(self, sql: str) -> None:
        tables = set(TABLE.findall(sql))
        denied = sorted(tables - set(AGGREGATE_VIEWS))
        if denied:
            self.refused.extend(denied)
            raise DatabaseError(
                f"Received ClickHouse exception, code: 497, server response: Code: 497. "
                f"DB::Exception: analyst: Not enough privileges. To execute this query, it's "
                f"necessary to have the grant SELECT ON {DB}.{denied[0]}. (ACCESS_DENIED)"
            )
        self.read |= tables

    def query(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self._check(sql)
        return self.client.query(sql, *args, **kwargs)

    def command(self, sql: str, *args: Any, **kwargs: Any) -> Any:
        self._check(sql)
        return self.client.command(sql, *args, **kwargs)


@pytest.fixture(scope="module")
def ch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with migrated_clickhouse(tmp_path_factory.mktemp("analyst"), min_group_size=1) as client:
        load(client, build(seed=5))
        set_k(client, 3)
        yield client


def test_the_report_is_written_for_a_user_of_the_views_only(ch: Any) -> None:
    settings = load_settings(min_group_size=3, _env_file=None)
    analyst = AnalystClient(ch)
    _, last = period(analyst, DB, None, None)  # type: ignore[arg-type]
    shown = ch.query(f"SELECT max(day) FROM {DB}.daily_active_by_unit").result_rows[0][0]
    assert last == shown <= period(ch, DB, None, None)[1]  # the newest day a view shows
    now = datetime.now(UTC)
    as_analyst = collect(
        analyst,  # type: ignore[arg-type]
        DB,
        FIRST,
        LAST,
        [],
        "UTC",
        now,
        config_values(settings),
    )
    html = render(as_analyst)
    # only the three reads beyond the views were refused, and the report went on
    assert set(analyst.refused) == {"events", "config", "post_first_response"}
    assert analyst.read <= set(AGGREGATE_VIEWS)
    assert as_analyst.k == 3  # from the settings, which say what migrate wrote
    assert "Coverage is left out" in html and "data_steward" in html
    assert "median time to first response is left out" in as_analyst.response_note
    # every figure of the views equals the data steward's
    full = embedded(render(collect(ch, DB, FIRST, LAST, [], "UTC", now)))
    got = embedded(html)
    for name in ("daily_active_by_unit", "silo_matrix", "participation_pyramid", "ei_index"):
        assert got[name] == full[name], name
    strip = [
        {k: v for k, v in r.items() if k != "median_first_response_s"}
        for r in full["response_by_space"]
    ]
    assert [
        {k: v for k, v in r.items() if k != "median_first_response_s"}
        for r in got["response_by_space"]
    ] == strip
    assert all(r["median_first_response_s"] is None for r in got["response_by_space"])
    assert got["coverage"] == [] and full["coverage"]


def test_other_errors_are_not_taken_for_missing_grants(ch: Any) -> None:
    class Broken(AnalystClient):
        def query(self, sql: str, *args: Any, **kwargs: Any) -> Any:
            if "config" in sql:
                raise DatabaseError("Code: 60. DB::Exception: Unknown table (UNKNOWN_TABLE)")
            return super().query(sql, *args, **kwargs)

    with pytest.raises(DatabaseError, match="UNKNOWN_TABLE"):
        collect(Broken(ch), DB, FIRST, LAST, [], "UTC", datetime.now(UTC), {"min_group_size": "3"})  # type: ignore[arg-type]
