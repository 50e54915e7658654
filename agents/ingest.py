"""Ingest agent: validate -> pseudonymise -> enrich -> route to the activity topic by actor.

Bad input goes to the dead-letter topic with its original bytes and the reason in headers;
the agent never stops for it. Events leave as one envelope per activity partition per batch,
so the engagement stage pays Kafka's per-message cost once per batch, not per event; an
envelope is split to stay within ``TEILHABE_KAFKA_MAX_RECORD_BYTES``
(``pipeline.contract.records``), and
whatever Kafka does with one record never stops the agent (``agents.delivery``).

Opt-out (docs/privacy.md, "Opt-out"): after pseudonymising, an event whose actor is in
``TEILHABE_OPT_OUT_FILE`` is dropped (counted in ``teilhabe_events_opted_out_total``) before
anything is written; where such a person is only the target, the target id is anonymised and
the event kept. Imports and webhooks reach the facts through this agent as well. The file is
re-read on a timer when it changed.

Every send uses ``force=True``. Without it Faust "attaches" a send made inside an agent to the
stream's *current* event and publishes it only when that event's offset is committed. In a
batch that current event belongs to one input partition while the envelope carries events of
another, so (seen in the SIGKILL test) another partition's offset could be committed before
the envelope was published, losing its events, and envelopes left in another order than
their source's. Sent at once, Faust's commit flushes the producer before it commits offsets:
at-least-once, in order per source.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from typing import Any

import orjson

from agents.batching import EventBatcher
from agents.delivery import Outgoing
from agents.runtime import Runtime
from pipeline.contract.records import TooLarge, value_budget
from pipeline.metrics.enrich import apply_opt_out, decode_message, enrich, partition_for
from pipeline.sources.optout import OptOutList

log = logging.getLogger("teilhabe.ingest")

BATCH_MESSAGES = 500
#: A batch also ends at this many bytes of messages: memory stays bounded with envelopes.
BATCH_BYTES = 128 * 1024 * 1024
BATCH_WITHIN_S = 0.1
#: How often the opt-out file's mtime is checked (a change applies to events ingested after).
OPT_OUT_CHECK_S = 10.0


def offset_ranges(batch: list[Any]) -> str:
    """``p:a-b,c`` runs of offsets per partition in batch order (for DEBUG traces)."""
    runs: dict[int, list[list[int]]] = {}
    for event in batch:
        p, o = event.message.partition, event.message.offset
        spans = runs.setdefault(p, [])
        if spans and spans[-1][1] + 1 == o:
            spans[-1][1] = o
        else:
            spans.append([o, o])
    return " ".join(
        f"{p}:" + ",".join(f"{a}-{b}" if a != b else str(a) for a, b in spans)
        for p, spans in sorted(runs.items())
    )


class EncodedSize:
    """Running estimate of an activity event's encoded size, so that a long run of events is
    cut into record-sized runs before it is encoded (each event encoded once, not twice)."""

    __slots__ = ("bytes_per_event",)

    def __init__(self) -> None:
        self.bytes_per_event = 0.0

    def runs_for(self, events: int, budget: int) -> int:
        """How many runs ``events`` events need (1 while nothing is known)."""
        return max(1, min(events, math.ceil(events * self.bytes_per_event * 1.05 / budget)))

    def observe(self, events: int, encoded: int) -> None:
        """Learn from one encoded run."""
        size = encoded / events
        self.bytes_per_event = (
            size if not self.bytes_per_event else 0.8 * self.bytes_per_event + 0.2 * size
        )


def activity_records(
    topic: Any,
    partition: int,
    source: int,
    events: list[dict[str, Any]],
    budget: int,
    sizes: EncodedSize | None = None,
) -> tuple[list[Outgoing], list[TooLarge]]:
    """The activity records of one (partition, source), each within the record budget.

    One ``orjson.dumps`` per record: the events are cut into as many equal runs as their
    encoded size needs (estimated by ``sizes``; a run still too large is cut again), and
    only a run of one event that cannot fit comes back apart (a dead letter, reason
    ``oversized``).
    """
    key = str(partition).encode()
    head, tail = b'{"src":%d,"events":[' % source, b"]}"
    records: list[Outgoing] = []
    too_large: list[TooLarge] = []
    sizes = sizes or EncodedSize()
    todo = _cut(events, sizes.runs_for(len(events), budget))
    while todo:
        run = todo.pop()
        value = orjson.dumps({"src": source, "events": run})
        sizes.observe(len(run), len(value))
        if len(value) <= budget:
            records.append(Outgoing(topic, value, key, partition, head=head, tail=tail))
        elif len(run) == 1:
            item = orjson.dumps(run[0])
            too_large.append(TooLarge(item, budget - len(head) - len(tail)))
        else:
            todo += _cut(run, min(len(run), -(-len(value) * 11 // (budget * 10))))
    return records, too_large


def _cut(events: list[dict[str, Any]], parts: int) -> list[list[dict[str, Any]]]:
    """``events`` in ``parts`` runs of equal length, last run first (popped in order)."""
    step = -(-len(events) // parts)
    return [events[i : i + step] for i in range(0, len(events), step)][::-1]


def register(rt: Runtime) -> None:
    """Attach the ingest agent to the app."""
    s = rt.settings
    metrics = rt.metrics
    future_ms = s.future_tolerance_s * 1000
    partitions = s.activity_partitions
    delivery = rt.delivery
    # activity keys are the partition number: at most 4 bytes
    budget = value_budget(s.kafka_max_record_bytes, b"0000")
    sizes = EncodedSize()
    opt_out = OptOutList(s.opt_out_file, rt.pseudonymise)  # ConfigError: the worker stops

    if s.opt_out_file is not None:

        @rt.app.timer(interval=OPT_OUT_CHECK_S)
        async def reload_opt_out() -> None:
            opt_out.reload_if_changed()

    async def handle(batch: list[Any]) -> None:
        """Validate, pseudonymise, enrich and route one batch; returns once Kafka has it."""
        now_ms = int(time.time() * 1000)
        # keyed by (activity partition, source input partition): the engagement stage keeps
        # a watermark per source, so each envelope carries events of one source only
        routed: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
        ended: list[int] = []  # input partitions whose end-of-input marker is in this batch
        out: list[Outgoing] = []
        opted_out = opt_out.pseudonyms  # one list for the whole batch
        dropped = 0
        metrics.consumed(s.topic_events, len(batch))
        for event in batch:
            msg = event.message
            decoded = decode_message(event.value, now_ms, future_ms, s.max_message_bytes)
            if decoded.dead:
                where = f"{msg.topic}[{msg.partition}]@{msg.offset}"
                for dead in decoded.dead:
                    metrics.events_invalid.labels(dead.reason).inc()
                    index = [] if dead.index is None else [("envelope_index", b"%d" % dead.index)]
                    out.append(
                        delivery.dead_letter(dead.reason, dead.detail, dead.payload, where, index)
                    )
                    log.warning(
                        "dead letter reason=%s source=%s index=%s", dead.reason, where, dead.index
                    )
            if decoded.end_of_input:
                ended.append(msg.partition)
            for ev in decoded.events:
                enrich(ev, rt.pseudonymise, rt.lookup, pseudonymised=decoded.pseudonymised)
                if not apply_opt_out(ev, opted_out):
                    dropped += 1
                    continue
                del ev["occurred_at"]  # ts carries it; keeps the envelope small
                routed[(partition_for(ev["actor_id"], partitions), msg.partition)].append(ev)
        for (partition, source), events in routed.items():
            records, too_large = activity_records(
                rt.activity_topic, partition, source, events, budget, sizes
            )
            out.extend(records)
            for item in too_large:
                metrics.events_invalid.labels("oversized").inc()
                where = f"{s.topic_events}[{source}] to {s.topic_activity}[{partition}]"
                out.append(delivery.dead_letter("oversized", item.detail, item.item, where))
        for source in ended:  # after the source's events: every activity partition learns
            end = orjson.dumps({"src": source, "events": [], "end": True})
            for partition in range(partitions):
                out.append(Outgoing(rt.activity_topic, end, str(partition).encode(), partition))
            log.info("end of input source=%s forwarded to %s partitions", source, partitions)
        # acknowledge only what Kafka has confirmed: at-least-once without relying on the
        # producer flush that precedes Faust's commit; never raises for one record
        await delivery.deliver(out)
        if dropped:
            metrics.events_opted_out.inc(dropped)
        for event in batch:
            event.ack()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("batch acked messages=%s offsets=%s", len(batch), offset_ranges(batch))

    EventBatcher(handle, BATCH_MESSAGES, BATCH_WITHIN_S, BATCH_BYTES).attach(
        rt.app, rt.events_topic, "teilhabe.ingest"
    )
