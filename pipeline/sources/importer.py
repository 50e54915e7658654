"""``teilhabe import`` and ``teilhabe directory import``: platform data into the pipeline.

A connector (``pipeline.sources.connectors.<format>``) streams a platform's export as contract
events with the platform's own person ids. Here, before anything is written anywhere, units are
filled from the export's own profile fields and every person id is pseudonymised with the
pipeline's key; the events then go to Kafka in envelopes marked ``"pseudonymised": true`` (the
worker keeps those ids; see ``pipeline.metrics.enrich.check_pseudonyms``). Only ``--out`` writes raw
ids, to a file the user asked for, with a warning.
"""

from __future__ import annotations

import csv
import functools
import heapq
import importlib
import inspect
import io
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from pipeline.contract.events import parse_time_ms
from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.errors import InvalidEvent, TeilhabeError
from pipeline.settings import Settings
from pipeline.sources.connectors.base import ImportContext, ImportStats, RawEvent, Reader

#: Format name on the command line -> connector module.
FORMATS: dict[str, str] = {
    "slack": "pipeline.sources.connectors.slack",
    "mattermost": "pipeline.sources.connectors.mattermost",
    "viva-engage": "pipeline.sources.connectors.viva_engage",
    "mbox": "pipeline.sources.connectors.mbox",
    "perceval": "pipeline.sources.connectors.perceval",
}

#: Events held in memory while sorting an import by event time (about 40 MB); more are
#: sorted in runs on disk and merged.
SORT_RUN_EVENTS = 100_000

#: Column names accepted for the person key of a directory CSV (first found wins).
PERSON_COLUMNS = ("person", "person_id", "email", "user_id", "username")

Sender = Callable[[KafkaProducer, Callable[[int], None]], None]
# starts the pipeline here, lets a sender produce a bounded input and waits until it is in
# ClickHouse (``pipeline.dev.backfill.run_bounded``; the CLI passes it for ``--backfill``)
BoundedRun = Callable[
    [Settings, Sender, "int | None", int, float, "Console | None"], dict[str, int]
]


def reader_for(fmt: str, person_key: str | None = None) -> Reader:
    """The ``read`` function of a format's connector; a clear error for unknown formats.

    ``person_key`` (``email`` or ``id``) is passed on to readers that offer the choice
    (Slack, Mattermost: ``id`` matches what their webhooks key people by).
    """
    if fmt not in FORMATS:
        raise TeilhabeError(f"unknown format {fmt!r}; known: {', '.join(sorted(FORMATS))}")
    read = importlib.import_module(FORMATS[fmt]).read
    if person_key is None:
        reader: Reader = read
        return reader
    if "person_key" not in inspect.signature(read).parameters:
        raise TeilhabeError(f"--identify-by is not an option of the {fmt} format")
    return functools.partial(read, person_key=person_key)


def prepare(
    events: Iterable[RawEvent], ctx: ImportContext, pseudonymise: Pseudonymiser | None
) -> Iterator[tuple[int, bytes]]:
    """Count, fill units from the export's profiles, pseudonymise; yields (event time in ms,
    JSON line). ``pseudonymise`` None keeps the raw ids (``--out`` only)."""
    people = ctx.people
    for ev in events:
        try:
            ts = parse_time_ms(ev["occurred_at"])
        except InvalidEvent:
            ctx.stats.skip("bad_timestamp")  # a reader's defect; never a crash mid-import
            continue
        ctx.stats.emitted(ev["event_type"], ts)
        for id_field, unit_field in (
            ("actor_id", "actor_unit"),
            ("target_actor_id", "target_unit"),
        ):
            raw = ev.get(id_field)
            if not raw:
                continue
            if not ev.get(unit_field):
                unit = people.get(raw, {}).get("unit")
                if unit:
                    ev[unit_field] = unit
            if pseudonymise is not None:
                ev[id_field] = pseudonymise(raw)
        # a copy of exact size: orjson's result keeps its 4 KiB write buffer, which made the
        # sort's in-memory run ten times larger than its lines (bench/import_memory.py)
        yield ts, bytes(memoryview(orjson.dumps(ev)))


class SortedRuns:
    """Lines sorted by event time with at most ``run_size`` of them in memory.

    Exports come in their own order (Slack: channel by channel; a CSV: any), and an event
    older than its window's close would count as late; sorted, a bounded import gives exact
    windows in any close mode. ``add`` takes (time, line) pairs; beyond ``run_size`` lines,
    sorted runs are spilled to a temporary directory (pseudonymised lines only), and
    ``merged`` reads them back in one order: an external merge sort. Use as a context manager
    (the directory is removed at exit).
    """

    def __init__(self, run_size: int = SORT_RUN_EVENTS, under: Path | None = None) -> None:
        self.run_size = run_size
        self.count = 0
        self._buffer: list[tuple[int, bytes]] = []
        self._runs: list[Path] = []
        if under is not None:
            under.mkdir(parents=True, exist_ok=True)
        self._tmp = tempfile.TemporaryDirectory(prefix="teilhabe-import-", dir=under)

    def __enter__(self) -> SortedRuns:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def add(self, timed: Iterable[tuple[int, bytes]]) -> None:
        """Take every (time, line) pair of ``timed``."""
        for item in timed:
            self._buffer.append(item)
            self.count += 1
            if len(self._buffer) >= self.run_size:
                path = Path(self._tmp.name) / f"run-{len(self._runs)}"
                self._runs.append(_spill(sorted(self._buffer, key=_first), path))
                self._buffer = []

    def merged(self) -> Iterator[bytes]:
        """All lines in event-time order; equal times keep the order they came in."""
        self._buffer.sort(key=_first)
        # runs in arrival order, the rest last: stable
        merged = heapq.merge(*(_read_run(r) for r in self._runs), self._buffer, key=_first)
        return (line for _, line in merged)


def time_sorted(
    timed: Iterable[tuple[int, bytes]], run_size: int = SORT_RUN_EVENTS
) -> Iterator[bytes]:
    """``timed``'s lines in event-time order (see ``SortedRuns``)."""
    with SortedRuns(run_size) as runs:
        runs.add(timed)
        yield from runs.merged()


def _first(item: tuple[int, bytes]) -> int:
    return item[0]


def _spill(items: list[tuple[int, bytes]], path: Path) -> Path:
    with open(path, "wb") as fh:
        for ts, line in items:
            fh.write(b"%d %s\n" % (ts, line))
    return path


def _read_run(path: Path) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as fh:
        for row in fh:
            ts, line = row.rstrip(b"\n").split(b" ", 1)
            yield int(ts), line


def directory_records(people: dict[str, dict[str, str]]) -> Iterator[dict[str, Any]]:
    """Directory records (raw person id, unit, attributes) of the export's profiles with a
    unit; ``produce_directory`` pseudonymises them."""
    for person, attrs in people.items():
        if attrs.get("unit"):
            yield {"person_id": person, **attrs}


@dataclass
class ImportRun:
    """One import: read the export (pseudonymised, sorted), then send it or write it."""

    settings: Settings
    fmt: str
    source: Path
    console: Console
    people_csv: Path | None = None  # a directory CSV sent before the events
    person_key: str | None = None  # email or id, for the readers that offer it

    def __post_init__(self) -> None:
        self.reader = reader_for(self.fmt, self.person_key)
        if not self.source.exists():
            raise TeilhabeError(f"{self.source}: no such file or directory")
        if self.people_csv is not None:
            self.people = list(read_people_csv(self.people_csv))  # checked before any work
        self.ctx = ImportContext()
        # the spilled runs (pseudonymised) stay under the data dir, like everything local
        self.sorted = SortedRuns(under=self.settings.data_dir / "tmp")

    def read(self) -> int:
        """Read the whole export with a progress bar (bytes of the source), pseudonymise and
        sort it; returns the number of events."""
        pseudonymise = Pseudonymiser(self.settings.read_pseudonym_key())
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            size = source_bytes(self.source)
            task = progress.add_task(f"reading {self.source.name}", total=size)
            self.ctx.progress = lambda n: progress.advance(task, n)
            self.sorted.add(prepare(self.reader(self.source, self.ctx), self.ctx, pseudonymise))
            progress.update(task, completed=size)
        return self.sorted.count

    def send(self, producer: KafkaProducer, progress: Callable[[int], None]) -> None:
        """The people CSV, the events (pseudonymised, marked envelopes), then the export's
        people to the directory topic. ``read`` first."""
        from pipeline.sources.producer import produce_directory, produce_events, record_limits

        s = self.settings
        pseudonymise = Pseudonymiser(s.read_pseudonym_key())
        limits = record_limits(s)
        if self.people_csv is not None:
            n = produce_directory(producer, s.topic_directory, self.people, pseudonymise, **limits)
            self.console.print(f"directory: {n} people from {self.people_csv}")
        produce_events(
            producer,
            s.topic_events,
            self.sorted.merged(),
            progress=progress,
            pseudonymised=True,
            **limits,
        )
        n = produce_directory(
            producer, s.topic_directory, directory_records(self.ctx.people), pseudonymise, **limits
        )
        if n:
            self.console.print(f"directory: {n} people with a unit from the export's profiles")

    def write(self, out: Path) -> int:
        """Write the events with raw ids to ``out`` (the user asked for it), in the export's
        order (sorting would spill raw ids to temporary files); returns the count."""
        self.console.print(
            f"[yellow]warning:[/] {out} holds raw person ids (not pseudonymised): "
            "protect it and delete it when done"
        )
        n = 0
        with open(out, "wb") as fh:
            for _, line in prepare(self.reader(self.source, self.ctx), self.ctx, None):
                fh.write(line + b"\n")
                n += 1
        return n


def source_bytes(source: Path) -> int:
    """Size of a file, or of all files below a directory (the read progress' total)."""
    if source.is_file():
        return source.stat().st_size
    return sum(f.stat().st_size for f in source.rglob("*") if f.is_file())


def summary_lines(stats: ImportStats) -> list[str]:
    """The closing summary: events by type, skipped records by reason, time range."""
    out = [f"events: {sum(stats.events.values())}"]
    out += [f"  {etype}: {n}" for etype, n in sorted(stats.events.items())]
    out.append(f"skipped records: {sum(stats.skipped.values())}")
    out += [f"  {reason}: {n}" for reason, n in sorted(stats.skipped.items())]
    if stats.first is not None and stats.last is not None:
        out.append(f"first event: {stats.first.isoformat()}")
        out.append(f"last event:  {stats.last.isoformat()}")
    return out


def run_import(
    settings: Settings,
    fmt: str,
    source: Path,
    *,
    backfill: BoundedRun | None = None,
    end_of_input: bool = False,
    out: Path | None = None,
    people_csv: Path | None = None,
    person_key: str | None = None,
    workers: int = 1,
    timeout_s: float = 3600.0,
    console: Console | None = None,
) -> ImportStats:
    """Import ``source`` in format ``fmt``: to ``out`` (raw ids), through the whole pipeline
    (``backfill``: the runner that starts it, ``pipeline.dev.backfill.run_bounded``), or to the
    configured Kafka; prints the closing summary."""
    console = console or Console(stderr=True)
    run = ImportRun(settings, fmt, source, console, people_csv, person_key)
    with run.sorted:  # the spilled runs are removed whatever happens
        if out is not None:
            run.write(out)
        else:
            if backfill is None and settings.embedded_broker:
                raise TeilhabeError(
                    "import needs TEILHABE_KAFKA_BOOTSTRAP (a running pipeline), or --backfill "
                    "to run the whole pipeline here, or --out FILE"
                )
            total = run.read()
            warn_beyond_retention(run.ctx.stats, settings.facts_ttl_days, console)
            _send(run, total, backfill, end_of_input, workers, timeout_s)
    for line in summary_lines(run.ctx.stats):
        console.print(line)
    return run.ctx.stats


def warn_beyond_retention(stats: ImportStats, ttl_days: int, console: Console) -> bool:
    """Warn (and return True) when the import holds events older than the facts' retention:
    ClickHouse's TTL drops them from ``events`` (the stream windows keep their counts)."""
    cutoff = datetime.now(UTC) - timedelta(days=ttl_days)
    if stats.first is None or stats.first >= cutoff:
        return False
    console.print(
        f"[yellow]warning:[/] events from {stats.first.date()} on are older than the "
        f"facts' retention (TEILHABE_FACTS_TTL_DAYS={ttl_days}, i.e. before {cutoff.date()}): "
        "ClickHouse drops those from the facts; raise TEILHABE_FACTS_TTL_DAYS to keep them"
    )
    return True


def _send(
    run: ImportRun,
    total: int,
    backfill: BoundedRun | None,
    end_of_input: bool,
    workers: int,
    timeout_s: float,
) -> None:
    settings, console = run.settings, run.console
    if backfill is not None:
        backfill(settings, run.send, total, workers, timeout_s, console)
        return
    from pipeline.sources.producer import produce_end_of_input, producer_for

    producer = producer_for(settings)
    try:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("events sent", total=total)
            run.send(producer, lambda n: progress.advance(task, n))
            if end_of_input:
                produce_end_of_input(producer, settings.topic_events)
    finally:
        producer.close()


def read_people_csv(path: Path) -> Iterator[dict[str, Any]]:
    """Directory records from a CSV with a header: a person column (``person``, ``person_id``,
    ``email``, ``user_id`` or ``username``: the key as the platform knows the person), ``unit``,
    and any further columns as attributes (``cohorts``: several separated by ``;``).

    Raises TeilhabeError naming the line for a row without person or unit.
    """
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = csv.DictReader(fh)
        header = [h.strip() for h in rows.fieldnames or []]
        person_col = next((c for c in PERSON_COLUMNS if c in header), None)
        if person_col is None or "unit" not in header:
            raise TeilhabeError(
                f"{path}: the header needs a person column ({', '.join(PERSON_COLUMNS)}) "
                f"and 'unit'; found {header}"
            )
        for n, row in enumerate(rows, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k}
            person, unit = row.pop(person_col, ""), row.pop("unit", "")
            if not person or not unit:
                raise TeilhabeError(f"{path}, line {n}: person and unit must not be empty")
            record: dict[str, Any] = {"person_id": person.lower() if "@" in person else person}
            record["unit"] = unit
            for key, value in row.items():
                if key == "cohorts":
                    record["cohorts"] = [c.strip() for c in value.split(";") if c.strip()]
                elif value:
                    record[key] = value
            yield record


def import_directory(settings: Settings, path: Path, console: Console | None = None) -> int:
    """Send a people CSV to the directory topic, pseudonymised; returns the people sent."""
    from pipeline.sources.producer import produce_directory, producer_for, record_limits

    console = console or Console(stderr=True)
    if settings.embedded_broker:
        raise TeilhabeError("directory import needs TEILHABE_KAFKA_BOOTSTRAP (a running pipeline)")
    records = list(read_people_csv(path))  # validate the whole file before sending any of it
    producer = producer_for(settings)
    try:
        n = produce_directory(
            producer,
            settings.topic_directory,
            records,
            Pseudonymiser(settings.read_pseudonym_key()),
            **record_limits(settings),
        )
    finally:
        producer.close()
    console.print(f"directory: {n} people sent from {path}")
    return n


def people_csv_text(records: Iterable[dict[str, Any]]) -> str:
    """A people CSV for ``records`` (tests and examples): person, unit, cohorts."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["person", "unit", "cohorts"])
    for rec in records:
        writer.writerow([rec["person_id"], rec["unit"], ";".join(rec.get("cohorts", []))])
    return buf.getvalue()
