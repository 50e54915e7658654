"""Send events and directory records to Kafka (``teilhabe produce``, generator, backfill).

Events go as envelopes of up to ``envelope_size`` events (one Kafka message each) unless
``envelope_size`` is 1. Directory records are pseudonymised here, before they reach Kafka:
raw person ids are never written anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from pipeline.pseudonym import Pseudonymiser
from pipeline.settings import Settings

DEFAULT_ENVELOPE_SIZE = 500


def read_jsonl(path: Path) -> Iterator[bytes]:
    """Non-empty lines of a JSON-lines file, as bytes (undecoded: the worker validates)."""
    with open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield line


def make_producer(
    bootstrap: str, *, tansu: bool, max_request_bytes: int = 4_194_304
) -> KafkaProducer:
    """A kafka-python producer tuned for throughput with acks from the leader.

    ``tansu`` (the embedded dev broker): every record is its own batch. With several records
    per batch, the embedded broker now and then let a consumer skip a record (seen: about
    one run in eight lost one whole input message of the end-to-end test; 0 in 40 runs with
    one record per batch), besides its ListOffsets quirk (DESIGN.md). Envelopes keep the cost
    small; Apache Kafka gets full batches.
    """
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        batch_size=1 if tansu else 256 * 1024,
        max_request_size=max_request_bytes,
        client_id="teilhabe-producer",
    )


class ProduceError(RuntimeError):
    """Kafka did not confirm some messages (the caller must not report them as sent)."""


class _Confirmations:
    """Counts sends Kafka failed to confirm, without keeping one future per message."""

    def __init__(self) -> None:
        self.failed = 0
        self.first_error: BaseException | None = None

    def on_error(self, exc: BaseException) -> None:
        self.failed += 1
        if self.first_error is None:
            self.first_error = exc

    def check(self, what: str) -> None:
        if self.failed:
            raise ProduceError(
                f"{self.failed} {what} were not confirmed by Kafka "
                f"(first error: {self.first_error!r}); nothing is reported as sent"
            )


def envelopes(
    lines: Iterable[bytes], size: int, pseudonymised: bool = False
) -> Iterator[tuple[bytes, int]]:
    """Group raw event lines into envelope messages; yields (message, events in it).

    Lines are spliced in as they are, so an invalid line still reaches the worker (and its
    dead-letter topic) instead of being judged here. ``pseudonymised``: the lines' person ids
    are pseudonyms already (``teilhabe import``), always sent in marked envelopes.
    """
    if pseudonymised:
        head = b'{"schema_version":1,"pseudonymised":true,"events":['
        for chunk in _chunks(lines, max(size, 1)):
            yield head + b",".join(chunk) + b"]}", len(chunk)
        return
    if size <= 1:
        for line in lines:
            yield line, 1
        return
    batch: list[bytes] = []
    for line in lines:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            yield line, 1  # alone, so it cannot spoil the envelope of its good neighbours
            continue
        batch.append(line)
        if len(batch) >= size:
            yield _envelope(batch), len(batch)
            batch = []
    if batch:
        yield _envelope(batch), len(batch)


def _chunks(lines: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _envelope(lines: list[bytes]) -> bytes:
    return b'{"schema_version":1,"events":[' + b",".join(lines) + b"]}"


def produce_events(
    producer: KafkaProducer,
    topic: str,
    lines: Iterable[bytes],
    envelope_size: int = DEFAULT_ENVELOPE_SIZE,
    rate_per_s: float | None = None,
    progress: Callable[[int], None] | None = None,
    pseudonymised: bool = False,
) -> int:
    """Send event lines to ``topic``; returns the number of events sent.

    ``rate_per_s`` paces the stream (events per second); None sends as fast as possible.
    ``pseudonymised``: see ``envelopes``.
    """
    sent = 0
    started = time.monotonic()
    confirmations = _Confirmations()
    for message, n in envelopes(lines, envelope_size, pseudonymised):
        producer.send(topic, value=message).add_errback(confirmations.on_error)
        sent += n
        if progress is not None:
            progress(n)
        if rate_per_s:
            ahead = sent / rate_per_s - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    confirmations.check("messages")
    return sent


END_OF_INPUT = b'{"schema_version":1,"events":[],"end_of_input":true}'


def produce_end_of_input(producer: KafkaProducer, topic: str) -> int:
    """Mark the end of a bounded input: one end-of-input envelope to every partition of
    ``topic`` (after everything sent before it). Workers then close every window of the input
    in event time, independent of timing (see ``pipeline.windows``). Returns the partitions."""
    partitions = sorted(producer.partitions_for(topic) or [])
    if not partitions:
        raise ProduceError(f"topic {topic!r} has no partitions (does it exist?)")
    confirmations = _Confirmations()
    for p in partitions:
        producer.send(topic, value=END_OF_INPUT, partition=p).add_errback(confirmations.on_error)
    producer.flush()
    confirmations.check("end-of-input markers")
    return len(partitions)


def directory_messages(
    records: Iterable[dict[str, Any]], pseudonymise: Pseudonymiser
) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) of directory records: key = pseudonym, value = unit and attributes."""
    for rec in records:
        person = rec.get("person_id")
        unit = rec.get("unit")
        if not isinstance(person, str) or not person or not isinstance(unit, str):
            raise ValueError("a directory record needs person_id and unit (strings)")
        value = {k: v for k, v in rec.items() if k != "person_id"}
        yield pseudonymise(person).encode(), orjson.dumps(value)


def produce_directory(
    producer: KafkaProducer,
    topic: str,
    records: Iterable[dict[str, Any]],
    pseudonymise: Pseudonymiser,
) -> int:
    """Send directory records one by one (each its own batch: see DESIGN.md on Tansu)."""
    n = 0
    for key, value in directory_messages(records, pseudonymise):
        producer.send(topic, key=key, value=value).get(timeout=30)
        n += 1
    producer.flush()
    return n


def produce_directory_file(producer: KafkaProducer, settings: Settings, path: Path) -> int:
    """Send a directory JSON-lines file to the directory topic, pseudonymised with the key
    of ``settings``; returns the number of people sent."""
    records = (orjson.loads(line) for line in read_jsonl(path))
    return produce_directory(
        producer, settings.topic_directory, records, Pseudonymiser(settings.read_pseudonym_key())
    )
