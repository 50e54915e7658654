"""``teilhabe report``: a self-contained HTML report for people who do not run Grafana or SQL."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import DataDirOption, cli_failure, cli_settings, clickhouse_client
from pipeline.errors import TeilhabeError


def _day(value: str | None, option: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        typer.secho(f"{option} {value!r}: expected YYYY-MM-DD", fg="red", err=True)
        raise typer.Exit(2) from None


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
    from clickhouse_connect.driver.exceptions import ClickHouseError

    from pipeline.report.figures import collect, period
    from pipeline.report.html import render
    from pipeline.sinks.migrate import config_values

    first_opt, last_opt = _day(date_from, "--from"), _day(date_to, "--to")
    if not out.parent.is_dir():  # before minutes of work, not after
        typer.secho(f"--out {out}: no directory {out.parent}", fg="red", err=True)
        raise typer.Exit(2)
    s = cli_settings(data_dir)
    try:
        with clickhouse_client(s) as client:
            db = s.clickhouse_database
            first, last = period(client, db, first_opt, last_opt, s.timezone)
            if first > last:
                raise TeilhabeError(f"the period is empty: --from {first} is after --to {last}")
            now = datetime.now(UTC)
            # the settings stand in for config when the user may read only the views
            data = collect(client, db, first, last, unit or [], s.timezone, now, config_values(s))
            html = render(data)
            shown = {  # the units of the period a user may name (the view's, k-suppressed)
                str(u)
                for (u,) in client.query(
                    f"SELECT DISTINCT unit FROM {db}.daily_active_by_unit "
                    "WHERE day BETWEEN {a:Date} AND {b:Date}",
                    parameters={"a": first, "b": last},
                ).result_rows
            }
    except TeilhabeError as exc:
        raise cli_failure(exc) from None
    except ClickHouseError as exc:  # e.g. a database that was never migrated
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise cli_failure(
            TeilhabeError(f"{first_line[:300]} (is the database migrated? `teilhabe migrate`)")
        ) from None
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise cli_failure(exc) from None
    typer.echo(f"wrote {out} ({first} to {last}, k = {data.k}, {len(html) // 1024} KiB)")
    if unit and not shown.issuperset(unit):
        missing = ", ".join(sorted(set(unit) - shown))
        typer.secho(
            f"warning: no figures for unit {missing} in the period (no such unit, or fewer "
            f"than k = {data.k} people on every day); units shown: "
            f"{', '.join(sorted(shown)) or 'none'}",
            fg="yellow",
            err=True,
        )
