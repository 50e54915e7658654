"""The ``teilhabe`` command line: demo, worker, query, migrate, keygen, config (generate, produce,
backfill and import are in ``pipeline.cli.data``); ``--data-dir`` on every command."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from pipeline.cli import data, privacy, report
from pipeline.cli.common import DataDirOption, clickhouse_client
from pipeline.cli.common import cli_failure as _fail
from pipeline.cli.common import cli_settings as _settings
from pipeline.cli.grafana import grafana_app
from pipeline.errors import TeilhabeError
from pipeline.settings import Settings, default_key_path, write_key_file

app = typer.Typer(
    help="Teilhabe: live participation and cross-silo collaboration metrics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def worker(data_dir: DataDirOption = None) -> None:
    """Run a stream worker (embedded broker and ClickHouse unless configured)."""
    from pipeline.cli.worker import run_worker

    try:
        run_worker(_settings(data_dir))
    except TeilhabeError as exc:
        raise _fail(exc) from None


@app.command()
def migrate(data_dir: DataDirOption = None) -> None:
    """Apply the ClickHouse migrations in schemas/clickhouse/ (idempotent)."""
    from pipeline.dev.clickhouse import ensure_embedded_server
    from pipeline.sinks.clickhouse import get_client
    from pipeline.sinks.migrate import migrate as run_migrate

    s = _settings(data_dir)
    try:
        server = ensure_embedded_server(s) if s.embedded_clickhouse else None
        try:
            applied = run_migrate(get_client(s), s)
        finally:
            if server is not None:
                server.__exit__(None, None, None)
    except TeilhabeError as exc:
        raise _fail(exc) from None
    typer.echo(f"applied: {', '.join(applied) if applied else 'nothing (up to date)'}")


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL to run, e.g. 'SELECT * FROM engagement_windows'")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or csv")] = "table",
    data_dir: DataDirOption = None,
) -> None:
    """Run SQL against the configured ClickHouse and print the result."""
    from pipeline.sinks.clickhouse import format_rows, run_query

    if fmt not in ("table", "json", "csv"):
        typer.secho(f"--format must be table, json or csv, got {fmt!r}", fg="red", err=True)
        raise typer.Exit(2)
    s = _settings(data_dir)
    try:
        with clickhouse_client(s) as client:
            columns, rows = run_query(client, sql)
    except TeilhabeError as exc:
        raise _fail(exc) from None
    except Exception as exc:  # noqa: BLE001 - show ClickHouse's own message
        raise _fail(exc) from None
    typer.echo(format_rows(columns, rows, fmt))  # type: ignore[arg-type,unused-ignore]


@app.command()
def keygen(
    path: Annotated[
        Path | None,
        typer.Argument(
            help="Where to write the key (mode 0600; default: pseudonym.key in the data dir, "
            "where every command finds it)"
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a pseudonymisation key file readable by its owner only."""
    s = _settings(data_dir)
    own = default_key_path(s.data_dir)
    target = path or own
    if target.exists():
        typer.secho(f"{target} exists; refusing to overwrite a key", fg="red", err=True)
        raise typer.Exit(2)
    write_key_file(target)
    if path is None or target.resolve() == own.resolve():
        typer.echo(f"wrote {target}; commands with --data-dir {s.data_dir} use it")
    else:
        typer.echo(f"wrote {target}; set TEILHABE_PSEUDONYM_KEY_FILE={target}")


app.command()(data.generate)
app.command()(data.produce)
app.command()(data.backfill)
app.command("import")(data.import_)


app.add_typer(grafana_app, name="grafana")

directory_app = typer.Typer(help="The org directory: who belongs to which unit.")
app.add_typer(directory_app, name="directory")


@directory_app.command("import")
def directory_import(
    file: Annotated[Path, typer.Argument(help="CSV: person (or email, user_id), unit, more...")],
    data_dir: DataDirOption = None,
) -> None:
    """Send a people CSV to the directory topic (person keys pseudonymised first)."""
    from pipeline.sources.importer import import_directory

    try:
        import_directory(_settings(data_dir), file)
    except (TeilhabeError, OSError) as exc:
        raise _fail(exc) from None


app.command()(privacy.forget)
app.command("export-person")(privacy.export_person)
app.command()(report.report)


@app.command()
def demo(
    rate: Annotated[float, typer.Option(help="Events/s of the synthetic organisation")] = 200.0,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    seconds: Annotated[float, typer.Option(help="Stop after this long (0 = until Ctrl-C)")] = 0.0,
    data_dir: DataDirOption = None,
) -> None:
    """Everything on the embedded default, with a live view; Ctrl-C stops it cleanly."""
    from pipeline.dev.demo import run_demo

    os.environ.setdefault("TEILHABE_DEMO", "1")
    s = _settings(data_dir, demo=True)
    try:
        run_demo(s, rate=rate, workers=workers, seconds=seconds)
    except TeilhabeError as exc:
        raise _fail(exc) from None


@app.command("config")
def show_config(
    markdown: Annotated[bool, typer.Option(help="Print the README's configuration table")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Show the effective configuration (secrets hidden) or its documentation table."""
    if markdown:
        typer.echo("| variable | default | meaning |\n| --- | --- | --- |")
        for name, field in Settings.model_fields.items():
            default = field.default if field.default is not None else ""
            typer.echo(f"| `TEILHABE_{name.upper()}` | `{default}` | {field.description} |")
        return
    s = _settings(data_dir)
    for name, value in s.model_dump().items():
        typer.echo(f"TEILHABE_{name.upper()}={value}")


def main() -> None:
    """Console-script entry point."""
    logging.captureWarnings(True)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except TeilhabeError as exc:  # a command without its own handler (e.g. produce's preflight)
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)


FormatName = Literal["table", "json", "csv"]

if __name__ == "__main__":
    main()
