"""The report's rendering without ClickHouse (docs/report.md): plots are deterministic SVG with
text kept as text and no embedded image; empty sections say so; the embedded JSON cannot end
its script element; names are escaped."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipeline.report import heatmaps, plots
from pipeline.report.coverage import Coverage
from pipeline.report.figures import ReportData
from pipeline.report.html import embed_json, render

TABLES = (
    "daily_active_by_unit",
    "unit_headcount",
    "daily_stickiness",
    "reach_by_unit",
    "participation_pyramid",
    "persona_28d",
    "silo_matrix",
    "ei_index",
    "boundary_spanners",
    "response_by_space",
    "daily_growth",
    "daily_cohort_activity",
    "idea_funnel",
    "daily_ideation",
)


def data(**tables: list[dict[str, Any]]) -> ReportData:
    d = ReportData(
        first=date(2026, 3, 1),
        last=date(2026, 3, 28),
        units=[],
        k=5,
        timezone="Europe/Berlin",
        generated_at=datetime(2026, 3, 29, 8, 0, tzinfo=UTC),
        config={"min_group_size": "5"},
        coverage=Coverage(),
    )
    d.tables = {name: [] for name in TABLES}
    d.tables.update(tables)
    return d


MATRIX = [
    {"from_unit": "A", "to_unit": "A", "interactions": 40},
    {"from_unit": "A", "to_unit": "B", "interactions": 7},
    {"from_unit": "B", "to_unit": "A", "interactions": 9},
]


def test_plots_are_deterministic_vector_svg_with_text() -> None:
    first = heatmaps.silo_heatmap(MATRIX)
    assert first is not None and first == heatmaps.silo_heatmap(MATRIX)
    assert first.startswith("<svg") and "<image" not in first
    texts = re.findall(r"<text\b[^>]*>(.*?)</text>", first, re.S)
    assert any(">A<" in f">{t.strip()}<" for t in texts)
    assert "<metadata>" not in first and "dc:date" not in first


def test_plot_ids_differ_between_plots() -> None:
    ids_a = set(re.findall(r'id="([^"]+)"', heatmaps.silo_heatmap(MATRIX) or ""))
    rows = [{"unit": "A", "observers": 5, "contributors": 3, "heavy_contributors": 1}]
    pyramid = plots.stacked_shares("pyramid", "t", rows, [("observers", "o")])
    ids_b = set(re.findall(r'id="([^"]+)"', pyramid or ""))
    assert ids_a and ids_b and not ids_a & ids_b


def test_empty_sections_say_so_instead_of_plotting() -> None:
    html = render(data())
    assert "<figure>" not in html
    assert html.count('class="empty"') == 7
    assert "Europe/Berlin" in html and "k = 5" in html
    assert "2026-03-01 to 2026-03-28" in html


def test_names_are_escaped_and_the_json_cannot_close_its_script() -> None:
    evil = "</script><img src=x onerror=alert(1)>"
    rows = [{"from_unit": evil, "to_unit": evil, "interactions": 12}]
    html = render(data(silo_matrix=rows))
    raw = re.search(r'id="teilhabe-report-data">(.*?)</script>', html, re.S)
    assert raw is not None
    assert "<img" not in html.replace(raw.group(1), "")  # in the JSON it is inert text
    assert json.loads(raw.group(1))["silo_matrix"][0]["from_unit"] == evil
    assert "</" not in embed_json({"x": "</script><!--"})


def test_coverage_says_what_a_source_cannot_say() -> None:
    d = data()
    d.coverage = Coverage(
        cells=[
            {"event_type": "post_created", "platform": "slack", "events": 120},
            {"event_type": "view", "platform": "viva-engage", "events": 900},
            {"event_type": "post_created", "platform": "viva-engage", "events": 80},
        ],
        platforms=["slack", "viva-engage"],
        absent_types=["member_joined"],
        unknown_share=0.25,
    )
    html = render(d)
    section = html[html.index('id="coverage"') :]
    assert "slack shows no <code>view</code> events" in section
    assert "observers are undercounted" in section
    assert "No <code>member_joined</code> events in the period" in section
    assert "25.0% of the events have no known unit" in section


def test_report_cli_refuses_bad_options_before_any_work(tmp_path: Path) -> None:
    """A wrong date or an --out in a missing directory: exit 2 naming the option, at once
    (no ClickHouse is started: the data dir stays empty)."""
    from typer.testing import CliRunner

    from pipeline.cli.main import app

    data_dir = tmp_path / "data"
    runner = CliRunner()
    for args, said in (
        (["--from", "2026-13-01"], "--from '2026-13-01': expected YYYY-MM-DD"),
        (["--out", str(tmp_path / "missing" / "r.html")], "no directory"),
    ):
        got = runner.invoke(app, ["report", "--data-dir", str(data_dir), *args])
        assert got.exit_code == 2, got.output
        assert said in got.output
    assert not (data_dir / "clickhouse").exists()
