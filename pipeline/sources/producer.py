"""Send events and directory records to Kafka (``teilhabe produce``, generator, backfill).

Events go as envelopes of up to ``envelope_size`` events (one Kafka message each) unless
``envelope_size`` is 1. Directory records are pseudonymised here, before they reach Kafka:
raw person ids are never written anywhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from pipeline.contract.pseudonym import Pseudonymiser
from pipeline.contract.records import (
    DEFAULT_MAX_RECORD_BYTES,
    Envelope,
    EnvelopeWriter,
    TooLarge,
    dead_letter,
    pack,
    value_budget,
)
from pipeline.ops.preflight import preflight, sasl_error
from pipeline.settings import Settings

log = logging.getLogger(__name__)
DEFAULT_DEADLETTER_TOPIC: Final = "teilhabe.deadletter"

DEFAULT_ENVELOPE_SIZE = 500


def read_jsonl(path: Path) -> Iterator[bytes]:
    """Non-empty lines of a JSON-lines file, as bytes (undecoded: the worker validates)."""
    with open(path, "rb") as fh:
        for line in fh:
            line = line.strip()
            if line:
                yield line


def make_producer(
    bootstrap: str,
    *,
    tansu: bool,
    max_request_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    security: dict[str, Any] | None = None,
) -> KafkaProducer:
    """A kafka-python producer tuned for throughput with acks from the leader.

    ``max_request_bytes``: the client's own record limit; pass
    ``TEILHABE_KAFKA_MAX_RECORD_BYTES`` (every record this module writes is cut to it by
    ``pipeline.contract.records``, so a record above it is a bug, refused here before any broker).

    ``tansu`` (the embedded dev broker): every record is its own batch. With several records
    per batch, the embedded broker now and then let a consumer skip a record (seen: about
    one run in eight lost one whole input message of the end-to-end test; 0 in 40 runs with
    one record per batch), besides its ListOffsets quirk (docs/design.md). Envelopes keep
    the cost small; Apache Kafka gets full batches.

    ``security``: TLS / SASL arguments (``pipeline.kafka_security.client_kwargs``).
    """
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=5,
        batch_size=1 if tansu else 256 * 1024,
        max_request_size=max_request_bytes,
        client_id="teilhabe-producer",
        **(security or {}),
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


ENVELOPE_HEAD: Final = b'{"schema_version":1,"events":['
PSEUDONYMISED_HEAD: Final = b'{"schema_version":1,"pseudonymised":true,"events":['
ENVELOPE_TAIL: Final = b"]}"


def envelopes(
    lines: Iterable[bytes],
    size: int,
    pseudonymised: bool = False,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[Envelope | TooLarge]:
    """Group raw event lines into envelope records of at most ``size`` events and
    ``max_record_bytes`` bytes; a line too large for a record alone comes as ``TooLarge``.

    Lines are spliced in as they are, so an invalid line still reaches the worker (and its
    dead-letter topic) instead of being judged here; one that is not JSON travels alone, so it
    cannot spoil the envelope of its good neighbours. ``size`` 1 sends each line as it is.
    ``pseudonymised``: the lines' person ids are pseudonyms already (``teilhabe import``),
    always sent in marked envelopes.
    """
    budget = value_budget(max_record_bytes)
    if pseudonymised:
        yield from pack(lines, PSEUDONYMISED_HEAD, ENVELOPE_TAIL, budget, max(size, 1))
        return
    if size <= 1:
        for line in lines:
            yield Envelope(line, 1) if len(line) <= budget else TooLarge(line, budget)
        return
    writer = EnvelopeWriter(ENVELOPE_HEAD, ENVELOPE_TAIL, budget, size)
    for line in lines:
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            yield from writer.flush()
            yield Envelope(line, 1) if len(line) <= budget else TooLarge(line, budget)
            continue
        yield from writer.add(line)
    yield from writer.flush()


def dead_letter_oversized(
    producer: KafkaProducer,
    deadletter_topic: str,
    item: TooLarge,
    source: str,
    max_record_bytes: int,
) -> Any:
    """Send an item too large for any record to the dead-letter topic (reason ``oversized``,
    its first bytes and a ``truncated`` header); returns the send's future."""
    dead = dead_letter("oversized", item.detail, item.item, source, max_record_bytes)
    return producer.send(deadletter_topic, key=dead.key, value=dead.value, headers=dead.headers)


def produce_events(
    producer: KafkaProducer,
    topic: str,
    lines: Iterable[bytes],
    envelope_size: int = DEFAULT_ENVELOPE_SIZE,
    rate_per_s: float | None = None,
    progress: Callable[[int], None] | None = None,
    pseudonymised: bool = False,
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    deadletter_topic: str = DEFAULT_DEADLETTER_TOPIC,
) -> int:
    """Send event lines to ``topic``; returns the number of events sent there.

    ``rate_per_s`` paces the stream (events per second); None sends as fast as possible.
    ``pseudonymised``: see ``envelopes``. A line larger than a record can hold goes to
    ``deadletter_topic`` (reason ``oversized``, cut to the limit): counted in ``progress``,
    not in the result, and never a failure of the whole input.
    """
    sent = oversized = 0
    started = time.monotonic()
    confirmations = _Confirmations()
    for piece in envelopes(lines, envelope_size, pseudonymised, max_record_bytes):
        if isinstance(piece, TooLarge):
            dead_letter_oversized(
                producer, deadletter_topic, piece, f"producer:{topic}", max_record_bytes
            ).add_errback(confirmations.on_error)
            oversized += 1
            n = 1
        else:
            producer.send(topic, value=piece.value).add_errback(confirmations.on_error)
            n = piece.count
            sent += n
        if progress is not None:
            progress(n)
        if rate_per_s:
            ahead = (sent + oversized) / rate_per_s - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    confirmations.check("messages")
    if oversized:
        log.warning(
            "%s line(s) larger than TEILHABE_KAFKA_MAX_RECORD_BYTES=%s went to %s "
            "(reason oversized)",
            oversized,
            max_record_bytes,
            deadletter_topic,
        )
    return sent


END_OF_INPUT = b'{"schema_version":1,"events":[],"end_of_input":true}'


def produce_end_of_input(producer: KafkaProducer, topic: str) -> int:
    """Mark the end of a bounded input: one end-of-input envelope to every partition of
    ``topic`` (after everything sent before it). Workers then close every window of the input
    in event time, independent of timing (see ``pipeline.metrics.windows``). Returns the
    partitions."""
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
    *,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    deadletter_topic: str = DEFAULT_DEADLETTER_TOPIC,
) -> int:
    """Send directory records (keyed by pseudonym; the topic is compacted) and wait until
    Kafka confirmed all of them; returns how many were sent. A record larger than
    ``max_record_bytes`` goes to the dead-letter topic (reason ``oversized``) instead."""
    n = 0
    confirmations = _Confirmations()
    for key, value in directory_messages(records, pseudonymise):
        budget = value_budget(max_record_bytes, key)
        if len(value) > budget:
            too_large = TooLarge(value, budget)
            dead_letter_oversized(
                producer, deadletter_topic, too_large, f"directory:{topic}", max_record_bytes
            ).add_errback(confirmations.on_error)
            log.warning("a directory record of %s bytes went to %s", len(value), deadletter_topic)
            continue
        producer.send(topic, key=key, value=value).add_errback(confirmations.on_error)
        n += 1
    producer.flush()
    confirmations.check("directory records")
    return n


def produce_directory_file(producer: KafkaProducer, settings: Settings, path: Path) -> int:
    """Send a directory JSON-lines file to the directory topic, pseudonymised with the key
    of ``settings``; returns the number of people sent."""
    records = (orjson.loads(line) for line in read_jsonl(path))
    return produce_directory(
        producer,
        settings.topic_directory,
        records,
        Pseudonymiser(settings.read_pseudonym_key()),
        **record_limits(settings),
    )


def record_limits(settings: Settings) -> dict[str, Any]:
    """The keyword arguments that bound records for ``settings`` (``produce_events``,
    ``produce_directory``)."""
    return {
        "max_record_bytes": settings.kafka_max_record_bytes,
        "deadletter_topic": settings.topic_deadletter,
    }


def producer_for(settings: Settings, bootstrap: str | None = None) -> KafkaProducer:
    """A producer for ``settings`` (its broker kind, record limit and security), after the
    preflight: a TLS or SASL problem ends here with a ConfigError naming the setting."""
    bootstrap = bootstrap or settings.kafka_bootstrap
    security = preflight(bootstrap, settings)
    try:
        return make_producer(
            bootstrap,
            tansu=settings.tansu,
            max_request_bytes=settings.kafka_max_record_bytes,
            security=security.client_kwargs(),
        )
    except KafkaError as exc:
        raise sasl_error(bootstrap, security, exc) or exc from None
