"""``teilhabe generate``, ``produce``, ``backfill`` and ``import``: data into the pipeline
(registered on the app by ``pipeline.cli.main``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import orjson
import typer

from pipeline.cli.common import DataDirOption
from pipeline.cli.common import cli_failure as _fail
from pipeline.cli.common import cli_settings as _settings
from pipeline.errors import TeilhabeError

PersonKey = Literal["email", "id"]


def generate(
    out: Annotated[Path | None, typer.Option(help="Write events as JSON lines here")] = None,
    directory_out: Annotated[
        Path | None,
        typer.Option("--directory-out", help="Directory JSON lines (default: beside --out)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same organisation)")] = 42,
    days: Annotated[float, typer.Option(help="Days of history to generate")] = 7.0,
    start: Annotated[
        str | None, typer.Option(help="First day, RFC 3339 (default: DAYS before now)")
    ] = None,
    silo_strength: Annotated[float, typer.Option(help="P(interaction stays in own unit)")] = 0.7,
    drop_unit: Annotated[str | None, typer.Option(help="Unit whose activity drops")] = None,
    drop_from: Annotated[str | None, typer.Option(help="When the drop starts (RFC 3339)")] = None,
    drop_factor: Annotated[float, typer.Option(help="Activity multiplier after the drop")] = 0.3,
    live: Annotated[bool, typer.Option(help="Produce live events (now) to Kafka, endless")] = False,
    rate: Annotated[
        float, typer.Option(help="Events/s for --live (0 = as fast as possible)")
    ] = 50.0,
    people: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Headcount of the organisation (default 395), split over the units in the "
            "default proportions, e.g. 100000; about 10 events per person and day",
        ),
    ] = None,
    units: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Number of units (default 6); beyond 6 the default units repeat with a "
            'number ("Vertrieb 2")',
        ),
    ] = None,
    events: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Stop after this many events (a prefix of the full history; the period "
            "may end first: raise --days or --people)",
        ),
    ] = None,
    events_per_user_day: Annotated[
        float, typer.Option(min=0.0, help="Mean events per person and day")
    ] = 10.0,
    data_dir: DataDirOption = None,
) -> None:
    """Generate a synthetic organisation: a JSON-lines history, or a live stream to Kafka.

    Large histories stream to the file with bounded memory, e.g. 5M events of 100k people:
    --people 100000 --days 7 --events 5000000.
    """
    from pipeline.dev import generator as gen

    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    begin = when(start) or datetime.fromtimestamp(
        (datetime.now(UTC).timestamp() // 86400 - days) * 86400, tz=UTC
    )
    org_units = gen.DEFAULT_UNITS  # scaled only when asked: same options, same output
    if people is not None or units is not None:
        try:
            org_units = gen.scaled_units(people or sum(n for _, n in org_units), units)
        except ValueError as exc:
            raise _fail(exc) from None
    spec = gen.OrgSpec(
        seed=seed,
        start=begin,
        days=days,
        silo_strength=silo_strength,
        drop_unit=drop_unit,
        drop_from=when(drop_from),
        drop_factor=drop_factor,
        events_per_user_day=events_per_user_day,
        units=org_units,
    )
    org = gen.Organisation(spec)
    s = _settings(data_dir)
    if live:
        from pipeline.contract.pseudonym import Pseudonymiser
        from pipeline.sources.producer import (
            produce_directory,
            produce_events,
            producer_for,
            record_limits,
        )

        if s.embedded_broker:
            typer.secho("--live needs TEILHABE_KAFKA_BOOTSTRAP (make demo sets it)", err=True)
            raise typer.Exit(2)
        producer = producer_for(s)
        produce_directory(
            producer,
            s.topic_directory,
            org.directory_records(),
            Pseudonymiser(s.read_pseudonym_key()),
            **record_limits(s),
        )
        lines = (orjson.dumps(ev) for ev in gen.live_events(org, rate or 1e9))
        produce_events(
            producer,
            s.topic_events,
            lines,
            envelope_size=50,
            rate_per_s=rate or None,
            **record_limits(s),
        )
        return
    if out is None:
        typer.secho("give --out FILE.jsonl (or --live)", fg="red", err=True)
        raise typer.Exit(2)
    directory_out = directory_out or out.with_name(out.stem + ".directory.jsonl")
    n_events, n_people = gen.write_jsonl(org, out, directory_out, limit=events)
    typer.echo(f"wrote {n_events} events to {out} and {n_people} people to {directory_out}")
    if events is not None and n_events < events:
        typer.secho(
            f"the period ended after {n_events} of {events} events: raise --days or --people",
            fg="yellow",
            err=True,
        )


def produce(
    file: Annotated[Path, typer.Argument(help="JSON-lines file of contract v1 events")],
    directory: Annotated[
        Path | None, typer.Option(help="Directory JSON lines to send first")
    ] = None,
    envelope_size: Annotated[int, typer.Option(help="Events per Kafka message")] = 500,
    no_envelope: Annotated[
        bool, typer.Option("--no-envelope", help="One event per message")
    ] = False,
    rate: Annotated[float, typer.Option(help="Events/s (0 = as fast as possible)")] = 0.0,
    end_of_input: Annotated[
        bool,
        typer.Option(
            "--end-of-input",
            help="After the file, mark the end of the input on every partition: workers "
            "then close all windows (bounded input; later events count as late)",
        ),
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Send a JSON-lines file to the events topic (batched into envelopes)."""
    from pipeline.sources.producer import (
        produce_directory_file,
        produce_end_of_input,
        produce_events,
        producer_for,
        read_jsonl,
        record_limits,
    )

    s = _settings(data_dir)
    if s.embedded_broker:
        typer.secho(
            "produce needs TEILHABE_KAFKA_BOOTSTRAP; to run the whole pipeline over a file "
            "on the embedded broker use: teilhabe backfill FILE",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    producer = producer_for(s)
    if directory is not None:
        n = produce_directory_file(producer, s, directory)
        typer.echo(f"directory: {n} people")
    n = produce_events(
        producer,
        s.topic_events,
        read_jsonl(file),
        envelope_size=1 if no_envelope else envelope_size,
        rate_per_s=rate or None,
        **record_limits(s),
    )
    typer.echo(f"sent {n} events to {s.topic_events}")
    if end_of_input:
        parts = produce_end_of_input(producer, s.topic_events)
        typer.echo(f"end of input marked on {parts} partitions")


def backfill(
    file: Annotated[Path, typer.Argument(help="JSON-lines file of contract v1 events")],
    directory: Annotated[Path | None, typer.Option(help="Directory JSON lines")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes")] = 1,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds")] = 3600.0,
    data_dir: DataDirOption = None,
) -> None:
    """Run the whole pipeline over a file and exit when everything is in ClickHouse."""
    from pipeline.dev.backfill import run_backfill

    s = _settings(data_dir)
    try:
        run_backfill(s, file, directory, workers=workers, timeout_s=timeout)
    except (TeilhabeError, TimeoutError, RuntimeError) as exc:
        raise _fail(exc) from None


def import_(
    fmt: Annotated[
        str,
        typer.Argument(metavar="FORMAT", help="slack, mattermost, viva-engage, mbox or perceval"),
    ],
    source: Annotated[Path, typer.Argument(help="The export: ZIP, directory, .mbox or JSON lines")],
    backfill: Annotated[
        bool, typer.Option(help="Run the whole pipeline here and exit when all is in ClickHouse")
    ] = False,
    directory: Annotated[
        Path | None, typer.Option(help="People CSV sent before the events (see directory import)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Only write the events (RAW ids!) to this JSON-lines file")
    ] = None,
    end_of_input: Annotated[
        bool, typer.Option(help="Mark the end of this bounded input (workers in end_of_input mode)")
    ] = False,
    identify_by: Annotated[
        PersonKey | None,
        typer.Option(help="slack, mattermost: identify people by e-mail (default) or platform id"),
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes for --backfill")] = 1,
    timeout: Annotated[float, typer.Option(help="Give up a --backfill after this many s")] = 3600.0,
    data_dir: DataDirOption = None,
) -> None:
    """Import a platform's export: to the configured Kafka, or --backfill through the pipeline."""
    from pipeline.dev.backfill import run_bounded
    from pipeline.sources.importer import run_import

    s = _settings(data_dir)
    try:
        run_import(
            s,
            fmt,
            source,
            backfill=run_bounded if backfill else None,
            end_of_input=end_of_input,
            out=out,
            people_csv=directory,
            person_key=identify_by,
            workers=workers,
            timeout_s=timeout,
        )
    except (TeilhabeError, TimeoutError, RuntimeError) as exc:
        raise _fail(exc) from None
