"""Kafka records bounded in bytes: the one envelope writer of every Teilhabe producer.

Apache Kafka refuses a record larger than the broker's ``message.max.bytes`` (1,048,588 bytes
by default; per topic ``max.message.bytes``), and clients refuse one above their own request
limit. So everything Teilhabe writes to Kafka (``produce``, ``import``, ``backfill``, the live
generator, webhooks, the ingest agent's activity envelopes, dead letters, directory records)
is cut to ``TEILHABE_KAFKA_MAX_RECORD_BYTES`` here, by serialised size:

* ``pack`` splices serialised items into envelopes ``head + item,item,... + tail`` that each
  fit the budget; an item that cannot fit even alone comes back as ``TooLarge`` (its caller
  dead-letters it with reason ``oversized``; it is never sent, never a crash).
* ``bound_dead_letter`` keeps the first bytes of a dead letter above the limit and adds the
  header ``truncated`` with the original size, so nothing is refused on the way to the
  dead-letter topic either.

Sizes are counted as Kafka counts a record batch holding one record: key, value and headers
plus a fixed allowance for the batch and record framing (``RECORD_OVERHEAD_BYTES``), so a
record within budget is within the limit whatever the broker adds around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

#: Default of ``TEILHABE_KAFKA_MAX_RECORD_BYTES``: below Apache Kafka's 1,048,588.
DEFAULT_MAX_RECORD_BYTES: Final = 1_000_000
#: Record batch header (61 bytes in format v2) plus one record's varint framing and
#: attributes, rounded up generously.
RECORD_OVERHEAD_BYTES: Final = 256
#: Header added to a dead letter whose value was cut: the original value size in bytes.
TRUNCATED_HEADER: Final = "truncated"

Headers = Sequence[tuple[str, bytes]]


def framing_bytes(key: bytes | None = None, headers: Headers = ()) -> int:
    """Bytes a record takes besides its value: key, headers and the batch's framing."""
    used = RECORD_OVERHEAD_BYTES + (len(key) if key else 0)
    return used + sum(len(name.encode()) + len(value) + 8 for name, value in headers)


def value_budget(max_record_bytes: int, key: bytes | None = None, headers: Headers = ()) -> int:
    """Bytes a record's value may take so that the whole record fits ``max_record_bytes``."""
    return max_record_bytes - framing_bytes(key, headers)


def record_size(value: bytes | None, key: bytes | None = None, headers: Headers = ()) -> int:
    """Upper bound of a record's size as a broker checks it (value, key, headers, framing)."""
    return (len(value) if value else 0) + framing_bytes(key, headers)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One record's value and how many items it carries."""

    value: bytes
    count: int


@dataclass(frozen=True, slots=True)
class TooLarge:
    """An item that does not fit a record even alone (to be dead-lettered as ``oversized``)."""

    item: bytes
    budget: int

    @property
    def detail(self) -> str:
        """The dead letter's ``detail`` header."""
        return (
            f"{len(self.item)} bytes > record limit {self.budget} (TEILHABE_KAFKA_MAX_RECORD_BYTES)"
        )


class EnvelopeWriter:
    """Fills envelopes ``head + item,item,... + tail`` of at most ``budget`` bytes (and
    ``max_items`` items, 0 = unlimited), in the items' order.

    ``add`` returns what it completed: the envelope it closed to make room, or ``TooLarge``
    for an item that does not fit even alone (the envelope being filled goes on after it);
    ``flush`` returns the last, partly filled envelope.
    """

    def __init__(self, head: bytes, tail: bytes, budget: int, max_items: int = 0) -> None:
        self.head, self.tail, self.budget, self.max_items = head, tail, budget, max_items
        self.frame = len(head) + len(tail)
        if self.frame >= budget:
            raise ValueError(f"a record budget of {budget} bytes cannot hold an envelope")
        self._batch: list[bytes] = []
        self._size = self.frame

    def add(self, item: bytes) -> list[Envelope | TooLarge]:
        """Put ``item`` in; returns what is complete (usually nothing)."""
        n = len(item)
        if self.frame + n > self.budget:
            return [TooLarge(item, self.budget - self.frame)]
        batch = self._batch
        done: list[Envelope | TooLarge] = []
        if batch and (
            self._size + n + 1 > self.budget or (self.max_items and len(batch) >= self.max_items)
        ):
            done = list(self.flush())
            batch = self._batch
        self._size += n + (1 if batch else 0)
        batch.append(item)
        return done

    def flush(self) -> list[Envelope]:
        """The partly filled envelope, if any (and start a new one)."""
        if not self._batch:
            return []
        out = Envelope(self.head + b",".join(self._batch) + self.tail, len(self._batch))
        self._batch, self._size = [], self.frame
        return [out]


def pack(
    items: Iterable[bytes], head: bytes, tail: bytes, budget: int, max_items: int = 0
) -> Iterator[Envelope | TooLarge]:
    """Envelopes ``head + b",".join(items) + tail`` of at most ``budget`` bytes each (see
    ``EnvelopeWriter``); items keep their order across envelopes.

    >>> [e.value for e in pack([b"1", b"22", b"333"], b"[", b"]", 6)]
    [b'[1,22]', b'[333]']
    """
    writer = EnvelopeWriter(head, tail, budget, max_items)
    for item in items:
        yield from writer.add(item)
    yield from writer.flush()


def bound_dead_letter(
    value: bytes, headers: Headers, max_record_bytes: int, key: bytes | None = None
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A dead letter's value and headers within ``max_record_bytes``.

    A value that fits is kept whole. Otherwise its first bytes are kept and the header
    ``truncated`` carries the original size in bytes, so a reader knows it holds a prefix.
    """
    out = list(headers)
    if len(value) <= value_budget(max_record_bytes, key, out):
        return value, out
    out.append((TRUNCATED_HEADER, str(len(value)).encode()))
    return value[: max(0, value_budget(max_record_bytes, key, out))], out


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A dead letter as every producer of Teilhabe writes it: key = reason; headers
    ``reason``, ``detail``, ``source`` and any extra ones; within the record limit."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def dead_letter(
    reason: str,
    detail: str,
    payload: bytes,
    source: str,
    max_record_bytes: int,
    extra: Headers = (),
) -> DeadLetterRecord:
    """The dead letter of ``payload`` (cut by ``bound_dead_letter`` when too large)."""
    headers = [
        ("reason", reason.encode()),
        ("detail", detail.encode()[:500]),
        ("source", source.encode()),
        *extra,
    ]
    key = reason.encode()
    value, headers = bound_dead_letter(payload, headers, max_record_bytes, key)
    return DeadLetterRecord(key, value, headers)
