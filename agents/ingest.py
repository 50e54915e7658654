"""Ingest agent: validate -> pseudonymise -> enrich -> route to the activity topic by actor.

Bad input goes to the dead-letter topic with its original bytes and the reason in headers;
the agent never stops for it. Events leave as one envelope per activity partition per batch,
so the engagement stage pays Kafka's per-message cost once per batch, not per event.

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
import time
from collections import defaultdict
from typing import Any

import orjson

from agents.app import Runtime
from pipeline.ingest import decode_message, enrich, partition_for

log = logging.getLogger("teilhabe.ingest")

BATCH_MESSAGES = 500
BATCH_WITHIN_S = 0.1
IDLE_MARKER_INTERVAL_S = 1.0


def register(rt: Runtime) -> None:
    """Attach the ingest agent to the app."""
    s = rt.settings
    metrics = rt.metrics
    future_ms = s.future_tolerance_s * 1000
    partitions = s.activity_partitions

    next_offset: dict[int, int] = {}  # input partition -> offset after the last one handled
    last_data_at: dict[int, float] = {}
    announced_idle: set[int] = set()  # input partitions whose idleness was announced
    first_seen_at: dict[int, float] = {}  # when this worker first saw a partition assigned

    @rt.app.agent(rt.events_topic, name="teilhabe.ingest")
    async def ingest(stream: Any) -> None:
        async for batch in stream.take_events(BATCH_MESSAGES, within=BATCH_WITHIN_S):
            now_ms = int(time.time() * 1000)
            # keyed by (activity partition, source input partition): the engagement stage keeps
            # a watermark per source, so each envelope carries events of one source only
            routed: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
            for event in batch:
                msg = event.message
                metrics.messages_consumed.labels(msg.topic).inc()
                decoded = decode_message(event.value, now_ms, future_ms, s.max_message_bytes)
                for dead in decoded.dead:
                    metrics.events_invalid.labels(dead.reason).inc()
                    metrics.dead_letters.inc()
                    headers = [
                        ("reason", dead.reason.encode()),
                        ("detail", dead.detail.encode()[:500]),
                        ("source", f"{msg.topic}[{msg.partition}]@{msg.offset}".encode()),
                    ]
                    if dead.index is not None:
                        headers.append(("envelope_index", str(dead.index).encode()))
                    await rt.deadletter_topic.send(
                        key=dead.reason.encode(), value=dead.payload, headers=headers, force=True
                    )
                    log.warning(
                        "dead letter reason=%s source=%s[%s] offset=%s index=%s",
                        dead.reason,
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        dead.index,
                    )
                for ev in decoded.events:
                    enrich(ev, rt.pseudonymise, rt.lookup)
                    del ev["occurred_at"]  # ts carries it; keeps the envelope small
                    routed[(partition_for(ev["actor_id"], partitions), msg.partition)].append(ev)
            for (partition, source), events in routed.items():
                await rt.activity_topic.send(
                    key=str(partition).encode(),
                    value=orjson.dumps({"src": source, "events": events}),
                    partition=partition,
                    force=True,  # see module docstring: never attach to the current event
                )
            # only now, with every envelope of the batch handed to the producer (which keeps
            # the order per partition), may the idle-marker timer consider these sources
            for event in batch:
                next_offset[event.message.partition] = event.message.offset + 1
                last_data_at[event.message.partition] = time.monotonic()
                announced_idle.discard(event.message.partition)

    @rt.app.timer(interval=IDLE_MARKER_INTERVAL_S)
    async def idle_markers() -> None:
        """Tell every activity partition which of our input partitions have nothing pending.

        The engagement stage then leaves those sources out of its watermark. The marker travels
        in order behind the source's data, so the decision is part of the replayable sequence,
        and a source that is merely slow (data still waiting in Kafka) is never set aside.
        """
        consumer = rt.app.consumer
        now = time.monotonic()
        for tp in consumer.assignment():
            if tp.topic != s.topic_events or tp.partition in announced_idle:
                continue  # announced once per quiet spell: markers must not flood the topic
            if now - last_data_at.get(tp.partition, 0.0) < IDLE_MARKER_INTERVAL_S:
                continue
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue  # nothing fetched yet: unknown, so not idle
            done = next_offset.get(tp.partition)
            if done is None:
                # Nothing handled from it yet: an empty partition, or one whose first fetch
                # has not come back. Only after idle_close_s of that is it declared idle.
                seen = first_seen_at.setdefault(tp.partition, now)
                if now - seen < s.idle_close_s or highwater > 0:
                    continue
                done = 0
            if done < highwater:
                continue  # data is waiting: not idle
            log.debug(
                "idle marker source=%s next_offset=%s highwater=%s",
                tp.partition, next_offset.get(tp.partition), highwater,
            )
            marker = orjson.dumps({"src": tp.partition, "events": [], "idle": True})
            for partition in range(partitions):
                await rt.activity_topic.send(
                    key=str(partition).encode(), value=marker, partition=partition, force=True
                )
            announced_idle.add(tp.partition)
