"""What every ``teilhabe`` subcommand shares: settings read with a clear error, and failures
turned into a red ``error: ...`` line and an exit code."""

from __future__ import annotations

import typer

from pipeline.errors import TeilhabeError
from pipeline.settings import Settings, load_settings


def cli_settings(**overrides: object) -> Settings:
    """The settings, or exit 2 with the message naming the bad variable."""
    try:
        return load_settings(**overrides)
    except TeilhabeError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


def cli_failure(exc: Exception) -> typer.Exit:
    """Print ``error: <exc>`` in red; the exit (code 1) for the caller to raise."""
    typer.secho(f"error: {exc}", fg="red", err=True)
    return typer.Exit(1)
