"""Delivery of the worker's records to Kafka: never a crash loop on a record.

The ingest agent and the webhook endpoint hand their records here and acknowledge their input
only after ``deliver`` returned, i.e. once Kafka confirmed every record. Two kinds of failure
are told apart:

* **Kafka unavailable** (connection lost, timeouts, no leader, ...): the records are sent
  again, in order, with backoff, for as long as it takes. Nothing is acknowledged meanwhile;
  ``teilhabe_kafka_send_retries_total`` rises and ``teilhabe_kafka_unconfirmed_records``
  shows what waits. (aiokafka already retries inside its request timeout; this loop covers
  what it gives up on.)
* **A record refused for its content** (too large for the broker or the client, corrupt,
  unserialisable): retrying could never help, and raising would make the worker re-read the
  same input after its restart and fail again. A refused envelope is split in halves and each
  half sent again; a single event that is still refused becomes a dead letter with reason
  ``oversized`` (size) or ``refused`` (anything else); a refused dead letter is cut to a
  quarter until it fits. ``teilhabe_kafka_records_refused_total{topic}`` counts them.

Order: the records of one (topic, partition) go one after the other, each sent once the one
before it is confirmed (records of different partitions at once). A record sent again, or a
refused envelope's halves, therefore keep their place: the engagement stage's watermark and
end-of-input markers rely on each source's order within an activity partition.

Every send uses ``force=True`` (see ``agents.ingest``: never attach a send to the current event).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import errors as kerrors

from pipeline.contract.records import TRUNCATED_HEADER, dead_letter
from pipeline.ops.exporter import PipelineMetrics

log = logging.getLogger("teilhabe.delivery")

MAX_BACKOFF_S = 30.0
LOG_INTERVAL_S = 30.0
MIN_DEAD_LETTER_BYTES = 1024
#: Kafka error codes that refuse a record for what it is, not for the broker's state:
#: corrupt (2), too large (10), batch too large (18), bad timestamp (32), unsupported
#: format (43), invalid record (87).
CONTENT_ERRNOS = frozenset({2, 10, 18, 32, 43, 87})
SIZE_ERRNOS = frozenset({10, 18})


@dataclass(slots=True)
class Outgoing:
    """One record to write. ``items``/``head``/``tail``: the envelope's parts, so that a
    refused envelope can be split; ``dead_letter`` marks a record of the dead-letter topic."""

    topic: Any  # faust.TopicT
    value: bytes
    key: bytes | None = None
    partition: int | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    items: Sequence[bytes] = ()
    head: bytes = b""
    tail: bytes = b""
    dead_letter: bool = False


#: A record Kafka did not take, why (None: unavailable, to retry) and the error.
Failure = tuple[Outgoing, str | None, BaseException]


def envelope_items(record: Outgoing) -> list[bytes]:
    """The serialised events of an envelope record (to split it), [] when it is none."""
    if not record.head:
        return []
    try:
        return [orjson.dumps(item) for item in orjson.loads(record.value)["events"]]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return []


def refusal(exc: BaseException) -> str | None:
    """``oversized`` or ``refused`` when ``exc`` refuses a record for its content, None when
    it is a (retriable) state of Kafka."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    if isinstance(cause, kerrors.KafkaError):
        errno = getattr(cause, "errno", None)
        if errno in SIZE_ERRNOS:
            return "oversized"
        if errno in CONTENT_ERRNOS:
            return "refused"
        return None
    if isinstance(cause, TypeError | ValueError | OverflowError):
        return "refused"  # not bytes, not serialisable: the record itself is wrong
    return None


class Delivery:
    """Sends records and waits for Kafka's confirmation (see the module docstring)."""

    def __init__(
        self, metrics: PipelineMetrics, max_record_bytes: int, deadletter_topic: Any
    ) -> None:
        self.metrics = metrics
        self.max_record_bytes = max_record_bytes
        self.deadletter_topic = deadletter_topic
        self._last_log = 0.0

    def dead_letter(
        self,
        reason: str,
        detail: str,
        payload: bytes,
        source: str,
        extra: Sequence[tuple[str, bytes]] = (),
    ) -> Outgoing:
        """A dead-letter record (cut to the record limit, header ``truncated`` when cut)."""
        dead = dead_letter(reason, detail, payload, source, self.max_record_bytes, extra)
        return Outgoing(
            self.deadletter_topic, dead.value, key=dead.key, headers=dead.headers, dead_letter=True
        )

    async def deliver(self, records: list[Outgoing]) -> None:
        """Send ``records``; return once Kafka confirmed each (or its replacement).

        Records go in lanes, one per (topic, partition), each in order (dead letters each in
        a lane of their own, as they need no order): a wave sends the
        next record of every lane at once and waits for their confirmations. A record that
        is not confirmed is sent again before its lane goes on, and a refused one's
        replacements take its place, so a partition never sees records out of order.
        """
        lanes: dict[tuple[str, int | None], deque[Outgoing]] = {}
        for record in records:
            # dead letters need no order among themselves: each in a lane of its own
            key = (
                ("", id(record))
                if record.dead_letter
                else (record.topic.get_topic_name(), record.partition)
            )
            lanes.setdefault(key, deque()).append(record)
        backoff = 0.5
        while lanes:
            heads = [lane[0] for lane in lanes.values()]
            failed = {
                id(record): (reason, exc) for record, reason, exc in await self._send_round(heads)
            }
            unavailable = False
            for name, lane in list(lanes.items()):
                record = lane.popleft()
                if id(record) in failed:
                    reason, exc = failed[id(record)]
                    if reason is None:
                        lane.appendleft(record)
                        unavailable = True
                    else:
                        lane.extendleft(reversed(self._replace(record, reason, exc)))
                if not lane:
                    del lanes[name]
            if unavailable:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            else:
                backoff = 0.5

    async def _send_round(self, records: list[Outgoing]) -> list[Failure]:
        """Send each record once, all at once; the failures in the records' order."""
        futures: list[tuple[int, Any]] = []
        failed: dict[int, Failure] = {}
        unconfirmed = self.metrics.kafka_unconfirmed
        for i, record in enumerate(records):
            try:
                fut = await record.topic.send(
                    key=record.key,
                    value=record.value,
                    partition=record.partition,
                    headers=record.headers or None,
                    force=True,
                )
            except Exception as exc:  # noqa: BLE001 - classified: refused or retried
                failed[i] = self._failure(record, exc)
                continue
            futures.append((i, fut))
        unconfirmed.inc(len(futures))
        try:
            results = await asyncio.gather(*(f for _, f in futures), return_exceptions=True)
        finally:
            unconfirmed.dec(len(futures))
        for (i, _), result in zip(futures, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                failed[i] = self._failure(records[i], result)
            elif records[i].dead_letter:
                self.metrics.dead_letters.inc()
        return [failed[i] for i in sorted(failed)]

    def _failure(self, record: Outgoing, exc: BaseException) -> Failure:
        reason = refusal(exc)
        topic = record.topic.get_topic_name()
        if reason is None:
            self.metrics.kafka_send_retries.inc()
            now = time.monotonic()
            if now - self._last_log >= LOG_INTERVAL_S:
                self._last_log = now
                log.error(
                    "kafka did not confirm a record to %s, sending again with backoff "
                    "(input not acknowledged) error=%r",
                    topic,
                    exc,
                )
        else:
            self.metrics.kafka_refused.labels(topic).inc()
            log.warning(
                "kafka refused a record to %s (%s bytes) reason=%s error=%r",
                topic,
                len(record.value),
                reason,
                exc,
            )
        return record, reason, exc

    def _replace(self, record: Outgoing, reason: str, exc: BaseException) -> list[Outgoing]:
        """What to send instead of a refused record: halves of an envelope, a dead letter
        per event, or a shorter dead letter."""
        detail = f"refused by Kafka: {exc!r}"[:500]
        if record.dead_letter:
            if len(record.value) <= MIN_DEAD_LETTER_BYTES:
                log.error("dead letter refused even at %s bytes, not written", len(record.value))
                return []
            cut = record.value[: len(record.value) // 4]
            headers = [(k, v) for k, v in record.headers if k != TRUNCATED_HEADER]
            original = next((v for k, v in record.headers if k == TRUNCATED_HEADER), None)
            headers.append((TRUNCATED_HEADER, original or str(len(record.value)).encode()))
            return [Outgoing(record.topic, cut, record.key, None, headers, dead_letter=True)]
        items = record.items or envelope_items(record)
        if len(items) > 1:
            half = len(items) // 2
            return [
                Outgoing(
                    record.topic,
                    record.head + b",".join(part) + record.tail,
                    record.key,
                    record.partition,
                    record.headers,
                    part,
                    record.head,
                    record.tail,
                )
                for part in (items[:half], items[half:])
            ]
        payload = items[0] if items else record.value
        if not isinstance(payload, bytes):  # what made it unserialisable: keep a trace of it
            payload = repr(payload)[:MIN_DEAD_LETTER_BYTES].encode()
        self.metrics.events_invalid.labels(reason).inc()
        return [self.dead_letter(reason, detail, payload, record.topic.get_topic_name())]
