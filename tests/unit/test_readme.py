"""The README's configuration table is generated from the settings class: they cannot drift."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli.main import app

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_table_is_the_generated_one() -> None:
    table = CliRunner().invoke(app, ["config", "--markdown"]).stdout.strip()
    assert table.count("\n") > 40, "the generated table looks empty"
    assert table in (ROOT / "README.md").read_text(), (
        "README.md's configuration table is stale: paste `teilhabe config --markdown`"
    )
