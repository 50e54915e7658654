"""What every ``teilhabe`` subcommand shares: settings read with a clear error, the
``--data-dir`` option, and failures turned into a red ``error: ...`` line and an exit code."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from pipeline.errors import TeilhabeError
from pipeline.settings import Settings, load_settings

#: ``--data-dir DIR`` on every command: the key, the embedded ClickHouse and broker, and the
#: logs live under DIR (TEILHABE_DATA_DIR), so an import of a company's export never mixes with
#: the demo's ``./var``.
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Keep the key, the embedded ClickHouse and broker, and logs under this directory "
        "(TEILHABE_DATA_DIR; default ./var)",
        show_default=False,
    ),
]


def cli_settings(data_dir: Path | None = None, **overrides: object) -> Settings:
    """The settings, or exit 2 with the message naming the bad variable.

    ``data_dir`` (from ``--data-dir``) wins over TEILHABE_DATA_DIR; it is also put in the
    environment so that the processes a command starts (broker, workers) use the same directory.
    """
    if data_dir is not None:
        os.environ["TEILHABE_DATA_DIR"] = str(data_dir)
    try:
        return load_settings(**overrides)
    except TeilhabeError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


def cli_failure(exc: Exception) -> typer.Exit:
    """Print ``error: <exc>`` in red; the exit (code 1) for the caller to raise."""
    typer.secho(f"error: {exc}", fg="red", err=True)
    return typer.Exit(1)


@contextmanager
def clickhouse_client(s: Settings) -> Iterator[Any]:
    """A client of the configured ClickHouse (the embedded one started if none runs)."""
    from pipeline.dev.clickhouse import ensure_embedded_server
    from pipeline.sinks.clickhouse import get_client

    server = ensure_embedded_server(s) if s.embedded_clickhouse else None
    try:
        client = get_client(s)
        try:
            yield client
        finally:
            client.close()
    finally:
        if server is not None:
            server.__exit__(None, None, None)
