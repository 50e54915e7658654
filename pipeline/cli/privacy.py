"""``teilhabe forget`` and ``teilhabe export-person``: erasure and access requests (GDPR Art.
17 and 15) for people named as the platform knows them (docs/privacy.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from pipeline.cli.common import DataDirOption, clickhouse_client
from pipeline.cli.common import cli_failure as _fail
from pipeline.cli.common import cli_settings as _settings
from pipeline.errors import TeilhabeError


def read_people(people: list[str], file: Path | None) -> list[str]:
    """The people of the arguments and of ``file`` (one a line; blank lines and ``#``
    comments skipped), in order, each once."""
    names = list(people)
    if file is not None:
        for line in file.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                names.append(line.strip())
    return list(dict.fromkeys(names))


def forget(
    people: Annotated[
        list[str] | None, typer.Argument(help="People as in the directory CSV: e-mail or user id")
    ] = None,
    file: Annotated[Path | None, typer.Option("--file", help="One person a line")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Erase people: their facts, their pseudonym where others interacted with them, their
    directory record; window figures recomputed without them (GDPR Art. 17)."""
    from pipeline.contract.pseudonym import Pseudonymiser
    from pipeline.sinks.erasure import forget as erase
    from pipeline.sinks.erasure import send_tombstones

    s = _settings(data_dir)
    try:
        names = read_people(people or [], file)
    except OSError as exc:
        raise _fail(exc) from None
    if not names:
        typer.secho("name at least one person (arguments or --file)", fg="red", err=True)
        raise typer.Exit(2)
    try:
        pseudonymise = Pseudonymiser(s.read_pseudonym_key())
        by_pseudonym = {pseudonymise(n): n for n in names}
        with clickhouse_client(s) as client:
            report = erase(client, s.clickhouse_database, by_pseudonym)
        tombstones = 0
        if not s.embedded_broker:
            from pipeline.sources.producer import producer_for

            producer = producer_for(s)
            try:
                tombstones = send_tombstones(producer, s.topic_directory, by_pseudonym)
            finally:
                producer.close()
    except TeilhabeError as exc:
        raise _fail(exc) from None
    except Exception as exc:  # noqa: BLE001 - show ClickHouse's or Kafka's own message
        raise _fail(exc) from None
    for what, n in report.removed.items():
        typer.echo(f"{what}: {n}")
    if s.embedded_broker:
        typer.echo("directory topic: embedded broker (in memory), no tombstone needed")
    else:
        typer.echo(f"directory topic {s.topic_directory}: {tombstones} tombstone(s) sent")
    for pseudonym in report.not_found:
        typer.echo(f"not found: {by_pseudonym[pseudonym]}")
    found = len(by_pseudonym) - len(report.not_found)
    typer.echo(f"removed: {report.total} row(s) of {found} people")


def export_person(
    person: Annotated[str, typer.Argument(help="The person as in the directory CSV")],
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """The pseudonymised facts held about a person, as JSON lines ``{"table", "row"}`` (GDPR
    Art. 15): every row naming them as actor or target, and their directory record."""
    from pipeline.contract.pseudonym import Pseudonymiser
    from pipeline.sinks.erasure import export_person as rows_of

    s = _settings(data_dir)
    try:
        pseudonym = Pseudonymiser(s.read_pseudonym_key())(person)
        with clickhouse_client(s) as client:
            lines = [
                orjson.dumps(r, option=orjson.OPT_NAIVE_UTC, default=str)
                for r in rows_of(client, s.clickhouse_database, pseudonym)
            ]
    except TeilhabeError as exc:
        raise _fail(exc) from None
    except Exception as exc:  # noqa: BLE001 - show ClickHouse's own message
        raise _fail(exc) from None
    text = b"".join(line + b"\n" for line in lines)
    if out is None:
        typer.echo(text.decode(), nl=False)
    else:
        out.write_bytes(text)
        typer.secho(f"{len(lines)} row(s) written to {out}", err=True)
    if not lines:
        typer.secho(f"not found: {person}", err=True)
