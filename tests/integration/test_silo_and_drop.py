"""End to end: a seeded organisation with a known silo strength per unit and an injected drop
in one unit, through the whole pipeline (backfill on the embedded broker and chDB). The E-I
index orders the units by their configured silo strength, and the drop shows in the baseline
ratio of that unit only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.console import Console

from pipeline.dev import generator as gen
from pipeline.dev.backfill import run_backfill
from pipeline.dev.clickhouse import EmbeddedClickHouse
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import get_client
from tests.conftest import configure

pytestmark = pytest.mark.integration

START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
DAYS = 35
DROP_FROM = START + timedelta(days=28)
#: probability that an interaction stays inside the unit: higher = more siloed
SILO = {
    "Vertrieb": 0.92,
    "Produktion": 0.75,
    "IT": 0.55,
    "Einkauf": 0.35,
    "Personal": 0.15,
}


def test_ei_index_orders_units_by_silo_strength_and_the_drop_shows_in_one_unit(
    tmp_path: Path,
) -> None:
    spec = gen.OrgSpec(
        seed=3,
        start=START,
        days=DAYS,
        events_per_user_day=4,
        unit_silo=SILO,
        silo_strength=0.5,
        drop_unit="IT",
        drop_from=DROP_FROM,
        drop_factor=0.3,
    )
    events, directory = tmp_path / "events.jsonl", tmp_path / "directory.jsonl"
    gen.write_jsonl(gen.Organisation(spec), events, directory)
    mp = pytest.MonkeyPatch()
    try:
        settings = configure(mp, tmp_path, window_s=3600, grace_s=600, min_group_size=5)
        run_backfill(settings, events, directory, console=Console(quiet=True), timeout_s=900)
        with EmbeddedClickHouse(settings):
            ei, after_drop = figures(settings)
    finally:
        mp.undo()
    print(f"\nE-I by unit: {ei}\nbaseline ratio after the drop: {after_drop}")
    by_ei = sorted(SILO, key=lambda u: ei[u])
    assert by_ei == sorted(SILO, key=lambda u: -SILO[u]), "more siloed units must have lower E-I"
    assert -1 <= ei["*"] <= 1
    assert after_drop["IT"] < 0.5, "the injected drop (to 30 %) must show in IT's ratio"
    for unit, ratio in after_drop.items():
        if unit != "IT":
            assert 0.7 < ratio < 1.4, f"{unit} had no drop but its ratio is {ratio:.2f}"


def figures(settings: Settings) -> tuple[dict[str, float], dict[str, float]]:
    """E-I per unit over the whole period; mean weekday baseline ratio after the drop."""
    client = get_client(settings)
    try:
        ei = client.query(
            "SELECT unit, (sum(external) - sum(internal)) / (sum(external) + sum(internal)) "
            "FROM teilhabe.daily_ei_index GROUP BY unit"
        ).result_rows
        after = client.query(
            "SELECT unit, avg(ratio) FROM teilhabe.daily_baseline_ratio "
            "WHERE day >= {d:Date} AND toDayOfWeek(day) <= 5 AND ratio IS NOT NULL "
            "GROUP BY unit",
            parameters={"d": DROP_FROM.date()},
        ).result_rows
    finally:
        client.close()
    return {u: float(x) for u, x in ei}, {u: float(x) for u, x in after}
