"""``teilhabe grafana``: generate the dashboards' JSON and push it with the datasources."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.common import DataDirOption, cli_settings
from pipeline.errors import TeilhabeError

DASHBOARDS_SUBDIR = Path("deploy") / "grafana" / "dashboards"

grafana_app = typer.Typer(
    help="Grafana dashboards as code: generate the JSON, push it to a Grafana.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def default_dashboards_dir() -> Path:
    """deploy/grafana/dashboards of the source checkout this package runs from, else of the
    current directory."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / "deploy").is_dir():
        return root / DASHBOARDS_SUBDIR
    return Path.cwd() / DASHBOARDS_SUBDIR


@grafana_app.command()
def generate(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for <uid>.json (default: deploy/grafana/dashboards)"),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Write the Teilhabe dashboards as Grafana JSON (one <uid>.json each)."""
    del data_dir  # accepted like on every command; the dashboards depend on no local state
    from pipeline.ops.dashboards.output import generate as write_dashboards

    for path in write_dashboards(out or default_dashboards_dir()):
        typer.echo(f"wrote {path}")


@grafana_app.command()
def push(
    dashboards: Annotated[
        Path | None,
        typer.Option(
            "--dashboards", help="Directory of dashboard JSON (default: deploy/grafana/dashboards)"
        ),
    ] = None,
    folder: Annotated[str, typer.Option("--folder", help="Grafana folder")] = "Teilhabe",
    data_dir: DataDirOption = None,
) -> None:
    """Create or update the datasources and upload the dashboards to TEILHABE_GRAFANA_URL."""
    from pipeline.ops.grafana import push as push_to_grafana

    settings = cli_settings(data_dir)
    try:
        report = push_to_grafana(settings, dashboards or default_dashboards_dir(), folder)
    except TeilhabeError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    for item in report.items:
        typer.echo(item.line())
    for note in report.notes:
        typer.secho(f"note: {note}", fg="yellow", err=True)
    typer.echo(report.summary())
