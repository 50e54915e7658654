"""``teilhabe report``: a self-contained HTML report for people who do not run Grafana or SQL."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import DataDirOption, cli_failure, cli_settings


def report(
    date_from: Annotated[
        str | None, typer.Option("--from", help="First day (YYYY-MM-DD; default: 28 days back)")
    ] = None,
    date_to: Annotated[
        str | None, typer.Option("--to", help="Last day (YYYY-MM-DD; default: the newest day)")
    ] = None,
    unit: Annotated[
        list[str] | None, typer.Option("--unit", help="Only these units (repeatable)")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write")] = Path(
        "report.html"
    ),
    data_dir: DataDirOption = None,
) -> None:
    """Write a self-contained HTML report (plots inline, prints to PDF) of the facts."""
    s = cli_settings(data_dir)
    raise cli_failure(NotImplementedError(f"report to {out} for {s.data_dir} not built yet"))
